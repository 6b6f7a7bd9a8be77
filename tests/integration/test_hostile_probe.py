"""A compromised probe, with its own valid credentials, against the real centre: it may speak only about
what it watches, cannot forge the collector's series, and cannot stall a stream or a thread with its seqs.

Real mosquitto with the rendered ACL and password file behind TLS, a real collector process (SQLite store,
alerting, a webhook per carrier and the NOC's). The zone: switch ``sw-a`` (Viettel's) is watched by probe
``p2`` only; its interfaces ``xe-1`` and ``xe-2`` are Viettel's two fibre routes into the park (a redundancy
group: one down is RedundancyLost, both ServiceOutage). Probe ``p1`` has one modem, on VinaPhone. ``p1`` is
the attacker: it publishes as itself (the broker lets it), about things that are not its own.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services
from tests.centre import Centre
from tests.tlsbroker import Peer
from zonewatch import wire

pytestmark = pytest.mark.integration

WAIT = 30.0
ZONE = "hz"
NOW = time.time_ns


def inventory_text(hooks: str) -> str:
    return f"""\
zones:
  {ZONE}: {{name: Hostile Park, areas: [a]}}
carriers:
  viettel: {{plmn: 452-04, name: Viettel, notify: [{{type: webhook, url: "{hooks}/viettel"}}]}}
  vinaphone: {{plmn: 452-02, name: VinaPhone, notify: [{{type: webhook, url: "{hooks}/vinaphone"}}]}}
sites:
  pop: {{zone: {ZONE}, area: a, kind: fibre_pop, owners: [viettel]}}
devices:
  sw-a: {{site: pop, kind: switch, owners: [viettel], probe: p2}}
links:
  vt-1: {{device: sw-a, ifname: xe-1, carriers: [viettel]}}
  vt-2: {{device: sw-a, ifname: xe-2, carriers: [viettel]}}
redundancy_groups:
  vt-routes: {{zone: {ZONE}, carriers: [viettel], members: [{{link: vt-1}}, {{link: vt-2}}]}}
probes:
  p1: {{zone: {ZONE}, area: a, modems: [{{name: vn, carrier: vinaphone}}]}}
  p2: {{zone: {ZONE}, area: a, modems: [{{name: vt, carrier: viettel}}]}}
"""


class Hostile(Centre):
    """The centre (TLS broker with the rendered ACL, the collector, the webhooks) with the two probes' clients."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, inventory_text, ca_name="hostile test CA")
        self.seq = {"p1": 0, "p2": 0}
        self.probes: dict[str, Peer] = {}

    # ---------------------------------------------------------------------------------------------- probes

    def publish(self, probe: str, *samples: wire.Sample, events: tuple[wire.Event, ...] = (),
                seq: int | None = None) -> None:
        """Publish one batch as ``probe`` (QoS 1, the broker's acknowledgement awaited)."""
        if seq is None:
            self.seq[probe] += 1
            seq = self.seq[probe]
        payload = wire.encode(wire.Batch(ZONE, probe, seq, NOW(), samples, events))
        self.publish_raw(probe, payload, "events" if events else "data")

    def publish_raw(self, probe: str, payload: bytes, kind: str = "data") -> None:
        reason = self.probes[probe].publish(f"zw/v1/{ZONE}/{probe}/{kind}", payload)
        assert not reason.is_failure, reason

    def links(self, probe: str, xe1: bool, xe2: bool, ahead_s: float = 0) -> None:
        t = NOW() + int(ahead_s * 1e9)
        self.publish(probe, wire.Sample("device", {"device": "sw-a", "site": "pop"}, {"up": True}, t),
                     *(wire.Sample("interface", {"device": "sw-a", "ifname": name}, {"oper_up": up, "admin_up": True},
                                   t) for name, up in (("xe-1", xe1), ("xe-2", xe2))))

    # ---------------------------------------------------------------------------------------------- what came out

    def stored(self, sql: str, *args: object) -> int:
        try:
            with sqlite3.connect(f"file:{self.store}?mode=ro", uri=True) as db:
                return int(db.execute(sql, args).fetchone()[0] or 0)
        except sqlite3.Error:
            return -1

    def points(self, measurement: str, probe: str, tags: str = "") -> int:
        """Samples stored of ``measurement`` under ``probe``'s tag (a sample is a series at one time), with
        ``tags`` in their tags' JSON too."""
        return self.stored("SELECT count(*) FROM (SELECT DISTINCT series_id, time_ns FROM points JOIN series ON "
                           "series.id = series_id WHERE measurement = ? AND tags LIKE ? AND tags LIKE ?)", measurement,
                           f'%"probe":"{probe}"%', f"%{tags}%")

    def firing(self, path: str) -> list[str]:
        return [name for status, name in self.hooks.alerts(path) if status == "firing"]

    def misbehaving(self) -> str:
        """Wait for ProbeMisbehaving at the NOC; return its description."""
        services.wait_for(lambda: "ProbeMisbehaving" in self.firing("/noc"), WAIT, "ProbeMisbehaving at the NOC")
        alert = next(a for h in self.hooks.at("/noc") for a in h.body["alerts"]
                     if a["labels"]["alertname"] == "ProbeMisbehaving")
        assert alert["labels"]["probe"] == "p1" and "carrier" not in alert["labels"]
        return str(alert["annotations"]["description"])


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[Hostile]:
    with Hostile(tmp_path) as c:
        c.write_config(alerting={"interval": "500ms", "restart_grace": "0s", "settings": {"probe_timeout": "1h"}})
        c.start_collector()
        c.probes = {name: c.connect(name) for name in ("p1", "p2")}
        yield c


def test_a_probe_cannot_page_a_carrier_about_what_it_does_not_watch(centre: Hostile) -> None:
    # the rendered ACL lets the collector's ticks come back (ProbeDown by silence relies on them)
    services.wait_for(lambda: centre.metric("zonewatch_ingest_lag_seconds") < 2, WAIT,   # NaN until the first
                      "the collector's ticks through the broker")
    centre.links("p2", True, True)   # the real state: both routes up
    services.wait_for(lambda: centre.points("interface", "p2") == 2, WAIT, "p2's first poll stored")
    # p1 says both of Viettel's routes are down (a critical ServiceOutage, were it believed), that Viettel has no
    # service in the area (p1 has no Viettel modem), and that the switch went on battery and rebooted
    t = NOW()
    centre.links("p1", False, False)
    centre.publish("p1", wire.Sample("cellular", {"carrier": "452-04", "modem": "vt", "rat": "lte"},
                                     {"registered": False}, t))
    centre.publish("p1", events=(wire.Event("power_on_battery", {"device": "sw-a"}, {"on_battery": True}, t),
                                 wire.Event("cold_start", {"device": "sw-a"}, {}, t)))
    description = centre.misbehaving()
    assert "rows about devices or carriers not assigned to it (e.g. device sw-a)" in description
    # nothing of it reached a carrier, nor the store
    assert centre.firing("/viettel") == [] and centre.firing("/vinaphone") == []
    assert centre.points("interface", "p1") == 0 and centre.points("cellular", "p1") == 0
    assert centre.points("event", "p1") == 0
    assert centre.metric('zonewatch_probe_refused_samples_total{probe="hz/p1",reason="not_assigned"}') == 6
    # the probe that does watch the switch still pages at once
    centre.links("p2", False, False)
    services.wait_for(lambda: "ServiceOutage" in centre.firing("/viettel"), WAIT, "ServiceOutage from p2's poll")


def test_a_probe_cannot_hide_a_fault_another_probe_sees(centre: Hostile) -> None:
    centre.links("p2", True, False)   # route xe-2 really is down
    services.wait_for(lambda: "RedundancyLost" in centre.firing("/viettel"), WAIT, "RedundancyLost")
    for _ in range(3):   # p1 says it is up, dated four minutes ahead (within what the wire accepts)
        centre.links("p1", True, True, ahead_s=240)
    centre.misbehaving()
    centre.links("p2", True, False)   # the next real poll
    centre.publish("p2", wire.Sample("probe", {}, {"up": True, "spool_depth": 0}, NOW()))
    services.wait_for(lambda: centre.points("probe", "p2") >= 1, WAIT, "p2's later poll stored")
    assert [s for s, name in centre.hooks.alerts("/viettel") if name in ("RedundancyLost", "LinkDown")
            and s == "resolved"] == []


def test_a_probe_cannot_write_the_collectors_own_series(centre: Hostile) -> None:
    t = NOW()
    centre.publish("p1",
                   wire.Sample("coverage", {"area": "a", "carrier": "452-04"}, {"level": 4, "good_pct": 100.0}, t),
                   wire.Sample("alert", {"alertname": "ServiceOutage", "carrier": "452-04"}, {"firing": 1}, t),
                   wire.Sample("redundancy", {"group": "vt-routes", "carrier": "452-04"}, {"members_up": 0}, t),
                   wire.Sample("probe", {}, {"cpu_pct": 3.0}, t))   # its own health is its own to report
    services.wait_for(lambda: centre.points("probe", "p1") >= 1, WAIT, "p1's own sample stored")
    assert "samples of measurements only the collector writes (e.g. " in centre.misbehaving()
    assert centre.points("coverage", "p1") == 0 and centre.points("redundancy", "p1") == 0
    assert centre.points("alert", "p1", '"alertname":"ServiceOutage"') == 0
    services.wait_for(lambda: centre.points("alert", "p1", '"alertname":"ProbeMisbehaving"') >= 1, WAIT,
                      "the collector's own alert sample about p1 stored")   # stored after it paged
    assert centre.metric('zonewatch_probe_refused_samples_total{probe="hz/p1",reason="collector_only"}') == 3


def sample(t: int, n: int) -> wire.Sample:
    return wire.Sample("probe", {}, {"cpu_pct": float(n)}, t)


def test_absurd_seqs_neither_kill_a_thread_nor_silence_the_stream(centre: Hostile) -> None:
    centre.publish("p1", sample(NOW(), 1), seq=5)
    doc = json.loads(wire.encode(wire.Batch(ZONE, "p1", 6, NOW(), (sample(NOW(), 2),))))
    doc["seq"] = 2**64 - 1   # past SQLite's integers: it killed the commit thread, again after every restart
    centre.publish_raw("p1", json.dumps(doc).encode())
    centre.publish("p1", sample(NOW(), 3), seq=2**63 - 1)   # a jump that made every later batch a "repeat"
    centre.publish("p1", sample(NOW(), 4), seq=6)
    centre.publish("p1", sample(NOW(), 5), seq=7)
    services.wait_for(lambda: centre.points("probe", "p1") >= 4, WAIT, "p1's later batches stored")
    assert centre.metric('zonewatch_ingest_rejected_messages_total{reason="bad_schema"}') == 1
    assert centre.metric('zonewatch_probe_seq_jumps_total{probe="hz/p1"}') == 1
    assert "messages whose seq lay absurdly far from its stream (e.g. seq 9223372036854775807)" in centre.misbehaving()
    services.wait_for(lambda: centre.metric("zonewatch_ingest_queue_depth") == 0, WAIT, "the intake queue to drain")
    assert centre.collector.alive
    # and after a restart the stream goes on where it was
    centre.collector.stop()
    centre.collector = centre.start_collector()
    centre.publish("p1", sample(NOW(), 6), seq=8)
    services.wait_for(lambda: centre.points("probe", "p1") >= 5, WAIT, "p1's batch after the restart stored")
    assert centre.metric('zonewatch_probe_seq_gaps{probe="hz/p1"}') == 4   # 1..4, never sent: nothing else


def flood_payload(seq: int, rows: int) -> bytes:
    """One in-limit message of ``rows`` samples of p1's own health (about 70 bytes a row: the per-sample work
    is what costs the collector, so the most rows a MiB carries is the worst case)."""
    t = NOW() - rows * 1000
    return wire.encode(wire.Batch(ZONE, "p1", seq, NOW(), tuple(
        wire.Sample("probe", {}, {"cpu_pct": float(i % 100)}, t + i * 1000) for i in range(rows))))


def test_a_flood_from_one_probe_waits_behind_itself(centre: Hostile) -> None:
    """30 s of in-limit 1 MiB messages from one probe held every other probe's data and pages for minutes: its
    backlog is now taken in turn with the others', so another probe's readings are stored and its fault pages
    while the flood is still being worked through. (What remains: the broker hands the collector's data
    session its messages in arrival order, so the other probe's message arrives after the flood's bytes that
    were queued before it: about 2 s for the 40 MiB here.)"""
    rows = 13_500
    payloads = [flood_payload(seq, rows) for seq in range(1, 41)]
    assert all(900_000 < len(payload) <= wire.Limits().max_bytes for payload in payloads)
    p1 = centre.probes["p1"]
    mids = [p1.client.publish(f"zw/v1/{ZONE}/p1/data", payload, qos=1).mid for payload in payloads]
    services.wait_for(lambda: all(mid in p1.pubacks for mid in mids), WAIT, "the broker to take the flood")
    assert not any(p1.pubacks[mid].is_failure for mid in mids)
    centre.seq["p1"] = len(payloads)
    sent = time.monotonic()
    centre.links("p2", xe1=False, xe2=True)                  # p2's switch loses a route
    centre.publish("p2", sample(NOW(), 1))
    services.wait_for(lambda: centre.points("probe", "p2") >= 1, WAIT, "p2's reading stored")
    stored_after = time.monotonic() - sent
    flooded = centre.points("probe", "p1")
    services.wait_for(lambda: "LinkDown" in centre.firing("/viettel"), WAIT, "LinkDown for p2's switch")
    paged_after = next(h.received for h in centre.hooks.at("/viettel") for a in h.body["alerts"]
                       if a["labels"]["alertname"] == "LinkDown") - sent
    print(f"p2 stored after {stored_after:.2f} s, LinkDown paged after {paged_after:.2f} s; "
          f"p1's flood: {flooded} of {len(payloads) * rows} samples stored by then")
    assert flooded < len(payloads) * rows / 2, "p2's reading waited for most of the flood"
    assert stored_after < 10 and paged_after < 5
    # and the flood itself is stored in full, once
    services.wait_for(lambda: centre.points("probe", "p1") >= len(payloads) * rows, 120, "p1's flood stored")
    assert centre.metric("zonewatch_ingest_duplicate_batches_total") == 0


def test_a_flood_of_small_messages_from_one_probe_waits_behind_itself(centre: Hostile) -> None:
    """30 s of small messages (74,000) from one probe delayed a real page of another from 5 s to 46.6 s: its
    messages are now taken in turn with the others', by the alert engine as by the storage. p2's fault is sent
    while p1's flood is still going into the broker and the collector."""
    flood = 74_000
    t = NOW()
    payloads = [wire.encode(wire.Batch(ZONE, "p1", seq, t, (sample(t + seq, seq),))) for seq in range(1, flood + 1)]
    p1 = centre.probes["p1"]
    mids = [p1.client.publish(f"zw/v1/{ZONE}/p1/data", payload, qos=1).mid for payload in payloads]
    services.wait_for(lambda: len(p1.pubacks) > flood // 10, 60, "the flood to be under way")
    centre.seq["p1"] = flood
    sent = time.monotonic()
    centre.links("p2", xe1=False, xe2=True)                  # p2's switch loses a route
    services.wait_for(lambda: "LinkDown" in centre.firing("/viettel"), WAIT, "LinkDown for p2's switch")
    paged_after = next(h.received for h in centre.hooks.at("/viettel") for a in h.body["alerts"]
                       if a["labels"]["alertname"] == "LinkDown") - sent
    flooded = centre.points("probe", "p1")
    print(f"LinkDown paged after {paged_after:.2f} s; p1's flood: {flooded} of {flood} samples stored by then")
    assert flooded < flood, "the flood was already stored: nothing was overtaken"
    assert paged_after < 5
    services.wait_for(lambda: centre.points("interface", "p2") >= 2, WAIT, "p2's readings stored")
    assert centre.points("probe", "p1") < flood, "p2's readings waited for the whole flood"
    # (The rest of the flood is stored, or dropped by the broker past the collector session's queue limits and
    # counted as p1's seq gaps: the broker's business, tested in test_broker_limits.py.)
    services.wait_for(lambda: all(mid in p1.pubacks for mid in mids), 120, "the broker to take the whole flood")
