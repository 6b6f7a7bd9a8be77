"""``agent.sim.device``: what the demo's simulated SNMP devices answer over time, with ``now`` passed in.

The walks are the demo's own (``collector/demo_data``), so these are the devices a user of the demo sees:
counters that grow at a steady rate within the link's speed, a down link that carries nothing, a SET that
changes one device only, and snmpsim's ``variate`` hook that keeps each device's state in its own context."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from agent.sim.device import (
    IF_OPER_STATUS,
    NAME,
    PERIOD_S,
    SWING,
    NotWritable,
    SimDevice,
    initial_states,
    parse,
    snmpsim_hooks,
)

DATA = Path(__file__).resolve().parents[3] / "collector" / "demo_data"
IF_IN_OCTETS, IF_HC_IN_OCTETS, IF_HC_OUT_OCTETS = "1.3.6.1.2.1.2.2.1.10", "1.3.6.1.2.1.31.1.1.1.6", \
    "1.3.6.1.2.1.31.1.1.1.10"
IF_HIGH_SPEED = "1.3.6.1.2.1.31.1.1.1.15"


def walk(device: str) -> dict[str, tuple[str, str]]:
    """The demo walk of ``device``: OID -> (tag, value) as written in its ``.snmprec``."""
    rows = (line.split("|", 2) for line in (DATA / f"{device}.snmprec").read_text().splitlines())
    return {oid: (tag, value) for oid, tag, value in rows}


def answer(device: SimDevice, rows: dict[str, tuple[str, str]], oid: str, now: float) -> int:
    tag, value = rows[oid]
    return device.get(oid, tag.split(":")[0], value, now)


def mbps(device: SimDevice, rows: dict[str, tuple[str, str]], oid: str, t0: float, t1: float) -> float:
    return (answer(device, rows, oid, t1) - answer(device, rows, oid, t0)) * 8 / (t1 - t0) / 1e6


def test_the_walks_name_what_the_demo_cuts_and_the_switch_starts_with_one_port_down() -> None:
    states = initial_states((DATA / "sw-core.snmprec").read_text())
    assert states[f"{IF_OPER_STATUS}.1"] == 1 and states[f"{IF_OPER_STATUS}.2"] == 1
    assert states[f"{IF_OPER_STATUS}.3"] == 2   # ge-0/0/5: nothing plugged in
    assert initial_states((DATA / "ups-01.snmprec").read_text())["1.3.6.1.2.1.33.1.4.1.0"] == 3   # on mains


@pytest.mark.parametrize("device", ["bts-01", "sw-core"])
def test_every_interface_counts_at_a_steady_rate_within_its_speed_over_a_day_of_five_second_polls(
        device: str) -> None:
    rows = walk(device)
    sim = SimDevice(0.0, initial_states((DATA / f"{device}.snmprec").read_text()))
    counters = [oid for oid, (tag, _) in rows.items() if tag.endswith(f":{NAME}") and "octets=" in rows[oid][1]]
    assert len(counters) >= 8, counters
    for oid in counters:
        if not oid.startswith((IF_HC_IN_OCTETS + ".", IF_HC_OUT_OCTETS + ".")):
            continue
        nominal = float(parse(rows[oid][1])["octets"])
        speed = int(rows[f"{IF_HIGH_SPEED}.{oid.rsplit('.', 1)[1]}"][1])
        rates = [mbps(sim, rows, oid, t, t + 5.0) for t in range(0, 86_400, 295)]
        assert all(nominal * (1 - SWING) - 0.01 <= r <= nominal * (1 + SWING) + 0.01 for r in rates), (oid, rates)
        assert max(rates) < speed, (oid, max(rates), speed)
        # it swings, smoothly: from one 5 s poll to the next the rate moves by a few per cent of it at most
        assert max(rates) - min(rates) > nominal * SWING
        steps = [abs(mbps(sim, rows, oid, t, t + 5) - mbps(sim, rows, oid, t + 5, t + 10)) for t in range(0, 600, 5)]
        assert max(steps) <= nominal * SWING * 2 * math.pi * 5 / PERIOD_S + 0.01, (oid, max(steps))


def test_the_32_bit_counter_is_the_64_bit_one_modulo_2_to_the_32_and_wraps_as_a_real_one() -> None:
    rows = walk("sw-core")
    sim = SimDevice(0.0, initial_states((DATA / "sw-core.snmprec").read_text()))
    for now in (0.0, 3.3, 600.0, 7_200.0):
        assert answer(sim, rows, f"{IF_IN_OCTETS}.1", now) == answer(sim, rows, f"{IF_HC_IN_OCTETS}.1", now) % 2**32
    # 2,350 Mbit/s passes 2^32 octets in about 15 s: the 32-bit counter has wrapped within the first minute
    assert answer(sim, rows, f"{IF_IN_OCTETS}.1", 60.0) < answer(sim, rows, f"{IF_HC_IN_OCTETS}.1", 60.0)


def test_a_cut_link_carries_nothing_until_it_is_spliced_then_counts_on_from_where_it_stopped() -> None:
    rows = walk("sw-core")
    sim = SimDevice(100.0, initial_states((DATA / "sw-core.snmprec").read_text()))
    status, counter = f"{IF_OPER_STATUS}.1", f"{IF_HC_IN_OCTETS}.1"
    before = answer(sim, rows, counter, 130.0)
    assert sim.set(status, rows[status][1], 2, 130.0) == 2
    assert answer(sim, rows, status, 131.0) == 2
    assert answer(sim, rows, counter, 131.0) == answer(sim, rows, counter, 200.0) == before
    assert mbps(sim, rows, f"{IF_HC_IN_OCTETS}.2", 131.0, 200.0) > 1000   # the backup still carries its own
    sim.set(status, rows[status][1], 1, 200.0)
    assert answer(sim, rows, counter, 200.0) == before
    assert 2350 * 0.9 <= mbps(sim, rows, counter, 200.0, 205.0) <= 2350 * 1.1


def test_a_port_that_starts_down_counts_nothing_and_sysuptime_counts_hundredths_since_the_start() -> None:
    rows = walk("sw-core")
    sim = SimDevice(50.0, initial_states((DATA / "sw-core.snmprec").read_text()))
    assert rows[f"{IF_HC_IN_OCTETS}.3"] == ("70", "0")   # ge-0/0/5 (down) has a plain 0 in the walk
    # were its counters under this variation, they would not move either, nor would a port with no status
    assert sim.get(f"{IF_HC_IN_OCTETS}.3", "70", "octets=100", 60.0) == \
        sim.get(f"{IF_HC_IN_OCTETS}.3", "70", "octets=100", 500.0) == 0
    # a port the walk gives no status counts as up, from the start
    counted = [sim.get(f"{IF_HC_IN_OCTETS}.9", "70", "octets=8", now) for now in (50.0, 60.0, 65.0)]
    assert counted[0] == 0 and 8 * (1 - SWING) <= (counted[2] - counted[1]) * 8 / 5 / 1e6 <= 8 * (1 + SWING)
    assert answer(sim, rows, "1.3.6.1.2.1.1.3.0", 50.0) == 4_213_000
    assert answer(sim, rows, "1.3.6.1.2.1.1.3.0", 62.5) == 4_214_250


def test_only_state_records_take_a_set_and_bad_options_name_the_problem() -> None:
    sim = SimDevice(0.0, {})
    with pytest.raises(NotWritable):
        sim.set(f"{IF_HC_IN_OCTETS}.1", "octets=10", 0, 1.0)
    with pytest.raises(NotWritable):
        sim.set("1.3.6.1.2.1.1.3.0", "uptime=0", 0, 1.0)
    with pytest.raises(ValueError, match="rate=5"):
        parse("rate=5")
    with pytest.raises(ValueError, match="exactly one of"):
        parse("state=1,octets=2")
    with pytest.raises(ValueError, match="needs a counter"):
        sim.get(f"{IF_HC_IN_OCTETS}.1", "2", "octets=10", 1.0)


class Context:
    """What snmpsim hands ``variate`` for one request to one device (its data file and own context)."""

    def __init__(self, data_file: Path) -> None:
        self.data_file = str(data_file)
        self.own: dict[str, Any] = {}

    def call(self, hooks: tuple[Any, Any, Any], namespace: dict[str, Any], oid: str, tag: str, value: str,
             set_to: int | None = None) -> Any:
        namespace["agentContext"] = self.own   # as snmpsim does before each call
        _init, variate, _shutdown = hooks
        return variate(oid, tag, value, nextFlag=False, exactMatch=True, setFlag=set_to is not None,
                       origOid=oid, origValue=set_to, errorStatus="error-status", dataFile=self.data_file)


def test_snmpsims_hook_keeps_each_devices_state_in_that_devices_own_context(tmp_path: Path) -> None:
    """Cutting interface 1 of the switch leaves interface 1 of the BTS up (snmpsim's own ``writecache`` kept
    one value per OID for every device)."""
    now = [10.0]
    namespace: dict[str, Any] = {}
    hooks = snmpsim_hooks(namespace, clock=lambda: now[0])
    switch, bts = Context(DATA / "sw-core.snmprec"), Context(DATA / "bts-01.snmprec")
    status = f"{IF_OPER_STATUS}.1"
    assert switch.call(hooks, namespace, status, "2", "state=1", set_to=2) == (status, "2", 2)
    now[0] = 20.0
    assert switch.call(hooks, namespace, status, "2", "state=1")[2] == 2
    assert bts.call(hooks, namespace, status, "2", "state=1")[2] == 1
    first = bts.call(hooks, namespace, f"{IF_HC_IN_OCTETS}.1", "70", "octets=170,base=0")[2]
    now[0] = 30.0
    assert bts.call(hooks, namespace, f"{IF_HC_IN_OCTETS}.1", "70", "octets=170,base=0")[2] > first
    # the switch's interface 1 went down at +0 s of its life (the SET at 10.0 = boot): it never counted
    assert switch.call(hooks, namespace, f"{IF_HC_IN_OCTETS}.1", "70", "octets=2350,base=0")[2] == 0
    # a SET on a counter, or of a value that is not an integer, answers with the request's error status
    assert switch.call(hooks, namespace, f"{IF_HC_IN_OCTETS}.1", "70", "octets=1", set_to=5)[2] == "error-status"
