"""Diagnostic rounds at the collector: which alerts ask for one, of which probes and modems, how often; no broker."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from collector.alerting.model import SEVERITY, Notification
from collector.fleet.diagnostics import Diagnostics, DiagnosticsConfig, Planner
from collector.inventory import Inventory
from zonewatch import wire
from zonewatch.strict import load

INVENTORY = """\
zones:
  z1: {name: One, areas: [gate, dock]}
  z2: {name: Two, areas: [gate]}
carriers:
  viettel: {plmn: 452-04, name: Viettel}
  vina: {plmn: 452-02, name: VinaPhone}
probes:
  p1: {zone: z1, area: gate, modems: [{name: vt, carrier: viettel}, {name: vn, carrier: 452-02}]}
  p2: {zone: z1, area: gate, modems: [{name: vt2, carrier: viettel}]}
  p3: {zone: z1, area: dock, modems: [{name: vt, carrier: viettel}]}
  p4: {zone: z2, area: gate, modems: [{name: vt, carrier: viettel}]}
  p5: {zone: z1, area: gate, modems: [{name: vn, carrier: vina}]}
"""
S = 10**9
T0 = 1_764_290_000 * S


def inventory() -> Inventory:
    return load(Inventory, INVENTORY, "inventory.yaml")


def alert(name: str, starts_ns: int = T0, **labels: str) -> Notification:
    full = {"alertname": name, "severity": SEVERITY[name], "zone": "z1", "area": "gate", "carrier": "452-04",
            **labels}
    return Notification("firing", full, {}, starts_ns)


def targets(rounds: list) -> list[tuple[str, str, bool]]:  # type: ignore[type-arg]
    return [(r.command.probe, r.command.action.modem, r.command.action.transfers) for r in rounds]


def test_an_area_alert_asks_every_probe_of_the_area_for_a_round_on_that_carriers_modems() -> None:
    planner = Planner(inventory(), DiagnosticsConfig())
    rounds = planner.decide([alert("DataAccessFailure")], T0)
    assert targets(rounds) == [("p1", "vt", False), ("p2", "vt2", False)]   # not p3 (dock), p4 (z2), p5 (vina)
    command = rounds[0].command
    assert (command.zone, command.action.carrier, command.action.reason) == ("z1", "452-04", "DataAccessFailure")
    assert command.issued_ns == T0 and command.expires_ns == T0 + 600 * S
    assert wire.decode_command(wire.encode_command(command)) == command


def test_a_probe_alert_asks_only_that_probe_and_only_throughput_asks_for_transfers() -> None:
    planner = Planner(inventory(), DiagnosticsConfig())
    assert targets(planner.decide([alert("CoverageHole", probe="p2")], T0)) == [("p2", "vt2", False)]
    assert targets(planner.decide([alert("ThroughputBelowTarget", area="dock")], T0)) == [("p3", "vt", True)]
    assert targets(planner.decide([alert("NoService", carrier="452-02")], T0)) == [("p1", "vn", False),
                                                                                   ("p5", "vn", False)]
    assert targets(planner.decide([alert("CoverageInterference", zone="z2", probe="p4")], T0)) == [("p4", "vt", False)]


def test_other_alerts_and_alerts_without_a_carrier_ask_for_nothing() -> None:
    planner = Planner(inventory(), DiagnosticsConfig())
    weak = alert("WeakSignal", probe="p1")
    down = Notification("firing", {"alertname": "ProbeDown", "zone": "z1", "area": "gate", "probe": "p1"}, {}, T0)
    no_carrier = Notification("firing", {"alertname": "NoService", "zone": "z1", "area": "gate"}, {}, T0)
    resolved = Notification("resolved", alert("DataAccessFailure").labels, {}, T0, T0 + S)
    assert planner.decide([weak, down, no_carrier, resolved], T0) == []


def test_one_round_per_firing_not_one_per_evaluation_and_a_new_firing_is_news() -> None:
    planner = Planner(inventory(), DiagnosticsConfig.model_validate({"min_interval": "1m"}))
    firing = alert("DataAccessFailure")
    assert len(planner.decide([firing], T0)) == 2
    for i in range(1, 100):   # the same firing at every evaluation after it
        assert planner.decide([firing], T0 + i * 5 * S) == []
    # it resolved and fired again later: a new start, a new round
    again = alert("DataAccessFailure", starts_ns=T0 + 3600 * S)
    assert targets(planner.decide([again], T0 + 3600 * S)) == [("p1", "vt", False), ("p2", "vt2", False)]


def test_at_most_one_round_per_probe_and_modem_per_min_interval() -> None:
    planner = Planner(inventory(), DiagnosticsConfig.model_validate({"min_interval": "30m"}))
    assert len(planner.decide([alert("DataAccessFailure")], T0)) == 2
    # another alert on the same carrier and area ten minutes later: p1/vt and p2/vt2 had their round
    assert planner.decide([alert("ThroughputBelowTarget", starts_ns=T0 + 600 * S)], T0 + 600 * S) == []
    assert planner.rate_limited == 2
    # a different modem of p1 is not limited by vt's round
    assert targets(planner.decide([alert("NoService", carrier="452-02")], T0 + 600 * S)) == [
        ("p1", "vn", False), ("p5", "vn", False)]
    # past the interval, a new firing asks again
    later = T0 + 1800 * S
    assert targets(planner.decide([alert("CoverageHole", starts_ns=later, probe="p1")], later)) == [("p1", "vt", False)]


def test_the_state_survives_a_restart_so_a_firing_is_not_acted_on_twice(tmp_path: Path) -> None:
    sent: list[tuple[str, bytes, int]] = []

    def send(topic: str, payload: bytes, expiry: int) -> bool:
        sent.append((topic, payload, expiry))
        return True

    registry = CollectorRegistry()
    first = Diagnostics(inventory(), DiagnosticsConfig(), send, tmp_path, registry)
    first.tick(T0, [alert("DataAccessFailure")])
    assert [(t, e) for t, _, e in sent] == [("zw/v1/z1/p1/command", 600), ("zw/v1/z1/p2/command", 600)]
    assert wire.decode_command(sent[0][1]).action.modem == "vt"
    assert registry.get_sample_value("zonewatch_diagnostic_rounds_total", {"result": "sent"}) == 2
    again = Diagnostics(inventory(), DiagnosticsConfig(), send, tmp_path, CollectorRegistry())   # a restart
    again.tick(T0 + 10 * S, [alert("DataAccessFailure")])
    assert len(sent) == 2
    (tmp_path / "diagnostics.json").write_text("garbage")   # unreadable: start afresh, never crash
    Diagnostics(inventory(), DiagnosticsConfig(), send, tmp_path, CollectorRegistry())


def test_a_round_the_broker_session_could_not_take_is_counted_unsent() -> None:
    registry = CollectorRegistry()
    diagnostics = Diagnostics(inventory(), DiagnosticsConfig(), lambda t, p, e: False, None, registry)
    assert len(diagnostics.tick(T0, [alert("CoverageHole", probe="p1")])) == 1
    assert registry.get_sample_value("zonewatch_diagnostic_rounds_total", {"result": "unsent"}) == 1
    diagnostics.tick(T0 + S, [alert("CoverageHole", probe="p1", starts_ns=T0 + S)])
    assert registry.get_sample_value("zonewatch_diagnostic_rounds_total", {"result": "rate_limited"}) == 1
