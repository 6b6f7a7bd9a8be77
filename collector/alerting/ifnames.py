"""Interface names as port identities: one key for the long and the short form a vendor prints for one port.

The same switch calls a port ``GigabitEthernet1/0/52`` in ENTITY-MIB and ``Gi1/0/52`` in IF-MIB; an inventory
written from the CLI may use either, or Huawei's ``GE0/0/1`` / ``XGE0/0/1``. ``canonical(name)`` maps every
such spelling to one key (lower case, the type's long name, the numbering untouched), so that a link and the
optics of its port meet whichever form each side used::

    canonical("Gi1/0/52") == canonical("GigabitEthernet1/0/52") == "gigabitethernet1/0/52"
    canonical("Te0/0/0/1") == canonical("TenGigE0/0/0/1") == "tengigabitethernet0/0/0/1"
    canonical("Et49/1") == canonical("Eth49/1") == canonical("Ethernet49/1") == "ethernet49/1"
    canonical("xe-0/0/1") == "xe-0/0/1"            (Junos names have one form: left as they are)

Only a type name followed directly by the port number is rewritten; anything else (``xe-0/0/1``, ``1/1/1``,
``sfp-sfpplus1``, ``Vlan10``) is only lower-cased and stripped of blanks.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["canonical"]

# the long name of a port type -> the abbreviations vendors print for it (Cisco, Arista, Huawei, NX-OS)
_TYPES: Final[dict[str, tuple[str, ...]]] = {
    "fastethernet": ("fa", "fas", "fastethernet"),
    "gigabitethernet": ("gi", "gig", "ge", "gigabitethernet"),
    "tengigabitethernet": ("te", "ten", "tengig", "tengige", "tengigabitethernet", "xge", "xgigabitethernet"),
    "twentyfivegige": ("twe", "twentyfivegige", "25ge"),
    "fortygigabitethernet": ("fo", "fortygige", "fortygigabitethernet", "40ge"),
    "hundredgige": ("hu", "hundredgige", "hundredgigabitethernet", "100ge"),
    "ethernet": ("e", "et", "eth", "ethernet"),
    "port-channel": ("po", "port-channel", "portchannel"),
}
_ALIASES: Final = {alias: name for name, aliases in _TYPES.items() for alias in aliases}
_TYPED = re.compile(r"^(\d*[a-z][a-z-]*?)(\d.*)$")  # a type ("gi", "40ge", "xe-") and the port number


def canonical(name: str) -> str:
    """Return the key of an interface name: lower case, no blanks, the port type in its long form."""
    key = "".join(name.split()).lower()
    found = _TYPED.match(key)
    if found is None:
        return key
    kind, rest = found.groups()
    if kind.endswith("-"):  # Junos (xe-0/0/1): its own single form
        return key
    return _ALIASES.get(kind, kind) + rest
