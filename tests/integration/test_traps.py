"""TrapsSource on a loopback UDP port, fed by net-snmp's snmptrap and snmpinform (v1, v2c, v3 authPriv)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from agent.sources import SourceError
from agent.sources.traps import TrapsConfig, TrapsSource
from tests import services
from zonewatch import strict
from zonewatch.wire import Event, Sample

pytestmark = pytest.mark.integration

IF = "1.3.6.1.2.1.2.2.1"
ENGINE_ID = "8000000001020304"
OTHER_ENGINE_ID = "80000000010203aa"
USER, AUTH, PRIV = "zwtrap", "auth-pass-123", "priv-pass-456"
WAIT = 5.0  # bound on every wait for the receiver; a trap on loopback takes milliseconds


def config(port: int, devices: str = "{127.0.0.1: sw-core}") -> str:
    """Return the receiver's config: community "public", one v3 user under two engine IDs, ``devices``."""
    return f"""\
type: traps
name: park-traps
listen: 127.0.0.1:{port}
communities: [public]
v3_users:
  - {{user: {USER}, auth_key: {AUTH}, priv_key: {PRIV}, engine_id: "0x{ENGINE_ID}"}}
  - {{user: {USER}, auth_key: other-auth-key, priv_key: other-priv-key, auth_protocol: SHA256,
      priv_protocol: AES256, engine_id: "{OTHER_ENGINE_ID}"}}
devices: {devices}
"""


class Receiver:
    """A TrapsSource started on its own event loop in a thread, recording what it emits."""

    def __init__(self, devices: str, source: TrapsSource | None = None) -> None:
        self.port = source.config.address[1] if source is not None else services.free_udp_port()
        self.source = source or TrapsSource(strict.load(TrapsConfig, config(self.port, devices), "agent.yaml"))
        self.emitted: list[tuple[float, str, Event]] = []
        self.samples: list[Sample] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="trap-receiver", daemon=True)
        self.thread.start()
        try:
            self.call(self.source.start(self.emit))
        except BaseException:
            self.close()
            raise

    def call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def emit(self, kind: str, samples: Sequence[Sample], events: Sequence[Event]) -> None:
        now = time.perf_counter()
        self.samples += samples
        self.emitted += [(now, kind, e) for e in events]

    @property
    def events(self) -> list[Event]:
        return [e for _, _, e in self.emitted]

    def wait_events(self, n: int) -> list[Event]:
        services.wait_for(lambda: len(self.emitted) >= n, WAIT, f"{n} trap event(s)", interval=0.002)
        return self.events

    def wait_stat(self, key: str, n: int) -> None:
        services.wait_for(lambda: self.source.stats[key] >= n, WAIT, f"stats[{key!r}] == {n}", interval=0.002)

    def close(self) -> None:
        if self.thread.is_alive():
            try:
                self.call(self.source.stop())
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(WAIT)
        self.loop.close()


Start = Callable[..., Receiver]
Snmptrap = Callable[..., tuple[float, float]]


@pytest.fixture
def receiver() -> Iterator[Start]:
    started: list[Receiver] = []

    def start(devices: str = "{127.0.0.1: sw-core}", source: TrapsSource | None = None) -> Receiver:
        started.append(Receiver(devices, source))
        return started[-1]

    yield start
    for r in started:
        r.close()


@pytest.fixture
def snmptrap(tmp_path: Path) -> Snmptrap:
    """Run net-snmp's snmptrap with its own empty config and state; return perf_counter at launch and exit."""
    binary = services.require("snmptrap")
    home = tmp_path / "net-snmp"
    home.mkdir()
    env = {**os.environ, "SNMPCONFPATH": str(home), "SNMP_PERSISTENT_DIR": str(home), "HOME": str(home)}

    def run(*args: str, tool: str = binary) -> tuple[float, float]:
        launched = time.perf_counter()
        proc = subprocess.run([tool, "-m", "", *args], capture_output=True, text=True, timeout=30, env=env)
        exited = time.perf_counter()
        assert proc.returncode == 0, f"{tool} {' '.join(args)} failed: {proc.stderr}"
        return launched, exited

    return run


def v3(level: str = "authPriv", user: str = USER, engine_id: str = ENGINE_ID, auth: str = AUTH,
       priv: str = PRIV) -> list[str]:
    args = ["-v3", "-e", f"0x{engine_id}", "-l", level, "-u", user]
    if level != "noAuthNoPriv":
        args += ["-a", "SHA", "-A", auth]
    if level == "authPriv":
        args += ["-x", "AES", "-X", priv]
    return args


def wait_log(caplog: pytest.LogCaptureFixture, text: str) -> None:
    """Wait (bounded) until the receiver's thread has logged ``text``."""
    services.wait_for(lambda: text in caplog.text, WAIT, f"the log line {text!r}", interval=0.002)


LINK_DOWN_2 = ["1.3.6.1.6.3.1.1.5.3", f"{IF}.1.2", "i", "2", f"{IF}.7.2", "i", "1", f"{IF}.8.2", "i", "2"]


def test_v2c_link_down_is_one_event_with_its_values(receiver: Start, snmptrap: Snmptrap) -> None:
    r = receiver()
    before = time.time_ns()
    snmptrap("-v2c", "-c", "public", f"127.0.0.1:{r.port}", "", *LINK_DOWN_2)
    [event] = r.wait_events(1)
    assert event.name == "link_down"
    assert event.tags == {"device": "sw-core"}  # from devices: 127.0.0.1
    assert event.fields == {"if_index": 2, "admin_up": True, "oper_up": False}
    assert before <= event.time_ns <= time.time_ns()
    assert [kind for _, kind, _ in r.emitted] == ["events"] and r.samples == []
    assert r.source.stats["accepted"] == 1 and r.source.stats["unknown_sender"] == 0


def test_vendor_ifname_becomes_the_ifname_tag(receiver: Start, snmptrap: Snmptrap) -> None:
    r = receiver()
    snmptrap("-v2c", "-c", "public", f"127.0.0.1:{r.port}", "", "1.3.6.1.6.3.1.1.5.4", f"{IF}.1.5", "i", "5",
             f"{IF}.7.5", "i", "1", f"{IF}.8.5", "i", "1", "1.3.6.1.2.1.31.1.1.1.1.5", "s", "ge-0/0/5")
    [event] = r.wait_events(1)
    assert (event.name, event.tags, event.fields) == (
        "link_up", {"device": "sw-core", "ifname": "ge-0/0/5"}, {"if_index": 5, "admin_up": True, "oper_up": True})


def test_v3_authpriv_cold_start_is_device_restarted(receiver: Start, snmptrap: Snmptrap) -> None:
    r = receiver()
    snmptrap(*v3(), f"127.0.0.1:{r.port}", "", "1.3.6.1.6.3.1.1.5.1")
    [event] = r.wait_events(1)
    assert (event.name, event.tags, event.fields) == ("device_restarted", {"device": "sw-core"}, {"cold": True})


def test_v3_user_is_tied_to_each_engine_id_with_its_own_keys(receiver: Start, snmptrap: Snmptrap) -> None:
    r = receiver()
    snmptrap("-v3", "-e", f"0x{OTHER_ENGINE_ID}", "-l", "authPriv", "-u", USER, "-a", "SHA-256", "-A",
             "other-auth-key", "-x", "AES-256", "-X", "other-priv-key", f"127.0.0.1:{r.port}", "",
             "1.3.6.1.6.3.1.1.5.2")
    [event] = r.wait_events(1)
    assert (event.name, event.fields) == ("device_restarted", {"cold": False})


def test_ups_on_battery_is_power_on_battery(receiver: Start, snmptrap: Snmptrap) -> None:
    r = receiver()
    snmptrap("-v2c", "-c", "public", f"127.0.0.1:{r.port}", "", "1.3.6.1.2.1.33.2.1",
             "1.3.6.1.2.1.33.1.2.3.0", "i", "12", "1.3.6.1.2.1.33.1.2.2.0", "i", "30",
             "1.3.6.1.2.1.33.1.9.7.0", "i", "2")
    [event] = r.wait_events(1)
    assert (event.name, event.tags, event.fields) == (
        "power_on_battery", {"device": "sw-core"}, {"cleared": False, "battery_minutes": 12, "seconds_on_battery": 30})


def test_ups_low_battery_alarm_added_and_removed(receiver: Start, snmptrap: Snmptrap) -> None:
    r = receiver()
    for trap in ("1.3.6.1.2.1.33.2.3", "1.3.6.1.2.1.33.2.4"):
        snmptrap("-v2c", "-c", "public", f"127.0.0.1:{r.port}", "", trap, "1.3.6.1.2.1.33.1.6.2.1.1.5", "i", "5",
                 "1.3.6.1.2.1.33.1.6.2.1.2.5", "o", "1.3.6.1.2.1.33.1.6.3.3")
    events = r.wait_events(2)
    assert [(e.name, e.fields) for e in events] == [
        ("battery_low", {"cleared": False, "depleted": False}), ("battery_low", {"cleared": True, "depleted": False})]


def test_v1_link_down_is_normalised(receiver: Start, snmptrap: Snmptrap) -> None:
    r = receiver()
    # enterprise, agent-addr, generic-trap linkDown(2), specific 0, uptime, then the varbinds
    snmptrap("-v1", "-c", "public", f"127.0.0.1:{r.port}", "1.3.6.1.4.1.8072.3.2.10", "127.0.0.1", "2", "0", "",
             f"{IF}.1.3", "i", "3", f"{IF}.7.3", "i", "1", f"{IF}.8.3", "i", "2")
    snmptrap("-v1", "-c", "public", f"127.0.0.1:{r.port}", "1.3.6.1.4.1.99999", "127.0.0.1", "6", "17", "",
             "1.3.6.1.4.1.99999.1", "s", "hello")
    first, second = r.wait_events(2)
    assert (first.name, first.tags, first.fields) == (
        "link_down", {"device": "sw-core"}, {"if_index": 3, "admin_up": True, "oper_up": False})
    assert (second.name, second.tags, second.fields) == (
        "trap", {"device": "sw-core", "trap_oid": "1.3.6.1.4.1.99999.0.17"}, {"varbinds": 1})


def test_link_down_of_a_port_not_present_says_so(receiver: Start, snmptrap: Snmptrap) -> None:
    r = receiver()
    # a line card booting: linkDown for an empty cage, ifOperStatus notPresent(6)
    snmptrap("-v2c", "-c", "public", f"127.0.0.1:{r.port}", "", "1.3.6.1.6.3.1.1.5.3", f"{IF}.1.9", "i", "9",
             f"{IF}.7.9", "i", "1", f"{IF}.8.9", "i", "6")
    [event] = r.wait_events(1)
    assert (event.name, event.fields) == ("link_down", {"if_index": 9, "admin_up": True, "oper_up": False,
                                                        "present": False})


# a switch whose ifTable has a port up (1), one down (2) and an empty cage (3, notPresent(6))
SWITCH = [(f"{IF}.1.{i}", 2, str(i)) for i in (1, 2, 3)] + [
    (f"{IF}.2.1", 4, "xe-0/0/1"), (f"{IF}.2.2", 4, "xe-0/0/2"), (f"{IF}.2.3", 4, "xe-0/0/3"),
    (f"{IF}.7.1", 2, "1"), (f"{IF}.7.2", 2, "1"), (f"{IF}.7.3", 2, "1"),
    (f"{IF}.8.1", 2, "1"), (f"{IF}.8.2", 2, "2"), (f"{IF}.8.3", 2, "6"),
    ("1.3.6.1.2.1.31.1.1.1.1.1", 4, "xe-0/0/1"), ("1.3.6.1.2.1.31.1.1.1.1.2", 4, "xe-0/0/2"),
    ("1.3.6.1.2.1.31.1.1.1.1.3", 4, "xe-0/0/3")]


def test_link_down_of_a_port_the_last_poll_found_not_present_says_so(
        receiver: Start, snmptrap: Snmptrap, tmp_path: Path) -> None:
    from agent.config import AgentConfig
    from agent.runner import Agent

    data = tmp_path / "data"
    data.mkdir()
    (data / "sw.snmprec").write_text("".join(f"{oid}|{tag}|{value}\n" for oid, tag, value in
                                             [("1.3.6.1.2.1.1.3.0", 67, "1000"), *SWITCH]))
    sim = services.start_snmpsim(tmp_path / "snmpsim", data)
    try:
        port = services.free_udp_port()
        cfg = strict.load(AgentConfig, f"""
probe: {{id: p1, zone: z1}}
spool: {{path: {tmp_path / 'spool.db'}}}
sources:
  - {{type: snmp, name: sw-core, host: 127.0.0.1, port: {sim.port}, version: v2c, community: sw,
      profiles: [if_mib]}}
  - {{type: traps, name: park-traps, listen: "127.0.0.1:{port}", communities: [public],
      devices: {{127.0.0.1: sw-core}}}}
""", "agent.yaml")
        sources, listeners = Agent._make(cfg)   # the runner ties the trap receiver to the SNMP sources
        _, polled = sources["sw-core"]
        interfaces = asyncio.run(polled.collect(time.time_ns()))
        assert {s.tags["ifname"] for s in interfaces if s.measurement == "interface"} == {"xe-0/0/1", "xe-0/0/2"}
        asyncio.run(polled.close())
    finally:
        sim.stop()
    r = receiver(source=listeners["park-traps"][1])
    for index in (3, 2):   # the empty cage (the device sends no ifOperStatus), then a port that went down
        snmptrap("-v2c", "-c", "public", f"127.0.0.1:{r.port}", "", "1.3.6.1.6.3.1.1.5.3", f"{IF}.1.{index}", "i",
                 str(index), f"{IF}.7.{index}", "i", "1")
    cage, down = r.wait_events(2)
    assert cage.fields == {"if_index": 3, "admin_up": True, "present": False}
    assert down.fields == {"if_index": 2, "admin_up": True}


def test_v2c_inform_is_acknowledged_and_emitted(receiver: Start, snmptrap: Snmptrap) -> None:
    r = receiver()
    snmptrap("-v2c", "-c", "public", "-t", "2", "-r", "0", f"127.0.0.1:{r.port}", "", *LINK_DOWN_2,
             tool=services.require("snmpinform"))  # exits 0 only when the receiver answered
    assert [e.name for e in r.wait_events(1)] == ["link_down"]


def test_unknown_sender_is_tagged_with_its_address(receiver: Start, snmptrap: Snmptrap) -> None:
    r = receiver("{10.9.9.9: elsewhere}")
    snmptrap("-v2c", "-c", "public", f"127.0.0.1:{r.port}", "", "1.3.6.1.6.3.1.1.5.1")
    [event] = r.wait_events(1)
    assert event.tags == {"device": "127.0.0.1"}
    assert r.source.stats["unknown_sender"] == 1


def test_wrong_community_is_dropped_counted_and_logged_without_it(
        receiver: Start, snmptrap: Snmptrap, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.sources.traps")
    r = receiver()
    snmptrap("-v2c", "-c", "not-the-community", f"127.0.0.1:{r.port}", "", *LINK_DOWN_2)
    r.wait_stat("bad_community", 1)
    wait_log(caplog, "dropped a trap from 127.0.0.1: its community is not in 'communities'")
    assert r.emitted == [] and r.source.stats["accepted"] == 0
    assert "not-the-community" not in caplog.text


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (v3(auth="wrong-auth-key"), "wrong_auth_key"),
        (v3(priv="wrong-priv-key"), "wrong_priv_key"),
        (v3(engine_id="80000000010203ff"), "unknown_engine_id"),
        (v3(user="intruder"), "unknown_user"),
        (v3(level="noAuthNoPriv"), "not_auth_priv"),
        (v3(level="authNoPriv"), "not_auth_priv"),
    ],
    ids=["auth-key", "priv-key", "engine-id", "user", "noAuthNoPriv", "authNoPriv"],
)
def test_v3_trap_that_fails_security_is_dropped_and_counted(
        args: list[str], reason: str, receiver: Start, snmptrap: Snmptrap,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.sources.traps")
    r = receiver()
    snmptrap(*args, f"127.0.0.1:{r.port}", "", "1.3.6.1.6.3.1.1.5.1")
    r.wait_stat(reason, 1)
    wait_log(caplog, f"counted as {reason}")
    assert r.emitted == []
    assert {k: v for k, v in r.source.stats.items() if v} == {reason: 1}
    for secret in (AUTH, PRIV, "wrong-auth-key", "wrong-priv-key", "other-auth-key", "other-priv-key"):
        assert secret not in caplog.text


def test_a_taken_port_is_a_source_error_naming_the_address() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        source = TrapsSource(strict.load(TrapsConfig, config(port)))
        with pytest.raises(SourceError) as info:
            asyncio.run(source.start(lambda kind, samples, events: None))
        asyncio.run(source.stop())
    assert f"cannot listen on udp 127.0.0.1:{port}" in str(info.value)


def test_stop_releases_the_port(receiver: Start) -> None:
    r = receiver()
    r.call(r.source.stop())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", r.port))


def test_latency_from_snmptrap_exit_to_emit(receiver: Start, snmptrap: Snmptrap,
                                            record_property: Callable[[str, object], None]) -> None:
    """Measure (not assert) how long after snmptrap exits its trap reaches emit; negative means before."""
    r = receiver()
    after_exit, after_launch = [], []
    for i in range(20):
        launched, exited = snmptrap("-v2c", "-c", "public", f"127.0.0.1:{r.port}", "", *LINK_DOWN_2)
        r.wait_events(i + 1)
        after_exit.append((r.emitted[i][0] - exited) * 1000)
        after_launch.append((r.emitted[i][0] - launched) * 1000)
    launched, exited = snmptrap(*v3(), f"127.0.0.1:{r.port}", "", "1.3.6.1.6.3.1.1.5.1")
    r.wait_events(21)
    v3_lags = ((r.emitted[20][0] - exited) * 1000, (r.emitted[20][0] - launched) * 1000)
    summary = (f"v2c (n=20) after exit median {statistics.median(after_exit):.2f} ms "
               f"[{min(after_exit):.2f}, {max(after_exit):.2f}], after launch median "
               f"{statistics.median(after_launch):.2f} ms [{min(after_launch):.2f}, {max(after_launch):.2f}]; "
               f"v3 authPriv after exit {v3_lags[0]:.2f} ms, after launch {v3_lags[1]:.2f} ms")
    record_property("trap_latency", summary)
    print(f"\ntrap latency to emit: {summary}")
    assert len(r.events) == 21
