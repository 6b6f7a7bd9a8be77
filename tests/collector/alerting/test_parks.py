"""Park uplinks (collector.alerting.parks): the bridge's state taken as it comes, the engine's path for it, and the
broker ACL that lets only the park's bridge write it. The timeline of a cut is ``scenarios/park_uplink.yaml``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from paho.mqtt.client import topic_matches_sub
from prometheus_client import CollectorRegistry

from collector import mosquitto
from collector.alerting import parks
from collector.alerting.config import AlertingConfig
from collector.alerting.engine import AlertEngine
from collector.alerting.model import Notification
from collector.inventory import Inventory
from zonewatch import strict, wire
from zonewatch.measurements import problems

S = 1_000_000_000
T0 = 1_764_288_000 * S
TOPIC = "zonewatch/bridge/park/state"
INVENTORY = """
zones: {park: {name: Park}, other: {name: Other}}
probes: {p1: {zone: park}, p2: {zone: park}, p9: {zone: other}}
"""


class Dispatcher:
    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def submit(self, notifications: Sequence[Notification]) -> None:
        self.sent.extend(notifications)

    def sync_alertmanager(self, firing: Sequence[Notification], now_ns: int) -> None:
        pass


def test_the_bridge_state_is_taken_once_per_change_and_anything_else_is_ignored() -> None:
    bridges = parks.Bridges()
    assert parks.state_topic("park") == TOPIC and parks.zone_of(TOPIC) == "park"
    assert not bridges.observe("zonewatch/bridge/a/b/state", b"0", T0)      # not one zone
    assert not bridges.observe("zonewatch/tick/collector", b"0", T0)
    assert not bridges.observe(TOPIC, b"offline", T0) and not bridges.zones  # not 0 or 1
    assert bridges.observe(TOPIC, b"1", T0)
    assert bridges.zones["park"] == parks.Uplink(True)                      # up, no outage seen
    bridges.observe(TOPIC, b"0", T0 + 10 * S)
    bridges.observe(TOPIC, b"0", T0 + 20 * S)   # the retained will again (the collector subscribed again)
    assert bridges.zones["park"] == parks.Uplink(False, down_ns=T0 + 10 * S)
    bridges.observe(TOPIC, b"1", T0 + 60 * S)
    bridges.observe(TOPIC, b"1", T0 + 70 * S)
    assert bridges.zones["park"] == parks.Uplink(True, down_ns=T0 + 10 * S, back_ns=T0 + 60 * S)
    # the park's queue has probe_timeout to arrive after the return; a probe heard since is judged as usual
    assert parks.silence_held(bridges, "park", T0, T0 + 100 * S, 90 * S) is not None
    assert parks.silence_held(bridges, "park", T0 + 61 * S, T0 + 100 * S, 90 * S) is None
    assert parks.silence_held(bridges, "park", T0, T0 + 151 * S, 90 * S) is None
    assert parks.silence_held(bridges, "other", T0, T0 + 100 * S, 90 * S) is None
    # a will from before the outage is the probe's own fault, not muted; one during it (or its queue) is
    assert parks.will_muted(bridges, "park", T0 + 5 * S, T0 + 100 * S, 90 * S) is None
    assert parks.will_muted(bridges, "park", T0 + 65 * S, T0 + 100 * S, 90 * S) == "ParkUplinkDown park"


def test_the_engine_pages_park_uplink_down_to_the_noc_and_no_probe_of_the_park(tmp_path: Path) -> None:
    cfg = strict.load(AlertingConfig, f"state_path: '{tmp_path / 'alerts.db'}'\nrestart_grace: 0s\n")
    inventory = strict.load(Inventory, INVENTORY, "inventory.yaml")
    dispatcher, stored = Dispatcher(), list[wire.Batch]()
    engine = AlertEngine(cfg, inventory, dispatcher, stored.extend, CollectorRegistry(), clock=lambda: T0)

    def heard(at_s: int, *probes: str) -> None:
        for probe in probes:
            zone = inventory.probes[probe].zone
            batch = wire.Batch(zone, probe, at_s + 1, T0 + at_s * S, (wire.Sample("probe", {}, {"up": True},
                                                                                  T0 + at_s * S),))
            engine.ingest([(wire.topic(zone, probe, "data"), wire.encode(batch), T0 + at_s * S)])

    engine.ingest([(TOPIC, b"1", T0)])   # the retained state, as the collector subscribes
    heard(0, "p1", "p2", "p9")
    engine.ingest([(TOPIC, b"0", T0 + 10 * S)])   # the park's uplink is cut: its will, no decoding error
    assert engine.metrics.rejected._value.get() == 0
    for t in range(10, 300, 10):
        heard(t, "p9")
        engine.step(T0 + t * S)
    firing = [(n.status, n.labels["alertname"], n.labels.get("zone")) for n in dispatcher.sent]
    assert firing == [("firing", "ParkUplinkDown", "park")], firing
    note = dispatcher.sent[0]
    assert note.carrier is None and note.labels["severity"] == "critical" and "p1, p2" in note.annotations[
        "description"]
    engine.ingest([(TOPIC, b"1", T0 + 300 * S)])
    heard(301, "p1", "p2", "p9")   # the park's queue
    engine.step(T0 + 301 * S)
    assert [(n.status, n.labels["alertname"]) for n in dispatcher.sent[1:]] == [("resolved", "ParkUplinkDown")]
    assert dispatcher.sent[1].ends_ns == T0 + 300 * S
    alerts = [(s.tags, s.fields) for b in stored for s in b.samples if s.measurement == "alert"]
    assert {(t["alertname"], f["firing"]) for t, f in alerts} == {("ParkUplinkDown", 1), ("ParkUplinkDown", 0)}
    for batch in stored:   # what the engine writes is within the measurement catalogue
        for s in batch.samples:
            assert problems(s.measurement, s.tags, s.fields) == [], s


def test_only_the_parks_bridge_may_write_its_state_and_the_collector_reads_it() -> None:
    inventory = strict.load(Inventory, INVENTORY, "inventory.yaml")
    layout = mosquitto.Layout(peers=("collector-b",), bridges=("park", "other"))
    acl = mosquitto.render_acl(inventory, "collector-a", layout=layout)
    rules: dict[str, list[str]] = {}
    user = ""
    for line in acl.splitlines():
        if line.startswith("user "):
            user = line.split()[1]
        elif line.startswith("topic "):
            rules.setdefault(user, []).append(line)

    def may(user: str, access: str, topic: str) -> bool:
        return any(rule.split()[1] in (access, "readwrite") and topic_matches_sub(rule.split()[2], topic)
                   for rule in rules.get(user, []))

    for zone in ("park", "other"):
        state = parks.state_topic(zone)
        writers = sorted(u for u in rules if may(u, "write", state))
        assert writers == [f"bridge-{zone}"], (zone, writers)
        readers = sorted(u for u in rules if may(u, "read", state))
        assert readers == ["collector-a-urgent", "collector-b-urgent"], (zone, readers)
    assert not any(may(p, "write", parks.state_topic("park")) for p in ("p1", "p2", "p9"))
    # without park brokers the ACL is as before
    assert "zonewatch/bridge" not in mosquitto.render_acl(inventory, "collector-a")
