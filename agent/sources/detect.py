"""Auto-detection: which SNMP poll profiles apply to a device, from what the device says about itself.

A profile's ``applies_to`` (``agent.profiles.AppliesTo``) lists tests, and any one that passes selects the
profile: sysObjectID equal to or under one of ``sys_object_id``, one of the ``sys_descr`` regexes found in
sysDescr, or one of the ``has_table`` columns giving at least one row when walked. A profile without
``applies_to`` is never picked this way, only by name. When two profiles that apply read the same things (a
Cisco device answering both ENTITY-SENSOR-MIB and CISCO-ENTITY-SENSOR-MIB gives each optic twice), the one
that says ``supersedes: [other]`` wins: the other still shows as a match, with ``superseded_by``, and is not
polled.

What the device is asked (by ``SnmpSource``, with the poll's own requests, so that a column detection walked
is not walked again by the poll)::

    GET sysObjectID.0, sysDescr.0        once per detection
    walk each has_table column           only for profiles no sysObjectID or sysDescr test selected

The decision itself is pure::

    identify(object_id, descr)           an Identity from the values the GET gave
    tables_to_walk(profiles, identity)   the has_table columns worth walking, in order
    select(profiles, identity)           the profiles that apply, each with the test that passed (and the
                                         profile that supersedes it, if one applies too)
    due(last, now_ns, rebooted)          whether to detect again: never done, after a reboot, or every 6 h
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final

from agent.profiles import Profile
from agent.snmpclient import SnmpValue

__all__ = ["SYS_DESCR", "SYS_OBJECT_ID", "REDETECT_NS", "Identity", "Match", "Detection", "identify",
           "tables_to_walk", "select", "due"]

SYS_DESCR: Final = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID: Final = "1.3.6.1.2.1.1.2.0"
REDETECT_NS: Final = 6 * 3600 * 10**9  # detect again this often, in case a card or a licence changed the tables


@dataclass(frozen=True)
class Identity:
    """What a device said about itself: sysObjectID (None if it gave none), sysDescr, columns that have rows."""

    sys_object_id: str | None
    sys_descr: str
    tables: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Match:
    """A profile that applies, the test that selected it in words, and the profile that supersedes it (if any)."""

    profile: str
    test: str
    superseded_by: str | None = None   # a profile that applies too and supersedes this one: this one is not polled


@dataclass(frozen=True)
class Detection:
    """The result of one detection: what the device said, what applies, and when (``at_ns``)."""

    identity: Identity
    matches: tuple[Match, ...]
    at_ns: int

    @property
    def profiles(self) -> list[str]:
        """Return the names of the profiles to poll: those that apply and are not superseded, in profile order."""
        return [m.profile for m in self.matches if m.superseded_by is None]


def identify(object_id: SnmpValue, descr: SnmpValue, tables: frozenset[str] = frozenset()) -> Identity:
    """Return an Identity from the values read: an OID that is not one, or a missing sysDescr, counts as none."""
    oid = object_id if isinstance(object_id, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)+", object_id) else None
    if isinstance(descr, bytes):
        text = descr.decode("utf-8", errors="replace")
    else:
        text = descr if isinstance(descr, str) else ""
    return Identity(oid, text, tables)


def _by_identity(profile: Profile, identity: Identity) -> str | None:
    """Return the sysObjectID or sysDescr test of ``profile`` that passes, in words, or None."""
    applies = profile.applies_to
    if applies is None:
        return None
    oid = identity.sys_object_id
    if oid is not None:
        for prefix in applies.sys_object_id:
            if oid == prefix:
                return f"sysObjectID is {prefix}"
            if oid.startswith(prefix + "."):
                return f"sysObjectID {oid} is under {prefix}"
    for pattern in applies.sys_descr:
        if re.search(pattern, identity.sys_descr):
            return f"sysDescr matches {pattern!r}"
    return None


def tables_to_walk(profiles: Mapping[str, Profile], identity: Identity) -> list[str]:
    """Return the has_table columns of the profiles that sysObjectID and sysDescr did not select, once each."""
    out: dict[str, None] = {}
    for profile in profiles.values():
        if profile.applies_to is not None and _by_identity(profile, identity) is None:
            out.update(dict.fromkeys(profile.applies_to.has_table))
    return list(out)


def select(profiles: Mapping[str, Profile], identity: Identity) -> list[Match]:
    """Return the profiles that apply to a device, in the mapping's order, each with the first test that passed."""
    matches: list[Match] = []
    for name, profile in profiles.items():
        if profile.applies_to is None:
            continue
        test = _by_identity(profile, identity)
        if test is None:
            column = next((c for c in profile.applies_to.has_table if c in identity.tables), None)
            test = f"{column} has rows" if column is not None else None
        if test is not None:
            matches.append(Match(name, test))
    winner = {old: m.profile for m in matches for old in profiles[m.profile].supersedes}
    return [replace(m, superseded_by=winner[m.profile]) if m.profile in winner else m for m in matches]


def due(last: Detection | None, now_ns: int, rebooted: bool, every_ns: int = REDETECT_NS) -> bool:
    """Return True if a device should be detected (again): never done, it restarted, or ``every_ns`` passed."""
    return last is None or rebooted or now_ns - last.at_ns >= every_ns
