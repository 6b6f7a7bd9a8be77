"""The network seam of a qos source: the ``Bearer`` protocol, its fake, and the bearer's DNS from ModemManager.

``agent.sources.qos`` runs its tests through a ``Bearer``: the real one is ``agent.sources.qosnet.InterfaceBearer``,
``FakeBearer`` answers tests from its attributes. ``bearer_dns`` reads the DNS servers of the modem's connected
bearer from ``mmcli`` (``dns: mmcli`` in the source's config); ``parse_bearer_dns`` is its pure part.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from typing import Any, Final, Protocol

from agent.sources import SourceError
from agent.sources.qosnet import Access, Lookup, Transfer
from agent.sources.qostests import is_ip
from zonewatch import strict

__all__ = ["Bearer", "FakeBearer", "WIRE_FACTOR", "bearer_dns", "parse_bearer_dns"]

WIRE_FACTOR: Final = 1.06              # IP/TCP headers and acknowledgements around a transfer's payload


class Bearer(Protocol):
    """The network seam of the source: tests through one interface (``qosnet.InterfaceBearer``, or a fake).

    Every method blocks until its test is over (the source calls them in a worker thread, one at a time for
    one source) and returns a measurement, also when the network failed; it raises ``SourceError`` only when
    the test cannot run at all (no such interface, no privilege, a library missing).
    """

    def present(self) -> bool:
        """Return True if the interface exists."""
        ...

    def counters(self) -> int | None:
        """Return the bytes the interface received and sent so far, or None."""
        ...

    def resolve(self, name: str, servers: Sequence[str], timeout: float) -> Lookup:
        """Resolve ``name`` (A) through ``servers``, in turn."""
        ...

    def tcp(self, address: str, port: int, timeout: float) -> Access:
        """Connect to ``address:port``."""
        ...

    def http(self, url: str, address: str, timeout: float, max_bytes: int) -> Access:
        """GET ``url`` from ``address``."""
        ...

    def ping(self, address: str, count: int, spacing: float, timeout: float) -> list[float | None]:
        """ICMP echo round trips in ms (None: lost)."""
        ...

    def udp(self, address: str, port: int, count: int, spacing: float, timeout: float) -> list[float | None]:
        """UDP echo round trips in ms (None: lost)."""
        ...

    def download(self, url: str, address: str, size: int, timeout: float, stall: float) -> Transfer:
        """Download ``size`` bytes."""
        ...

    def upload(self, url: str, address: str, size: int, timeout: float, stall: float) -> Transfer:
        """Upload ``size`` bytes."""
        ...


# ---------------------------------------------------------------------------------------------- ModemManager


def parse_bearer_dns(modem: Any, bearers: Sequence[Any], interface: str) -> list[str]:
    """Return the IPv4 DNS servers of the connected bearer on ``interface``, from ``mmcli -m N -J`` and
    ``mmcli -b PATH -J`` of each bearer the modem lists; ValueError saying what is missing."""
    if not isinstance(_dig(modem, "modem", "generic", "bearers"), list):
        raise ValueError("mmcli -m N -J has no modem.generic.bearers list")
    for doc in bearers:
        bearer = doc.get("bearer") if isinstance(doc, dict) else None
        if not isinstance(bearer, dict):
            raise ValueError("mmcli -b PATH -J has no bearer object")
        if _dig(bearer, "status", "connected") != "yes" or _dig(bearer, "status", "interface") not in (
                interface, None, "--"):
            continue
        dns = _dig(bearer, "ipv4-config", "dns")
        servers = [s for s in dns if isinstance(s, str) and is_ip(s)] if isinstance(dns, list) else []
        if servers:
            return servers
    raise ValueError(f"no connected bearer on {interface} with IPv4 DNS servers (is the modem connected?)")


def _dig(doc: Any, *keys: str) -> Any:
    """Return ``doc[k1][k2]...``, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


async def bearer_dns(mmcli: str, index: int, interface: str, timeout: float) -> list[str]:
    """Read the bearer's DNS servers from ModemManager; SourceError if mmcli fails or has none."""
    modem = await _mmcli(mmcli, timeout, "-m", str(index), "-J")
    listed = _dig(modem, "modem", "generic", "bearers")
    bearers = [await _mmcli(mmcli, timeout, "-b", str(path), "-J") for path in (listed or [])[:8]
               if isinstance(listed, list)]
    try:
        return parse_bearer_dns(modem, bearers, interface)
    except ValueError as exc:
        raise SourceError(f"modem {index}: {exc}") from None


async def _mmcli(path: str, timeout: float, *args: str) -> Any:
    shown = " ".join([path, *args])
    try:
        proc = await asyncio.create_subprocess_exec(
            path, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "LC_ALL": "C"})
    except OSError as exc:
        raise SourceError(f"cannot run {path}: {exc.strerror or exc} (is ModemManager installed?)") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        raise SourceError(f"{shown} gave no answer within {strict.format_duration(timeout)}") from None
    if proc.returncode != 0:
        raise SourceError(f"{shown} failed: {err.decode(errors='replace').strip()[:200]}")
    try:
        return json.loads(out)
    except (json.JSONDecodeError, RecursionError):
        raise SourceError(f"{shown} printed no JSON") from None


# ---------------------------------------------------------------------------------------------- fake


class FakeBearer:
    """``Bearer`` answering from its attributes, which a test sets before each poll; records every call.

    ``names`` maps a name to its addresses (missing: NXDOMAIN); ``down`` makes every network test fail as a
    cut link would; ``counted`` bytes are added to the counters by each test that moves data.
    """

    def __init__(self) -> None:
        self.exists = True
        self.down = False
        self.names: dict[str, tuple[str, ...]] = {}
        self.rtts: list[float | None] = [10.0, 12.0, 11.0]
        self.speed_mbps = 20.0
        self.stop_after: int | None = None        # a transfer drops after this many bytes
        self.total = 0
        self.calls: list[tuple[Any, ...]] = []

    def present(self) -> bool:
        return self.exists

    def counters(self) -> int | None:
        return self.total

    def resolve(self, name: str, servers: Sequence[str], timeout: float) -> Lookup:
        self.calls.append(("resolve", name, tuple(servers)))
        self.total += 200
        if self.down:
            return Lookup((), None, f"timeout ({servers[0]})")
        found = self.names.get(name, ())
        return Lookup(found, 8.0, None if found else "NXDOMAIN")

    def tcp(self, address: str, port: int, timeout: float) -> Access:
        self.calls.append(("tcp", address, port))
        return Access(False, None, error="timeout") if self.down else Access(True, 20.0, connect_ms=20.0)

    def http(self, url: str, address: str, timeout: float, max_bytes: int) -> Access:
        self.calls.append(("http", url, address))
        if self.down:
            return Access(False, None, error="timeout")
        self.total += 6000
        return Access(True, 45.0, connect_ms=20.0, status=200, bytes=5000)

    def ping(self, address: str, count: int, spacing: float, timeout: float) -> list[float | None]:
        self.calls.append(("ping", address, count))
        return [None] * count if self.down else (self.rtts + [None] * count)[:count]

    def udp(self, address: str, port: int, count: int, spacing: float, timeout: float) -> list[float | None]:
        self.calls.append(("udp", address, port, count))
        return [None] * count if self.down else (self.rtts + [None] * count)[:count]

    def download(self, url: str, address: str, size: int, timeout: float, stall: float) -> Transfer:
        self.calls.append(("download", url, address, size))
        return self._transfer(size)

    def upload(self, url: str, address: str, size: int, timeout: float, stall: float) -> Transfer:
        self.calls.append(("upload", url, address, size))
        return self._transfer(size)

    def _transfer(self, size: int) -> Transfer:
        if self.down:
            return Transfer(False, False, 0, None, None, "timeout")
        if self.stop_after is not None and self.stop_after < size:
            self.total += int(self.stop_after * WIRE_FACTOR)
            return Transfer(True, False, self.stop_after, None, 40.0, "Operation too slow")
        self.total += int(size * WIRE_FACTOR)
        return Transfer(True, True, size, size * 8 / (self.speed_mbps * 1e6), 40.0)
