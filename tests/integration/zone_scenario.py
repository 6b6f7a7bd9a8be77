"""One simulated hour of zone "scn-park", and what the dashboards and the report must show for it.

The scenario is data, written minute by minute (samples at t0 + m minutes, m = 0..59): raw measurements as
the probes send them, and the derived measurements (``coverage``, ``redundancy``, ``alert``) as the
collector's alert engine stores them (batch header probe ``collector``, seq 0). The raw half is published over
MQTT as wire batches, so it travels the real path: mosquitto, collector, VictoriaMetrics or SQLite; the derived
half goes into each collector as its alert engine's does (``Ingest.inject``: a probe may not write these).

Below the data are the expected answers, worked out by hand from the story, not by any code: what each
dashboard query returns at the evaluation time ``T = t0 + 59m30s`` (the dashboard's range is the hour
before ``T``, so it holds the 60 samples m0..m59), at chosen minutes of range queries, and what the report
says for the period [t0, t0 + 60m). When the real alert engine exists, it can be fed the raw half and its
derived half compared with the one written here.

The story (VT = Viettel 452-04, VN = VinaPhone 452-02; areas gate-a (probe p1) and logistics (p2, p3)):

    m8-13   UPS ups-a at site bts-a on battery (100 % -> 88 %, recharged by m25)
    m10-14  BTS bts-a1 does not answer (site bts-a down); it comes back rebooted at m15
    m10-19  VN uplink group degraded: its microwave vn-mw-1 is on bts-a1 (m10-14), then fibre vn-fiber-1
            goes down (m15-32)
    m20-32  vn-mw-1 down too: VN ServiceOutage, and VN has no service in logistics (p2 not registered)
    m25-44  VT backup fibre vt-fiber-2 down (RedundancyLost vt-uplink); p2's path to the core moves to
            the backup route (m25-44 and again m50-59: core-paths degraded for both carriers)
    m30-59  VN weaker in gate-a (-95 -> -105 dBm: fair -> weak); p1's VT modem hands over to a new cell
    m40-49  VT coverage hole in logistics (-115 dBm)
    m45     probe p3 goes offline (its last health sample m44; ProbeDown from m47, its camera cam-l
            muted)
    m50-59  vt-fiber-2's optics degrade: Rx -21.5 dBm, input errors 30 a minute (OpticalDegraded m52-)

Service tests (``qos``) run at p1 through both modems: DNS and HTTP every minute, an echo to each carrier's
core, a download and an upload at m5, m20, m35 and m50. VinaPhone's DNS fails m40-44 (five failures, short of
DataAccessFailure's window) and its echo loses 2 % from m30; VinaPhone's SIM had 2 tests refused for its
budget from m50.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collector.app import Collector
from collector.config import CollectorConfig
from collector.inventory import Inventory
from tests import services
from zonewatch import wire
from zonewatch.strict import load

ZONE = "scn-park"
VT, VN = "452-04", "452-02"
MINUTES = 60
STEP_S = 60
EVAL_OFFSET_S = 59 * 60 + 30  # T = t0 + 59m30s
RANGE = "1h"

INVENTORY_YAML = f"""\
zones:
  {ZONE}:
    name: Scenario Park
    areas: [gate-a, logistics]
    thresholds: {{default: {{good_dbm: -90, fair_dbm: -100, hole_dbm: -110}}}}
carriers:
  viettel: {{plmn: '{VT}', name: Viettel}}
  vinaphone: {{plmn: '{VN}', name: VinaPhone}}
sites:
  bts-a: {{zone: {ZONE}, area: gate-a, kind: bts, owners: [viettel, vinaphone]}}
  pop-l: {{zone: {ZONE}, area: logistics, kind: fibre_pop, owners: [viettel, vinaphone]}}
devices:
  sw-pop: {{site: pop-l, kind: switch, owners: [viettel, vinaphone], probe: p2}}
  bts-a1: {{site: bts-a, kind: bts, owners: [viettel, vinaphone], parent: sw-pop, probe: p1}}
  ups-a: {{site: bts-a, kind: ups, probe: p1}}
  cam-l: {{site: pop-l, kind: other, probe: p3}}
links:
  vt-fiber-1: {{device: sw-pop, ifname: ge-0/0/1, carriers: [viettel]}}
  vt-fiber-2: {{device: sw-pop, ifname: ge-0/0/2, carriers: [viettel]}}
  vn-fiber-1: {{device: sw-pop, ifname: ge-0/0/3, carriers: [vinaphone]}}
  vn-mw-1: {{device: bts-a1, ifname: eth1, carriers: [vinaphone]}}
redundancy_groups:
  vt-uplink: {{zone: {ZONE}, carriers: [viettel], members: [{{link: vt-fiber-1}}, {{link: vt-fiber-2}}]}}
  vn-uplink: {{zone: {ZONE}, carriers: [vinaphone], members: [{{link: vn-fiber-1}}, {{link: vn-mw-1}}]}}
  core-paths:
    zone: {ZONE}
    carriers: [viettel, vinaphone]
    members:
      - {{path: {{probe: p2, target: 10.20.0.1, name: primary}}}}
      - {{path: {{probe: p2, target: 10.20.0.1, name: backup}}}}
probes:
  p1:
    zone: {ZONE}
    area: gate-a
    modems: [{{name: viettel, carrier: viettel}}, {{name: vinaphone, carrier: vinaphone}}]
  p2:
    zone: {ZONE}
    area: logistics
    modems: [{{name: viettel, carrier: viettel}}, {{name: vinaphone, carrier: vinaphone}}]
  p3: {{zone: {ZONE}, area: logistics}}
"""

Value = float | None


def steps(*segments: tuple[Value, int]) -> list[Value]:
    """Return one value per minute from (value, how many minutes) segments; None is "no sample"."""
    out: list[Value] = []
    for value, count in segments:
        out += [value] * count
    assert len(out) == MINUTES, f"segments cover {len(out)} minutes, not {MINUTES}"
    return out


def counter(start: int, increment: int, up: list[Value]) -> list[Value]:
    """Return an octet counter that grows by ``increment`` each minute ``up`` is 1 (None: not polled)."""
    out: list[Value] = []
    value = start
    for m, state in enumerate(up):
        if state is None:
            out.append(None)
            continue
        if m > 0 and state == 1:
            value += increment
        out.append(value)
    return out


@dataclass
class Row:
    """One series of the scenario: a measurement's tags and each field's value per minute."""

    probe: str
    measurement: str
    tags: dict[str, str]
    fields: dict[str, list[Value]]
    tags_by_minute: dict[int, dict[str, str]] = field(default_factory=dict)  # overrides (cell changes)


ROWS: list[Row] = []


def row(probe: str, measurement: str, tags: dict[str, str], **fields: list[Value]) -> Row:
    r = Row(probe, measurement, tags, fields)
    ROWS.append(r)
    return r


# --------------------------------------------------------------------------------------- raw: cellular
_cell = {"rat": "lte", "band": "B3"}
p1_vt = row("p1", "cellular", {"carrier": VT, "modem": "viettel", "rat": "nr5g-nsa", "band": "n78"},
            rsrp_dbm=steps((-85, 60)), rsrq_db=steps((-9, 60)), sinr_db=steps((18, 60)),
            registered=steps((1, 60)))
p1_vt.tags_by_minute = {m: {"cell": "5F1EA15" if m < 30 else "5F1EA16"} for m in range(MINUTES)}
row("p1", "cellular", {"carrier": VN, "modem": "vinaphone", **_cell, "cell": "2B0C40A"},
    rsrp_dbm=steps((-95, 30), (-105, 30)), rsrq_db=steps((-11, 30), (-14, 30)), sinr_db=steps((9, 30), (3, 30)),
    registered=steps((1, 60)))
row("p2", "cellular", {"carrier": VT, "modem": "viettel", **_cell, "cell": "5F1EA20"},
    rsrp_dbm=steps((-98, 40), (-115, 10), (-98, 10)), rsrq_db=steps((-12, 40), (-17, 10), (-12, 10)),
    sinr_db=steps((6, 40), (-2, 10), (6, 10)), registered=steps((1, 60)))
# VinaPhone at p2: registered except m20-32; while not registered the modem reports no cell, RAT or signal.
row("p2", "cellular", {"carrier": VN, "modem": "vinaphone", **_cell, "cell": "2B0C40A"},
    rsrp_dbm=steps((-108, 20), (None, 40)), rsrq_db=steps((-15, 20), (None, 40)), sinr_db=steps((1, 20), (None, 40)),
    registered=steps((1, 20), (None, 40)))
row("p2", "cellular", {"carrier": VN, "modem": "vinaphone"},
    registered=steps((None, 20), (0, 13), (None, 27)))
row("p2", "cellular", {"carrier": VN, "modem": "vinaphone", **_cell, "cell": "2B0C40A"},
    rsrp_dbm=steps((None, 33), (-108, 27)), rsrq_db=steps((None, 33), (-15, 27)), sinr_db=steps((None, 33), (1, 27)),
    registered=steps((None, 33), (1, 27)))

# --------------------------------------------------------------------------------------- raw: service tests
_TRANSFERS = (5, 20, 35, 50)
for _plmn, _modem, _dns_ms, _http_ms, _rtt, _jitter, _down, _up, _left, _refused in (
        (VT, "viettel", 25.0, 120.0, 35.0, 3.0, 42.5, 11.0, 1_200_000_000, steps((0, 60))),
        (VN, "vinaphone", 30.0, 150.0, 48.0, 6.0, 18.0, 4.5, 300_000_000, steps((0, 50), (2, 10)))):
    _vn = _plmn == VN
    _dns_ok = steps((1, 40), (0 if _vn else 1, 5), (1, 15))
    row("p1", "qos", {"carrier": _plmn, "modem": _modem, "test": "dns", "target": "qos.scn.example"},
        success=_dns_ok, time_ms=[_dns_ms if ok else None for ok in _dns_ok])
    row("p1", "qos", {"carrier": _plmn, "modem": _modem, "test": "http", "target": "portal.scn.example"},
        success=steps((1, 60)), time_ms=steps((_http_ms, 60)))
    row("p1", "qos", {"carrier": _plmn, "modem": _modem, "test": "icmp", "target": "core"},
        success=steps((1, 60)), rtt_ms=steps((_rtt, 60)), jitter_ms=steps((_jitter, 60)),
        loss_pct=steps((0, 30), (2 if _vn else 0, 30)))
    row("p1", "qos", {"carrier": _plmn, "modem": _modem, "test": "download", "target": "qos.scn.example"},
        success=[1 if m in _TRANSFERS else None for m in range(MINUTES)],
        down_mbps=[_down if m in _TRANSFERS else None for m in range(MINUTES)])
    row("p1", "qos", {"carrier": _plmn, "modem": _modem, "test": "upload", "target": "qos.scn.example"},
        success=[1 if m in _TRANSFERS else None for m in range(MINUTES)],
        up_mbps=[_up if m in _TRANSFERS else None for m in range(MINUTES)])
    row("p1", "qos", {"carrier": _plmn, "modem": _modem, "test": "budget", "target": "sim"},
        budget_left_bytes=steps((_left, 60)), refused=_refused)

# --------------------------------------------------------------------------------------- raw: equipment
BTS_UP = steps((1, 10), (0, 5), (1, 45))
row("p1", "device", {"device": "bts-a1", "site": "bts-a"}, up=BTS_UP,
    uptime_s=[864000 + m * 60 if m < 10 else None if m < 15 else (m - 15) * 60 for m in range(MINUTES)],
    rebooted=steps((0, 10), (None, 5), (1, 1), (0, 44)))
row("p1", "device", {"device": "ups-a", "site": "bts-a"}, up=steps((1, 60)),
    uptime_s=[500000 + m * 60 for m in range(MINUTES)])
row("p2", "device", {"device": "sw-pop", "site": "pop-l"}, up=steps((1, 60)),
    uptime_s=[2000000 + m * 60 for m in range(MINUTES)])
row("p3", "device", {"device": "cam-l", "site": "pop-l"}, up=steps((1, 45), (None, 15)),
    uptime_s=[100 + m * 60 if m < 45 else None for m in range(MINUTES)])

# Interfaces (octet counters grow by a fixed amount a minute while the link is up).
VT1_UP = steps((1, 60))
VT2_UP = steps((1, 25), (0, 20), (1, 15))
VN1_UP = steps((1, 15), (0, 18), (1, 27))
MW_UP = steps((1, 20), (0, 13), (1, 27))


def _iface(probe: str, device: str, ifname: str, link: str | None, up: list[Value], in_inc: int, out_inc: int,
           base: int, in_errors: list[Value] | None = None, admin: int = 1) -> None:
    tags = {"device": device, "ifname": ifname, **({"link": link} if link else {})}
    row(probe, "interface", tags, oper_up=up, admin_up=[None if u is None else admin for u in up],
        in_octets=counter(base, in_inc, up), out_octets=counter(base // 2, out_inc, up),
        in_errors=in_errors or [None if u is None else 0 for u in up],
        out_errors=[None if u is None else 0 for u in up], speed_mbps=[None if u is None else 1000 for u in up])


_iface("p2", "sw-pop", "ge-0/0/1", "vt-fiber-1", VT1_UP, 750_000, 375_000, 10**9)
_iface("p2", "sw-pop", "ge-0/0/2", "vt-fiber-2", VT2_UP, 150_000, 75_000, 2 * 10**9,
       in_errors=[0 if m < 50 else 30 * (m - 49) for m in range(MINUTES)])
_iface("p2", "sw-pop", "ge-0/0/3", "vn-fiber-1", VN1_UP, 300_000, 150_000, 3 * 10**9)
_iface("p2", "sw-pop", "ge-0/0/24", None, steps((0, 60)), 0, 0, 0, admin=0)
# eth1 of bts-a1 (microwave vn-mw-1): not polled while the BTS is down (m10-14); the reboot resets its counters.
_mw = [None if 10 <= m < 15 else s for m, s in enumerate(MW_UP)]


def _mw_counter(base: int, inc: int) -> list[Value]:
    return [base + m * inc if m < 10 else None if m < 15 else (m - 15) * inc if m < 20 else 4 * inc if m < 33
            else 4 * inc + (m - 32) * inc for m in range(MINUTES)]


row("p1", "interface", {"device": "bts-a1", "ifname": "eth1", "link": "vn-mw-1"},
    oper_up=_mw, admin_up=[None if u is None else 1 for u in _mw],
    in_octets=_mw_counter(3 * 10**9, 450_000), out_octets=_mw_counter(10**9, 225_000),
    in_errors=[None if u is None else 0 for u in _mw], out_errors=[None if u is None else 0 for u in _mw],
    speed_mbps=[None if u is None else 400 for u in _mw])

row("p2", "optical", {"device": "sw-pop", "port": "ge-0/0/1"}, rx_dbm=steps((-7.5, 60)), tx_dbm=steps((-2.1, 60)))
row("p2", "optical", {"device": "sw-pop", "port": "ge-0/0/2"},
    rx_dbm=steps((-12.0, 25), (-40.0, 20), (-12.0, 5), (-21.5, 10)), tx_dbm=steps((-2.0, 60)))
row("p2", "optical", {"device": "sw-pop", "port": "ge-0/0/3"}, rx_dbm=steps((-9.0, 60)), tx_dbm=steps((-2.5, 60)))

BATTERY_PCT: list[Value] = [100 if m < 8 else 100 - 2 * (m - 7) if m < 14 else min(100, 88 + (m - 13))
                            for m in range(MINUTES)]
row("p1", "power", {"device": "ups-a", "site": "bts-a"}, on_battery=steps((0, 8), (1, 6), (0, 46)),
    battery_pct=BATTERY_PCT, battery_minutes=[None if p is None else round(p * 0.6, 1) for p in BATTERY_PCT])

# --------------------------------------------------------------------------------------- raw: reach
_PATH = ["primary"] * 25 + ["backup"] * 20 + ["primary"] * 5 + ["backup"] * 10
for _name, _rtt, _hops in (("primary", 4.0, 2), ("backup", 9.0, 3)):
    _on = [1 if p == _name else None for p in _PATH]
    row("p2", "reach", {"target": "10.20.0.1", "path": _name},
        rtt_ms=[_rtt if o else None for o in _on], loss_pct=[0 if o else None for o in _on],
        hops=[_hops if o else None for o in _on],
        path_changed=[None if not o else 1 if m in (25, 45, 50) else 0 for m, o in enumerate(_on)])

# --------------------------------------------------------------------------------------- raw: probes
row("p1", "probe", {}, up=steps((1, 60)), spool_depth=steps((0, 60)), spool_dropped=steps((0, 60)),
    rss_mb=steps((42.5, 60)), cpu_s=[round(100 + 0.6 * m, 1) for m in range(MINUTES)], seq_gaps=steps((0, 60)))
row("p2", "probe", {}, up=steps((1, 60)), spool_depth=steps((0, 30), (12, 6), (0, 23), (4, 1)),
    spool_dropped=steps((0, 60)), rss_mb=steps((47.0, 60)), cpu_s=[round(200 + 1.2 * m, 1) for m in range(MINUTES)],
    seq_gaps=steps((0, 30), (3, 30)))
row("p3", "probe", {}, up=steps((1, 45), (0, 1), (None, 14)), spool_depth=steps((0, 45), (None, 15)),
    spool_dropped=steps((0, 45), (None, 15)), rss_mb=steps((38.0, 45), (None, 15)),
    cpu_s=[round(50 + 0.3 * m, 1) if m < 45 else None for m in range(MINUTES)], seq_gaps=steps((0, 45), (None, 15)))
# The agent's version, as its own series (a tag on up/cpu_s would split them from the collector's).
for _probe, _version, _last in (("p1", "0.2.0", 60), ("p2", "0.2.0", 60), ("p3", "0.1.0", 45)):
    row(_probe, "probe", {"version": _version}, info=steps((1, _last), (None, MINUTES - _last)))

# --------------------------------------------------------------------------------------- derived: coverage
row("collector", "coverage", {"area": "gate-a", "carrier": VT}, level=steps((0, 60)), rsrp_dbm=steps((-85, 60)),
    probes=steps((1, 60)))
row("collector", "coverage", {"area": "gate-a", "carrier": VN}, level=steps((1, 30), (2, 30)),
    rsrp_dbm=steps((-95, 30), (-105, 30)), probes=steps((1, 60)))
row("collector", "coverage", {"area": "logistics", "carrier": VT}, level=steps((1, 40), (3, 10), (1, 10)),
    rsrp_dbm=steps((-98, 40), (-115, 10), (-98, 10)), probes=steps((1, 60)))
row("collector", "coverage", {"area": "logistics", "carrier": VN}, level=steps((2, 20), (4, 13), (2, 27)),
    rsrp_dbm=steps((-108, 20), (None, 13), (-108, 27)), probes=steps((1, 60)))

# Each probe's own level (``coverage_at_probe``): the areas have one probe with modems each, so the same story;
# no interference (p2's poor SINR at m40-49 comes with a hole, which is not interference).
# Stored under the probe (the batch header's probe becomes the ``probe`` tag), as the alert engine does.
for _probe, _area, _plmn, _levels in (("p1", "gate-a", VT, steps((0, 60))),
                                      ("p1", "gate-a", VN, steps((1, 30), (2, 30))),
                                      ("p2", "logistics", VT, steps((1, 40), (3, 10), (1, 10))),
                                      ("p2", "logistics", VN, steps((2, 20), (4, 13), (2, 27)))):
    row(_probe, "coverage_at_probe", {"area": _area, "carrier": _plmn}, level=_levels, interference=steps((0, 60)))

# --------------------------------------------------------------------------------------- derived: redundancy
row("collector", "redundancy", {"group": "vt-uplink", "carrier": VT}, state=steps((0, 25), (1, 20), (0, 15)),
    members_up=steps((2, 25), (1, 20), (2, 15)), members_needed=steps((2, 60)), members_total=steps((2, 60)))
row("collector", "redundancy", {"group": "vn-uplink", "carrier": VN},
    state=steps((0, 10), (1, 10), (2, 13), (0, 27)), members_up=steps((2, 10), (1, 10), (0, 13), (2, 27)),
    members_needed=steps((2, 60)), members_total=steps((2, 60)))
for _plmn in (VT, VN):
    row("collector", "redundancy", {"group": "core-paths", "carrier": _plmn},
        state=steps((0, 25), (1, 20), (0, 5), (1, 10)), members_up=steps((2, 25), (1, 20), (2, 5), (1, 10)),
        members_needed=steps((2, 60)), members_total=steps((2, 60)))


# --------------------------------------------------------------------------------------- derived: alerts
def alert(tags: dict[str, str], start: int, end: int | None, muted: int = 0, probe: str = "collector") -> None:
    """An alert firing from minute ``start`` to ``end`` (exclusive; resolved at ``end``), None: still firing."""
    firing: list[Value] = [None] * MINUTES
    for m in range(start, end if end is not None else MINUTES):
        firing[m] = 1
    if end is not None:
        firing[end] = 0
    row(probe, "alert", tags, firing=firing, muted=[None if f is None else (muted if f else 0) for f in firing])


alert({"alertname": "PowerOnBattery", "severity": "warning", "site": "bts-a", "device": "ups-a"}, 8, 14)
for _plmn in (VT, VN):
    alert({"alertname": "DeviceDown", "severity": "critical", "carrier": _plmn, "site": "bts-a", "device": "bts-a1"},
          10, 15)
alert({"alertname": "RedundancyLost", "severity": "warning", "carrier": VN, "group": "vn-uplink"}, 10, 20)
alert({"alertname": "LinkDown", "severity": "critical", "carrier": VN, "site": "pop-l", "device": "sw-pop",
       "link": "vn-fiber-1"}, 15, 33)
alert({"alertname": "LinkDown", "severity": "critical", "carrier": VN, "site": "bts-a", "device": "bts-a1",
       "link": "vn-mw-1"}, 20, 33)
alert({"alertname": "ServiceOutage", "severity": "critical", "carrier": VN, "group": "vn-uplink"}, 20, 33)
alert({"alertname": "NoService", "severity": "critical", "carrier": VN, "area": "logistics"}, 20, 33)
alert({"alertname": "LinkDown", "severity": "critical", "carrier": VT, "site": "pop-l", "device": "sw-pop",
       "link": "vt-fiber-2"}, 25, 45)
alert({"alertname": "RedundancyLost", "severity": "warning", "carrier": VT, "group": "vt-uplink"}, 25, 45)
for _plmn in (VT, VN):
    alert({"alertname": "RedundancyLost", "severity": "warning", "carrier": _plmn, "group": "core-paths"}, 25, 45)
    alert({"alertname": "RedundancyLost", "severity": "warning", "carrier": _plmn, "group": "core-paths"}, 50, None)
alert({"alertname": "WeakSignal", "severity": "warning", "carrier": VN, "area": "gate-a"}, 30, None)
alert({"alertname": "CoverageHole", "severity": "warning", "carrier": VT, "area": "logistics"}, 40, 50)
alert({"alertname": "ProbeDown", "severity": "critical", "area": "logistics"}, 47, None, probe="p3")
alert({"alertname": "DeviceDown", "severity": "critical", "site": "pop-l", "device": "cam-l"}, 47, None, muted=1)
alert({"alertname": "OpticalDegraded", "severity": "warning", "carrier": VT, "site": "pop-l", "device": "sw-pop",
       "link": "vt-fiber-2"}, 52, None)

PROBES = ("p1", "p2", "p3", "collector")


def _merge_same_series() -> None:
    """Fold rows with the same probe, measurement and tags into one series (p2's VinaPhone modem before and
    after its no-service spell; the two core-paths RedundancyLost episodes of each carrier)."""
    seen: dict[tuple[str, str, tuple[tuple[str, str], ...]], Row] = {}
    for r in list(ROWS):
        key = (r.probe, r.measurement, tuple(sorted(r.tags.items())))
        if key in seen:
            first = seen[key]
            for name, values in r.fields.items():
                first.fields[name] = [a if b is None else b for a, b in zip(first.fields[name], values, strict=True)]
            ROWS.remove(r)
        else:
            seen[key] = r


_merge_same_series()


def batches(t0_ns: int) -> Iterator[tuple[str, wire.Batch]]:
    """Yield (topic, batch): one batch per probe and minute, seq counting from 1, and one of derived data (seq 0)
    per probe and minute: what the alert engine stores under a probe (an alert or coverage about it)."""
    seqs = dict.fromkeys(PROBES, 0)
    for m in range(MINUTES):
        ts = t0_ns + m * STEP_S * 10**9
        for probe in PROBES:
            raw: list[wire.Sample] = []
            derived: list[wire.Sample] = []
            for r in ROWS:
                if r.probe != probe:
                    continue
                fields = {k: v[m] for k, v in r.fields.items() if v[m] is not None}
                if fields:
                    tags = {**r.tags, **r.tags_by_minute.get(m, {})}
                    sample = wire.Sample(r.measurement, tags, _typed(fields), ts)
                    mine = probe == "collector" or r.measurement in wire.COLLECTOR_MEASUREMENTS
                    (derived if mine else raw).append(sample)
            if raw:
                seqs[probe] += 1
                yield wire.topic(ZONE, probe, "data"), wire.Batch(ZONE, probe, seqs[probe], ts, tuple(raw))
            if derived:
                yield wire.topic(ZONE, probe, "data"), wire.Batch(ZONE, probe, 0, ts, tuple(derived))


def _typed(fields: dict[str, float]) -> dict[str, wire.FieldValue]:
    """Integral values as ints (counters, states), others as floats, as the sources send them."""
    return {k: int(v) if float(v).is_integer() and k not in ("rsrp_dbm", "rsrq_db", "sinr_db", "rx_dbm", "tx_dbm",
                                                             "rss_mb", "cpu_s", "rtt_ms", "battery_minutes")
            else float(v) for k, v in fields.items()}


def point_count() -> int:
    """Return how many values (one per field of each sample) ``batches`` publishes in all."""
    return sum(len(s.fields) for _, b in batches(0) for s in b.samples)


def start_minute_ns(now_s: float) -> int:
    """Return t0 for a scenario that ends half an hour before ``now_s``, on a whole minute."""
    return int((now_s // 60) * 60 - 90 * 60) * 10**9


def fill(broker_port: int, workdir: Path, storages: dict[str, str], t0_ns: int, timeout: float = 60,
         inventory: Inventory | None = None) -> None:
    """Publish the scenario through the broker to one in-process collector per storage section (name ->
    YAML), each with its own MQTT session, and return once every collector has written all of it. With
    ``inventory`` the collectors run with it (its scope checks, its owner labels)."""
    collectors: list[Collector] = []
    publisher: mqtt.Client | None = None
    try:
        for name, storage_yaml in storages.items():
            intake = workdir / f"intake-{name}.db"
            cfg = load(CollectorConfig, f"mqtt: {{port: {broker_port}, client_id: scn-{name}}}\n{storage_yaml}\n"
                                        f"queue: {{path: '{intake}'}}\nhttp: {{enabled: false}}\n")
            col = Collector(cfg, inventory)
            collectors.append(col)
            col.start()
            assert col.ingest is not None
            services.wait_for(col.ingest.subscribed.is_set, 10, f"collector {name} to subscribe")
        publisher = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="scn-publisher",
                                protocol=mqtt.MQTTv5)
        publisher.connect("127.0.0.1", broker_port)
        publisher.loop_start()
        sent = 0
        for topic, batch in batches(t0_ns):
            if batch.seq == 0:   # derived: the collector's own
                for col in collectors:
                    assert col.ingest is not None
                    col.ingest.inject([batch])
                continue
            publisher.publish(topic, wire.encode(batch), qos=1).wait_for_publish(10)
            sent += 1

        def written(col: Collector) -> bool:
            reg = col.metrics.registry
            rejected = sum(s.value for m in reg.collect() if m.name == "zonewatch_ingest_rejected_messages"
                           for s in m.samples if s.name.endswith("_total"))
            assert rejected == 0, "the collector rejected scenario messages: see its log"
            refused = sum(s.value for m in reg.collect() if m.name == "zonewatch_probe_refused_samples"
                          for s in m.samples if s.name.endswith("_total"))
            assert refused == 0, "the collector refused scenario rows: see its log"
            return (reg.get_sample_value("zonewatch_ingest_messages_total") == sent
                    and reg.get_sample_value("zonewatch_ingest_queue_depth") == 0)

        for name, col in zip(storages, collectors, strict=True):
            services.wait_for(lambda c=col: written(c), timeout, f"collector {name} to write all {sent} batches")
    finally:
        if publisher is not None:
            publisher.disconnect()
            publisher.loop_stop()
        for col in collectors:
            col.stop()


def vm_api(url: str, endpoint: str, **params: object) -> Any:
    """GET ``/api/v1/<endpoint>`` of VictoriaMetrics; return its ``data``, or raise with its error."""
    with urllib.request.urlopen(f"{url}/api/v1/{endpoint}?{urlencode(params, doseq=True)}", timeout=10) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"{endpoint} {params} failed: {body}")
    return body["data"]


def wait_for_vm(url: str, t0_ns: int, timeout: float = 30) -> None:
    """Wait until VictoriaMetrics answers queries with every point of the scenario."""
    end_s = t0_ns // 10**9 + MINUTES * STEP_S
    expr = f'sum(count_over_time({{zone="{ZONE}"}}[{MINUTES + 1}m]))'

    def complete() -> bool:
        result = vm_api(url, "query", query=expr, time=end_s)["result"]
        return bool(result) and int(float(result[0]["value"][1])) == point_count()

    services.wait_for(complete, timeout, f"VictoriaMetrics to hold all {point_count()} scenario points")


# ======================================================================================= expected answers
# Worked out by hand from the story above. Labels are the label set a query returns; values are compared to
# 1e-6. ``At(m)`` is the time of minute m in Unix milliseconds (what Grafana's time units take).


@dataclass(frozen=True)
class At:
    """The time of minute ``minute`` of the scenario, in Unix milliseconds."""

    minute: float


Labels = frozenset[tuple[str, str]]
Expected = float | At


def L(**labels: str) -> Labels:  # noqa: N802 - reads like a label set
    """A label set; a keyword ending in an underscore (``group_``) stands for the label without it."""
    return frozenset((k.rstrip("_"), v) for k, v in labels.items())


@dataclass(frozen=True)
class Instant:
    """An instant query at T: exactly these series, with these values."""

    series: dict[Labels, Expected]


@dataclass(frozen=True)
class Range:
    """A range query over the hour (step 1m): exactly these series; at each listed minute this value (None:
    no point at that minute)."""

    series: dict[Labels, dict[int, Expected | None]]


A_PB = L(alertname="ProbeDown", severity="critical", area="logistics", probe="p3")
A_CAM = L(alertname="DeviceDown", severity="critical", site="pop-l", device="cam-l")
A_OPT = L(alertname="OpticalDegraded", severity="warning", carrier=VT, site="pop-l", device="sw-pop",
          link="vt-fiber-2")
A_WEAK = L(alertname="WeakSignal", severity="warning", carrier=VN, area="gate-a")
A_CORE_VT = L(alertname="RedundancyLost", severity="warning", carrier=VT, group_="core-paths")
A_CORE_VN = L(alertname="RedundancyLost", severity="warning", carrier=VN, group_="core-paths")
FIRING_AT_T = [A_PB, A_CAM, A_OPT, A_WEAK, A_CORE_VT, A_CORE_VN]

# Every alert series of the hour: labels, first sample minute, last sample minute, last value.
ALERT_HISTORY: list[tuple[Labels, int, int, int]] = [
    (L(alertname="PowerOnBattery", severity="warning", site="bts-a", device="ups-a"), 8, 14, 0),
    (L(alertname="DeviceDown", severity="critical", carrier=VT, site="bts-a", device="bts-a1"), 10, 15, 0),
    (L(alertname="DeviceDown", severity="critical", carrier=VN, site="bts-a", device="bts-a1"), 10, 15, 0),
    (L(alertname="RedundancyLost", severity="warning", carrier=VN, group_="vn-uplink"), 10, 20, 0),
    (L(alertname="LinkDown", severity="critical", carrier=VN, site="pop-l", device="sw-pop", link="vn-fiber-1"),
     15, 33, 0),
    (L(alertname="LinkDown", severity="critical", carrier=VN, site="bts-a", device="bts-a1", link="vn-mw-1"),
     20, 33, 0),
    (L(alertname="ServiceOutage", severity="critical", carrier=VN, group_="vn-uplink"), 20, 33, 0),
    (L(alertname="NoService", severity="critical", carrier=VN, area="logistics"), 20, 33, 0),
    (L(alertname="LinkDown", severity="critical", carrier=VT, site="pop-l", device="sw-pop", link="vt-fiber-2"),
     25, 45, 0),
    (L(alertname="RedundancyLost", severity="warning", carrier=VT, group_="vt-uplink"), 25, 45, 0),
    (A_CORE_VT, 25, 59, 1),
    (A_CORE_VN, 25, 59, 1),
    (A_WEAK, 30, 59, 1),
    (L(alertname="CoverageHole", severity="warning", carrier=VT, area="logistics"), 40, 50, 0),
    (A_PB, 47, 59, 1),
    (A_CAM, 47, 59, 1),
    (A_OPT, 52, 59, 1),
]

GA, LG = "gate-a", "logistics"
# What each dashboard variable offers (every other variable at "All").
VARIABLES = {"zone": [ZONE], "area": [GA, LG], "carrier": [VN, VT], "site": ["bts-a", "pop-l"],
             "device": ["bts-a1", "cam-l", "sw-pop", "ups-a"]}
PANELS: dict[tuple[str, str, str], Instant | Range] = {
    # ------------------------------------------------------------------ zone overview
    ("zw-zone-overview", "Coverage: carrier × area", "A"): Instant({
        L(area=GA, carrier=VT): 0, L(area=GA, carrier=VN): 2, L(area=LG, carrier=VT): 1, L(area=LG, carrier=VN): 2}),
    ("zw-zone-overview", "Coverage RSRP: carrier × area (median of the area's probes)", "A"): Instant({
        L(area=GA, carrier=VT): -85, L(area=GA, carrier=VN): -105, L(area=LG, carrier=VT): -98,
        L(area=LG, carrier=VN): -108}),
    ("zw-zone-overview", "Firing alerts", "A"): Instant({L(): 6}),
    ("zw-zone-overview", "Firing alerts", "B"): Instant({L(): 1}),
    ("zw-zone-overview", "Probes up", "A"): Instant({L(): 2}),
    ("zw-zone-overview", "Probes up", "B"): Instant({L(): 3}),
    ("zw-zone-overview", "Redundancy groups degraded", "A"): Instant({L(): 1}),
    ("zw-zone-overview", "Devices down", "A"): Instant({L(): 0}),
    ("zw-zone-overview", "Firing alerts by severity", "A"): Instant({L(severity="critical"): 2,
                                                                    L(severity="warning"): 4}),
    ("zw-zone-overview", "Alerts firing now", "A"): Instant(dict.fromkeys(FIRING_AT_T, 1)),
    ("zw-zone-overview", "Alerts firing now", "B"): Instant({**dict.fromkeys(FIRING_AT_T, 0), A_CAM: 1}),
    ("zw-zone-overview", "Redundancy groups", "A"): Instant({
        L(group_="vt-uplink", carrier=VT): 0, L(group_="vn-uplink", carrier=VN): 0,
        L(group_="core-paths", carrier=VT): 1, L(group_="core-paths", carrier=VN): 1}),
    ("zw-zone-overview", "Redundancy groups", "B"): Instant({
        L(group_="vt-uplink", carrier=VT): 2, L(group_="vn-uplink", carrier=VN): 2,
        L(group_="core-paths", carrier=VT): 1, L(group_="core-paths", carrier=VN): 1}),
    ("zw-zone-overview", "Redundancy groups", "C"): Instant({
        L(group_="vt-uplink", carrier=VT): 2, L(group_="vn-uplink", carrier=VN): 2,
        L(group_="core-paths", carrier=VT): 2, L(group_="core-paths", carrier=VN): 2}),
    ("zw-zone-overview", "Coverage level over time", "A"): Range({
        L(area=GA, carrier=VT): {5: 0, 35: 0},
        L(area=GA, carrier=VN): {5: 1, 29: 1, 30: 2, 59: 2},
        L(area=LG, carrier=VT): {39: 1, 40: 3, 49: 3, 50: 1},
        L(area=LG, carrier=VN): {19: 2, 20: 4, 32: 4, 33: 2}}),
    ("zw-zone-overview", "Coverage at each probe: carrier × probe", "A"): Instant({
        L(probe="p1", carrier=VT): 0, L(probe="p1", carrier=VN): 2, L(probe="p2", carrier=VT): 1,
        L(probe="p2", carrier=VN): 2}),
    ("zw-zone-overview", "Interference at each probe: carrier × probe", "A"): Instant({
        L(probe="p1", carrier=VT): 0, L(probe="p1", carrier=VN): 0, L(probe="p2", carrier=VT): 0,
        L(probe="p2", carrier=VN): 0}),
    # ------------------------------------------------------------------ carrier
    ("zw-carrier", "RSRP by area (median of the area's probes)", "A"): Range({
        L(area=GA, carrier=VT): {0: -85, 59: -85},
        L(area=GA, carrier=VN): {29: -95, 30: -105},
        L(area=LG, carrier=VT): {39: -98, 40: -115, 49: -115, 50: -98},
        L(area=LG, carrier=VN): {19: -108, 20: None, 32: None, 33: -108}}),
    ("zw-carrier", "RSRQ by probe", "A"): Range({
        L(probe="p1", carrier=VT): {10: -9, 50: -9},
        L(probe="p1", carrier=VN): {29: -11, 30: -14},
        L(probe="p2", carrier=VT): {39: -12, 45: -17, 50: -12},
        L(probe="p2", carrier=VN): {19: -15, 25: None, 33: -15}}),
    ("zw-carrier", "SINR by probe", "A"): Range({
        L(probe="p1", carrier=VT): {10: 18, 50: 18},
        L(probe="p1", carrier=VN): {29: 9, 30: 3},
        L(probe="p2", carrier=VT): {39: 6, 45: -2, 50: 6},
        L(probe="p2", carrier=VN): {19: 1, 25: None, 33: 1}}),
    ("zw-carrier", "Registered", "A"): Range({
        L(probe="p1", carrier=VT): {0: 1, 30: 1, 59: 1},
        L(probe="p1", carrier=VN): {0: 1, 59: 1},
        L(probe="p2", carrier=VT): {45: 1},
        L(probe="p2", carrier=VN): {19: 1, 20: 0, 32: 0, 33: 1}}),
    ("zw-carrier", "Technology in use", "A"): Instant({
        L(probe="p1", carrier=VT, rat="nr5g-nsa", band="n78"): 1, L(probe="p1", carrier=VN, rat="lte", band="B3"): 1,
        L(probe="p2", carrier=VT, rat="lte", band="B3"): 1, L(probe="p2", carrier=VN, rat="lte", band="B3"): 1}),
    ("zw-carrier", "Cells seen", "A"): Instant({L(carrier=VT): 3, L(carrier=VN): 1}),
    ("zw-carrier", "Serving cells", "A"): Instant({
        L(probe="p1", carrier=VT, cell="5F1EA16"): 1, L(probe="p1", carrier=VN, cell="2B0C40A"): 1,
        L(probe="p2", carrier=VT, cell="5F1EA20"): 1, L(probe="p2", carrier=VN, cell="2B0C40A"): 1}),
    ("zw-carrier", "No-service minutes by area", "A"): Instant({
        L(area=GA, carrier=VT): 0, L(area=GA, carrier=VN): 0, L(area=LG, carrier=VT): 0, L(area=LG, carrier=VN): 13}),
    ("zw-carrier", "Service access success (%)", "A"): Range({
        L(probe="p1", carrier=VT, test="dns"): {10: 100, 42: 100},
        L(probe="p1", carrier=VT, test="http"): {10: 100},
        L(probe="p1", carrier=VN, test="dns"): {39: 100, 40: 0, 44: 0, 45: 100},
        L(probe="p1", carrier=VN, test="http"): {42: 100}}),
    ("zw-carrier", "DNS and access time (ms)", "A"): Range({   # a failed lookup has no time
        L(probe="p1", carrier=VT, test="dns"): {10: 25, 42: 25},
        L(probe="p1", carrier=VT, test="http"): {10: 120},
        L(probe="p1", carrier=VN, test="dns"): {39: 30, 40: None, 44: None, 45: 30},
        L(probe="p1", carrier=VN, test="http"): {42: 150}}),
    ("zw-carrier", "Round trip and jitter (ms)", "A"): Range({
        L(probe="p1", carrier=VT, target="core"): {10: 35}, L(probe="p1", carrier=VN, target="core"): {10: 48}}),
    ("zw-carrier", "Round trip and jitter (ms)", "B"): Range({
        L(probe="p1", carrier=VT, target="core"): {10: 3}, L(probe="p1", carrier=VN, target="core"): {10: 6}}),
    ("zw-carrier", "Packet loss (%)", "A"): Range({
        L(probe="p1", carrier=VT, target="core"): {29: 0, 30: 0},
        L(probe="p1", carrier=VN, target="core"): {29: 0, 30: 2}}),
    ("zw-carrier", "Download and upload speed (Mbit/s)", "A"): Range({   # one transfer each at m5, 20, 35, 50
        L(probe="p1", carrier=VT): {5: 42.5, 6: None, 50: 42.5}, L(probe="p1", carrier=VN): {5: 18, 6: None, 20: 18}}),
    ("zw-carrier", "Download and upload speed (Mbit/s)", "B"): Range({
        L(probe="p1", carrier=VT): {35: 11, 36: None}, L(probe="p1", carrier=VN): {35: 4.5, 49: None, 50: 4.5}}),
    ("zw-carrier", "SIM data budget", "A"): Instant({L(probe="p1", carrier=VT): 1_200_000_000,
                                                     L(probe="p1", carrier=VN): 300_000_000}),
    ("zw-carrier", "SIM data budget", "B"): Instant({L(probe="p1", carrier=VT): 0, L(probe="p1", carrier=VN): 2}),
    # ------------------------------------------------------------------ equipment
    ("zw-equipment", "Devices", "A"): Instant({
        L(site="bts-a", device="bts-a1"): 1, L(site="bts-a", device="ups-a"): 1, L(site="pop-l", device="sw-pop"): 1,
        L(site="pop-l", device="cam-l"): 1}),
    ("zw-equipment", "Devices", "B"): Instant({  # seconds since the last poll: m59 is 30 s before T, m44 is 930 s
        L(site="bts-a", device="bts-a1"): 30, L(site="bts-a", device="ups-a"): 30, L(site="pop-l", device="sw-pop"): 30,
        L(site="pop-l", device="cam-l"): 930}),
    ("zw-equipment", "Devices", "C"): Instant({
        L(site="bts-a", device="bts-a1"): 2640, L(site="bts-a", device="ups-a"): 503540,
        L(site="pop-l", device="sw-pop"): 2003540, L(site="pop-l", device="cam-l"): 2740}),
    ("zw-equipment", "Device up", "A"): Range({
        L(site="bts-a", device="bts-a1"): {9: 1, 10: 0, 14: 0, 15: 1},
        L(site="bts-a", device="ups-a"): {12: 1},
        L(site="pop-l", device="sw-pop"): {12: 1},
        L(site="pop-l", device="cam-l"): {44: 1, 45: None}}),
    ("zw-equipment", "Interfaces", "A"): Instant({
        L(device="sw-pop", ifname="ge-0/0/1", link="vt-fiber-1"): 1,
        L(device="sw-pop", ifname="ge-0/0/2", link="vt-fiber-2"): 1,
        L(device="sw-pop", ifname="ge-0/0/3", link="vn-fiber-1"): 1,
        L(device="sw-pop", ifname="ge-0/0/24"): 0,
        L(device="bts-a1", ifname="eth1", link="vn-mw-1"): 1}),
    ("zw-equipment", "Interfaces", "B"): Instant({
        L(device="sw-pop", ifname="ge-0/0/1", link="vt-fiber-1"): 1,
        L(device="sw-pop", ifname="ge-0/0/2", link="vt-fiber-2"): 1,
        L(device="sw-pop", ifname="ge-0/0/3", link="vn-fiber-1"): 1,
        L(device="sw-pop", ifname="ge-0/0/24"): 0,
        L(device="bts-a1", ifname="eth1", link="vn-mw-1"): 1}),
    ("zw-equipment", "Interfaces", "C"): Instant({
        L(device="sw-pop", ifname="ge-0/0/1", link="vt-fiber-1"): 1000,
        L(device="sw-pop", ifname="ge-0/0/2", link="vt-fiber-2"): 1000,
        L(device="sw-pop", ifname="ge-0/0/3", link="vn-fiber-1"): 1000,
        L(device="sw-pop", ifname="ge-0/0/24"): 1000,
        L(device="bts-a1", ifname="eth1", link="vn-mw-1"): 400}),
    ("zw-equipment", "Interface oper status", "A"): Range({
        L(device="sw-pop", ifname="ge-0/0/1", link="vt-fiber-1"): {30: 1},
        L(device="sw-pop", ifname="ge-0/0/2", link="vt-fiber-2"): {24: 1, 25: 0, 44: 0, 45: 1},
        L(device="sw-pop", ifname="ge-0/0/3", link="vn-fiber-1"): {14: 1, 15: 0, 32: 0, 33: 1},
        L(device="sw-pop", ifname="ge-0/0/24"): {30: 0},
        L(device="bts-a1", ifname="eth1", link="vn-mw-1"): {9: 1, 12: None, 15: 1, 20: 0, 33: 1}}),
    # 750,000 octets a minute = 12,500 B/s = 100,000 bit/s; a link that is down moves nothing.
    ("zw-equipment", "Traffic in (bit/s)", "A"): Range({
        L(device="sw-pop", ifname="ge-0/0/1"): {30: 100_000, 59: 100_000},
        L(device="sw-pop", ifname="ge-0/0/2"): {20: 20_000, 35: 0, 59: 20_000},
        L(device="sw-pop", ifname="ge-0/0/3"): {25: 0, 59: 40_000},
        L(device="sw-pop", ifname="ge-0/0/24"): {30: 0},
        L(device="bts-a1", ifname="eth1"): {8: 60_000, 28: 0, 59: 60_000}}),
    ("zw-equipment", "Traffic out (bit/s)", "A"): Range({
        L(device="sw-pop", ifname="ge-0/0/1"): {30: 50_000, 59: 50_000},
        L(device="sw-pop", ifname="ge-0/0/2"): {20: 10_000, 35: 0, 59: 10_000},
        L(device="sw-pop", ifname="ge-0/0/3"): {25: 0, 59: 20_000},
        L(device="sw-pop", ifname="ge-0/0/24"): {30: 0},
        L(device="bts-a1", ifname="eth1"): {8: 30_000, 28: 0, 59: 30_000}}),
    # 30 input errors a minute on ge-0/0/2 from m50: 0.5 errors/s.
    ("zw-equipment", "Interface errors (/s)", "A"): Range({
        L(device="sw-pop", ifname="ge-0/0/1"): {59: 0},
        L(device="sw-pop", ifname="ge-0/0/2"): {40: 0, 59: 0.5},
        L(device="sw-pop", ifname="ge-0/0/3"): {59: 0},
        L(device="sw-pop", ifname="ge-0/0/24"): {59: 0},
        L(device="bts-a1", ifname="eth1"): {59: 0}}),
    ("zw-equipment", "Interface errors (/s)", "B"): Range({
        L(device="sw-pop", ifname="ge-0/0/1"): {59: 0},
        L(device="sw-pop", ifname="ge-0/0/2"): {59: 0},
        L(device="sw-pop", ifname="ge-0/0/3"): {59: 0},
        L(device="sw-pop", ifname="ge-0/0/24"): {59: 0},
        L(device="bts-a1", ifname="eth1"): {59: 0}}),
    ("zw-equipment", "Optical Rx power (dBm)", "A"): Range({
        L(device="sw-pop", port="ge-0/0/1"): {10: -7.5, 55: -7.5},
        L(device="sw-pop", port="ge-0/0/2"): {24: -12, 25: -40, 49: -12, 50: -21.5},
        L(device="sw-pop", port="ge-0/0/3"): {30: -9}}),
    ("zw-equipment", "Optical Tx power (dBm)", "A"): Range({
        L(device="sw-pop", port="ge-0/0/1"): {30: -2.1}, L(device="sw-pop", port="ge-0/0/2"): {30: -2.0},
        L(device="sw-pop", port="ge-0/0/3"): {30: -2.5}}),
    ("zw-equipment", "Optical power now (dBm)", "A"): Instant({
        L(device="sw-pop", port="ge-0/0/1"): -7.5, L(device="sw-pop", port="ge-0/0/2"): -21.5,
        L(device="sw-pop", port="ge-0/0/3"): -9.0}),
    ("zw-equipment", "Optical power now (dBm)", "B"): Instant({
        L(device="sw-pop", port="ge-0/0/1"): -2.1, L(device="sw-pop", port="ge-0/0/2"): -2.0,
        L(device="sw-pop", port="ge-0/0/3"): -2.5}),
    ("zw-equipment", "UPS", "A"): Instant({L(site="bts-a", device="ups-a"): 0}),
    ("zw-equipment", "UPS", "B"): Instant({L(site="bts-a", device="ups-a"): 100}),
    ("zw-equipment", "UPS", "C"): Instant({L(site="bts-a", device="ups-a"): 60}),
    ("zw-equipment", "UPS battery (%) and on battery", "A"): Range({
        L(site="bts-a", device="ups-a"): {7: 100, 8: 98, 13: 88, 14: 89, 25: 100, 40: 100}}),
    ("zw-equipment", "UPS battery (%) and on battery", "B"): Range({
        L(site="bts-a", device="ups-a"): {7: 0, 8: 1, 13: 1, 14: 0}}),
    # ------------------------------------------------------------------ redundancy
    ("zw-redundancy", "Groups now", "A"): Instant({
        L(group_="vt-uplink", carrier=VT): 0, L(group_="vn-uplink", carrier=VN): 0,
        L(group_="core-paths", carrier=VT): 1, L(group_="core-paths", carrier=VN): 1}),
    ("zw-redundancy", "Groups now", "B"): Instant({
        L(group_="vt-uplink", carrier=VT): 2, L(group_="vn-uplink", carrier=VN): 2,
        L(group_="core-paths", carrier=VT): 1, L(group_="core-paths", carrier=VN): 1}),
    ("zw-redundancy", "Groups now", "C"): Instant({
        L(group_="vt-uplink", carrier=VT): 2, L(group_="vn-uplink", carrier=VN): 2,
        L(group_="core-paths", carrier=VT): 2, L(group_="core-paths", carrier=VN): 2}),
    ("zw-redundancy", "Groups now", "D"): Instant({
        L(group_="vt-uplink", carrier=VT): 2, L(group_="vn-uplink", carrier=VN): 2,
        L(group_="core-paths", carrier=VT): 2, L(group_="core-paths", carrier=VN): 2}),
    ("zw-redundancy", "Members up against needed", "A"): Range({
        L(group_="vt-uplink"): {24: 2, 25: 1, 45: 2},
        L(group_="vn-uplink"): {9: 2, 10: 1, 20: 0, 33: 2},
        L(group_="core-paths"): {30: 1, 47: 2, 55: 1}}),
    ("zw-redundancy", "Members up against needed", "B"): Range({
        L(group_="vt-uplink"): {30: 2}, L(group_="vn-uplink"): {30: 2}, L(group_="core-paths"): {30: 2}}),
    ("zw-redundancy", "State over time", "A"): Range({
        L(group_="vt-uplink", carrier=VT): {24: 0, 25: 1, 44: 1, 45: 0},
        L(group_="vn-uplink", carrier=VN): {9: 0, 10: 1, 20: 2, 32: 2, 33: 0},
        L(group_="core-paths", carrier=VT): {25: 1, 45: 0, 50: 1},
        L(group_="core-paths", carrier=VN): {25: 1, 45: 0, 50: 1}}),
    # Minutes of the hour: degraded or worse (state >= 1), and in outage (state 2).
    ("zw-redundancy", "Time without redundancy in range (minutes)", "A"): Instant({
        L(group_="vt-uplink", carrier=VT): 20, L(group_="vn-uplink", carrier=VN): 23,
        L(group_="core-paths", carrier=VT): 30, L(group_="core-paths", carrier=VN): 30}),
    ("zw-redundancy", "Time without redundancy in range (minutes)", "B"): Instant({
        L(group_="vt-uplink", carrier=VT): 0, L(group_="vn-uplink", carrier=VN): 13,
        L(group_="core-paths", carrier=VT): 0, L(group_="core-paths", carrier=VN): 0}),
    ("zw-redundancy", "Path changes in range", "A"): Instant({L(probe="p2", target="10.20.0.1"): 3}),
    ("zw-redundancy", "Path in use", "A"): Range({
        L(probe="p2", target="10.20.0.1", path="primary"): {24: 4, 25: None, 45: 4, 50: None},
        L(probe="p2", target="10.20.0.1", path="backup"): {24: None, 25: 9, 44: 9, 45: None, 59: 9}}),
    # ------------------------------------------------------------------ probe fleet
    ("zw-probes", "Probes", "A"): Instant({L(probe="p1"): 1, L(probe="p2"): 1, L(probe="p3"): 0}),
    ("zw-probes", "Probes", "B"): Instant({L(probe="p1"): 30, L(probe="p2"): 30, L(probe="p3"): 930}),
    ("zw-probes", "Probes", "C"): Instant({L(probe="p1", version="0.2.0"): 1, L(probe="p2", version="0.2.0"): 1,
                                           L(probe="p3", version="0.1.0"): 1}),
    ("zw-probes", "Probes", "D"): Instant({L(probe="p1"): 0, L(probe="p2"): 3, L(probe="p3"): 0}),
    ("zw-probes", "Probes", "E"): Instant({L(probe="p1"): 0, L(probe="p2"): 4}),
    ("zw-probes", "Spool depth", "A"): Range({
        L(probe="p1"): {30: 0}, L(probe="p2"): {29: 0, 30: 12, 35: 12, 36: 0, 59: 4},
        L(probe="p3"): {44: 0, 46: None}}),
    ("zw-probes", "Sequence gaps", "A"): Range({
        L(probe="p1"): {59: 0}, L(probe="p2"): {29: 0, 30: 3, 59: 3}, L(probe="p3"): {44: 0}}),
    # cpu_s grows 0.6 s a minute on p1 (1 %), 1.2 s on p2 (2 %), 0.3 s on p3 (0.5 %, until it stops)
    ("zw-probes", "CPU (%)", "A"): Range({L(probe="p1"): {30: 1, 59: 1}, L(probe="p2"): {30: 2, 59: 2},
                                          L(probe="p3"): {30: 0.5, 59: None}}),
    ("zw-probes", "Memory RSS (MB)", "A"): Range({L(probe="p1"): {30: 42.5}, L(probe="p2"): {30: 47},
                                                  L(probe="p3"): {30: 38, 50: None}}),
    ("zw-probes", "Probe up", "A"): Range({L(probe="p1"): {30: 1}, L(probe="p2"): {30: 1},
                                           L(probe="p3"): {44: 1, 45: 0, 46: None}}),
    # ------------------------------------------------------------------ alerts
    ("zw-alerts", "Firing now", "A"): Instant(dict.fromkeys(FIRING_AT_T, 1)),
    ("zw-alerts", "Firing now", "B"): Instant({**dict.fromkeys(FIRING_AT_T, 0), A_CAM: 1}),
    # Firing since: the last change of the series (core-paths fired again at m50).
    ("zw-alerts", "Firing now", "C"): Instant({
        A_PB: At(47), A_CAM: At(47), A_OPT: At(52), A_WEAK: At(30), A_CORE_VT: At(50), A_CORE_VN: At(50)}),
    ("zw-alerts", "Firing by severity", "A"): Instant({L(severity="critical"): 2, L(severity="warning"): 4}),
    ("zw-alerts", "Firing by carrier", "A"): Instant({L(carrier=VT): 2, L(carrier=VN): 2, L(): 2}),
    ("zw-alerts", "Alert history", "A"): Instant({labels: At(first) for labels, first, _, _ in ALERT_HISTORY}),
    ("zw-alerts", "Alert history", "B"): Instant({labels: At(last) for labels, _, last, _ in ALERT_HISTORY}),
    ("zw-alerts", "Alert history", "C"): Instant({labels: value for labels, _, _, value in ALERT_HISTORY}),
    ("zw-alerts", "Alerts over time", "A"): Range({
        labels: {m: (1 if first <= m < last or (m == last and value == 1) else 0 if m == last else None)
                 for m in (first - 1, first, last, min(last + 1, 59)) if m >= 0}
        for labels, first, last, value in ALERT_HISTORY}),
}

# ------------------------------------------------------------------ the report for [t0, t0 + 60m)
# Coverage: (carrier, area) -> minutes measured, % at good (>= -90), % at fair or better (>= -100), % above the
# hole threshold (>= -110), hole minutes, no-service minutes, median RSRP of the area over the period.
REPORT_COVERAGE: dict[tuple[str, str], tuple[float, float, float, float, float, float, float]] = {
    (VT, GA): (60, 100.0, 100.0, 100.0, 0, 0, -85),
    (VN, GA): (60, 0.0, 50.0, 100.0, 0, 0, -100),  # 30 min at -95 (fair), 30 at -105 (weak)
    (VT, LG): (60, 0.0, 50 / 60 * 100, 50 / 60 * 100, 10, 0, -98),  # 10 min at -115
    (VN, LG): (60, 0.0, 0.0, 47 / 60 * 100, 0, 13, -108),  # weak, but 13 min without service
}
# Availability: (kind, id) -> carriers, minutes measured, minutes up, %.
REPORT_AVAILABILITY: dict[tuple[str, str], tuple[str, float, float, float]] = {
    ("site", "bts-a"): (f"{VT} {VN}", 60, 55, 55 / 60 * 100),  # bts-a1 silent m10-14
    ("site", "pop-l"): (f"{VT} {VN}", 60, 60, 100.0),  # cam-l stops reporting at m45: unknown, not down
    ("link", "vt-fiber-1"): (VT, 60, 60, 100.0),
    ("link", "vt-fiber-2"): (VT, 60, 40, 40 / 60 * 100),
    ("link", "vn-fiber-1"): (VN, 60, 42, 70.0),
    ("link", "vn-mw-1"): (VN, 60, 42, 70.0),  # down m20-32, and m10-14 while its device was down
}
# Redundancy: (group, carrier) -> minutes degraded (RedundancyLost), minutes in outage, minutes without
# redundancy (both).
REPORT_REDUNDANCY: dict[tuple[str, str], tuple[float, float, float]] = {
    ("core-paths", VN): (30, 0, 30),
    ("core-paths", VT): (30, 0, 30),
    ("vn-uplink", VN): (10, 13, 23),
    ("vt-uplink", VT): (20, 0, 20),
}
# Outages, by start, then kind (site, link, service outage, no service), then name: kind, what, carriers,
# start minute, end minute, minutes.
REPORT_OUTAGES: list[tuple[str, str, str, int, int, int]] = [
    ("site_down", "bts-a", f"{VT} {VN}", 10, 15, 5),
    ("link_down", "vn-mw-1", VN, 10, 15, 5),
    ("link_down", "vn-fiber-1", VN, 15, 33, 18),
    ("link_down", "vn-mw-1", VN, 20, 33, 13),
    ("service_outage", "vn-uplink", VN, 20, 33, 13),
    ("no_service", "logistics", VN, 20, 33, 13),
    ("link_down", "vt-fiber-2", VT, 25, 45, 20),
]


def report_rows(rows: Iterable[dict[str, str]], *keys: str) -> dict[tuple[str, ...], dict[str, str]]:
    """Index CSV rows by the values of ``keys``."""
    return {tuple(r[k] for k in keys): r for r in rows}
