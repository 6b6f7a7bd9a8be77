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

Layout: this module holds the config (``QosConfig``) and the source (``QosSource``), as every source module
does (``type: qos`` is ``qos.py``); the rest is split off already, and about a seventh of this module is this
docstring. ``agent.sources.qostests`` holds the tests (one config model per kind) and the fields of their
samples; ``agent.sources.qosbearer`` the network seam (``Bearer``, ``FakeBearer``) and the DNS servers read from
ModemManager.

Samples: measurement ``qos`` with the tags carrier, modem, test and target; the fields of each test are listed in
``agent.sources.qostests``. Every tick adds a budget sample (tags test=budget, target=sim): budget_left_bytes,
budget_used_bytes, refused (tests refused for the budget this period).

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
import logging
import os
import re
import tempfile
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, field_validator, model_validator

from agent.sources import SourceError, qosplan
from agent.sources.qosbearer import WIRE_FACTOR, Bearer, bearer_dns
from agent.sources.qosnet import InterfaceBearer, Lookup
from agent.sources.qostests import (
    CORE,
    LONG,
    ByteSize,
    DnsTest,
    DownloadTest,
    HttpTest,
    IcmpTest,
    TcpTest,
    TestConfig,
    UdpTest,
    UploadTest,
    access_fields,
    echo_fields,
    host_of,
    is_ip,
    names_to_resolve,
    rounded_ms,
    target_tag,
    transfer_fields,
)
from zonewatch import strict
from zonewatch.wire import FieldValue, Sample

__all__ = ["QosConfig", "QosSource"]

log = logging.getLogger(__name__)

_PLMN = re.compile(r"^\d{3}-\d{2,3}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
# Bytes a short test is expected to use before it has run once (its measured use replaces the guess).
_SHORT_COST: Final = {"dns": 512, "tcp": 1024, "icmp": 256, "udp": 128}
_HTTP_OVERHEAD: Final = 16 * 1024       # headers, TCP and TLS handshakes of one request


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"expected an IPv4 address such as 10.10.0.1, got {value!r}") from None


class Budget(strict.Strict):
    """The SIM's monthly allowance for these tests."""

    monthly: ByteSize = Field(gt=0)
    reset_day: int = Field(default=1, ge=1, le=28)


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
            key = f"{test.test}:{target_tag(test)}"
            if key in seen:
                raise ValueError(f"two {test.test} tests with target {target_tag(test)!r}: "
                                 "give one a 'target' of its own")
            seen.add(key)
            if isinstance(test, (DownloadTest, UploadTest)) and test.bytes > self.budget.monthly:
                raise ValueError(f"the {key} test moves more than the whole monthly budget")
        servers = len(self.dns) if isinstance(self.dns, list) else 2
        lookup = servers * self.timeout   # one name's lookup when every server times out
        longs = [t for t in self.tests if t.test in LONG]
        shorts = [t for t in self.tests if t.test not in LONG]
        longest = max((lookup * len(names_to_resolve([t])) + self.worst_case(t) for t in longs), default=0.0)
        round_ = lookup * len(names_to_resolve(shorts)) + sum(self.worst_case(t) for t in shorts)
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

class QosSource:
    """Run the due tests through one modem and report them (see the module docstring)."""

    def __init__(self, config: QosConfig, bearer: Bearer | None = None) -> None:
        self.name = config.name
        self.config = config
        self._bearer: Bearer = bearer if bearer is not None else InterfaceBearer(config.interface, config.ca_file)
        self._tests = {f"{t.test}:{target_tag(t)}": t for t in config.tests}
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
            cost = int(test.bytes * WIRE_FACTOR) + _HTTP_OVERHEAD
        elif isinstance(test, HttpTest):
            cost = int(test.max_bytes * WIRE_FACTOR) + _HTTP_OVERHEAD
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
                used = after - before if before is not None and after is not None else int(moved * WIRE_FACTOR)
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
        key = f"{test.test}:{target_tag(test)}"
        tags = self._tags(test.test, target_tag(test))
        b, timeout = self._bearer, self.config.timeout
        if isinstance(test, DnsTest):
            found = await self._lookup(test.name, servers)
            fields: dict[str, FieldValue] = {"success": bool(found.addresses)}
            if found.addresses and found.ms is not None:
                fields["time_ms"] = rounded_ms(found.ms)
            self._note(key, found.error)
            return Sample("qos", tags, fields, now_ns), 0
        host = host_of(test)
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
            return Sample("qos", tags, echo_fields(rtts[: test.count], test.count), now_ns), 0
        if address is None:
            self._note(key, f"{host} did not resolve: {why}")
            fields = {"success": False}
            return Sample("qos", tags, fields, now_ns), 0
        if isinstance(test, TcpTest):
            got = await asyncio.to_thread(b.tcp, address, test.port, timeout)
            self._note(key, got.error)
            return Sample("qos", tags, access_fields(got, lookup_ms, http=False), now_ns), 0
        if isinstance(test, HttpTest):
            got = await asyncio.to_thread(b.http, test.url, address, timeout, test.max_bytes)
            self._note(key, got.error)
            return Sample("qos", tags, access_fields(got, lookup_ms, http=True), now_ns), got.bytes
        assert isinstance(test, (DownloadTest, UploadTest))
        run = b.download if isinstance(test, DownloadTest) else b.upload
        moved = await asyncio.to_thread(run, test.url, address, test.bytes, test.timeout, test.stall)
        self._note(key, moved.error)
        speed = "down_mbps" if isinstance(test, DownloadTest) else "up_mbps"
        return Sample("qos", tags, transfer_fields(moved, lookup_ms, speed), now_ns), moved.bytes

    async def _address(self, host: str, servers: list[str]) -> tuple[str | None, float, str | None]:
        """Return the IPv4 address of ``host`` (``core``: the carrier's core), the lookup time, and why none."""
        if host == CORE:
            core = self.config.core or (servers[0] if servers else None)
            return core, 0.0, None if core else "no core address and no DNS server"
        if is_ip(host):
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
