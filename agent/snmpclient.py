"""The SNMP seam: a narrow client protocol, the factory that picks an engine, and a fake for unit tests.

Sources talk to devices only through ``SnmpClient``. OIDs are numeric dotted strings without a leading
dot (``"1.3.6.1.2.1.1.3.0"``); no MIB is ever compiled or looked up on the probe.

Engines (``make_client(target, engine)``; ``default_client_factory`` is ``make_client`` with "auto")::

    "gufo"    GufoClient (agent.snmp_gufo): gufo-snmp, a Rust BER codec on a non-blocking socket;
              4-8 us of CPU per varbind, as net-snmp's snmpbulkwalk. Wheels for x86_64 and aarch64
              Linux. Does not report an agent's error-status (see agent.snmp_gufo).
    "pysnmp"  PysnmpClient (agent.snmp_pysnmp): pysnmp 7, pure Python; 70-130 us per varbind (pyasn1's
              BER decoder is most of it), and about 18 MB more resident memory once imported.
    "auto"    "gufo" where gufo-snmp is installed, "pysnmp" elsewhere.

Measured by tests/benchmarks/bench_snmp.py.

Each engine is imported on first use only, so a probe that polls with gufo-snmp never loads pysnmp.

Values (``SnmpValue``), the same from every engine::

    INTEGER, Counter32/64, Gauge32, TimeTicks, Unsigned32   -> int (Counter64 exact)
    OCTET STRING, Opaque, BITS                               -> bytes (the caller decides if it is text)
    OBJECT IDENTIFIER, IpAddress                             -> str ("1.3.6.1.4.1.9", "10.0.0.1")
    noSuchObject, noSuchInstance, endOfMibView, NULL         -> None

Exceptions::

    SnmpError           the device could not be read: ``str()`` names the target and the reason,
     |                  never the community or a key
     +-- SnmpTimeout    no answer after every retry (dead host, wrong community, wrong v3 privacy key)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, get_args

if TYPE_CHECKING:
    from agent.snmp_gufo import GufoClient
    from agent.snmp_pysnmp import PysnmpClient

__all__ = [
    "SnmpValue",
    "SnmpError",
    "SnmpTimeout",
    "SnmpTarget",
    "SnmpClient",
    "Engine",
    "make_client",
    "default_client_factory",
    "GufoClient",
    "PysnmpClient",
    "FakeSnmpClient",
    "oid_key",
]

SnmpValue = int | str | bytes | None
Version = Literal["v2c", "v3"]
AuthProtocol = Literal["SHA", "SHA256", "MD5"]
PrivProtocol = Literal["AES", "AES256", "DES"]


class SnmpError(Exception):
    """The device could not be read; ``str()`` is ``"<target>: <reason>"`` and never holds a secret."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"{target}: {reason}")
        self.target = target
        self.reason = reason


class SnmpTimeout(SnmpError):
    """The device did not answer in time after every retry."""


def oid_key(oid: str) -> tuple[int, ...]:
    """Return the numeric sort key of a dotted OID; raise ValueError if it is not one."""
    try:
        parts = tuple(int(p) for p in oid.split("."))
    except ValueError:
        parts = ()
    if len(parts) < 2 or any(p < 0 for p in parts):
        raise ValueError(f"{oid!r} is not a numeric OID like '1.3.6.1.2.1.1.3.0' (no leading dot)")
    return parts


def _under(key: tuple[int, ...], root: tuple[int, ...]) -> bool:
    return len(key) > len(root) and key[: len(root)] == root


@dataclass(frozen=True, slots=True)
class SnmpTarget:
    """Where a device is and how to talk to it; secrets are left out of ``repr``."""

    host: str
    port: int = 161
    version: Version = "v3"
    community: str | None = field(default=None, repr=False)
    user: str | None = None
    auth_key: str | None = field(default=None, repr=False)
    priv_key: str | None = field(default=None, repr=False)
    auth_protocol: AuthProtocol = "SHA"
    priv_protocol: PrivProtocol = "AES"
    timeout: float = 2.0
    retries: int = 1
    max_repetitions: int = 25
    bulk: bool = True

    @property
    def label(self) -> str:
        """Return ``host:port``, the name of the target in messages."""
        return f"{self.host}:{self.port}"

    def scrub(self, text: str) -> str:
        """Return ``text`` with the community and keys masked."""
        for secret in (self.community, self.auth_key, self.priv_key):
            if secret:
                text = text.replace(secret, "**********")
        return text


class SnmpClient(Protocol):
    """One device's SNMP agent.

    A source owns its client. Calls on one client never overlap (the runner never runs a source's
    ``collect`` twice at once); clients of different sources run concurrently on the same event loop.
    """

    async def get(self, oids: Sequence[str]) -> dict[str, SnmpValue]:
        """GET ``oids`` in one request; called during ``collect``, never concurrently on one client.

        Returns every requested OID, with None for noSuchObject/noSuchInstance. Raises SnmpTimeout when
        nothing answers and SnmpError for any other failure. Must not retry beyond the target's
        ``retries`` or sleep.
        """
        ...

    async def walk(self, root: str) -> list[tuple[str, SnmpValue]]:
        """Walk the subtree under ``root``; called during ``collect``, never concurrently on one client.

        Uses GETBULK when the target's ``bulk`` is on and GETNEXT otherwise, stops at the first OID
        outside the subtree (or endOfMibView), and returns ``(oid, value)`` in numeric OID order; an
        absent subtree gives ``[]``. Raises like ``get``; a walk that fails half-way returns nothing.
        """
        ...

    def close(self) -> None:
        """Release what the client opened; called once when its source stops, never during a request.

        Safe to call when nothing was opened. The client must not be used afterwards.
        """
        ...


# ---------------------------------------------------------------------------------------------- engines

Engine = Literal["auto", "pysnmp", "gufo"]
ENGINES: Final[tuple[str, ...]] = get_args(Engine)


@cache
def gufo_available() -> bool:
    """Return True when gufo-snmp is installed (its wheels exist for x86_64 and aarch64 Linux)."""
    try:
        return importlib.util.find_spec("gufo.snmp") is not None
    except ImportError:
        return False


def make_client(target: SnmpTarget, engine: Engine = "auto") -> SnmpClient:
    """Return a client for ``target`` on ``engine``; "auto" is gufo-snmp when installed, else pysnmp."""
    if engine == "auto":
        engine = "gufo" if gufo_available() else "pysnmp"
    if engine == "gufo":
        from agent.snmp_gufo import GufoClient

        return GufoClient(target)
    if engine == "pysnmp":
        from agent.snmp_pysnmp import PysnmpClient

        return PysnmpClient(target)
    raise ValueError(f"unknown SNMP engine {engine!r}; expected one of {', '.join(ENGINES)}")


def default_client_factory(target: SnmpTarget) -> SnmpClient:
    """Return the fastest correct client for ``target`` (``make_client`` with engine "auto")."""
    return make_client(target)


def __getattr__(name: str) -> Any:
    """Import an engine's client class when it is first named (PEP 562), so that importing is cheap."""
    if name == "PysnmpClient":
        from agent.snmp_pysnmp import PysnmpClient

        return PysnmpClient
    if name == "GufoClient":
        from agent.snmp_gufo import GufoClient

        return GufoClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------- fake


class FakeSnmpClient:
    """``SnmpClient`` answering from a dict of OID -> value; records calls; ``fail`` makes it time out."""

    def __init__(self, values: Mapping[str, SnmpValue], *, fail: bool = False) -> None:
        self.values = dict(values)
        self.fail = fail
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.closed = False
        for oid in self.values:
            oid_key(oid)

    async def get(self, oids: Sequence[str]) -> dict[str, SnmpValue]:
        """Return the value of each OID, None where the dict has none."""
        self._check("get", tuple(oids))
        return {oid: self.values.get(oid) for oid in oids}

    async def walk(self, root: str) -> list[tuple[str, SnmpValue]]:
        """Return the entries under ``root`` in numeric OID order."""
        self._check("walk", (root,))
        root_key = oid_key(root)
        rows = [(oid, value) for oid, value in self.values.items() if _under(oid_key(oid), root_key)]
        return sorted(rows, key=lambda row: oid_key(row[0]))

    def close(self) -> None:
        """Mark the client closed."""
        self.closed = True

    def _check(self, method: str, args: tuple[str, ...]) -> None:
        if self.closed:
            raise RuntimeError("FakeSnmpClient used after close()")
        for oid in args:
            oid_key(oid)
        self.calls.append((method, args))
        if self.fail:
            raise SnmpTimeout("fake", "no response in 0s after 1 tries")
