"""The secrets an inventory's receivers may use, declared in the collector configuration (``secrets:``).

The inventory is written by more hands than the collector configuration: carriers keep their own receivers and
maintenance windows in it. So it names no file and no environment variable; a receiver's token is either a
literal string (visible to every reader of the inventory) or ``{secret: NAME}``, a secret the operator declared
here with the URLs it may be sent to::

    secrets:
      dir: /etc/zonewatch/secrets        # the only folder {file: NAME} is read from
      env_prefix: ZW_SECRET_             # the only environment variables {env: NAME} may name
      receivers:
        viettel-token:
          file: viettel-token            # or env: ZW_SECRET_VIETTEL_TOKEN
          sends_to: https://alerts.viettel.example/zonewatch/
          carrier: 452-04                # optional: only this carrier's receivers may use it

An inventory author can then send a declared token only to a URL under its ``sends_to`` (same scheme, host and
port; the path at or below the prefix's), and only from its ``carrier``'s receivers when one is given: not to a
server of their choosing, and never the broker's or the SMTP relay's password, which are not declared here.

The values are read when the collector configuration is loaded (``strict.read_secret_file`` for files: a
regular file inside ``dir``, reached without following a symbolic link, writable by its owner only). The
inventory loader takes them through the validation context: ``load_inventory`` in ``collector.inventory``
(``collector.inventory.carriers`` reads a carrier webhook's ``{secret: NAME}``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Final, Protocol

from pydantic import PrivateAttr, SecretStr, field_validator, model_validator

from zonewatch.strict import Strict, SubkeyError, read_secret_file

__all__ = ["SecretsConfig", "ReceiverSecret", "BoundSecret", "SecretSource", "NAMES_ONLY", "CONTEXT_KEY",
           "PLMN", "context", "url_within"]

CONTEXT_KEY: Final = "receiver_secrets"
PLMN: Final = re.compile(r"^\d{3}-\d{2,3}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What an HTTP client and this check read the same way: letters, digits, '.' and '-' in the host (or an IPv6
# literal), no user info, no backslash (urllib3 ends the host at one, urllib.parse does not), no whitespace.
_URL = re.compile(r"^(?P<scheme>https?)://(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{1,5}))?"
                  r"(?P<path>/[^?#\s\\]*)?(?:\?[^#\s\\]*)?$")
_DEFAULT_PORT = {"http": 80, "https": 443}


@dataclass(frozen=True)
class _Url:
    scheme: str
    host: str
    port: int
    path: str


def _parse(url: str) -> _Url | None:
    """Return the parts of an http(s) URL, or None if it is not one this module can judge unambiguously."""
    m = _URL.match(url)
    if m is None:
        return None
    scheme = m["scheme"].lower()
    port = int(m["port"]) if m["port"] else _DEFAULT_PORT[scheme]
    path = m["path"] or "/"
    segments = path.split("/")
    if not 0 < port < 65536 or any(s in (".", "..") for s in segments) or re.search(r"%(2e|2f|5c)", path, re.I):
        return None  # dot segments, or encoded dots and slashes, that a server may resolve to another path
    return _Url(scheme, m["host"].lower().rstrip("."), port, path)


def url_within(url: str, prefix: str) -> bool:
    """Return True if ``url`` is at or below ``prefix``: same scheme, host and port, and a path under the
    prefix's path (on a segment boundary: ``/hooks`` covers ``/hooks`` and ``/hooks/a``, not ``/hooksevil``)."""
    u, p = _parse(url), _parse(prefix)
    if u is None or p is None or (u.scheme, u.host, u.port) != (p.scheme, p.host, p.port):
        return False
    base = p.path if p.path.endswith("/") else p.path + "/"
    return u.path == p.path or u.path.startswith(base)


class BoundSecret(SecretStr):
    """A token from ``secrets.receivers``: the value, with the name it was declared under and its carrier."""

    def __init__(self, value: str, name: str, carrier: str | None) -> None:
        super().__init__(value)
        self.name, self.carrier = name, carrier


class SecretSource(Protocol):
    """Where the inventory's ``{secret: NAME}`` come from."""

    def token(self, name: str, url: str) -> BoundSecret:
        """Return the secret ``name`` for a receiver at ``url``; raise ValueError (one line, naming what is
        wrong, never the value) if it is unknown or may not be sent there.

        Called while the inventory is validated, once per receiver that names a secret; must not do I/O."""
        ...


class _NamesOnly:
    """For a reader of the inventory that sends nothing (the report without a configuration): every name is
    taken, and its value is empty."""

    def token(self, name: str, url: str) -> BoundSecret:
        """Return an empty secret named ``name``; see ``SecretSource.token``."""
        return BoundSecret("", name, None)


NAMES_ONLY: Final[SecretSource] = _NamesOnly()


def context(source: SecretSource) -> dict[str, Any]:
    """Return the validation context that hands ``source`` to the inventory's receivers."""
    return {CONTEXT_KEY: source}


class ReceiverSecret(Strict):
    """One token an inventory receiver may use: where it is read from, and where it may be sent."""

    file: str | None = None  # a name inside secrets.dir
    env: str | None = None  # a variable starting with secrets.env_prefix
    sends_to: str
    carrier: str | None = None

    @field_validator("sends_to")
    @classmethod
    def _sends_to(cls, value: str) -> str:
        if _parse(value) is None:
            raise ValueError(f"expected an http:// or https:// URL prefix such as "
                             f"'https://alerts.carrier.example/zonewatch/' (a host name or address, no user, no "
                             f"'..'), got {value!r}")
        return value

    @field_validator("carrier")
    @classmethod
    def _carrier(cls, value: str | None) -> str | None:
        if value is not None and not PLMN.match(value):
            raise ValueError(f"expected a PLMN like '452-04' (MCC-MNC), got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ReceiverSecret:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of file (a name inside secrets.dir) or env (a variable starting "
                             "with secrets.env_prefix)")
        return self


class SecretsConfig(Strict):
    """The ``secrets:`` section: the folder and the variable prefix inventory secrets come from, and each
    secret with where it may be sent. Implements ``SecretSource``."""

    dir: str | None = None
    env_prefix: str | None = None
    receivers: dict[str, ReceiverSecret] = {}
    _values: dict[str, SecretStr] = PrivateAttr(default_factory=dict)

    @field_validator("dir")
    @classmethod
    def _dir(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isabs(value):
            raise ValueError(f"expected an absolute path (the folder of the inventory's secret files), got {value!r}")
        return value

    @field_validator("env_prefix")
    @classmethod
    def _env_prefix(cls, value: str | None) -> str | None:
        if value is not None and not _ENV.match(value):
            raise ValueError(f"expected the start of a variable name, such as 'ZW_SECRET_', got {value!r}")
        return value

    @field_validator("receivers")
    @classmethod
    def _names(cls, value: dict[str, ReceiverSecret]) -> dict[str, ReceiverSecret]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"secret name {name!r} is not an id: use lowercase letters, digits, - _ . "
                                 "(at most 63 characters, starting with a letter or digit)")
        return value

    @model_validator(mode="after")
    def _read(self) -> SecretsConfig:
        """Read every declared secret now, so that a missing or unsafe one stops start-up naming its key."""
        for name, decl in self.receivers.items():
            if decl.file is not None:
                if self.dir is None:
                    raise SubkeyError(("receivers", name, "file"), "a file secret needs secrets.dir (the folder "
                                      "the inventory's secret files are read from)")
                try:
                    value = read_secret_file(decl.file, root=self.dir)
                except ValueError as exc:
                    raise SubkeyError(("receivers", name, "file"), str(exc)) from None
            else:
                assert decl.env is not None
                where = ("receivers", name, "env")
                if self.env_prefix is None:
                    raise SubkeyError(where, "an environment secret needs secrets.env_prefix (the start every such "
                                      "variable's name must have)")
                if not decl.env.startswith(self.env_prefix):
                    raise SubkeyError(where, f"{decl.env} does not start with secrets.env_prefix "
                                      f"{self.env_prefix!r}")
                if decl.env not in os.environ:
                    raise SubkeyError(where, f"environment variable {decl.env} is not set")
                value = os.environ[decl.env]
            self._values[name] = SecretStr(value)
        return self

    def token(self, name: str, url: str) -> BoundSecret:
        """Return the secret ``name`` for a receiver at ``url``; see ``SecretSource.token``."""
        decl = self.receivers.get(name)
        if decl is None:
            known = ", ".join(sorted(self.receivers)) or "none"
            raise ValueError(f"unknown secret {name!r}: the collector configuration's secrets.receivers declares "
                             f"{known}")
        if not url_within(url, decl.sends_to):
            raise ValueError(f"secret {name!r} may only be sent to URLs under {decl.sends_to} "
                             f"(secrets.receivers.{name}.sends_to in the collector configuration); this url is not")
        return BoundSecret(self._values[name].get_secret_value(), name, decl.carrier)
