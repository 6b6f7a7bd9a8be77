"""Reachability of one fixed target (ICMP echo or TCP SYN) and the route to it, named from known paths.

Config (one entry per target)::

    - type: reach
      name: viettel-core         # the ``target`` tag
      target: 10.250.9.1         # IPv4 address
      method: icmp               # or tcp (then ``port`` is required)
      count: 3                   # probes per poll, sent together
      timeout: 1s                # wait for answers after the probes are sent (and again for the trace)
      traceroute: true
      max_hops: 8
      paths:                     # known routes, hop by hop as a trace sees them; "*" = any or no answer
        primary: [10.250.1.1, 10.250.9.1]
        backup: [10.250.2.1, 10.250.9.1]
      interval: 60s

Each ``collect`` sends ``count`` probes at once, waits up to ``timeout`` for the answers, then (with
``traceroute``) sends one ICMP echo per TTL from 1 to ``max_hops`` at once and waits up to ``timeout`` again,
so a poll takes at most about ``2 x timeout``. It returns one sample::

    reach  tags: target (the source name), path?       fields: rtt_ms?, loss_pct, hops?, path_changed?

- ``rtt_ms`` is the median round-trip time of the probes that were answered; absent when none was.
- ``loss_pct`` is the share of probes without an answer, 0 to 100. For ``tcp`` a SYN-ACK (port open) and a
  RST (port closed) both count as answers: either proves the host is reachable, which is what this source
  measures; whether a service listens is another source's question.
- ``path`` is a tag (an enumeration: strings never go in fields): the name of the known path the trace
  matched, ``unknown:<8 hex digits>`` (a hash of the hop list) for a route that matches none, or ``none``
  when no hop answered. A hop that did not answer matches any hop of a known path; when a trace fits
  several known paths and one of them is the current path, the path is unchanged.
- ``hops`` is the TTL at which the target answered the trace; absent when it did not.
- ``path_changed`` is true when ``path`` differs from the previous poll's (false on the first poll); each
  change is logged once. ``path``, ``hops`` and ``path_changed`` are absent with ``traceroute: false``.

An unreachable target is a measurement (100 % loss, path ``none``), not an error. ``SourceError`` is raised
only when the probe cannot send at all (no raw-socket privilege, scapy missing).

The probes go out through ``ReachBackend``: ``ScapyBackend`` in production, ``FakeReachBackend`` in tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import random
import re
import socket
import statistics
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, Final, Literal, Protocol

from pydantic import Field, ValidationInfo, field_validator, model_validator

from agent.sources import SourceError
from zonewatch import strict
from zonewatch.wire import FieldValue, Sample

__all__ = ["ReachConfig", "ReachSource", "ReachBackend", "ScapyBackend", "FakeReachBackend", "path_hash"]

log = logging.getLogger(__name__)

ANY_HOP: Final = "*"
NO_PATH: Final = "none"
UNKNOWN_PREFIX: Final = "unknown:"
_PATH_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ICMP_ECHO_REPLY: Final = 0
_ICMP_UNREACHABLE: Final = 3
_ICMP_TIME_EXCEEDED: Final = 11
_TCP_RST: Final = 0x04
_TCP_SYN_ACK: Final = 0x12


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"expected an IPv4 address such as 192.0.2.1, got {value!r}") from None


class ReachConfig(strict.Strict):
    """One target to probe for reachability and route (``type: reach`` in the agent's ``sources``)."""

    type: Literal["reach"]
    name: str = Field(min_length=1, max_length=256)
    target: str
    method: Literal["icmp", "tcp"] = "icmp"
    port: int | None = Field(default=None, ge=1, le=65535, validate_default=True)
    count: int = Field(default=3, ge=1, le=100)
    timeout: strict.Duration = Field(default=1.0, gt=0)
    traceroute: bool = True
    max_hops: int = Field(default=8, ge=1, le=64)
    paths: dict[str, list[str]] = Field(default_factory=dict)
    interval: strict.Duration = Field(default=60.0, gt=0)

    @field_validator("target")
    @classmethod
    def _target_is_ipv4(cls, value: str) -> str:
        """Accept only an IPv4 address."""
        return _ipv4(value)

    @field_validator("port")
    @classmethod
    def _port_for_tcp(cls, value: int | None, info: ValidationInfo) -> int | None:
        """Require ``port`` with method tcp, and only then."""
        method = info.data.get("method")
        if method == "tcp" and value is None:
            raise ValueError("method 'tcp' needs 'port' (the TCP port to send SYNs to)")
        if method == "icmp" and value is not None:
            raise ValueError("'port' is only for method 'tcp'; remove it or set method: tcp")
        return value

    @field_validator("paths")
    @classmethod
    def _known_paths(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        """Check each known path's name (a tag value) and hops (IPv4 addresses or "*")."""
        seen: dict[tuple[str, ...], str] = {}
        for name, hops in value.items():
            if not _PATH_NAME.match(name):
                raise ValueError(f"path name {name!r} must be 1 to 64 ASCII letters, digits, '_', '.' or '-'")
            if name == NO_PATH or name.startswith(UNKNOWN_PREFIX.rstrip(":")):
                raise ValueError(f"path name {name!r} is reserved (the source reports {NO_PATH!r} and "
                                 f"'{UNKNOWN_PREFIX}<hash>' itself)")
            if not hops:
                raise ValueError(f"path {name!r} has no hops; list them as a trace shows them")
            for i, hop in enumerate(hops):
                if hop != ANY_HOP:
                    try:
                        _ipv4(hop)
                    except ValueError as exc:
                        raise ValueError(f"path {name!r} hop {i + 1}: {exc} (or '*' for a silent hop)") from None
            key = tuple(hops)
            if key in seen:
                raise ValueError(f"paths {seen[key]!r} and {name!r} have the same hops")
            seen[key] = name
        return value

    @model_validator(mode="after")
    def _poll_fits_interval(self) -> ReachConfig:
        """Require a poll (up to 2 x timeout with a trace) to fit in the interval."""
        polls = 2 if self.traceroute else 1
        if polls * self.timeout >= self.interval:
            raise ValueError(f"'timeout' {strict.format_duration(self.timeout)} is too long for 'interval' "
                             f"{strict.format_duration(self.interval)}: a poll waits up to {polls} x timeout")
        return self


class ReachBackend(Protocol):
    """Sends probes and reports what came back.

    A source owns its backend's calls: calls for one source never overlap, but different sources call
    their backends concurrently from the same event loop. No method may sleep beyond ``timeout`` after
    its probes are sent, retry, or raise for a target that does not answer (that is a measurement).
    """

    async def ping(self, target: str, count: int, timeout: float) -> list[float | None]:
        """Send ``count`` ICMP echo requests at once; called during ``collect``.

        Returns one entry per request, in order: the round-trip time in milliseconds, or None when no echo
        reply came within ``timeout`` seconds. Raises SourceError only when nothing can be sent.
        """
        ...

    async def tcp_syn(self, target: str, port: int, count: int, timeout: float) -> list[float | None]:
        """Send ``count`` TCP SYNs to ``port`` at once; called during ``collect``.

        Returns one entry per SYN, in order: the round-trip time in milliseconds of its SYN-ACK or RST, or
        None when neither came within ``timeout`` seconds. Raises SourceError only when nothing can be sent.
        """
        ...

    async def trace(self, target: str, max_hops: int, timeout: float) -> list[str | None]:
        """Send one ICMP echo per TTL 1..``max_hops`` at once; called during ``collect`` after the probes.

        Returns the address that answered each TTL (None for no answer), ending at the first TTL the
        target itself answered (or an unreachable came from), else ``max_hops`` entries. Raises SourceError
        only when nothing can be sent.
        """
        ...


def path_hash(hops: Sequence[str | None]) -> str:
    """Return the 8-hex-digit fingerprint of a route ("*" stands for a hop that did not answer)."""
    text = ",".join(hop or ANY_HOP for hop in hops)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


class ReachSource:
    """Probe one target and name the route to it."""

    def __init__(self, config: ReachConfig, backend: ReachBackend | None = None) -> None:
        self.name = config.name
        self.config = config
        self._backend: ReachBackend = backend if backend is not None else ScapyBackend()
        self._path: str | None = None

    def __repr__(self) -> str:
        return f"ReachSource({self.name!r}, {self.config.method} {self.config.target})"

    async def collect(self, now_ns: int) -> list[Sample]:
        """Probe the target once and trace the route; an unreachable target gives 100 % loss."""
        c = self.config
        if c.method == "tcp":
            assert c.port is not None  # the config's validator guarantees it
            rtts = await self._backend.tcp_syn(c.target, c.port, c.count, c.timeout)
        else:
            rtts = await self._backend.ping(c.target, c.count, c.timeout)
        answered = [rtt for rtt in rtts[: c.count] if rtt is not None]
        fields: dict[str, FieldValue] = {"loss_pct": round(100.0 * (c.count - len(answered)) / c.count, 3)}
        if answered:
            fields["rtt_ms"] = round(float(statistics.median(answered)), 3)
        tags = {"target": self.name}
        if c.traceroute:
            route = _trim(await self._backend.trace(c.target, c.max_hops, c.timeout))
            path = self._name(route)
            if route and route[-1] == c.target:
                fields["hops"] = len(route)
            fields["path_changed"] = self._path is not None and path != self._path
            if fields["path_changed"]:
                log.warning("reach %s (%s): path changed from %s to %s (%s)", self.name, c.target, self._path,
                            path, " > ".join(hop or ANY_HOP for hop in route) or "no hop answered")
            self._path = path
            tags["path"] = path
        return [Sample("reach", tags, fields, now_ns)]

    async def close(self) -> None:
        """Release nothing: every poll opens and closes its own sockets."""

    def _name(self, route: list[str | None]) -> str:
        """Return the known path ``route`` fits, else ``unknown:<hash>``, or ``none`` for an empty route."""
        if not route:
            return NO_PATH
        fits = [name for name, hops in self.config.paths.items() if _fits(route, hops)]
        if len(fits) == 1:
            return fits[0]
        if self._path in fits:  # a trace with silent hops that is consistent with the current path
            return self._path
        return UNKNOWN_PREFIX + path_hash(route)


def _trim(route: Sequence[str | None]) -> list[str | None]:
    """Return ``route`` without the TTLs after the last one that answered."""
    out = list(route)
    while out and out[-1] is None:
        out.pop()
    return out


def _fits(route: Sequence[str | None], known: Sequence[str]) -> bool:
    """Return True if every hop that answered equals the known hop at its TTL ("*" matches anything)."""
    return len(route) == len(known) and all(
        hop is None or want == ANY_HOP or hop == want for hop, want in zip(route, known, strict=True)
    )


# ---------------------------------------------------------------------------------------------- scapy


class ScapyBackend:
    """Send probes with scapy on raw sockets that the kernel routes; needs root or CAP_NET_RAW.

    The packets go out through an IPPROTO_RAW socket, so the kernel's routing table at that moment picks
    the interface, the next hop and (asked through a connected UDP socket, which sends nothing) the source
    address: a route that changed since the agent started is followed, as the probe's own traffic would.
    scapy blocks, so every exchange runs in a worker thread; scapy is imported on the first probe only.
    """

    async def ping(self, target: str, count: int, timeout: float) -> list[float | None]:
        """Send ``count`` echo requests at once and return their round-trip times."""
        return await asyncio.to_thread(self._ping, target, count, timeout)

    async def tcp_syn(self, target: str, port: int, count: int, timeout: float) -> list[float | None]:
        """Send ``count`` SYNs at once and return the round-trip times of their SYN-ACKs or RSTs."""
        return await asyncio.to_thread(self._tcp_syn, target, port, count, timeout)

    async def trace(self, target: str, max_hops: int, timeout: float) -> list[str | None]:
        """Send one echo request per TTL at once and return who answered each."""
        return await asyncio.to_thread(self._trace, target, max_hops, timeout)

    def _ping(self, target: str, count: int, timeout: float) -> list[float | None]:
        s = _scapy()
        src = _source_address(target)
        if src is None:
            return [None] * count
        ident = random.randrange(1, 0x10000)
        probes = [s.IP(src=src, dst=target) / s.ICMP(type=8, id=ident, seq=i) for i in range(count)]
        rtts: list[float | None] = [None] * count
        for sent, got in _exchange(s, probes, timeout):
            if s.ICMP in got and got[s.ICMP].type == _ICMP_ECHO_REPLY and got[s.IP].src == target:
                rtts[int(sent[s.ICMP].seq)] = _rtt_ms(sent, got)
        return rtts

    def _tcp_syn(self, target: str, port: int, count: int, timeout: float) -> list[float | None]:
        s = _scapy()
        src = _source_address(target)
        if src is None:
            return [None] * count
        base = random.randrange(33000, 61000 - count)
        probes = [
            s.IP(src=src, dst=target) / s.TCP(sport=base + i, dport=port, flags="S", seq=random.getrandbits(32))
            for i in range(count)
        ]
        rtts: list[float | None] = [None] * count
        for sent, got in _exchange(s, probes, timeout):
            flags = int(got[s.TCP].flags) if s.TCP in got and got[s.IP].src == target else 0
            if (flags & _TCP_RST) or (flags & _TCP_SYN_ACK) == _TCP_SYN_ACK:
                rtts[int(sent[s.TCP].sport) - base] = _rtt_ms(sent, got)
        return rtts

    def _trace(self, target: str, max_hops: int, timeout: float) -> list[str | None]:
        s = _scapy()
        src = _source_address(target)
        if src is None:
            return []
        ident = random.randrange(1, 0x10000)
        probes = [s.IP(src=src, dst=target, ttl=ttl) / s.ICMP(type=8, id=ident, seq=ttl)
                  for ttl in range(1, max_hops + 1)]
        hops: list[str | None] = [None] * max_hops
        last = max_hops
        for sent, got in _exchange(s, probes, timeout):
            if s.ICMP not in got:
                continue
            ttl, kind = int(sent[s.IP].ttl), int(got[s.ICMP].type)
            if kind in (_ICMP_ECHO_REPLY, _ICMP_TIME_EXCEEDED, _ICMP_UNREACHABLE):
                hops[ttl - 1] = str(got[s.IP].src)
            if kind == _ICMP_UNREACHABLE or (kind == _ICMP_ECHO_REPLY and got[s.IP].src == target):
                last = min(last, ttl)
        return hops[:last]


def _scapy() -> SimpleNamespace:
    """Import the parts of scapy the adapter uses (about 0.4 s: on the first probe, not at agent start)."""
    # Only the IP layers and the raw socket: importing ``scapy.all`` would also load the TLS and IPsec
    # layers, which are what emit CryptographyDeprecationWarning with some cryptography releases.
    try:
        from scapy.layers.inet import ICMP, IP, TCP
        from scapy.supersocket import L3RawSocket
    except ImportError as exc:
        raise SourceError(f"reach needs scapy ({exc}): install the agent extra, zonewatch[agent]") from None
    return SimpleNamespace(IP=IP, ICMP=ICMP, TCP=TCP, L3RawSocket=L3RawSocket)


def _source_address(target: str) -> str | None:
    """Return the source address the kernel would use towards ``target`` now, or None without a route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.connect((target, 9))  # a UDP connect only looks the route up; nothing is sent
        except OSError:
            return None
        return str(udp.getsockname()[0])


def _exchange(s: SimpleNamespace, probes: list[Any], timeout: float) -> list[tuple[Any, Any]]:
    """Send ``probes`` at once on a kernel-routed raw socket; return (sent, answer) pairs within ``timeout``."""
    try:
        sock = s.L3RawSocket()
    except PermissionError as exc:
        raise SourceError(f"reach needs root or CAP_NET_RAW to open a raw socket: {exc}") from None
    except OSError as exc:
        raise SourceError(f"reach cannot open a raw socket: {exc}") from None
    try:
        answered, _ = sock.sr(probes, timeout=timeout, verbose=0)
    finally:
        sock.close()
    return [(pair[0], pair[1]) for pair in answered]


def _rtt_ms(sent: Any, got: Any) -> float:
    """Return the time from sending ``sent`` to receiving ``got`` (kernel receive stamp), in milliseconds."""
    return max(0.0, (float(got.time) - float(sent.sent_time)) * 1000.0)


# ---------------------------------------------------------------------------------------------- fake


class FakeReachBackend:
    """``ReachBackend`` answering from its attributes, which a test sets before each poll; records calls."""

    def __init__(self, rtts: Sequence[float | None] = (), route: Sequence[str | None] = (),
                 fail: Exception | None = None) -> None:
        self.rtts: list[float | None] = list(rtts)
        self.route: list[str | None] = list(route)
        self.fail = fail
        self.calls: list[tuple[Any, ...]] = []

    async def ping(self, target: str, count: int, timeout: float) -> list[float | None]:
        """Return ``rtts`` (padded with None to ``count``)."""
        return self._answer(("ping", target, count, timeout), count)

    async def tcp_syn(self, target: str, port: int, count: int, timeout: float) -> list[float | None]:
        """Return ``rtts`` (padded with None to ``count``)."""
        return self._answer(("tcp_syn", target, port, count, timeout), count)

    async def trace(self, target: str, max_hops: int, timeout: float) -> list[str | None]:
        """Return ``route`` (cut to ``max_hops``)."""
        self.calls.append(("trace", target, max_hops, timeout))
        if self.fail is not None:
            raise self.fail
        return self.route[:max_hops]

    def _answer(self, call: tuple[Any, ...], count: int) -> list[float | None]:
        self.calls.append(call)
        if self.fail is not None:
            raise self.fail
        return (self.rtts + [None] * count)[:count]
