"""Probe rules: ProbeDown (last will, silence, planned stops) and ParkUplinkDown, and which probes are up."""

from __future__ import annotations

from collector.alerting import parks
from collector.alerting.rules.base import RunBase, S, State, _span, _when


class ProbeRules(RunBase):
    """The probes steps of an evaluation."""

    def probes(self) -> None:
        """ProbeDown; and every probe's state, which decides whose readings count."""
        timeout = int(self.settings.probe_timeout * S)
        for name in [*self.inv.probes, *(p for p in self.facts.probes if p not in self.inv.probes)]:
            state, why = self._probe(name, timeout)
            self.probe_state[name] = state
            probe = self.inv.probes.get(name)
            if probe is None:
                continue  # a probe not in the inventory is not paged about (it may be gone for good)
            labels = {"zone": probe.zone, "area": probe.area or "", "probe": name}
            if state == "unknown":
                self.dont_know(alertname="ProbeDown", probe=name)
            elif state == "down":
                where = f" in area {probe.area}" if probe.area else ""
                self.emit("ProbeDown", labels, [], f"Probe {name}{where} is down",
                          f"{why}. Until it is back, what only it measures (its devices, paths and coverage) "
                          "is unknown: those alerts are held as they were.",
                          self._planned(name) or self._park_mute(name))
            else:
                facts = self.facts.probes.get(name)
                self.clear(facts.back_ns if facts is not None else self.now, alertname="ProbeDown", probe=name)

    def _planned(self, name: str) -> str | None:
        """Return the mute of a probe stopped on purpose (``stopping``) within ``planned_stop_max``."""
        facts = self.facts.probes.get(name)
        if facts is None or not facts.offline or not facts.planned:
            return None
        if self.now - facts.offline_ns >= int(self.settings.planned_stop_max * S):
            return None
        return f"planned stop of {name} at {_when(facts.offline_ns)}"

    def _probe(self, name: str, timeout: int) -> tuple[State, str]:
        """Judge a probe: down on its last will (or ``stopping``) at once; down by silence only when the silence
        is proven: the collector's data session has caught up (its ticks) past the probe's timeout, so a
        collector that is behind never makes a healthy probe look silent."""
        facts = self.facts.probes.get(name)
        proven = self.now if self.facts.caught_up_ns is None else min(self.now, self.facts.caught_up_ns)
        if facts is None:
            started = self.facts.started_ns
            if started is None or proven - started < timeout:
                return "unknown", ""
            if self._park_holds(name, 0, timeout):
                return "unknown", ""
            return "down", f"Nothing received from it since the collector started at {_when(started)}"
        if facts.offline and facts.planned:
            return "down", (f"It was stopped on purpose at {_when(facts.offline_ns)} (its agent said so before "
                            f"disconnecting) and is not back")
        if facts.offline:
            return "down", f"Its connection to the broker dropped (last will published at {_when(facts.offline_ns)})"
        if proven - facts.alive_ns > timeout:
            if self._park_holds(name, facts.alive_ns, timeout):   # its park broker holds its data
                return "unknown", ""
            return "down", (f"No message from it for {_span(self.now - facts.alive_ns)} (since "
                            f"{_when(facts.alive_ns)}; the limit is {_span(timeout)})")
        if self.now - facts.alive_ns > timeout:   # silent as far as we know, but we are behind
            return "unknown", ""
        return "up", ""

    def _park_holds(self, name: str, alive_ns: int, timeout: int) -> bool:
        """Return True if the probe's silence proves nothing: its park's uplink is down, or its park's queue is
        still arriving (``collector.alerting.parks``)."""
        if not self.facts.bridges.zones:
            return False
        return parks.silence_held(self.facts.bridges, self._zone_of(name), alive_ns, self.now, timeout) is not None

    def _park_mute(self, name: str) -> str | None:
        """Return the mute of a probe's ProbeDown on a last will that arrived during its park's outage."""
        facts = self.facts.probes.get(name)
        if not self.facts.bridges.zones or facts is None or not facts.offline:
            return None
        return parks.will_muted(self.facts.bridges, self._zone_of(name), facts.offline_ns, self.now,
                                int(self.settings.probe_timeout * S))

    def _zone_of(self, name: str) -> str:
        probe = self.inv.probes.get(name)
        if probe is not None:
            return probe.zone
        facts = self.facts.probes.get(name)
        return facts.zone if facts is not None else ""

    def park_uplinks(self) -> None:
        """ParkUplinkDown (``collector.alerting.parks``)."""
        if self.facts.bridges.zones:
            parks.judge(self, self.facts.bridges, self.inv.zones, self.ix.zone_probes)

    def up(self, probe: str) -> bool:
        return self.probe_state.get(probe) == "up"
