"""Probe fleet rules: DataLoss, ProbeMisbehaving, CollectorFault, ProbeConfigRejected, ProbeUpdateFailed and the
probes' own health (ModemDown, SimProblem, ProbeClockSkew, SpoolFilling, ProbeDiskLow)."""

from __future__ import annotations

from collector.alerting.health import judge as judge_health
from collector.alerting.rules.base import S, _span, _when
from collector.alerting.rules.equipment import EquipmentRules


class FleetRules(EquipmentRules):
    """The fleet steps of an evaluation."""

    def data_loss(self) -> None:
        """DataLoss: batches of a probe that will never arrive (see ``Loss``)."""
        hold = int(self.settings.data_loss_hold * S)
        for name, probe in self.inv.probes.items():
            loss = self.facts.loss.get(name)
            if loss is None or loss.rose_ns == 0:
                continue
            lost = loss.gaps - loss.base
            if lost <= 0 or self.now - loss.rose_ns >= hold:
                self.clear(loss.rose_ns + hold if lost > 0 else self.now, alertname="DataLoss", probe=name)
            elif loss.spool_empty_ns < loss.rose_ns:
                self.dont_know(alertname="DataLoss", probe=name)   # the missing batches may still be on their way
            else:
                self.emit("DataLoss", {"zone": probe.zone, "area": probe.area or "", "probe": name}, [],
                          f"Probe {name} lost {lost} batch{'es' if lost != 1 else ''} of data",
                          f"{lost} of its batches never arrived since {_when(loss.first_ns)} (seq gaps; "
                          f"{loss.gaps} in all), and its spool is empty: they are gone, not late. The broker "
                          "drops messages past its queue limits while the collector is down or behind "
                          "(render-mosquitto --hold), and a full spool drops its oldest batches. It clears "
                          f"{_span(hold)} after the last loss.")

    def misbehaving(self) -> None:
        """ProbeMisbehaving: a probe sent rows it may not (about what it does not watch, or measurements only
        the collector writes), or seqs absurdly far from its stream; NOC only."""
        hold = int(self.settings.misbehaving_hold * S)
        what = {"not_assigned": "rows about devices or carriers not assigned to it",
                "unknown_probe": "rows about devices or carriers, while the inventory does not list it",
                "collector_only": "samples of measurements only the collector writes",
                "seq_jump": "messages whose seq lay absurdly far from its stream"}
        for name, m in self.facts.misbehaviour.items():
            if self.now - m.last_ns >= hold:
                self.clear(m.last_ns + hold, alertname="ProbeMisbehaving", probe=name)
                continue
            probe = self.inv.probes.get(name)
            told = "; ".join(f"{n} {what.get(reason, reason)} (e.g. {m.examples.get(reason, '?')})"
                             for reason, n in sorted(m.counts.items()))
            self.emit("ProbeMisbehaving", {"zone": m.zone, "area": (probe.area if probe else None) or "",
                                           "probe": name}, [],
                      f"Probe {name} reports what it may not",
                      f"Since {_when(m.first_ns)}: {told}. They were refused and not stored, and no alert was "
                      "raised or held on them. A probe that speaks for equipment it does not watch is misconfigured "
                      "or compromised: check its configuration against the inventory, and its credentials. It "
                      f"clears {_span(hold)} after the last refusal.")

    def collector_fault(self) -> None:
        """CollectorFault: a collector thread died and stopped the previous run (``collector.threads``)."""
        if self.facts.fault is None:
            return
        thread, error, at_ns = self.facts.fault
        hold = int(self.settings.fault_hold * S)
        started = self.facts.started_ns or at_ns
        if self.now - started >= hold:
            self.clear(started + hold, alertname="CollectorFault")
            return
        self.emit("CollectorFault", {}, [], f"Collector thread {thread} died",
                  f"At {_when(at_ns)} the collector's thread {thread} died ({error}) and the collector stopped; it "
                  f"started again at {_when(started)}. Nothing acknowledged is lost (the intake queue and the broker "
                  "kept it), but the part that thread ran stood still until the restart: see the collector's log "
                  f"for the traceback. It clears after {_span(hold)} of running without another.")

    def config_rejected(self) -> None:
        """ProbeConfigRejected: the probe refused its desired configuration, or rolled it back; NOC only."""
        for name, view in sorted(self.facts.configs.items()):
            about_desired = view.report_hash == view.desired_hash
            if not about_desired or view.result not in ("rejected", "rolled_back"):
                applied = about_desired and view.result == "applied"
                self.clear(view.reported_ns if applied else self.now, alertname="ProbeConfigRejected", probe=name)
                continue
            probe = self.inv.probes.get(name)
            what = "rejected" if view.result == "rejected" else "rolled back"
            self.emit("ProbeConfigRejected", {"zone": view.zone, "area": (probe.area if probe else None) or "",
                                              "probe": name}, [],
                      f"Probe {name} {what} its desired configuration v{view.report_version}",
                      f"At {_when(view.reported_ns)} probe {name} {what} desired configuration v{view.report_version} "
                      f"({view.report_hash[:15]}): {view.error or 'no reason given'}. It runs its previous "
                      "configuration. A line number refers to the rendered text (zonewatch-collector fleet render "
                      f"{name}); fix the inventory's probe_defaults or probes.{name}.config. It resolves when the "
                      "probe reports its desired configuration applied.")

    def update_failed(self) -> None:
        """ProbeUpdateFailed: a rollout of a software release stopped at this probe; NOC only."""
        for name, view in sorted(self.facts.configs.items()):
            if not view.update_failed:
                self.clear(self.now, alertname="ProbeUpdateFailed", probe=name)
                continue
            probe, release = self.inv.probes.get(name), view.update_version
            self.emit("ProbeUpdateFailed", {"zone": view.zone, "area": (probe.area if probe else None) or "",
                                            "probe": name}, [],
                      f"Probe {name} did not come up healthy on release {release}",
                      f"At {_when(view.update_failed_ns)} the rollout of release {release} stopped at probe {name}: "
                      f"{view.update_failed}. No further wave begins. See `zonewatch-collector fleet status` and, on "
                      "the probe, `journalctl -u zonewatch-agent-update -u zonewatch-agent`; then `zonewatch-collector "
                      "fleet update --abort` (the failed probes are asked for their release before) or, once the "
                      f"cause is fixed, `fleet update --version {release}` again. It resolves when the probe runs "
                      f"{release}, or when the rollout is aborted or replaced.")

    def probe_health(self) -> None:
        """ModemDown, SimProblem, ProbeClockSkew, SpoolFilling, ProbeDiskLow (``collector.alerting.health``)."""
        judge_health(self, self.facts.health, self.inv, self.ix.modem_plmn, self.ix.carrier_name)
