"""Probe and modem health: ModemDown, SimProblem, ProbeClockSkew, SpoolFilling, ProbeDiskLow. Pure: no clock, no I/O.

What they are judged on (``HealthFacts``, fed by ``Facts.observe`` and, for clocks, by the alert engine)::

    modems   (probe, modem) -> ModemHealth   its ``cellular`` readings (it answered: the SIM state, the registration
                                              and since when it has been lost) and its ``modem`` samples (polls it
                                              did not answer, in a row, and the recovery steps run):
                                              ``agent.sources.modem_state``
    reports  probe -> SelfReport              the storage fields of its ``probe`` self-report (``agent.selfreport``)
    clocks   zone/probe -> ClockView          the collector's measure of its clock (``collector.clockskew``)

The alerts (labels zone, area, probe, and modem for the modem's two; all to the NOC)::

    ModemDown        the modem did not answer ``modem_down_polls`` polls in a row (no answer, a flood, its port gone
                     from USB); a first miss is unknown, not down; the agent recovers it in steps meanwhile
    SimProblem       no SIM, a PIN or PUK required, a SIM failure (``AT+CPIN?``), or not registered for ``sim_hold``
                     with a usable SIM; NoService of the same area and carrier mutes the last one (the carrier's
                     network, not the SIM); registration *denied* goes to the carrier too
    ProbeClockSkew   the probe's clock is off by ``clock_skew`` or more (its samples are stored corrected)
    SpoolFilling     its spool holds ``spool_filling_pct`` of its bound or more (an uplink down for long: data will
                     be dropped once it is full)
    ProbeDiskLow     free space on its spool's file system under ``disk_low_pct`` or ``disk_low_mb``

Who is paged, and why. The modem, its USB port and its SIM are the probe's hardware, installed and kept by the
zone's field engineers: a carrier can do nothing about a hung modem, a missing SIM or a PIN, and a carrier gets
the alerts about its own equipment and coverage only. So ModemDown and SimProblem go to the NOC, except a
registration the network *denies* (3GPP stat 3: the SIM is barred, expired or not provisioned), which only the
carrier can lift: that SimProblem carries the modem's carrier label and goes to the carrier too. A carrier whose
network is down in the area gets NoService; the SimProblem it explains is muted under it.

Unknown is not clear: while the probe is down, or its newest reading is older than ``stale_after``, nothing here
fires and nothing firing resolves, except a modem that a live probe no longer reports at all (taken out of its
configuration): its alerts resolve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Final, Protocol

from pydantic import Field

from collector.alerting.model import Finding
from collector.clockskew import ClockView
from collector.inventory import Inventory
from zonewatch import wire
from zonewatch.strict import Duration, Strict

__all__ = ["HealthSettings", "HealthFacts", "ModemHealth", "SelfReport", "judge", "SIM_PROBLEMS", "REG_STATES"]

S: Final = 1_000_000_000
SIM_PROBLEMS: Final = {1: "no SIM card is inserted (or the modem cannot see it)", 2: "the SIM asks for its PIN",
                       3: "the SIM is blocked and asks for its PUK (the PIN was entered wrong too often)",
                       4: "the SIM cannot be used (SIM failure)"}
REG_STATES: Final = {0: "not searching", 1: "registered (home)", 2: "searching", 3: "registration denied",
                     4: "unknown", 5: "registered (roaming)", 8: "emergency calls only", 11: "emergency bearer only"}
DENIED: Final = 3
STEP_NAMES: Final = {1: "reopen", 2: "cfun", 3: "usb_power"}


class HealthSettings(Strict):
    """``alerting.settings.health``: the limits of ModemDown, SimProblem, ProbeClockSkew, SpoolFilling, ProbeDiskLow."""

    modem_down_polls: int = Field(default=2, ge=1)           # unanswered polls in a row for ModemDown
    sim_hold: Duration = 600.0                               # not registered this long with a usable SIM
    clock_skew: Duration = 60.0                              # a clock off by this much or more
    spool_filling_pct: float = Field(default=50.0, gt=0)     # the spool this full (of spool.max_bytes) or more
    disk_low_pct: float = Field(default=10.0, ge=0, le=100)  # free space on the spool's file system under this
    disk_low_mb: float = Field(default=512.0, ge=0)          # or under this many MiB


@dataclass(slots=True)
class ModemHealth:
    """The newest state of one modem, from its ``modem`` samples (times are measurement times)."""

    zone: str
    carrier: str = ""              # the samples' carrier tag (the inventory's modem carrier wins)
    time_ns: int = -1              # the newest sample
    answering: bool = True
    misses: int = 0                # polls unanswered in a row, up to the newest
    miss_since_ns: int = 0         # the first of them
    answered_ns: int = 0           # the first answered poll of the current answering run (evidence of the end)
    steps: list[int] = field(default_factory=list)   # recovery steps run in the current miss run
    sim_state: int | None = None
    sim_since_ns: int = 0          # since when the SIM has been in that state
    registered: bool | None = None
    reg_state: int | None = None
    unregistered_ns: int = 0       # the first poll of the current run not registered (0: registered or unknown)
    registered_ns: int = 0         # the first registered poll after such a run


@dataclass(slots=True)
class SelfReport:
    """The storage fields of a probe's newest self-report, and since when each has been within its limit."""

    zone: str
    time_ns: int = -1
    spool_fill_pct: float | None = None
    disk_free_pct: float | None = None
    disk_free_mb: float | None = None
    fill_ok_ns: int = 0            # the first report of the current run under spool_filling_pct
    disk_ok_ns: int = 0            # the first report of the current run above the disk limits


def _number(value: wire.FieldValue | None) -> float | None:
    return None if value is None or isinstance(value, bool) else float(value)


def _state(value: wire.FieldValue | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class HealthFacts:
    """What the health rules judge; fed one sample at a time (``Facts.observe``), in any order of time."""

    def __init__(self, settings: HealthSettings | None = None) -> None:
        self.settings = settings or HealthSettings()
        self.modems: dict[tuple[str, str], ModemHealth] = {}
        self.reports: dict[str, SelfReport] = {}
        self.clocks: dict[str, ClockView] = {}   # replaced whole by the alert engine before each evaluation

    def modem(self, batch: wire.Batch, sample: wire.Sample) -> None:
        """Take one ``cellular`` reading (the modem answered) or ``modem`` sample; one older than the newest known
        is history and changes nothing."""
        answering = True if sample.measurement == "cellular" else sample.fields.get("answering")
        if not isinstance(answering, bool):
            return
        key = (batch.probe, sample.tags.get("modem", ""))
        m = self.modems.get(key)
        if m is None:
            m = self.modems[key] = ModemHealth(batch.zone)
        t, f = sample.time_ns, sample.fields
        if t <= m.time_ns:
            return
        m.zone, m.carrier = batch.zone, sample.tags.get("carrier", m.carrier)
        if not answering:
            if m.misses == 0:
                m.miss_since_ns, m.steps = t, []
            m.misses += 1
            step = _state(f.get("recovery_step"))
            if step:
                m.steps.append(step)
        else:
            if not m.answering or m.answered_ns == 0:
                m.answered_ns = t
            m.misses = 0
        if sample.measurement == "cellular":
            sim = _state(f.get("sim_state"))
            if sim != m.sim_state:
                m.sim_state, m.sim_since_ns = sim, t
            registered = f.get("registered")
            m.registered = registered if isinstance(registered, bool) else None
            m.reg_state = _state(f.get("reg_state"))
            if m.registered is False and m.unregistered_ns == 0:
                m.unregistered_ns = t
            elif m.registered is True and m.unregistered_ns:
                m.unregistered_ns, m.registered_ns = 0, t
            elif m.registered is True and m.registered_ns == 0:
                m.registered_ns = t
        m.answering, m.time_ns = answering, t

    def report(self, batch: wire.Batch, sample: wire.Sample) -> None:
        """Take the storage fields of a ``probe`` self-report (a sample without them changes nothing)."""
        f = sample.fields
        fill, pct = _number(f.get("spool_fill_pct")), _number(f.get("disk_free_pct"))
        mb = _number(f.get("disk_free_mb"))
        if fill is None and pct is None and mb is None:
            return
        r = self.reports.get(batch.probe)
        if r is None:
            r = self.reports[batch.probe] = SelfReport(batch.zone)
        t = sample.time_ns
        if t <= r.time_ns:
            return
        s = self.settings
        if fill is not None:
            if fill >= s.spool_filling_pct:
                r.fill_ok_ns = 0
            elif r.fill_ok_ns == 0:
                r.fill_ok_ns = t
        if pct is not None or mb is not None:
            if (pct is not None and pct < s.disk_low_pct) or (mb is not None and mb < s.disk_low_mb):
                r.disk_ok_ns = 0
            elif r.disk_ok_ns == 0:
                r.disk_ok_ns = t
        r.zone, r.time_ns = batch.zone, t
        r.spool_fill_pct, r.disk_free_pct, r.disk_free_mb = fill, pct, mb


class Run(Protocol):
    """What the rules' evaluation (``collector.alerting.rules``) gives the health rules."""

    now: int
    stale_cut: int
    findings: list[Finding]

    def up(self, probe: str) -> bool: ...

    def emit(self, alertname: str, labels: Mapping[str, str], carriers: Sequence[str | None], summary: str,
             description: str, muted_by: str | None = None) -> None: ...

    def dont_know(self, **matcher: str) -> None: ...

    def clear(self, since_ns: int, alertname: str, **labels: str) -> None: ...


def judge(run: Run, facts: HealthFacts, inventory: Inventory, modem_plmn: Mapping[tuple[str, str], str],
          carrier_name: Mapping[str, str]) -> None:
    """Add the five health alerts of every probe the inventory lists (see the module docstring)."""
    for (probe, modem), m in sorted(facts.modems.items()):
        listed = inventory.probes.get(probe)
        if listed is not None:
            plmn = modem_plmn.get((probe, modem)) or m.carrier
            _modem(run, facts.settings, probe, listed.area or "", modem, m, plmn, carrier_name.get(plmn, plmn))
    for probe, report in sorted(facts.reports.items()):
        listed = inventory.probes.get(probe)
        if listed is not None:
            _storage(run, facts.settings, probe, listed.area or "", report)
    for name, view in sorted(facts.clocks.items()):
        zone, _, probe = name.partition("/")
        listed = inventory.probes.get(probe)
        if listed is not None and listed.zone == zone:
            _clock(run, facts.settings, probe, zone, listed.area or "", view)


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / S, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(ns: int) -> str:
    seconds = max(0, round(ns / S))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _modem(run: Run, s: HealthSettings, probe: str, area: str, modem: str, m: ModemHealth, plmn: str,
           carrier: str) -> None:
    """ModemDown and SimProblem of one modem."""
    key = {"probe": probe, "modem": modem}
    labels = {"zone": m.zone, "area": area, **key}
    if not run.up(probe):
        run.dont_know(alertname="ModemDown", **key)
        run.dont_know(alertname="SimProblem", **key)
        return
    if m.time_ns < run.stale_cut:   # the probe is up and says nothing of it: no longer polled
        run.clear(run.now, alertname="ModemDown", **key)
        run.clear(run.now, alertname="SimProblem", **key)
        return
    where = f"Modem {modem} ({carrier}{f', {plmn}' if plmn and plmn != carrier else ''}) of probe {probe}" + (
        f" in area {area}" if area else "")
    if not m.answering:
        run.dont_know(alertname="SimProblem", **key)   # a modem that does not answer says nothing of its SIM
        if m.misses < s.modem_down_polls:
            run.dont_know(alertname="ModemDown", **key)   # a first miss: not down yet, not back either
            return
        steps = ", ".join(STEP_NAMES.get(x, str(x)) for x in m.steps) or "none yet"
        run.emit("ModemDown", labels, [], f"Modem {modem} of probe {probe} does not answer",
                 f"{where} has not answered for {_span(run.now - m.miss_since_ns)} ({m.misses} polls in a row since "
                 f"{_when(m.miss_since_ns)}: no answer, garbage, or its port gone from USB). The probe is recovering "
                 f"it in steps (reopen the port, AT+CFUN reset, USB power cycle; run so far: {steps}; each is in the "
                 f"probe's log and zonewatch_modem_recovery_steps_total). Meanwhile what it measures of {carrier} "
                 "there is unknown. If it does not come back: the modem's USB cable, power and seating.")
        return
    run.clear(m.answered_ns, alertname="ModemDown", **key)
    problem = SIM_PROBLEMS.get(m.sim_state) if m.sim_state is not None else None
    if problem is not None:
        run.emit("SimProblem", labels, [], f"SIM problem on modem {modem} of probe {probe}",
                 f"{where}: {problem}, since {_when(m.sim_since_ns)}. It cannot register, so {carrier} is not "
                 "measured there. A field engineer must see to the SIM (and its PIN: the probe does not enter one).")
        return
    if m.registered is False and m.unregistered_ns and run.now - m.unregistered_ns >= int(s.sim_hold * S):
        state = REG_STATES.get(m.reg_state, f"state {m.reg_state}") if m.reg_state is not None else "not registered"
        denied = m.reg_state == DENIED
        cause = next((f.alertname + f" {f.labels.get('carrier', '')} in area {area}" for f in run.findings
                      if f.alertname == "NoService" and f.labels.get("zone") == m.zone
                      and f.labels.get("area") == area and f.labels.get("carrier") == plmn), None)
        run.emit("SimProblem", labels, [plmn] if denied and plmn else [],
                 f"Modem {modem} of probe {probe} not registered for {_span(run.now - m.unregistered_ns)}",
                 f"{where} answers and its SIM is usable, yet it has not been registered on a network since "
                 f"{_when(m.unregistered_ns)} ({state}). "
                 + ("The network refuses this SIM: it is barred, expired or not provisioned; the carrier must "
                    "lift it (it is told too)." if denied else
                    "If the other probes of the area are registered on the carrier, this SIM (or this modem's "
                    "antenna) is at fault."), muted_by=cause if not denied else None)
        return
    since = max(m.sim_since_ns, m.registered_ns) if m.registered else m.sim_since_ns
    run.clear(since or run.now, alertname="SimProblem", **key)


def _storage(run: Run, s: HealthSettings, probe: str, area: str, r: SelfReport) -> None:
    """SpoolFilling and ProbeDiskLow of one probe."""
    key = {"probe": probe}
    labels = {"zone": r.zone, "area": area, **key}
    if not run.up(probe) or r.time_ns < run.stale_cut:
        run.dont_know(alertname="SpoolFilling", **key)
        run.dont_know(alertname="ProbeDiskLow", **key)
        return
    if r.spool_fill_pct is None:
        run.dont_know(alertname="SpoolFilling", **key)
    elif r.spool_fill_pct >= s.spool_filling_pct:
        run.emit("SpoolFilling", labels, [], f"Spool of probe {probe} is {r.spool_fill_pct:.0f} % full",
                 f"Probe {probe} holds {r.spool_fill_pct:.1f} % of its spool's bound (spool.max_bytes) of readings "
                 f"not yet acknowledged by the broker (its report at {_when(r.time_ns)}): its uplink has been down or "
                 "slow for long. Once the spool is full it drops its oldest readings (counted, and paged as "
                 "DataLoss). Its own readings still arrive, so the broker is reached now and then: check the "
                 "probe's uplink.")
    else:
        run.clear(r.fill_ok_ns, alertname="SpoolFilling", **key)
    if r.disk_free_pct is None and r.disk_free_mb is None:
        run.dont_know(alertname="ProbeDiskLow", **key)
    elif (r.disk_free_pct is not None and r.disk_free_pct < s.disk_low_pct) or \
            (r.disk_free_mb is not None and r.disk_free_mb < s.disk_low_mb):
        free = " and ".join(x for x in (f"{r.disk_free_pct:.1f} %" if r.disk_free_pct is not None else "",
                                        f"{r.disk_free_mb:.0f} MiB" if r.disk_free_mb is not None else "") if x)
        run.emit("ProbeDiskLow", labels, [], f"Probe {probe} is running out of disk",
                 f"The file system of probe {probe}'s spool has {free} free (its report at {_when(r.time_ns)}; "
                 f"the limits are {s.disk_low_pct:g} % and {s.disk_low_mb:g} MiB). A full disk stops the spool: "
                 "readings are lost. Look for logs or files filling it, or a failing SD card.")
    else:
        run.clear(r.disk_ok_ns, alertname="ProbeDiskLow", **key)


def _clock(run: Run, s: HealthSettings, probe: str, zone: str, area: str, view: ClockView) -> None:
    """ProbeClockSkew of one probe."""
    key = {"probe": probe}
    limit = int(s.clock_skew * S)
    if not run.up(probe) or view.measured_ns < run.stale_cut:
        run.dont_know(alertname="ProbeClockSkew", **key)
        return
    if abs(view.offset_ns) >= limit:
        way = "ahead of" if view.offset_ns > 0 else "behind"
        run.emit("ProbeClockSkew", {"zone": zone, "area": area, **key}, [],
                 f"Clock of probe {probe} is {_span(abs(view.offset_ns))} {way} the collector's",
                 f"Probe {probe}'s clock is {abs(view.offset_ns) / S:.1f} s {way} the collector's, as measured from "
                 f"the send times it stamps on its messages, since {_when(view.since_ns)}. Its readings are stored at "
                 f"corrected times ({view.corrected} messages so far in this run of the collector), so nothing is "
                 "lost; but its own logs and anything else it dates are off. Fix its time synchronisation (NTP: "
                 "`timedatectl timesync-status`; a probe without a real-time clock starts from an old time after a "
                 "power cut).")
    elif view.floor_ns <= -limit and view.offset_ns == 0:
        run.dont_know(alertname="ProbeClockSkew", **key)   # behind, or only late messages: cannot tell
    else:
        run.clear(view.since_ns if view.offset_ns == 0 and view.since_ns else run.now, alertname="ProbeClockSkew",
                  **key)
