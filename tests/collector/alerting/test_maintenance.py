"""Maintenance windows in the alert pipeline: what a window covers, and the engine with a window declared while it
runs (the store beside its state): muted and tagged while open, paged as itself and MaintenanceOverrun after.

The engine is driven through ``ingest`` and ``step(now)`` with a fake dispatcher and a list for the store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from collector.alerting.config import AlertingConfig
from collector.alerting.engine import AlertEngine
from collector.alerting.maintenance import covers
from collector.alerting.model import Notification
from collector.inventory import Inventory
from collector.maintenance import Window, WindowScope
from collector.maintenance_store import MaintenanceStore, store_path
from zonewatch import strict, wire

S = 1_000_000_000
T0 = 1_764_288_000 * S   # 2025-11-28 00:00 UTC, 07:00 in Ho Chi Minh City

INVENTORY = """
zones: {dv: {name: Dinh Vu, areas: [gate-a, north]}, kcn: {name: KCN, areas: [north]}}
carriers: {viettel: {plmn: 452-04, name: Viettel}, vinaphone: {plmn: 452-02, name: VinaPhone}}
sites:
  pop: {zone: dv, area: gate-a, kind: fibre_pop, owners: [viettel]}
  bts-site: {zone: dv, area: north, kind: bts, owners: [viettel, vinaphone]}
devices:
  sw: {site: pop, kind: switch, owners: [viettel], probe: p1}
  bts: {site: bts-site, kind: bts, owners: [viettel, vinaphone], parent: sw, probe: p1}
links:
  vt-1: {device: sw, ifname: xe-1, carriers: [viettel]}
  vt-2: {device: sw, ifname: xe-2, carriers: [viettel]}
  bts-mw: {device: bts, ifname: mw0, carriers: [vinaphone]}
redundancy_groups:
  vt: {zone: dv, carriers: [viettel], members: [{link: vt-1}, {link: vt-2}]}
probes: {p1: {zone: dv, area: gate-a}}
"""


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return strict.load(Inventory, INVENTORY, "inventory.yaml")


@pytest.mark.parametrize(("scope", "labels", "inside"), [
    ({"site": "bts-site"}, {"alertname": "DeviceDown", "site": "bts-site", "device": "bts"}, True),
    ({"site": "pop"}, {"alertname": "LinkDown", "site": "pop", "device": "sw", "link": "vt-1"}, True),
    ({"site": "pop"}, {"alertname": "RedundancyLost", "group": "vt"}, True),      # its members stand there
    ({"site": "pop"}, {"alertname": "ServiceOutage", "group": "vt"}, False),      # works take redundancy, not service
    ({"site": "bts-site"}, {"alertname": "DeviceDown", "site": "pop", "device": "sw"}, False),
    ({"device": "sw"}, {"alertname": "LinkDown", "device": "bts", "link": "bts-mw"}, True),   # below the switch
    ({"device": "bts"}, {"alertname": "DeviceDown", "device": "sw"}, False),      # above it
    ({"link": "vt-2"}, {"alertname": "RedundancyLost", "group": "vt"}, True),
    ({"link": "vt-2"}, {"alertname": "LinkDown", "device": "sw", "link": "vt-1"}, False),
    ({"group": "vt"}, {"alertname": "ServiceOutage", "group": "vt"}, True),
    ({"carrier": "viettel"}, {"alertname": "DeviceDown", "device": "bts", "carrier": "452-04"}, True),
    ({"carrier": "viettel"}, {"alertname": "DeviceDown", "device": "bts", "carrier": "452-02"}, False),
    ({"area": "north", "zone": "dv"}, {"alertname": "NoService", "zone": "dv", "area": "north"}, True),
    ({"area": "north", "zone": "dv"}, {"alertname": "NoService", "zone": "kcn", "area": "north"}, False),
    ({"area": "north", "carrier": "vinaphone"}, {"alertname": "NoService", "zone": "kcn", "area": "north",
                                                 "carrier": "452-04"}, False),
])
def test_what_a_window_covers(inventory: Inventory, scope: dict[str, str], labels: dict[str, str],
                              inside: bool) -> None:
    assert covers(WindowScope.model_validate(scope), labels, inventory) is inside


class FakeDispatcher:
    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def submit(self, notifications: Sequence[Notification]) -> None:
        self.sent.extend(notifications)

    def sync_alertmanager(self, firing: Sequence[Notification], now_ns: int) -> None:
        pass


def test_a_window_declared_while_the_engine_runs_mutes_tags_and_pages_its_overrun(tmp_path: Path,
                                                                                   inventory: Inventory) -> None:
    cfg = strict.load(AlertingConfig, f"state_path: '{tmp_path / 'alerts.db'}'\nrestart_grace: 0s\n")
    dispatcher, stored = FakeDispatcher(), list[wire.Batch]()
    engine = AlertEngine(cfg, inventory, dispatcher, stored.extend, CollectorRegistry(), clock=lambda: T0)
    cli_side = MaintenanceStore(store_path(cfg.state_path or ""))
    seq = 0

    def poll(at_s: int, up: bool) -> None:
        nonlocal seq
        seq += 1
        sample = wire.Sample("interface", {"device": "sw", "ifname": "xe-1", "link": "vt-1"},
                             {"oper_up": up, "admin_up": True}, T0 + at_s * S)
        batch = wire.Batch("dv", "p1", seq, T0 + at_s * S, (sample,))
        engine.ingest([(wire.topic("dv", "p1", "data"), wire.encode(batch), T0 + at_s * S)])
        engine.step(T0 + at_s * S)

    def alert_points() -> list[tuple[dict[str, str], dict[str, wire.FieldValue]]]:
        out = [({**s.tags, "zone": b.zone}, dict(s.fields)) for b in stored for s in b.samples
               if s.measurement == "alert" and s.tags.get("alertname") == "LinkDown"]
        stored.clear()
        return out

    def sent() -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = [(n.status, n.labels["alertname"]) for n in dispatcher.sent]
        dispatcher.sent.clear()
        return out

    try:
        poll(0, True)
        # The NOC declares fibre works on the link from 07:01 to 07:05 local time, while the engine runs.
        cli_side.add("fibre", Window.model_validate({
            "scope": {"link": "vt-1"}, "start": "2025-11-28 07:01", "end": "2025-11-28 07:05",
            "time_zone": "Asia/Ho_Chi_Minh", "ticket": "CHG-9", "by": "noc"}), T0)
        poll(90, False)
        assert sent() == [("firing", "MaintenanceActive")]   # to Viettel, the owner: the NOC declared it
        assert alert_points() == [({"alertname": "LinkDown", "severity": "warning", "zone": "dv", "area": "gate-a",
                                    "carrier": "452-04", "site": "pop", "device": "sw", "link": "vt-1",
                                    "maintenance": "fibre"}, {"firing": 1, "muted": 1})]
        poll(299, False)
        assert sent() == []
        assert [(t["maintenance"], f) for t, f in alert_points()] == [("fibre", {"firing": 1, "muted": 1})]  # refresh
        poll(300, False)   # 07:05: the window closed with the link still down
        assert sorted(sent()) == [("firing", "LinkDown"), ("firing", "MaintenanceOverrun"),
                                  ("resolved", "MaintenanceActive")]
        points = alert_points()   # the window's series ends, the alert goes on untagged and unmuted
        assert [(t.get("maintenance"), f) for t, f in points] == [("fibre", {"firing": 0, "muted": 0}),
                                                                   (None, {"firing": 1, "muted": 0})]
        poll(330, True)
        assert sorted(sent()) == [("resolved", "LinkDown"), ("resolved", "MaintenanceOverrun")]
        assert [(t.get("maintenance"), f) for t, f in alert_points()] == [(None, {"firing": 0, "muted": 0})]
    finally:
        cli_side.close()
        engine.tracker.close()
        engine.windows.close()


def test_a_window_on_an_asset_this_inventory_lacks_covers_nothing_and_breaks_nothing(inventory: Inventory) -> None:
    # A shard's inventory holds its own zones only; a run-time window may name an asset removed since.
    from collector.alerting.maintenance import apply
    from collector.alerting.model import Evaluation, Finding
    from collector.maintenance import Declared

    gone = Declared("gone", Window.model_validate({"scope": {"site": "other-zone-site"}, "start": "2025-11-28 06:00",
                                                   "duration": "4h", "time_zone": "Asia/Ho_Chi_Minh"}))
    finding = Finding({"alertname": "DeviceDown", "severity": "critical", "site": "pop", "device": "sw"})
    result = apply(Evaluation([finding]), [gone], inventory, [], T0)
    assert [f.muted_by for f in result.findings] == [None]
