"""Service rules: what tenants get from each carrier (DataAccessFailure, ThroughputBelowTarget) and coverage
(NoService, CoverageHole, WeakSignal, CoverageInterference, the coverage samples)."""

from __future__ import annotations

from collector.alerting.coverage import HOLE, NO_SERVICE, WEAK, area_has, area_level, judge_probe
from collector.alerting.facts import Reading
from collector.alerting.qos import Result, access_problems, judge_access, judge_transfers, speeds, transfer_problems
from collector.alerting.rules.base import S, _area_context, _fmt, _median, _span
from collector.alerting.rules.fleet import FleetRules
from collector.inventory import Zone


class ServiceRules(FleetRules):
    """The service steps of an evaluation."""

    def service_quality(self) -> None:
        """DataAccessFailure and ThroughputBelowTarget per area and carrier, from the probes' active tests."""
        q = self.settings.qos
        access_from, transfers_from = self.now - int(q.access_window * S), self.now - int(q.transfer_window * S)
        by_probe: dict[str, list[tuple[str, list[Result]]]] = {}
        for (probe, plmn, _), history in self.facts.qos.items():
            by_probe.setdefault(probe, []).append((plmn, history.results))
        for (zone, area), probes in sorted(self.ix.areas.items()):
            access: dict[str, list[Result]] = {}
            moved: dict[str, list[Result]] = {}
            seen: dict[str, set[str]] = {}
            for probe in probes:
                if not self.up(probe):
                    continue
                for plmn, results in by_probe.get(probe, ()):
                    seen.setdefault(plmn, set()).add(probe)
                    moved.setdefault(plmn, []).extend(r for r in results if r.time_ns >= transfers_from)
                    if self._registered(probe, plmn):   # not registered: NoService's case, not ours
                        access.setdefault(plmn, []).extend(r for r in results if r.time_ns >= access_from)
            for plmn in sorted(seen):
                labels, name = {"zone": zone, "area": area}, self.ix.carrier_name.get(plmn, plmn)
                where = f"area {area} of zone {zone} ({', '.join(sorted(seen[plmn]))})"
                judged = judge_access(access.get(plmn, ()))
                if judged.tests < q.access_min_tests:
                    self.dont_know(alertname="DataAccessFailure", zone=zone, area=area, carrier=plmn)
                elif problems := access_problems(judged, q):
                    self.emit("DataAccessFailure", labels, [plmn], f"{name} data service failing in area {area}",
                              f"The {name} ({plmn}) modems in {where} are registered, yet over the last "
                              f"{_span(int(q.access_window * S))}: {'; '.join(problems)}.")
                else:
                    self.clear(self.now, alertname="DataAccessFailure", zone=zone, area=area, carrier=plmn)
                targets = q.targets(plmn)
                assert targets.down_min_mbps is not None
                transfers = judge_transfers(moved.get(plmn, ()), targets.down_min_mbps)
                if transfers.started < q.min_transfers:
                    self.dont_know(alertname="ThroughputBelowTarget", zone=zone, area=area, carrier=plmn)
                elif problems := transfer_problems(transfers, targets):
                    self.emit("ThroughputBelowTarget", labels, [plmn], f"{name} throughput below target in area {area}",
                              f"Transfers through {name} ({plmn}) in {where} over the last "
                              f"{_span(int(q.transfer_window * S))}: {'; '.join(problems)} ({speeds(transfers)}).")
                else:
                    self.clear(self.now, alertname="ThroughputBelowTarget", zone=zone, area=area, carrier=plmn)

    def _registered(self, probe: str, plmn: str) -> bool:
        """Return True if a modem of ``probe`` on ``plmn`` last read registered, and fresh."""
        for key in self.facts.modems_of.get(probe, ()):
            if (key[1] or self.ix.modem_plmn.get((probe, key[2]), "")) != plmn:
                continue
            latest = self.facts.cellular[key].latest
            if latest is not None and latest.registered is True and latest.time_ns >= self.stale_cut:
                return True
        return False

    def coverage(self) -> None:
        """NoService, CoverageHole, WeakSignal, CoverageInterference and the ``coverage`` and
        ``coverage_at_probe`` samples, per area and carrier (each probe judged on its own:
        ``collector.alerting.coverage``)."""
        window = self.now - int(self.settings.coverage_window * S)
        for (zone_name, area), probes in sorted(self.ix.areas.items()):
            zone = self.inv.zones.get(zone_name)
            if zone is None:
                continue
            expected = {(p, self.ix.modem_plmn[(p, m.name)]) for p in probes for m in self.inv.probes[p].modems
                        if (p, m.name) in self.ix.modem_plmn}
            readings: dict[str, list[tuple[str, list[Reading]]]] = {}
            for probe in probes:
                if not self.up(probe):
                    continue
                for key in self.facts.modems_of.get(probe, ()):
                    plmn = key[1] or self.ix.modem_plmn.get((probe, key[2]), "")
                    recent = [r for r in self.facts.cellular[key].readings if r.time_ns >= window]
                    if plmn and recent:
                        readings.setdefault(plmn, []).append((probe, recent))
            for plmn in sorted({c for _, c in expected} | set(readings)):
                modems = readings.get(plmn, [])
                reporting = {p for p, _ in modems}
                silent = sorted(p for p, c in expected if c == plmn and p not in reporting)
                self._area(zone_name, zone, area, plmn, modems, silent)

    def _area(self, zone: str, zone_of: Zone, area: str, plmn: str,
              modems: list[tuple[str, list[Reading]]], silent: list[str]) -> None:
        labels = {"zone": zone, "area": area}
        signal_alerts = ("CoverageHole", "WeakSignal", "CoverageInterference")
        if not modems:
            for name in ("NoService", *signal_alerts):
                self.dont_know(alertname=name, zone=zone, area=area, carrier=plmn)
            return
        for probe in silent:   # down, or its modem on this carrier is silent: its own alerts stay as they were
            for name in signal_alerts:
                self.dont_know(alertname=name, zone=zone, area=area, carrier=plmn, probe=probe)
        by_probe: dict[str, list[Reading]] = {}
        for probe, recent in modems:
            by_probe.setdefault(probe, []).extend(recent)
        judged = [judge_probe(p, sorted(rs, key=lambda r: r.time_ns), zone_of) for p, rs in sorted(by_probe.items())]
        latest = [recent[-1].registered for _, recent in modems]
        service = any(r is True for r in latest)
        no_service = not service and any(r is False for r in latest)
        all_readings = [r for _, recent in modems for r in recent]
        rsrp = [r.rsrp_dbm for r in all_readings if r.rsrp_dbm is not None]
        median = _median(rsrp) if rsrp else None
        rule = zone_of.coverage
        signals = [j.signal for j in judged if j.signal is not None]
        level = area_level(signals, rule)
        drowned = area_has(sum(1 for j in judged if j.interference), len(signals), rule)
        probes = sorted(by_probe)
        name = self.ix.carrier_name.get(plmn, plmn)
        where = f"area {area} of zone {zone}"
        seen = f"{len(probes)} probe{'s' if len(probes) > 1 else ''} ({', '.join(probes)})"
        if not service and not no_service:
            self.dont_know(alertname="NoService", zone=zone, area=area, carrier=plmn)
        elif service:
            self.clear(self.now, alertname="NoService", zone=zone, area=area, carrier=plmn)
        if level is not None:
            for bad, alertname in ((HOLE, "CoverageHole"), (WEAK, "WeakSignal")):
                if level < bad:
                    self.clear(self.now, alertname=alertname, zone=zone, area=area, carrier=plmn)
            if not drowned:
                self.clear(self.now, alertname="CoverageInterference", zone=zone, area=area, carrier=plmn)
        if no_service:
            self.emit("NoService", labels, [plmn], f"No {name} service in {where}",
                      f"No modem on {name} ({plmn}) is registered to the network in {where}: "
                      f"{seen} tried within the last {_span(self.now - min(r.time_ns for r in all_readings))}.")
        muted = f"NoService {area}" if no_service else None
        context = _area_context(median, len(rsrp), seen, rule)
        for j in judged:
            at = {"zone": zone, "area": area, "carrier": plmn, "probe": j.probe}
            if j.signal is None:
                if not no_service:
                    for alertname in signal_alerts:
                        self.dont_know(alertname=alertname, **at)
                continue
            assert level is not None and j.rsrp_dbm is not None
            hole = j.signal == HOLE and level >= HOLE
            weak = not hole and j.signal >= WEAK and level >= WEAK
            interference = j.interference and drowned
            for alertname, on in (("CoverageHole", hole), ("WeakSignal", weak), ("CoverageInterference", interference)):
                if not on:
                    self.clear(self.now, alertname=alertname, **at)
            tech = f" ({j.rat})" if j.rat else ""
            here = {**labels, "probe": j.probe}
            if hole or weak:
                bound = j.limits.hole_dbm if hole else j.limits.fair_dbm
                self.emit("CoverageHole" if hole else "WeakSignal", here, [plmn],
                          f"{'Coverage hole' if hole else 'Weak signal'} for {name} at probe {j.probe} in {where}",
                          f"Median RSRP {_fmt(j.rsrp_dbm)} dBm{tech} over {j.readings} readings at probe {j.probe}, "
                          f"under {_fmt(bound)} dBm" + ("" if hole else f" (a hole is under {_fmt(j.limits.hole_dbm)} "
                                                        "dBm)") + f". {context}", muted)
            if interference:
                self.emit("CoverageInterference", here, [plmn], f"Interference on {name} at probe {j.probe} in {where}",
                          f"The signal is there (median RSRP {_fmt(j.rsrp_dbm)} dBm{tech} at probe {j.probe}) but "
                          f"drowned: median {j.why_interference()} over the last "
                          f"{_span(int(self.settings.coverage_window * S))}. {context}", muted)
            assert j.level is not None
            fields: dict[str, int | float | bool] = {"level": j.level, "interference": j.interference,
                                                     "rsrp_dbm": j.rsrp_dbm}
            fields.update({k: v for k, v in (("sinr_db", j.sinr_db), ("rsrq_db", j.rsrq_db)) if v is not None})
            self.samples.append(("coverage_at_probe", {"zone": zone, "area": area, "probe": j.probe, "carrier": plmn},
                                 fields))
        area_now = NO_SERVICE if no_service else level
        if area_now is not None:
            fields = {"level": area_now, "probes": len(probes)}
            if median is not None:
                fields["rsrp_dbm"] = median
            self.samples.append(("coverage", {"zone": zone, "area": area, "carrier": plmn}, fields))
