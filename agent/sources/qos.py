"""Active service tests through one carrier's modem: DNS, TCP, HTTP(S), ICMP and UDP echo, downloads and uploads.

The zone authority judges a carrier's mobile Internet service the way Vietnam's QCVN 81:2019/BTTTT does: the
rate of failed service access, the average access time, the rate of dropped data transfers and the average
speed, measured with transfers from and to a dedicated server. This source measures those through one modem,
continuously, with the zone's own test server (no public speed-test service is needed).

Config (one entry per modem)::

    - type: qos
      name: qos-viettel
      modem: viettel               # the ``modem`` tag: the name of the cellular source of the same modem
      carrier: 452-04              # the ``carrier`` tag (PLMN)
      interface: wwan0             # the modem's network interface: every test is bound to it
      dns: [10.10.0.1, 10.10.0.2]  # the bearer's DNS servers; or ``mmcli`` to read them from ModemManager
      modem_index: 0               # with dns: mmcli (as in mmcli -m 0); mmcli_path: mmcli
      core: 10.10.0.1              # an address in the carrier's core, the ICMP target ``core`` (default: 1st DNS)
      interval: 60s                # a tick: each runs the short tests that are due, or one transfer
      timeout: 5s                  # per DNS query, connect, HTTP request, and wait for the last echo
      short_every: 5m              # default interval of dns, tcp, http, icmp, udp tests
      long_every: 2h               # default interval of download and upload tests
      long_windows: ["01:00-05:00"]  # local time (timezone) when transfers may run
      timezone: Asia/Ho_Chi_Minh
      budget: {monthly: 2GB, reset_day: 1}   # the SIM's allowance for these tests, and its billing day
      state_path: /var/lib/zonewatch/qos-qos-viettel.json   # budget and schedule, kept across restarts
      tests:
        - {test: dns, name: qos.zone.example}
        - {test: tcp, host: qos.zone.example, port: 443}
        - {test: http, url: "https://portal.zone.example/"}
        - {test: icmp, host: core}                      # the carrier's core (``core`` above)
        - {test: icmp, host: qos.zone.example, count: 10, spacing: 200ms}
        - {test: udp, host: qos.zone.example, port: 7, count: 20, spacing: 50ms}   # an RFC 862 echo service
        - {test: download, url: "http://qos.zone.example/10MB.bin", bytes: 10MB}
        - {test: upload, url: "http://qos.zone.example/upload", bytes: 5MB}

Every test goes through the modem's interface only, and names are resolved by the bearer's DNS servers through
it (``agent.sources.qosnet``); what runs when, and what the budget allows, is ``agent.sources.qosplan``.

Samples (measurement ``qos``; tags carrier, modem, test, target; ``target`` is the name, ``host:port`` or the
URL's host, or the test's ``target`` key)::

    dns       success, time_ms (to the answer)
    tcp       success, time_ms (connect)
    http      success (2xx or 3xx), time_ms (access: DNS, connect, TLS, to the first response byte), connect_ms,
              tls_ms (https), status, bytes
    icmp/udp  success (any reply), loss_pct, rtt_ms (mean), jitter_ms (mean difference of consecutive round
              trips, two replies or more)
    download  success (every byte came), dropped (it began and did not finish), time_ms (access), down_mbps
              (bytes x 8 / the time from the request to the last byte; completed only), bytes
    upload    the same with up_mbps
    budget    budget_left_bytes, budget_used_bytes, refused (tests refused for the budget this period); every
              tick, tag test=budget, target=sim

A failed access is a measurement (``success`` false), a dropped transfer too. What could not be measured gives
no number: a test refused for the budget (counted in ``refused``), an echo test whose target name did not
resolve (the dns test already says so), and every test when the interface is missing, the agent lacks
``CAP_NET_RAW`` or the DNS servers cannot be read: then ``collect`` raises ``SourceError`` and the runner logs
it. The radio technology and the cell are not tags here: sources do not share state, and the cellular source of
the same modem has them (join on probe and modem).

``request_round(transfers)`` is the hook for an on-demand diagnostic round (the collector asks for one when a
coverage or service alert fires: ``agent.fleet.commands``): every short test (with transfers: every test) becomes
due at the next ticks, whatever its interval or window, within the budget. The samples of such a round carry the
field ``diagnostic`` (true); a scheduled run's have none (a field, not a tag: the round adds no series to the
tests' own).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import statistics
import tempfile
from collections.abc import Sequence
from typing import Annotated, Any, Final, Literal, Protocol, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, field_validator, model_validator

from agent.sources import SourceError, qosplan
from agent.sources.qosnet import Access, InterfaceBearer, Lookup, Transfer, url_host_port
from zonewatch import strict
from zonewatch.wire import FieldValue, Sample

__all__ = ["QosConfig", "QosSource", "Bearer", "FakeBearer", "parse_bytes", "parse_bearer_dns"]

log = logging.getLogger(__name__)

CORE: Final = "core"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|kB|B)?\s*$")
_UNITS: Final = {None: 1, "B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9,
                 "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
_PLMN = re.compile(r"^\d{3}-\d{2,3}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
# Bytes a short test is expected to use before it has run once (its measured use replaces the guess).
_SHORT_COST: Final = {"dns": 512, "tcp": 1024, "icmp": 256, "udp": 128}
_HTTP_OVERHEAD: Final = 16 * 1024       # headers, TCP and TLS handshakes of one request
_WIRE_FACTOR: Final = 1.06              # IP/TCP headers and acknowledgements around a transfer's payload


def parse_bytes(value: Any) -> int:
    """Return a byte count from an integer or a size with a unit: ``10MB`` (10^6), ``2GiB`` (2^30), ``512kB``."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 10MB or 2GiB")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    m = _SIZE.match(str(value))
    if m is None:
        raise ValueError(f"expected a size such as 10MB, 500kB or 2GiB (MB = 10^6 bytes, MiB = 2^20), got {value!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


ByteSize = Annotated[int, BeforeValidator(parse_bytes)]


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"expected an IPv4 address such as 10.10.0.1, got {value!r}") from None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _host(value: str) -> str:
    if value == CORE or _is_ip(value) or re.match(r"^(?=.{1,253}$)[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?$", value):
        return value
    raise ValueError(f"expected a host name, an IPv4 address or {CORE!r}, got {value!r}")


def _url(value: str) -> str:
    host, _ = url_host_port(value)
    if not re.match(r"^https?://", value) or not host or host == CORE:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
    _host(host)
    return value


class _Test(strict.Strict):
    every: strict.Duration | None = Field(default=None, gt=0)   # default: the source's short_every / long_every
    target: str | None = Field(default=None, min_length=1, max_length=256)   # the tag; default from the test


class DnsTest(_Test):
    """Resolve a name (A) through the bearer's DNS servers."""

    test: Literal["dns"]
    name: Annotated[str, BeforeValidator(_host)]


class TcpTest(_Test):
    """Open a TCP connection."""

    test: Literal["tcp"]
    host: Annotated[str, BeforeValidator(_host)]
    port: int = Field(ge=1, le=65535)


class HttpTest(_Test):
    """GET a page: service access and its time."""

    test: Literal["http"]
    url: Annotated[str, BeforeValidator(_url)]
    max_bytes: ByteSize = 256 * 1024


class IcmpTest(_Test):
    """ICMP echo: round trip, jitter, loss."""

    test: Literal["icmp"]
    host: Annotated[str, BeforeValidator(_host)]
    count: int = Field(default=10, ge=1, le=100)
    spacing: strict.Duration = Field(default=0.2, gt=0)


class UdpTest(_Test):
    """UDP echo (RFC 862) to the zone's test server: round trip, jitter, loss."""

    test: Literal["udp"]
    host: Annotated[str, BeforeValidator(_host)]
    port: int = Field(default=7, ge=1, le=65535)
    count: int = Field(default=20, ge=1, le=1000)
    spacing: strict.Duration = Field(default=0.05, gt=0)


class _TransferTest(_Test):
    url: Annotated[str, BeforeValidator(_url)]
    bytes: ByteSize = Field(gt=0)
    timeout: strict.Duration = Field(default=45.0, gt=0)   # the whole transfer; past it the transfer is dropped
    stall: strict.Duration = Field(default=10.0, gt=0)     # no byte moving for this long: dropped


class DownloadTest(_TransferTest):
    """Download a file of a set size from the zone's server."""

    test: Literal["download"]


class UploadTest(_TransferTest):
    """Upload a set size to the zone's server (HTTP POST)."""

    test: Literal["upload"]


TestConfig = Annotated[Union[DnsTest, TcpTest, HttpTest, IcmpTest, UdpTest, DownloadTest, UploadTest],
                       Field(discriminator="test")]
LONG: Final = ("download", "upload")


class Budget(strict.Strict):
    """The SIM's monthly allowance for these tests."""

    monthly: ByteSize = Field(gt=0)
    reset_day: int = Field(default=1, ge=1, le=28)


def _target(test: Any) -> str:
    """Return the ``target`` tag of a test."""
    if test.target is not None:
        return str(test.target)
    if isinstance(test, DnsTest):
        return test.name
    if isinstance(test, (TcpTest, UdpTest)):
        return f"{test.host}:{test.port}"
    if isinstance(test, IcmpTest):
        return test.host
    return url_host_port(test.url)[0]


def _host_of(test: Any) -> str:
    """Return the host a test reaches (for dns: the name it resolves)."""
    if isinstance(test, DnsTest):
        return test.name
    if isinstance(test, (TcpTest, IcmpTest, UdpTest)):
        return test.host
    return url_host_port(test.url)[0]


def _names(tests: Sequence[Any]) -> set[str]:
    """Return the names ``tests`` need resolved (not addresses, not ``core``)."""
    return {h for h in map(_host_of, tests) if h != CORE and not _is_ip(h)}


class QosConfig(strict.Strict):
    """Active tests through one modem (``type: qos`` in the agent's ``sources``)."""

    type: Literal["qos"]
    name: str = Field(min_length=1, max_length=256)
    modem: str = Field(min_length=1, max_length=256)
    carrier: str
    interface: str
    dns: list[Annotated[str, BeforeValidator(_ipv4)]] | Literal["mmcli"]
    modem_index: int | None = Field(default=None, ge=0)
    mmcli_path: str = "mmcli"
    core: Annotated[str, BeforeValidator(_ipv4)] | None = None
    ca_file: str | None = None
    interval: strict.Duration = Field(default=60.0, gt=0)
    timeout: strict.Duration = Field(default=5.0, gt=0)
    short_every: strict.Duration = Field(default=300.0, gt=0)
    long_every: strict.Duration = Field(default=7200.0, gt=0)
    long_windows: list[str] = ["01:00-05:00"]
    timezone: str = "Asia/Ho_Chi_Minh"
    budget: Budget
    state_path: str | None = None
    tests: list[TestConfig] = Field(min_length=1)

    @field_validator("carrier")
    @classmethod
    def _plmn(cls, value: str) -> str:
        if not _PLMN.match(value):
            raise ValueError(f"expected a PLMN such as 452-04, got {value!r}")
        return value

    @field_validator("interface")
    @classmethod
    def _ifname(cls, value: str) -> str:
        if not _IFNAME.match(value):
            raise ValueError(f"expected a network interface name such as wwan0 (at most 15 characters), got {value!r}")
        return value

    @field_validator("dns")
    @classmethod
    def _some_dns(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list) and not value:
            raise ValueError("give the bearer's DNS servers, or 'mmcli' to read them from ModemManager")
        return value

    @field_validator("long_windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for text in value:
            qosplan.parse_window(text)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Asia/Ho_Chi_Minh)") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> QosConfig:
        if self.dns == "mmcli" and self.modem_index is None:
            raise ValueError("dns: mmcli needs modem_index (as in mmcli -m 0)")
        if self.dns != "mmcli" and self.modem_index is not None:
            raise ValueError("modem_index is only for dns: mmcli")
        seen: set[str] = set()
        for test in self.tests:
            key = f"{test.test}:{_target(test)}"
            if key in seen:
                raise ValueError(f"two {test.test} tests with target {_target(test)!r}: give one a 'target' of its own")
            seen.add(key)
            if isinstance(test, (DownloadTest, UploadTest)) and test.bytes > self.budget.monthly:
                raise ValueError(f"the {key} test moves more than the whole monthly budget")
        servers = len(self.dns) if isinstance(self.dns, list) else 2
        lookup = servers * self.timeout   # one name's lookup when every server times out
        longs = [t for t in self.tests if t.test in LONG]
        shorts = [t for t in self.tests if t.test not in LONG]
        longest = max((lookup * len(_names([t])) + self.worst_case(t) for t in longs), default=0.0)
        round_ = lookup * len(_names(shorts)) + sum(self.worst_case(t) for t in shorts)
        if max(longest, round_) >= self.interval:
            raise ValueError(f"'interval' {strict.format_duration(self.interval)} is too short: a tick may take "
                             f"{strict.format_duration(max(longest, round_))} (the short tests one after the other, "
                             "or the longest transfer, with their timeouts and a lookup of each name); the runner "
                             "would cut it off")
        return self

    def worst_case(self, test: Any) -> float:
        """Return the longest ``test`` can take once its name is resolved (a name is looked up once a tick)."""
        if isinstance(test, DnsTest):
            return 0.0
        if isinstance(test, (IcmpTest, UdpTest)):
            return (test.count - 1) * test.spacing + self.timeout
        if isinstance(test, (DownloadTest, UploadTest)):
            return float(test.timeout)
        return float(self.timeout)


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


class QosSource:
    """Run the due tests through one modem and report them (see the module docstring)."""

    def __init__(self, config: QosConfig, bearer: Bearer | None = None) -> None:
        self.name = config.name
        self.config = config
        self._bearer: Bearer = bearer if bearer is not None else InterfaceBearer(config.interface, config.ca_file)
        self._tests = {f"{t.test}:{_target(t)}": t for t in config.tests}
        self._plan = [self._planned(key, t) for key, t in self._tests.items()]
        self._rules = qosplan.Rules(tuple(qosplan.parse_window(w) for w in config.long_windows),
                                    config.budget.monthly, config.budget.reset_day, ZoneInfo(config.timezone))
        self._state_path = config.state_path or f"/var/lib/zonewatch/qos-{config.name}.json"
        self._state: qosplan.State | None = None
        self._failing: dict[str, str] = {}        # test key -> why it failed last (logged on change)
        self._save_failed = False
        self._lookups: dict[str, Lookup] = {}     # name -> its lookup in this tick

    def __repr__(self) -> str:
        return f"QosSource({self.name!r}, {self.config.carrier} via {self.config.interface})"

    def _planned(self, key: str, test: Any) -> qosplan.Planned:
        long = test.test in LONG
        every = test.every or (self.config.long_every if long else self.config.short_every)
        if long:
            cost = int(test.bytes * _WIRE_FACTOR) + _HTTP_OVERHEAD
        elif isinstance(test, HttpTest):
            cost = int(test.max_bytes * _WIRE_FACTOR) + _HTTP_OVERHEAD
        elif isinstance(test, (IcmpTest, UdpTest)):
            cost = test.count * _SHORT_COST[test.test]
        else:
            cost = _SHORT_COST[test.test]
        return qosplan.Planned(key, long, every, cost)

    # ------------------------------------------------------------------------------------------ hooks

    def request_round(self, transfers: bool = False) -> None:
        """Run every test once at the next ticks (with ``transfers``, the downloads and uploads too)."""
        qosplan.request_round(self.state, self._plan, transfers)

    @property
    def state(self) -> qosplan.State:
        """The schedule and budget state, read from ``state_path`` the first time."""
        if self._state is None:
            self._state = self._load()
        return self._state

    # ------------------------------------------------------------------------------------------ polling

    async def collect(self, now_ns: int) -> list[Sample]:
        """Run what the plan says at ``now_ns``; return the tests' samples and the budget sample."""
        now = now_ns / 1e9
        state = self.state
        if not await asyncio.to_thread(self._bearer.present):
            raise SourceError(f"interface {self.config.interface} does not exist (modem unplugged, not connected, "
                              "or renamed?): no test can run")
        step = qosplan.plan(self._plan, state, now, self._rules)
        for test in step.refused:
            log.info("qos %s: %s refused: it needs about %d bytes and %d of the %d byte budget are left", self.name,
                     test.key, state.cost.get(test.key, test.cost), max(0, self._rules.monthly - state.used),
                     self._rules.monthly)
        samples: list[Sample] = []
        self._lookups.clear()
        try:
            servers = await self._servers() if step.run else []
            for planned in step.run:
                before = await asyncio.to_thread(self._bearer.counters)
                sample, moved = await self._run(self._tests[planned.key], servers, now_ns)
                after = await asyncio.to_thread(self._bearer.counters)
                used = after - before if before is not None and after is not None else int(moved * _WIRE_FACTOR)
                qosplan.charge(state, planned, used, now)
                if sample is not None:
                    if planned.key in step.diagnostic:   # a round the centre asked for (request_round)
                        sample.fields["diagnostic"] = True
                    samples.append(sample)
        except SourceError as exc:
            if not samples:
                self._save()
                raise
            log.error("qos %s: stopped after %d tests: %s", self.name, len(samples), exc)
        left = qosplan.budget_left(state, now, self._rules)
        samples.append(Sample("qos", self._tags("budget", "sim"),
                              {"budget_left_bytes": left, "budget_used_bytes": state.used, "refused": state.refused},
                              now_ns))
        self._save()
        return samples

    async def close(self) -> None:
        """Release nothing: every test opens and closes its own sockets."""

    async def _servers(self) -> list[str]:
        """Return the bearer's DNS servers: configured, or read from ModemManager now."""
        if isinstance(self.config.dns, list):
            return list(self.config.dns)
        assert self.config.modem_index is not None
        return await bearer_dns(self.config.mmcli_path, self.config.modem_index, self.config.interface,
                                self.config.timeout)

    def _tags(self, test: str, target: str) -> dict[str, str]:
        return {"carrier": self.config.carrier, "modem": self.config.modem, "test": test, "target": target}

    async def _run(self, test: Any, servers: list[str], now_ns: int) -> tuple[Sample | None, int]:
        """Run one test; return its sample (None when it could not measure) and the payload bytes it moved."""
        key = f"{test.test}:{_target(test)}"
        tags = self._tags(test.test, _target(test))
        b, timeout = self._bearer, self.config.timeout
        if isinstance(test, DnsTest):
            found = await self._lookup(test.name, servers)
            fields: dict[str, FieldValue] = {"success": bool(found.addresses)}
            if found.addresses and found.ms is not None:
                fields["time_ms"] = _ms(found.ms)
            self._note(key, found.error)
            return Sample("qos", tags, fields, now_ns), 0
        host = _host_of(test)
        address, lookup_ms, why = await self._address(host, servers)
        if isinstance(test, (IcmpTest, UdpTest)):
            if address is None:
                self._note(key, f"{host} did not resolve ({why}): no echo test")
                return None, 0
            if isinstance(test, IcmpTest):
                rtts = await asyncio.to_thread(b.ping, address, test.count, test.spacing, timeout)
            else:
                rtts = await asyncio.to_thread(b.udp, address, test.port, test.count, test.spacing, timeout)
            self._note(key, None if any(r is not None for r in rtts) else f"no reply from {address}")
            return Sample("qos", tags, _echo_fields(rtts[: test.count], test.count), now_ns), 0
        if address is None:
            self._note(key, f"{host} did not resolve: {why}")
            fields = {"success": False}
            return Sample("qos", tags, fields, now_ns), 0
        if isinstance(test, TcpTest):
            got = await asyncio.to_thread(b.tcp, address, test.port, timeout)
            self._note(key, got.error)
            return Sample("qos", tags, _access_fields(got, lookup_ms, http=False), now_ns), 0
        if isinstance(test, HttpTest):
            got = await asyncio.to_thread(b.http, test.url, address, timeout, test.max_bytes)
            self._note(key, got.error)
            return Sample("qos", tags, _access_fields(got, lookup_ms, http=True), now_ns), got.bytes
        assert isinstance(test, (DownloadTest, UploadTest))
        run = b.download if isinstance(test, DownloadTest) else b.upload
        moved = await asyncio.to_thread(run, test.url, address, test.bytes, test.timeout, test.stall)
        self._note(key, moved.error)
        speed = "down_mbps" if isinstance(test, DownloadTest) else "up_mbps"
        return Sample("qos", tags, _transfer_fields(moved, lookup_ms, speed), now_ns), moved.bytes

    async def _address(self, host: str, servers: list[str]) -> tuple[str | None, float, str | None]:
        """Return the IPv4 address of ``host`` (``core``: the carrier's core), the lookup time, and why none."""
        if host == CORE:
            core = self.config.core or (servers[0] if servers else None)
            return core, 0.0, None if core else "no core address and no DNS server"
        if _is_ip(host):
            return host, 0.0, None
        found = await self._lookup(host, servers)
        if not found.addresses:
            return None, 0.0, found.error
        return found.addresses[0], found.ms or 0.0, None

    async def _lookup(self, name: str, servers: list[str]) -> Lookup:
        """Resolve ``name`` through the bearer's DNS, once a tick (the tests of one tick share the answer)."""
        found = self._lookups.get(name)
        if found is None:
            found = self._lookups[name] = await asyncio.to_thread(self._bearer.resolve, name, servers,
                                                                  self.config.timeout)
        return found

    def _note(self, key: str, error: str | None) -> None:
        """Log a test when it starts failing (or fails differently) and when it recovers; not at every run."""
        if error is None:
            if self._failing.pop(key, None) is not None:
                log.info("qos %s: %s recovered", self.name, key)
            return
        if self._failing.get(key) != error:
            log.warning("qos %s: %s failed: %s", self.name, key, error)
        self._failing[key] = error

    # ------------------------------------------------------------------------------------------ state

    def _load(self) -> qosplan.State:
        try:
            with open(self._state_path) as f:
                return qosplan.load(f.read())
        except FileNotFoundError:
            return qosplan.State()
        except (OSError, ValueError) as exc:
            log.warning("qos %s: cannot read %s (%s): starting with a fresh budget and schedule", self.name,
                        self._state_path, exc)
            return qosplan.State()

    def _save(self) -> None:
        """Write the state atomically (a new file renamed into place); a failure is logged once, not fatal."""
        if self._state is None:
            return
        folder = os.path.dirname(self._state_path) or "."
        try:
            fd, tmp = tempfile.mkstemp(prefix=".qos-", dir=folder)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(qosplan.dump(self._state))
                os.replace(tmp, self._state_path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            if not self._save_failed:
                log.error("qos %s: cannot write %s (%s): the budget used is kept in memory only, and starts again "
                          "at 0 if the agent restarts", self.name, self._state_path, exc)
                self._save_failed = True
            return
        self._save_failed = False


def _ms(value: float) -> float:
    return round(max(0.0, value), 3)


def _echo_fields(rtts: Sequence[float | None], count: int) -> dict[str, FieldValue]:
    got = [r for r in rtts if r is not None]
    fields: dict[str, FieldValue] = {"success": bool(got), "loss_pct": round(100.0 * (count - len(got)) / count, 3)}
    if got:
        fields["rtt_ms"] = _ms(statistics.fmean(got))
    if len(got) >= 2:
        fields["jitter_ms"] = _ms(statistics.fmean(abs(b - a) for a, b in zip(got, got[1:], strict=False)))
    return fields


def _access_fields(got: Access, lookup_ms: float, http: bool) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {"success": got.ok}
    if got.ok and got.ms is not None:
        fields["time_ms"] = _ms(lookup_ms + got.ms)
    if http:
        if got.connect_ms is not None:
            fields["connect_ms"] = _ms(got.connect_ms)
        if got.tls_ms is not None:
            fields["tls_ms"] = _ms(got.tls_ms)
        if got.status is not None:
            fields["status"] = got.status
        fields["bytes"] = got.bytes
    return fields


def _transfer_fields(moved: Transfer, lookup_ms: float, speed: str) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {"success": moved.completed, "bytes": moved.bytes}
    if moved.started:
        fields["dropped"] = not moved.completed
        if moved.first_ms is not None:
            fields["time_ms"] = _ms(lookup_ms + moved.first_ms)
    if moved.completed and moved.seconds is not None and moved.seconds > 0:
        fields[speed] = round(moved.bytes * 8 / moved.seconds / 1e6, 3)
    return fields


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
        servers = [s for s in dns if isinstance(s, str) and _is_ip(s)] if isinstance(dns, list) else []
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
            self.total += int(self.stop_after * _WIRE_FACTOR)
            return Transfer(True, False, self.stop_after, None, 40.0, "Operation too slow")
        self.total += int(size * _WIRE_FACTOR)
        return Transfer(True, True, size, size * 8 / (self.speed_mbps * 1e6), 40.0)
