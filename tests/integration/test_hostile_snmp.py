"""Hostile SNMP devices: a dead or lying device does not stall the others, and never brings the agent down.

A real agent process polls one healthy real snmpd and eight scripted devices at once, each every second:
one answering garbage bytes, one answering with a wrong request-id, one answering each request with a
stream of stale answers, one answering ~64 KB datagrams, one answering after its timeout, one never
answering, one answering with another community and one answering SNMPv1 to SNMPv2c. What a user would
notice, read from the broker (a subscriber) and the agent's log:

- the healthy device's samples keep arriving at its poll cadence;
- every hostile device gives ``device`` samples with ``up=false`` (never ``up=true``), and one log line that
  names the device, its address and what is wrong;
- the agent neither dies nor grows: resident memory and open file descriptors stay bounded.

The clients are checked in-process too, for both engines: each hostile device gives an ``SnmpError``
naming the device, within the target's ``timeout`` x tries (a stream of stale answers must not extend it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.snmpclient import SnmpError, SnmpTarget, SnmpTimeout, make_client
from tests import services
from tests.hostile import BEHAVIOURS, BatchSubscriber, HostileSnmpDevice, fd_count, rss_kb

pytestmark = pytest.mark.integration

TIMEOUT = 0.3  # each hostile device's timeout; retries 1: a dead device costs 0.6 s of a 1 s interval
DELAYS = {"slow": 1.5, "stale-storm": 0.1}

# What the agent's log must say about each device (after "snmp device <name> (127.0.0.1:<port>) ").
NO_RESPONSE = f"is not answering: no response in {TIMEOUT:g}s after 2 tries"
EXPECTED_LOG = {
    "garbage": "is not answering: bad response: ",  # gufo-snmp names the decoding error
    "wrong-request-id": NO_RESPONSE,
    "stale-storm": NO_RESPONSE,
    "huge": "is not answering: bad response: incomplete: the answer is larger than",
    "slow": NO_RESPONSE,
    "silent": NO_RESPONSE,
    "wrong-community": NO_RESPONSE,
    "wrong-version": "is not answering: bad response: unsupported version",
}


@pytest.fixture
def hostile_devices() -> Iterator[dict[str, HostileSnmpDevice]]:
    devices: dict[str, HostileSnmpDevice] = {}
    try:
        for behaviour in BEHAVIOURS:
            devices[behaviour] = HostileSnmpDevice(behaviour, delay=DELAYS.get(behaviour, 0.0))
            devices[behaviour].start()
        yield devices
    finally:
        for device in devices.values():
            device.stop()


def agent_yaml(tmp: Path, broker: int, snmpd: int, devices: dict[str, HostileSnmpDevice]) -> Path:
    sources = [f"  - {{type: snmp, name: healthy, host: 127.0.0.1, port: {snmpd}, version: v2c, community: public,"
               " interval: 1s, timeout: 1s, retries: 1}\n"]
    sources += [f"  - {{type: snmp, name: {name}, host: 127.0.0.1, port: {d.port}, version: v2c, community: public,"
                f" interval: 1s, timeout: {TIMEOUT}s, retries: 1}}\n" for name, d in devices.items()]
    path = tmp / "agent.yaml"
    path.write_text("probe: {id: p1, zone: hostile}\n"
                    f"mqtt: {{host: 127.0.0.1, port: {broker}, keepalive: 5s}}\n"
                    f"spool: {{path: '{tmp / 'spool.db'}'}}\n"
                    "metrics: {enabled: false}\nself_interval: 5s\nsources:\n" + "".join(sources))
    return path


def test_hostile_devices_do_not_stall_the_healthy_one_nor_hurt_the_agent(
        tmp_path: Path, mosquitto: services.Service, snmpd: services.Service,
        hostile_devices: dict[str, HostileSnmpDevice]) -> None:
    subscriber = BatchSubscriber(mosquitto.port)
    config = agent_yaml(tmp_path, mosquitto.port, snmpd.port, hostile_devices)
    agent = services.start_zonewatch("agent", ["-c", str(config), "run"], tmp_path / "agent")
    try:
        def healthy() -> list[int]:
            return [s.time_ns for s in subscriber.samples("device", device="healthy") if s.fields.get("up") is True]

        services.wait_for(lambda: len(healthy()) >= 3, 30, "the healthy device's first samples")
        warm_rss, warm_fds = rss_kb(agent.pid), fd_count(agent.pid)
        start, began = len(healthy()), time.monotonic()
        # 12 polls of the healthy device (interval 1 s) within 24 s, while the hostile ones fail every second
        services.wait_for(lambda: len(healthy()) >= start + 12 or not agent.alive(), 24,
                          "12 more polls of the healthy device")
        window = time.monotonic() - began
        assert agent.alive(), agent.log_tail(40)
        times = healthy()
        gaps = [(b - a) / 1e9 for a, b in zip(times[start - 1:-1], times[start:], strict=True)]
        assert max(gaps) < 5.0, f"the healthy device went {max(gaps):.1f}s without a poll"

        log = agent.log.read_text()
        for name, device in hostile_devices.items():
            samples = subscriber.samples("device", device=name)
            assert len(samples) >= 5, (name, len(samples))  # polled all along, like the healthy one
            assert all(s.fields == {"up": False} for s in samples), (name, samples[:3])
            assert device.requests >= 3 and not device.errors, (name, device.requests, device.errors)
            line = f"snmp device {name} (127.0.0.1:{device.port}) {EXPECTED_LOG[name]}"
            assert line in log, f"no line like {line!r} in the agent's log:\n{agent.log_tail(60)}"
            assert log.count(f"snmp device {name} (") == 1, f"{name} logged more than once:\n{log}"
        assert "Traceback" not in log, log
        assert "source healthy" not in log, log  # the healthy one never failed, not even by the runner's clock

        grew_kb, grew_fds = rss_kb(agent.pid) - warm_rss, fd_count(agent.pid) - warm_fds
        assert grew_kb < 20_000, f"the agent's memory grew by {grew_kb} KiB in {window:g}s"
        assert grew_fds <= 4, f"the agent opened {grew_fds} more file descriptors"
    finally:
        agent.stop()
        subscriber.close()
    assert agent.proc.returncode == 0, agent.log_tail(40)


@pytest.mark.parametrize("engine", ["gufo", "pysnmp"])
@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_each_client_fails_a_hostile_device_within_its_timeout(engine: str, behaviour: str) -> None:
    tries = 2
    with HostileSnmpDevice(behaviour, delay=DELAYS.get(behaviour, 0.0)) as device:
        target = SnmpTarget("127.0.0.1", device.port, "v2c", community="public", timeout=TIMEOUT, retries=tries - 1)
        client = make_client(target, engine)  # type: ignore[arg-type]

        async def poll() -> tuple[BaseException | None, float]:
            started = time.monotonic()
            try:
                await client.get(["1.3.6.1.2.1.1.3.0"])
            except SnmpError as exc:
                return exc, time.monotonic() - started
            finally:
                client.close()
            return None, time.monotonic() - started

        error, seconds = asyncio.run(poll())
    assert isinstance(error, SnmpError), f"{engine} took the answer of a device that {BEHAVIOURS[behaviour]}"
    assert str(error).startswith(f"127.0.0.1:{device.port}: ")
    assert "public" not in str(error)  # the community never appears
    assert seconds < TIMEOUT * tries + 1.0, f"{engine}: {seconds:.2f}s for {tries} tries of {TIMEOUT}s"
    if isinstance(error, SnmpTimeout):
        assert seconds >= TIMEOUT * tries * 0.9
