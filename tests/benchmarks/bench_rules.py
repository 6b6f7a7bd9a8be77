"""Rule evaluation time for a large zone, against baselines measured in the same run.

    .venv/bin/python tests/benchmarks/bench_rules.py [--devices 500] [--probes 50] [--groups 100] [--runs 30]

What it does (pure Python, no services):

1. Builds a zone inventory: ``devices`` devices on ``devices / 5`` sites (a switch and four BTS or UPS behind
   it per site), two inventory links per switch, ``groups`` redundancy groups of two links (and a traced path
   in every fourth), ``probes`` probes in ten areas with three modems each (three carriers).
2. Feeds ``Facts`` ten minutes of what such a zone sends: every device polled every minute by its probe
   (a fifth of them pinged by a second probe), 48 interfaces per switch, optical ports, UPS power, a trace
   per group with a path, and a cellular reading per modem every 30 s. A tenth of the BTS and every tenth
   switch stop answering, some links go down, a probe dies, so that alerts, muting and unknown states are
   all exercised.
3. Times ``Rules.evaluate`` (median of ``runs``; the inventory indexed once, as the engine holds it), and two
   baselines in the same process: ``evaluate`` of the same inventory with no facts yet (the cost of walking
   the inventory), and one ``observe`` pass over one minute of the zone's data (what the engine spends
   feeding the facts between two evaluations).

Prints the figures and the ratios; the goal is ``evaluate`` well under 50 ms for this zone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from collector.alerting.config import RuleSettings  # noqa: E402
from collector.alerting.facts import Facts  # noqa: E402
from collector.alerting.rules import Rules  # noqa: E402
from collector.inventory import Inventory  # noqa: E402
from zonewatch import wire  # noqa: E402

S = 1_000_000_000
T0 = 1_764_288_000 * S
CARRIERS = {"viettel": "452-04", "vinaphone": "452-02", "mobifone": "452-01"}


def zone_inventory(devices: int, probes: int, groups: int) -> Inventory:
    """Return the inventory of one large zone (see the module docstring)."""
    areas = [f"area-{i}" for i in range(10)]
    carriers = list(CARRIERS)
    doc: dict[str, dict[str, object]] = {
        "zones": {"big": {"name": "Big zone", "areas": areas}},
        "carriers": {k: {"plmn": v, "name": k.title()} for k, v in CARRIERS.items()},
        "sites": {}, "devices": {}, "links": {}, "redundancy_groups": {}, "probes": {},
    }
    for p in range(probes):
        doc["probes"][f"p{p}"] = {"zone": "big", "area": areas[p % 10],
                                  "modems": [{"name": c, "carrier": c} for c in carriers]}
    sites = devices // 5
    for s in range(sites):
        owners = [carriers[s % 3]] if s % 4 else carriers[:2]      # every fourth site is shared
        doc["sites"][f"site-{s}"] = {"zone": "big", "area": areas[s % 10], "kind": "bts", "owners": owners}
        switch = f"sw-{s}"
        doc["devices"][switch] = {"site": f"site-{s}", "kind": "switch", "owners": owners,
                                  "probe": f"p{s % probes}", "address": f"10.{s // 250}.{s % 250}.1"}
        for k in range(4):
            doc["devices"][f"dev-{s}-{k}"] = {"site": f"site-{s}", "kind": "ups" if k == 3 else "bts",
                                              "owners": owners, "parent": switch, "probe": f"p{s % probes}"}
        for port in (1, 2):
            doc["links"][f"link-{s}-{port}"] = {"device": switch, "ifname": f"xe-0/0/{port}",
                                                "carriers": owners}
    for g in range(groups):
        s = g % sites
        members: list[dict[str, object]] = [{"link": f"link-{s}-1"}, {"link": f"link-{s}-2"}]
        if g % 4 == 0:
            members.append({"path": {"probe": f"p{s % probes}", "target": f"core-{g}", "name": "primary"}})
        doc["redundancy_groups"][f"group-{g}"] = {"zone": "big", "carriers": [carriers[g % 3]],
                                                  "members": members, "min_up": {"service": 1, "redundancy": 2}}
    inventory = Inventory.model_validate(doc)
    assert not inventory.check_refs(), inventory.check_refs()[:3]
    return inventory


def minute_of_data(inventory: Inventory, minute: int) -> list[wire.Batch]:
    """Return the batches the zone's probes send in one minute (cellular twice)."""
    at = T0 + minute * 60 * S
    by_probe: dict[str, list[wire.Sample]] = {p: [] for p in inventory.probes}
    for i, (name, dev) in enumerate(inventory.devices.items()):
        probe = dev.probe or "p0"
        down = (i % 10 == 3 or i % 100 == 0) and minute >= 3   # a tenth of the BTS, every tenth switch
        by_probe[probe].append(wire.Sample("device", {"device": name, "site": dev.site},
                                           {"up": not down, "uptime_s": 1e6 + minute * 60}, at))
        if i % 5 == 0:
            other = f"p{(int(probe[1:]) + 1) % len(inventory.probes)}"
            by_probe[other].append(wire.Sample("reach", {"target": dev.address or name},
                                               {"loss_pct": 100 if down else 0, "rtt_ms": 2.0}, at))
        if down:
            continue
        if dev.kind == "switch":
            for port in range(1, 49):
                link = f"link-{name[3:]}-{port}" if port <= 2 else None
                oper = not (port == 1 and i % 7 == 0 and minute >= 5)
                tags = {"device": name, "ifname": f"xe-0/0/{port}", **({"link": link} if link else {})}
                by_probe[probe].append(wire.Sample("interface", tags, {
                    "oper_up": oper, "admin_up": True, "in_octets": 10**9 + minute, "out_octets": 10**9,
                    "in_errors": 0, "out_errors": 0, "speed_mbps": 10000}, at))
            for port in range(1, 3):
                by_probe[probe].append(wire.Sample("optical", {"device": name, "port": f"xe-0/0/{port}"},
                                                   {"rx_dbm": -8.0 - (port == 2 and i % 11 == 0) * 20,
                                                    "tx_dbm": 1.0}, at))
        if dev.kind == "ups":
            by_probe[probe].append(wire.Sample("power", {"device": name, "site": dev.site},
                                               {"on_battery": i % 13 == 0, "battery_minutes": 30.0}, at))
    for g, group in enumerate(inventory.redundancy_groups.values()):
        for member in group.members:
            if member.path is not None:
                path = "backup" if g % 8 == 0 else "primary"
                by_probe[member.path.probe].append(wire.Sample(
                    "reach", {"target": member.path.target, "path": path}, {"loss_pct": 0, "hops": 3}, at))
    for p, probe in enumerate(inventory.probes.values()):
        for half in (0, 30):
            for modem in probe.modems:
                plmn = CARRIERS[modem.carrier]
                rsrp = -95 - (p % 10) * 2 - (5 if modem.carrier == "mobifone" else 0)
                by_probe[f"p{p}"].append(wire.Sample(
                    "cellular", {"carrier": plmn, "modem": modem.name, "rat": "lte", "band": "B3"},
                    {"rsrp_dbm": rsrp, "registered": True, "sinr_db": 12.5}, at + half * S))
    return [wire.Batch("big", probe, minute + 1, at, tuple(samples)) for probe, samples in by_probe.items()]


def timed(fn: object, runs: int) -> float:
    """Return the median seconds of ``runs`` calls of ``fn``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    inventory = zone_inventory(args.devices, args.probes, args.groups)
    settings = RuleSettings()
    facts = Facts(settings, started_ns=T0)
    minutes = [minute_of_data(inventory, m) for m in range(10)]
    for m, batches in enumerate(minutes):
        for batch in batches:
            if batch.probe != "p7" or m < 6:   # p7 dies at 6m: what only it sees becomes unknown
                facts.observe(batch, T0 + m * 60 * S + S)
    now = T0 + 9 * 60 * S + 5 * S
    samples = sum(len(b.samples) for b in minutes[-1])

    rules = Rules(inventory)   # as the engine holds it: the inventory indexed once
    evaluation = rules.evaluate(facts, settings, now)
    names: dict[str, int] = {}
    for f in evaluation.findings:
        names[f.alertname] = names.get(f.alertname, 0) + 1
    muted = sum(1 for f in evaluation.findings if f.muted_by)

    t_eval = timed(lambda: rules.evaluate(facts, settings, now), args.runs)
    nothing = Facts(settings, started_ns=T0)
    t_empty = timed(lambda: rules.evaluate(nothing, settings, now), args.runs)

    def observe_minute() -> None:
        fresh = Facts(settings, started_ns=T0)
        for batch in minutes[-1]:
            fresh.observe(batch, now)

    t_observe = timed(observe_minute, max(3, args.runs // 5))

    print(f"zone: {len(inventory.devices)} devices, {len(inventory.probes)} probes, "
          f"{len(inventory.redundancy_groups)} groups, {len(inventory.links)} links; facts: "
          f"{len(facts.interfaces)} interfaces, {len(facts.cellular)} modems, {len(facts.optical)} optical ports")
    print(f"findings: {len(evaluation.findings)} ({muted} muted) "
          + ", ".join(f"{k} {v}" for k, v in sorted(names.items()))
          + f"; unknown matchers: {len(evaluation.unknown)}; derived samples: {len(evaluation.samples)}")
    print(f"evaluate, full zone:          {t_eval * 1000:8.2f} ms  (goal: well under 50 ms)")
    print(f"evaluate, no facts yet:       {t_empty * 1000:8.2f} ms  (walking the inventory; evaluate is "
          f"{t_eval / t_empty:.1f}x of it)")
    print(f"observe, one minute of data:  {t_observe * 1000:8.2f} ms  ({samples} samples; evaluate is "
          f"{t_eval / t_observe:.2f}x of it)")


if __name__ == "__main__":
    main()
