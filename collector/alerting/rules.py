"""The alert rules: ``evaluate(facts, inventory, settings, now_ns) -> Evaluation``. Pure: no clock, no I/O.

Called by the alert engine's thread (and by tests) with the evaluation time; reads ``Facts`` and the inventory,
changes neither, and may be called as often as wanted. Every alert is one ``Finding`` per owner carrier
(``carrier`` = the owner's PLMN; an asset without owners gives one finding without ``carrier``)::

    alert            fires when (at ``now``)                                   labels (besides alertname, severity)
    ---------------  --------------------------------------------------------  ---------------------------------
    ProbeDown        the probe's last will (``offline``) came and nothing after  zone, area, probe
                     it, or no message for ``probe_timeout``; after ``stopping``
                     (a stop on purpose) muted for ``planned_stop_max``; not on
                     silence while its park's uplink is down (unknown), and a
                     will in the outage muted under ParkUplinkDown
    ParkUplinkDown   a park broker's bridge to the centre is down (its last      zone
                     will on ``zonewatch/bridge/<zone>/state``), NOC only
                     (``collector.alerting.parks``)
    SiteDown         every watched device of a site with two or more is down     zone, area, carrier, site
    DeviceDown       every probe that polls or pings the device (and is up)     zone, area, carrier, site, device
                     saw no SNMP and no ICMP answer ``device_down_polls`` times
                     in a row
    DeviceRebooted   sysUpTime went back / ``rebooted`` / a cold or warm start   zone, area, carrier, site, device
                     trap, within ``reboot_hold``
    LinkDown         an inventory link (or an interface the agent tagged with   zone, area, carrier, site, device,
                     a link id) is oper down while admin up (trap at once)      link
    PowerOnBattery   the UPS runs on battery (poll or trap)                     zone, area, carrier, site, device
    BatteryLow       the UPS says battery low, or < ``battery_low_minutes`` left zone, area, carrier, site, device
    PowerOnBypass    the UPS feeds its load through its bypass (unprotected)    zone, area, carrier, site, device
    RectifierFailed  a rectifier plant reports failed rectifiers                zone, area, carrier, site, device
    OpticalDegraded  rx under ``optical_min_rx_dbm``, or ``optical_drop_db``     zone, area, carrier, site, device,
                     under the port's own baseline                              link (when the port is one)
    PonFeederDown    a GPON port that had ONUs online since the collector        zone, area, carrier, site, device,
                     started has none online, while ONUs are still configured  port, link (when the port is one)
                     (a feeder fibre cut or the OLT port down; held, neither
                     fired nor cleared, while no ONU was seen online yet)
    RedundancyLost   fewer members of a redundancy group up than its redundancy zone, area, carrier, site, group
                     needs (``min_up.redundancy``, default all)
    ServiceOutage    fewer up than the service needs (``min_up.service``,       zone, area, carrier, site, group
                     default 1); mutes RedundancyLost
    NoService        no up probe in the area registered on the carrier          zone, area, carrier
    CoverageHole     the probe's median RSRP is under the zone's hole threshold  zone, area, carrier, probe
                     and the area is in a hole by the zone's ``coverage`` rule
                     (the worst probe, or a share of them: see coverage.py)
    WeakSignal       the same between the hole and the fair threshold           zone, area, carrier, probe
    CoverageInterference  RSRP fair or better, but SINR or RSRQ under the        zone, area, carrier, probe
                     zone's bounds (a hole by interference), by the same rule
    ProbesDisagree   a device one fresh watcher gets answers from, another   zone, area, site, device
                     none (owners not paged: an answer wins)
    ProbeMisbehaving the probe sent rows it may not (collector.scope) or     zone, area, probe
                     absurd seq jumps, within ``misbehaving_hold``
    CollectorFault   a collector thread died and stopped the last run;          (none)
                     until ``fault_hold`` of running without another
    DataLoss         the probe's seq gaps rose (batches lost: the broker's      zone, area, probe
                     queue was full, the spool dropped its oldest) and its
                     spool has been empty since; for ``data_loss_hold``
    ProbeConfigRejected  the probe's last report about its desired             zone, area, probe
                     configuration (``collector.fleet``) is rejected or
                     rolled_back; clears when it reports that one applied
    ProbeUpdateFailed  a rollout of a software release stopped at this       zone, area, probe
                     probe (``collector.fleet.software``: rolled back, not
                     healthy in time); clears when the probe runs the
                     release, or the rollout is aborted or replaced
    DataAccessFailure  the carrier's modems in the area are registered, yet   zone, area, carrier
                     too many of their service access tests fail, or access
                     is too slow (``collector.alerting.qos``)
    ThroughputBelowTarget  the carrier's transfers in the area drop, or are     zone, area, carrier
                     slower than its targets (``collector.alerting.qos``)
    ModemDown        a modem answered none of its last ``modem_down_polls``   zone, area, probe, modem
                     polls (``collector.alerting.health``, NOC only)
    SimProblem       no SIM, PIN/PUK, SIM failure, or not registered for      zone, area, probe, modem (carrier
                     ``sim_hold``; muted under NoService of its carrier        when the network denies it)
    ProbeClockSkew   the probe's clock is off by ``clock_skew`` or more        zone, area, probe
    SpoolFilling     the probe's spool is ``spool_filling_pct`` full           zone, area, probe
    ProbeDiskLow     the probe's disk is under ``disk_low_pct``/``_mb`` free    zone, area, probe

States are three-valued (Icinga's redundancy-group bugs come from two): a device, link or path member is
``up``, ``down`` or ``unknown``. Unknown is what no usable observer can tell now: the observing probes are down,
or their readings are older than ``stale_after``. Unknown is neither healthy nor down: the alerts it would
decide go into ``Evaluation.unknown``, so the tracker keeps them as they were (no DeviceDown storm when a
probe dies, no false recovery either). A device is down only when every usable observer says so.

Undecided children: a device whose down state rests only on polls older than an ancestor's recovery (the
switch in front of it answered again after the device's newest poll), or whose ancestor is missing its
latest polls too but is not judged down yet, is unknown until it is polled again or the ancestor is
judged: its alerts are held as they were, so neither a parent's failure nor its recovery pages its children
on what the parent's outage made them look like, whatever order the probe polls them in.

Evidence of the end: for every alert it judges clear, a rule says since when (``Evaluation.clear``): a
device answering since its first answered poll, a link up since its first poll up, a group whole again since
its members came back. The tracker uses it for ``endsAt``, and after a restart it resolves such alerts at
once, without waiting for ``restart_grace``.

Dependencies mute, they do not hide: the child's alerts are still returned, with ``muted_by`` naming the cause.
An alert on a device whose parent chain is down is muted by the highest down ancestor in the unbroken chain
(``DeviceDown sw-core``), or by ``SiteDown <site>`` when its whole site is down and that chain does not leave
the site; the link, power, optical and reboot alerts of a device that is down are muted by its own
DeviceDown; ServiceOutage mutes RedundancyLost of the same group; NoService mutes CoverageHole,
WeakSignal and CoverageInterference of the same area and carrier. A parent whose state is unknown mutes
nothing. A carrier that owns a device muted under another's (a shared BTS behind a switch it does not own)
gets the parent's DeviceDown too, once, naming its devices behind it: it learns its site is unreachable, and
why, without a storm.

Derived measurements (``Evaluation.samples``), at ``now``: ``redundancy`` (tags zone, group, carrier; fields
members_up, members_needed (what redundancy needs), service_needed, members_total, state 0 ok / 1 degraded
/ 2 outage) for every group whose state is decided, ``coverage`` (tags zone, area, carrier; fields
level 0 good / 1 fair / 2 weak / 3 hole / 4 no_service by the zone's area rule, rsrp_dbm (median of every
reading), probes) for every area and carrier with readings, and ``coverage_at_probe`` (tags zone, area,
probe, carrier; fields level, interference, and the probe's median rsrp_dbm, sinr_db, rsrq_db) for every
probe.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Final, Literal

from collector.alerting import ifnames, parks
from collector.alerting.config import RuleSettings
from collector.alerting.coverage import HOLE, NO_SERVICE, WEAK, area_has, area_level, judge_probe
from collector.alerting.facts import NO_PATH, Facts, Interface, Optical, PowerFacts, Reading
from collector.alerting.health import judge as judge_health
from collector.alerting.model import LABELS, SEVERITY, Evaluation, Finding
from collector.alerting.qos import Result, access_problems, judge_access, judge_transfers, speeds, transfer_problems
from collector.inventory import CoverageRule, Device, Inventory, RedundancyGroup, Zone

__all__ = ["evaluate", "LEVELS", "REDUNDANCY_STATES"]

S: Final = 1_000_000_000
LEVELS: Final = ("good", "fair", "weak", "hole", "no_service")   # coverage ``level`` 0..4
REDUNDANCY_STATES: Final = ("ok", "degraded", "outage")          # redundancy ``state`` 0..2

State = Literal["up", "down", "unknown"]
Sample = tuple[str, dict[str, str], dict[str, int | float | bool]]


def evaluate(facts: Facts, inventory: Inventory, settings: RuleSettings, now_ns: int) -> Evaluation:
    """Return every condition that holds at ``now_ns``, what cannot be decided, and the derived measurements."""
    run = _Run(facts, inventory, _index(inventory), settings, now_ns)
    run.probes()
    run.park_uplinks()
    run.devices()
    run.reboots()
    run.power()
    run.optical()
    run.pon_feeders()
    run.links()
    run.groups()
    run.coverage()
    run.service_quality()
    run.probe_health()   # after coverage: NoService mutes a SimProblem it explains
    run.data_loss()
    run.misbehaving()
    run.collector_fault()
    run.config_rejected()
    run.update_failed()
    return Evaluation(run.findings, run.unknown, run.samples, run.cleared)


# ------------------------------------------------------------------------------------------------ inventory


@dataclass(slots=True)
class _Index:
    """What the rules look up in an inventory, computed once per inventory."""

    keys: dict[str, tuple[str, ...]]              # device -> the names it may be reported under (id, address)
    canonical: dict[str, str]                     # address or id -> device id
    link_at: dict[tuple[str, str], str]           # (device, ifname) -> link id
    link_port: dict[tuple[str, str], str]         # (device, ifnames.canonical(ifname)) -> link id: "Gi1/0/1"
                                                  # and "GigabitEthernet1/0/1" are one port (optical ports)
    plmn: dict[str, str]                          # carrier key or PLMN -> PLMN
    carrier_name: dict[str, str]                  # PLMN -> carrier name
    areas: dict[tuple[str, str], list[str]]       # (zone, area) -> probes standing there
    modem_plmn: dict[tuple[str, str], str]        # (probe, modem name) -> PLMN
    zone_probes: dict[str, list[str]]             # zone -> its probes (ParkUplinkDown names them)


_CACHE: list[tuple[Inventory, _Index]] = []


def _index(inventory: Inventory) -> _Index:
    """Return the index of ``inventory`` (the last one is remembered: inventories are immutable)."""
    if _CACHE and _CACHE[0][0] is inventory:
        return _CACHE[0][1]
    plmn = {key: c.plmn for key, c in inventory.carriers.items()}
    plmn.update({c.plmn: c.plmn for c in inventory.carriers.values()})
    keys: dict[str, tuple[str, ...]] = {}
    canonical: dict[str, str] = {}
    for name, dev in inventory.devices.items():
        keys[name] = (name, dev.address) if dev.address and dev.address != name else (name,)
        if dev.address:
            canonical.setdefault(dev.address, name)
    canonical.update({name: name for name in inventory.devices})
    areas: dict[tuple[str, str], list[str]] = {}
    modem_plmn: dict[tuple[str, str], str] = {}
    for name, probe in inventory.probes.items():
        if probe.area is not None:
            areas.setdefault((probe.zone, probe.area), []).append(name)
        for modem in probe.modems:
            if modem.carrier in plmn:
                modem_plmn[(name, modem.name)] = plmn[modem.carrier]
            elif "-" in modem.carrier:
                modem_plmn[(name, modem.name)] = modem.carrier
    index = _Index(
        keys=keys,
        canonical=canonical,
        link_at={(link.device, link.ifname): key for key, link in inventory.links.items()},
        link_port={(link.device, ifnames.canonical(link.ifname)): key for key, link in inventory.links.items()},
        plmn=plmn,
        carrier_name={c.plmn: c.name for c in inventory.carriers.values()},
        areas=areas,
        modem_plmn=modem_plmn,
        zone_probes={z: [p for p, probe in inventory.probes.items() if probe.zone == z] for z in inventory.zones},
    )
    _CACHE[:] = [(inventory, index)]
    return index


# ------------------------------------------------------------------------------------------------ helpers


def _when(ns: int) -> str:
    """Return ``ns`` as a UTC time an operator reads (``2025-11-28 07:02:10 UTC``)."""
    return datetime.fromtimestamp(ns / S, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(ns: int) -> str:
    """Return a duration as ``1h02m``, ``3m20s`` or ``45s``."""
    seconds = max(0, round(ns / S))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


@dataclass(slots=True)
class _Device:
    """One device as the rules see it now."""

    name: str
    zone: str
    labels: dict[str, str]                # zone, area, site, device (no alertname, no carrier)
    carriers: list[str]                   # owner PLMNs
    what: str                             # "BTS bts-01 at site bts-dv-01"
    state: State | Literal["unpolled"] = "unknown"
    down_since: int = 0
    down_polls: int = 0
    down_by: list[str] = field(default_factory=list)     # probes that see it down
    up_by: list[str] = field(default_factory=list)       # probes that see it answer
    blind: list[str] = field(default_factory=list)       # observing probes that are down
    unsure: bool = False                  # up, but no observer's latest poll was answered (a first miss or
                                          # two: not yet down, and not evidence that it is back either)
    up_since: int = 0                     # up: the earliest start of an observer's answered run
    recovered: int = 0                    # up: when it last answered again after being down (0: never seen)
    evidence: int = 0                     # down: the oldest of the down observers' newest polls
    muted_by: str | None = None           # for its DeviceDown (a down ancestor)
    muted_child: str | None = None        # for its other alerts (a down ancestor, else its own DeviceDown)


class _Run:
    """One evaluation: the steps append findings, unknown matchers and samples."""

    def __init__(self, facts: Facts, inventory: Inventory, index: _Index, settings: RuleSettings,
                 now_ns: int) -> None:
        self.facts, self.inv, self.ix, self.settings, self.now = facts, inventory, index, settings, now_ns
        self.stale_cut = now_ns - int(settings.stale_after * S)
        self.findings: list[Finding] = []
        self.unknown: list[Mapping[str, str]] = []
        self.cleared: list[tuple[Mapping[str, str], int]] = []
        self.samples: list[Sample] = []
        self.probe_state: dict[str, State] = {}
        self.device: dict[str, _Device] = {}
        self.link_state: dict[str, tuple[State, Interface | None]] = {}   # link -> its state and interface

    # ------------------------------------------------------------------------------------------ output

    def emit(self, alertname: str, labels: Mapping[str, str], carriers: Sequence[str | None], summary: str,
             description: str, muted_by: str | None = None) -> None:
        """Add one finding per carrier (one without ``carrier`` when there is none)."""
        for carrier in carriers or [None]:
            full = {"alertname": alertname, "severity": SEVERITY[alertname], **labels}
            if carrier is not None:
                full["carrier"] = carrier
            ordered = {k: full[k] for k in LABELS if full.get(k)}
            self.findings.append(Finding(ordered, {"summary": summary, "description": description}, muted_by))

    def dont_know(self, **matcher: str) -> None:
        """Add an unknown matcher: alerts carrying these labels can be neither confirmed nor cleared now."""
        self.unknown.append(matcher)

    def clear(self, since_ns: int, alertname: str, **labels: str) -> None:
        """Add a clear matcher: ``alertname`` alerts carrying these labels are clear, by the evidence, since
        ``since_ns`` (0 or less: not known, now)."""
        self.cleared.append(({"alertname": alertname, **labels}, min(since_ns, self.now) if since_ns > 0 else self.now))

    def owners(self, carriers: Iterable[str]) -> list[str]:
        """Return the PLMNs of carriers given by key or PLMN, in order, without repeats."""
        out: list[str] = []
        for name in carriers:
            plmn = self.ix.plmn.get(name)
            if plmn is not None and plmn not in out:
                out.append(plmn)
        return out

    def names(self, plmns: Iterable[str | None]) -> str:
        return ", ".join(self.ix.carrier_name.get(p, p) for p in plmns if p) or "no owner carrier"

    # ------------------------------------------------------------------------------------------ probes

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

    # ------------------------------------------------------------------------------------------ devices

    def devices(self) -> None:
        """DeviceDown, after every device's state (parents are decided before their children are muted)."""
        for name in self.inv.devices:
            self._view(name)
        for key in self.facts.pollers:  # polled but not in the inventory
            name = self.ix.canonical.get(key, key)
            if name not in self.device:
                self._view(name)
        undecided = [dev for dev in self.device.values() if dev.state == "down" and self._undecided(dev) is not None]
        for dev in undecided:
            dev.state = "unknown"
        for dev in self.device.values():
            dev.muted_by = self._ancestor_down(dev.name)
        self._sites()
        for dev in self.device.values():
            dev.muted_child = dev.muted_by or (f"DeviceDown {dev.name}" if dev.state == "down" else None)
        behind = self._behind()
        for dev in self.device.values():
            if dev.state == "unknown":
                self.dont_know(device=dev.name)
            elif dev.state == "unpolled":
                self.dont_know(alertname="DeviceDown", device=dev.name)
            elif dev.state == "up":
                if dev.unsure:
                    self.dont_know(alertname="DeviceDown", device=dev.name)
                else:
                    self.clear(dev.up_since, alertname="DeviceDown", device=dev.name)
                self._disagree(dev)
            elif dev.state == "down":
                polls = self.settings.device_down_polls
                seen = ", ".join(dev.down_by)
                blind = f" ({', '.join(dev.blind)} cannot see it: probe down)" if dev.blind else ""
                description = (f"No answer to SNMP or ping from {seen}{blind} since {_when(dev.down_since)} "
                               f"({dev.down_polls} polls in a row, {polls} needed). Owners: "
                               f"{self.names(dev.carriers)}.")
                self.emit("DeviceDown", dev.labels, dev.carriers, f"{dev.what} is down", description, dev.muted_by)
                for carrier, mine in behind.get(dev.name, {}).items():
                    self.emit("DeviceDown", dev.labels, [carrier], f"{dev.what} is down: your "
                              f"{', '.join(mine)} behind it cannot be reached",
                              f"{description} Your equipment behind it ({', '.join(mine)}) cannot be reached "
                              f"until it is back; its own alerts are muted under this one.", dev.muted_by)

    def _disagree(self, dev: _Device) -> None:
        """ProbesDisagree: a device one watcher gets answers from while another, up and fresh, gets none. An
        answer wins for the owners (a probe cut off from a device is not the device's fault, and one probe
        alone cannot invent an outage); the NOC hears of the disagreement, so no probe can hide one either."""
        if not dev.down_by or dev.muted_by is not None:
            self.clear(0, alertname="ProbesDisagree", device=dev.name)
            return
        polls = self.settings.device_down_polls
        self.emit("ProbesDisagree", {k: v for k, v in dev.labels.items() if k != "carrier"}, [],
                  f"Probes disagree about {dev.what}",
                  f"{', '.join(dev.down_by)} got no SNMP or ping answer for {polls} or more polls in a row since "
                  f"{_when(dev.down_since)}, while {', '.join(dev.up_by)} gets answers. Its owners are not paged "
                  "while any watcher gets answers: either the silent probe's path to it is broken, or one of the "
                  "probes is wrong (misconfigured or compromised). It clears when they agree.")

    def _behind(self) -> dict[str, dict[str, list[str]]]:
        """Return, per down ancestor that mutes others, the carriers owning muted devices behind it but not
        the ancestor itself, each with its devices there."""
        out: dict[str, dict[str, list[str]]] = {}
        for dev in self.device.values():
            cause = _cause_device(dev.muted_by) if dev.state == "down" and dev.muted_by else None
            root = self.device.get(cause) if cause is not None else None
            if root is None:
                continue
            for carrier in dev.carriers:
                if carrier not in root.carriers:
                    out.setdefault(root.name, {}).setdefault(carrier, []).append(dev.name)
        return out

    def _sites(self) -> None:
        """SiteDown: a site with two or more watched devices, every one of them down (power, or the site's
        uplink). It is the news: what its devices, and the devices hanging below them elsewhere, would say is
        muted under it. It is muted itself only when every one of its devices is explained by a down
        ancestor outside the site (then that ancestor is the news)."""
        at: dict[str, list[_Device]] = {}
        for dev in self.device.values():
            site = self.inv.sites.get(dev.labels.get("site", ""))
            if site is not None and dev.state != "unpolled":
                at.setdefault(dev.labels["site"], []).append(dev)
        down: list[str] = []  # sites down and not explained from outside: they mute
        for name, devs in at.items():
            if len(devs) < 2:
                continue
            sure = [d.up_since for d in devs if d.state == "up" and not d.unsure]
            if sure:
                self.clear(min(sure), alertname="SiteDown", site=name)
                continue
            if any(d.state == "up" for d in devs):   # only unsure ones: a first miss, or back from a restart
                self.dont_know(alertname="SiteDown", site=name)
                continue
            if any(d.state == "unknown" for d in devs):
                self.dont_know(alertname="SiteDown", site=name)
                continue
            outside = [d.muted_by for d in devs if d.muted_by and self._site_of(d.muted_by) != name]
            muted_by = outside[0] if len(outside) == len(devs) else None
            if muted_by is None:
                down.append(name)
            site = self.inv.sites[name]
            carriers = self.owners([*site.owners, *(plmn for d in devs for plmn in d.carriers)])
            listed = ", ".join(d.name for d in devs)
            self.emit("SiteDown", {"zone": site.zone, "area": site.area or "", "site": name}, carriers,
                      f"Site {name} is down: none of its {len(devs)} devices answers",
                      f"No answer from {listed} since {_when(min(d.down_since for d in devs))}: the site has "
                      f"lost power or its uplink. Their own alerts are muted under this one. "
                      f"Owners: {self.names(carriers)}.", muted_by)
        for dev in self.device.values():
            if dev.labels.get("site") in down and dev.state == "down":
                cause: str | None = dev.labels["site"]
            else:
                cause = self._site_of(dev.muted_by) if dev.muted_by else None
            if cause in down:
                dev.muted_by = f"SiteDown {cause}"

    def _site_of(self, cause: str) -> str | None:
        """Return the site of the device a ``DeviceDown <device>`` mute names."""
        device = self.inv.devices.get(_cause_device(cause) or "")
        return device.site if device is not None else None

    def _describe(self, name: str, zone: str) -> _Device:
        dev = self.inv.devices.get(name)
        if dev is None:
            return _Device(name, zone, {"zone": zone, "device": name}, [], f"Device {name}")
        site = self.inv.sites.get(dev.site)
        labels = {"zone": site.zone if site else zone, "area": (site.area if site else None) or "",
                  "site": dev.site, "device": name}
        what = f"{_KIND.get(dev.kind, 'Device')} {name} at site {dev.site}"
        return _Device(name, labels["zone"], labels, self.owners(dev.owners), what)

    def _view(self, name: str) -> _Device:
        """Decide whether ``name`` answers, from every probe that polls or pings it."""
        known = self.device.get(name)
        if known is not None:
            return known
        keys = self.ix.keys.get(name, (name,))
        observers: set[str] = set()
        for key in keys:
            observers.update(self.facts.pollers.get(key, ()))
            observers.update(self.facts.reachers.get(key, ()))
        zone = next((self.facts.probes[p].zone for p in sorted(observers) if p in self.facts.probes), "")
        dev = self._describe(name, zone)
        self.device[name] = dev
        inv: Device | None = self.inv.devices.get(name)
        if not observers:
            homes = inv.watchers if inv is not None else []
            dev.state = "unknown" if homes and not any(self.up(home) for home in homes) else "unpolled"
            if dev.state == "unknown":
                dev.blind.extend(homes)
            return dev
        need = self.settings.device_down_polls
        for probe in sorted(observers):
            if not self.up(probe):
                dev.blind.append(probe)
                continue
            fresh = [poll for key in keys for poll in (self.facts.polls.get((probe, key)),
                                                       self.facts.reach.get((probe, key)))
                     if poll is not None and poll.time_ns >= self.stale_cut]
            if not fresh:
                continue
            newest = max(poll.time_ns for poll in fresh)
            if all(poll.misses >= need for poll in fresh):
                dev.down_by.append(probe)
                since = min(poll.miss_since_ns for poll in fresh)
                dev.down_since = max(dev.down_since, since)
                polls = min(poll.misses for poll in fresh)
                dev.down_polls = polls if not dev.down_polls else min(dev.down_polls, polls)
                dev.evidence = newest if not dev.evidence else min(dev.evidence, newest)
            else:
                dev.up_by.append(probe)
                answered = [poll.answered_since_ns for poll in fresh if poll.answered and poll.answered_since_ns]
                if answered:
                    dev.up_since = min(answered) if not dev.up_since else min(dev.up_since, *answered)
                dev.recovered = max(dev.recovered, *(poll.recovered_ns for poll in fresh))
        dev.state = "up" if dev.up_by else "down" if dev.down_by else "unknown"
        dev.unsure = dev.state == "up" and not dev.up_since
        return dev

    def _undecided(self, dev: _Device) -> str | None:
        """Return the ancestor that keeps ``dev``'s down state undecided, if any: one that answered again after
        ``dev``'s newest down evidence (that evidence may show only the ancestor's outage), or one that is
        missing its latest polls too but is not judged yet (it may be the cause). ``dev`` is unknown until
        it is polled again, or until the ancestor is judged down (and mutes it)."""
        seen = {dev.name}
        inv = self.inv.devices.get(dev.name)
        parent = inv.parent if inv is not None else None
        while parent is not None and parent not in seen and parent in self.inv.devices:
            seen.add(parent)
            up = self._view(parent)
            if up.state == "up" and (up.unsure or up.recovered > dev.evidence):
                return parent
            parent = self.inv.devices[parent].parent
        return None

    def _ancestor_down(self, name: str) -> str | None:
        """Return ``DeviceDown <a>`` for the highest down ancestor in an unbroken down chain above ``name``."""
        inv = self.inv.devices.get(name)
        root: str | None = None
        seen = {name}
        parent = inv.parent if inv is not None else None
        while parent is not None and parent not in seen and parent in self.inv.devices:
            seen.add(parent)
            if self._view(parent).state != "down":
                break
            root = parent
            parent = self.inv.devices[parent].parent
        return f"DeviceDown {root}" if root is not None else None

    def dev(self, key: str, zone: str) -> _Device:
        """Return the device reported as ``key`` (an id or an address), described even if never polled."""
        name = self.ix.canonical.get(key, key)
        known = self.device.get(name)
        if known is None:
            known = self.device[name] = self._describe(name, zone)
            known.state = "unpolled"
        return known

    # ------------------------------------------------------------------------------------------ device alerts

    def reboots(self) -> None:
        """DeviceRebooted, for ``reboot_hold`` after the reboot."""
        hold = int(self.settings.reboot_hold * S)
        latest: dict[str, tuple[int, str, str]] = {}
        for key, facts in self.facts.devices.items():
            if facts.reboot_ns is None or self.now - facts.reboot_ns >= hold:
                continue
            name = self.ix.canonical.get(key, key)
            if name not in latest or facts.reboot_ns > latest[name][0]:
                latest[name] = (facts.reboot_ns, facts.reboot_how, facts.zone)
        for key, facts in self.facts.devices.items():   # what is known of a device's uptime decides it
            name = self.ix.canonical.get(key, key)
            if name not in latest and facts.uptime_ns >= self.stale_cut:
                self.clear(self.now, alertname="DeviceRebooted", device=name)
        for name, (when, how, zone) in latest.items():
            dev = self.dev(name, zone)
            if dev.state == "unknown":
                continue
            self.emit("DeviceRebooted", dev.labels, dev.carriers, f"{dev.what} restarted",
                      f"It restarted at {_when(when)} ({how}). This alert clears by itself "
                      f"{_span(hold)} after the restart.", dev.muted_child)

    def power(self) -> None:
        """PowerOnBattery, BatteryLow, PowerOnBypass and RectifierFailed."""
        merged: dict[str, PowerFacts] = {}
        for key, facts in self.facts.power.items():
            name = self.ix.canonical.get(key, key)
            merged[name] = _merge_power(merged[name], facts) if name in merged else facts
        for name, facts in merged.items():
            dev = self.dev(name, facts.zone)
            if dev.state == "unknown":
                continue
            if dev.state != "down" and facts.time_ns < self.stale_cut:
                self.dont_know(alertname="PowerOnBattery", device=name)
                self.dont_know(alertname="BatteryLow", device=name)
                self.dont_know(alertname="PowerOnBypass", device=name)
                self.dont_know(alertname="RectifierFailed", device=name)
                continue
            if facts.on_bypass is False:
                self.clear(facts.on_bypass_ns, alertname="PowerOnBypass", device=name)
            if facts.on_bypass:
                self.emit("PowerOnBypass", dev.labels, dev.carriers, f"{dev.what} is on bypass",
                          f"Since {_when(facts.on_bypass_ns)} the UPS feeds its load straight from the mains through "
                          "its bypass: a mains failure now drops the load.", dev.muted_child)
            failed = facts.rectifiers_failed
            if failed is not None and failed <= 0:
                self.clear(facts.rectifiers_failed_ns, alertname="RectifierFailed", device=name)
            if failed is not None and failed > 0:
                self.emit("RectifierFailed", dev.labels, dev.carriers,
                          f"{dev.what}: {_fmt(failed)} rectifier(s) failed",
                          f"The plant reports {_fmt(failed)} failed rectifier(s) since "
                          f"{_when(facts.rectifiers_failed_ns)}: less capacity to carry the load and charge the "
                          "batteries, and no spare if another fails.", dev.muted_child)
            minutes = facts.battery_minutes
            left = f" About {_fmt(minutes)} minutes of battery left." if minutes is not None else ""
            if facts.on_battery is False:
                self.clear(facts.on_battery_ns, alertname="PowerOnBattery", device=name)
            if facts.battery_low is not True and facts.time_ns >= self.stale_cut:
                self.clear(facts.time_ns, alertname="BatteryLow", device=name)
            if facts.on_battery:
                self.emit("PowerOnBattery", dev.labels, dev.carriers, f"{dev.what} is on battery",
                          f"Mains power is lost since {_when(facts.on_battery_ns)}: the site runs on its "
                          f"batteries.{left}",
                          dev.muted_child)
            short = minutes is not None and minutes < self.settings.battery_low_minutes
            if facts.battery_low or short:
                why = "the UPS reports its battery low" if facts.battery_low else \
                    f"under {_fmt(self.settings.battery_low_minutes)} minutes of runtime left"
                self.emit("BatteryLow", dev.labels, dev.carriers, f"{dev.what}: battery low",
                          f"Battery almost exhausted: {why}.{left} The site goes dark when it runs out.",
                          dev.muted_child)

    def optical(self) -> None:
        """OpticalDegraded, one finding per device and link (ports that are no inventory link are merged)."""
        bucket = self.facts.optical_bucket_ns
        found: dict[tuple[str, str], list[str]] = {}
        fresh: dict[str, bool] = {}   # device -> has a current reading (a port that stopped reporting is ignored)
        for (key, port), facts in self.facts.optical.items():
            if facts.rx_dbm is None:
                continue
            name = self.ix.canonical.get(key, key)
            dev = self.dev(name, facts.zone)
            if dev.state == "unknown":
                continue
            current = dev.state == "down" or facts.time_ns >= self.stale_cut
            fresh[name] = fresh.get(name, False) or current
            why = self._optical_why(facts, bucket) if current else None
            if why is not None:
                link = self.ix.link_at.get((name, port)) or self.ix.link_port.get((name, ifnames.canonical(port)), "")
                found.setdefault((name, link), []).append(f"port {port}: {why}")
        for name, current in fresh.items():
            if not current:   # optical polling stopped
                self.dont_know(alertname="OpticalDegraded", device=name)
            else:
                self.clear(self.now, alertname="OpticalDegraded", device=name)
        for (name, link), problems in sorted(found.items()):
            dev = self.device[name]
            carriers = self.owners(self.inv.links[link].carriers) if link else dev.carriers
            labels = {**dev.labels, "link": link}
            where = f" (link {link})" if link else ""
            self.emit("OpticalDegraded", labels, carriers, f"{dev.what}: optical receive power degraded{where}",
                      "Received light is too weak: " + "; ".join(problems) + ". Expect errors, then a link down: "
                      "check the fibre, connectors and the far-end transmitter.", dev.muted_child)

    def pon_feeders(self) -> None:
        """PonFeederDown, one finding per PON port (its link's carriers when the port is an inventory link)."""
        for (key, port), facts in self.facts.pon.items():
            name = self.ix.canonical.get(key, key)
            dev = self.dev(name, facts.zone)
            if dev.state == "unknown":
                continue
            if dev.state != "down" and facts.time_ns < self.stale_cut:
                self.dont_know(alertname="PonFeederDown", device=name, port=port)
                continue
            if facts.online > 0 or facts.onus <= 0:   # ONUs back, or none configured any more
                since = facts.lit_since_ns if facts.online > 0 else facts.time_ns
                self.clear(since, alertname="PonFeederDown", device=name, port=port)
                continue
            if facts.online_ns < 0:   # never seen lit: a port not in service yet, or dark since before a restart
                self.dont_know(alertname="PonFeederDown", device=name, port=port)
                continue
            link = self.ix.link_at.get((name, port)) or self.ix.link_port.get((name, ifnames.canonical(port)), "")
            carriers = self.owners(self.inv.links[link].carriers) if link else dev.carriers
            self.emit("PonFeederDown", {**dev.labels, "port": port, "link": link}, carriers,
                      f"{dev.what}: no ONU online on PON port {port}",
                      f"All {_fmt(facts.onus)} ONUs configured on PON port {port} are offline since "
                      f"{_when(facts.dark_since_ns)} (some were online at {_when(facts.online_ns)}): the feeder "
                      "fibre or splitter is cut, or the OLT port is down. A power cut in every building the port "
                      "serves looks the same: the ONUs' last down cause (dying gasp) tells them apart.",
                      dev.muted_child)

    def _optical_why(self, facts: Optical, bucket_ns: int) -> str | None:
        rx = facts.rx_dbm
        assert rx is not None
        if rx < self.settings.optical_min_rx_dbm:
            return f"Rx {_fmt(rx)} dBm, under the {_fmt(self.settings.optical_min_rx_dbm)} dBm minimum"
        base = facts.baseline(self.now, bucket_ns)
        if base is not None and rx < base - self.settings.optical_drop_db:
            return (f"Rx {_fmt(rx)} dBm, {_fmt(base - rx)} dB under its usual {_fmt(base)} dBm "
                    f"(more than {_fmt(self.settings.optical_drop_db)} dB)")
        return None

    # ------------------------------------------------------------------------------------------ links

    def _interface(self, name: str, ifname: str) -> Interface | None:
        newest: Interface | None = None
        for key in self.ix.keys.get(name, (name,)):
            state = self.facts.interfaces.get((key, ifname))
            if state is not None and (newest is None or state.time_ns > newest.time_ns):
                newest = state
        return newest

    def _link(self, dev: _Device, iface: Interface | None) -> State:
        """Return whether a link is up: its interface is oper up and its device is not down."""
        if dev.state == "down":
            return "down"
        if dev.state == "unknown" or iface is None or iface.oper_up is None:
            return "unknown"
        if not iface.from_trap and iface.time_ns < self.stale_cut:
            return "unknown"
        return "up" if iface.oper_up else "down"

    def links(self) -> None:
        """LinkDown, for inventory links and for interfaces the agent tagged with a link id."""
        todo: list[tuple[str, str, str, Interface | None, list[str]]] = []
        for link_id, link in self.inv.links.items():
            iface = self._interface(link.device, link.ifname)
            todo.append((link_id, link.device, link.ifname, iface, self.owners(link.carriers)))
        seen: set[tuple[str, str]] = set()
        for (key, ifname), tagged in self.facts.links.items():
            name = self.ix.canonical.get(key, key)
            if (name, ifname) in self.ix.link_at or tagged.link is None or tagged.link in self.inv.links \
                    or (name, ifname) in seen:
                continue
            seen.add((name, ifname))
            todo.append((tagged.link, name, ifname, self._interface(name, ifname), []))
        for link_id, name, ifname, iface, carriers in todo:
            dev = self.dev(name, iface.zone if iface is not None else "")
            state = self._link(dev, iface)
            if link_id in self.inv.links:
                self.link_state[link_id] = (state, iface)
            if dev.state == "unknown":
                continue
            if state == "unknown":
                self.dont_know(alertname="LinkDown", device=name, link=link_id)
                continue
            if iface is None or iface.oper_up is not False or iface.admin_up is False:
                since = iface.up_since_ns if iface is not None and iface.oper_up else \
                    iface.time_ns if iface is not None else self.now
                self.clear(since, alertname="LinkDown", device=name, link=link_id)
                continue
            source = "a linkDown trap" if iface.from_trap else "the last poll"
            self.emit("LinkDown", {**dev.labels, "link": link_id}, carriers or dev.carriers,
                      f"Link {link_id} is down ({name} {ifname})",
                      f"Interface {ifname} of {dev.what} is operationally down while administratively up, "
                      f"since {source} at {_when(iface.time_ns)}. Carriers on it: "
                      f"{self.names(carriers or dev.carriers)}.", dev.muted_child)

    # ------------------------------------------------------------------------------------------ redundancy

    def _member(self, group: RedundancyGroup, index: int) -> tuple[State, str, int]:
        """Return a member's state, what to call it, and (when up) since when it is up (0: not known)."""
        member = group.members[index]
        if member.link is not None:
            known = self.link_state.get(member.link)
            if known is None:
                link = self.inv.links[member.link]
                iface = self._interface(link.device, link.ifname)
                known = (self._link(self.dev(link.device, group.zone), iface), iface)
            state, iface = known
            since = iface.up_since_ns if state == "up" and iface is not None else 0
            return state, f"link {member.link}", max(since, 0)
        if member.device is not None:
            dev = self.dev(member.device, group.zone)
            if dev.state == "up" and not dev.unsure:
                return "up", f"device {member.device}", dev.up_since
            return ("down" if dev.state == "down" else "unknown"), f"device {member.device}", 0
        path = member.path
        assert path is not None
        what = f"path {path.name} to {path.target} (seen by {path.probe})"
        reach = self.facts.reach.get((path.probe, path.target))
        if not self.up(path.probe) or reach is None or reach.path is None or reach.path_ns < self.stale_cut:
            return "unknown", what, 0
        if reach.path == path.name:
            return "up", what, max(reach.path_since_ns, 0)
        now = "the target does not answer" if reach.path == NO_PATH else f"traffic takes {reach.path}"
        return "down", f"{what}: {now}", 0

    def _group_place(self, group: RedundancyGroup) -> dict[str, str]:
        """Return the site and area labels of a group: its own, else what its link and device members share."""
        sites: set[str] = set()
        for member in group.members:   # a traced path has no place of its own
            device = self.inv.links[member.link].device if member.link is not None else member.device
            dev = self.inv.devices.get(device) if device is not None else None
            if dev is not None:
                sites.add(dev.site)
        site = group.site or (sites.pop() if len(sites) == 1 else "")
        area = group.area or (self.inv.sites[site].area or "" if site in self.inv.sites else "")
        return {"area": area, "site": site}

    def groups(self) -> None:
        """RedundancyLost, ServiceOutage and the ``redundancy`` samples."""
        for name, group in self.inv.redundancy_groups.items():
            states = [self._member(group, i) for i in range(len(group.members))]
            up = sum(1 for s, _, _ in states if s == "up")
            unknown = sum(1 for s, _, _ in states if s == "unknown")
            total, needed, service = len(states), group.redundant_needs, group.service_needs
            lost: bool | None = False if up >= needed else True if up + unknown < needed else None
            outage: bool | None = False if up >= service else True if up + unknown < service else None
            carriers = self.owners(group.carriers)
            labels = {"zone": group.zone, **self._group_place(group), "group": name}
            if outage is None:
                self.dont_know(alertname="ServiceOutage", group=name)
                self.dont_know(alertname="RedundancyLost", group=name)  # its mute cannot be decided either
                continue
            # Since when: the k-th member to come back (of those up now) made the group whole for k.
            back = sorted(since for s, _, since in states if s == "up")
            if not outage:
                self.clear(back[service - 1], alertname="ServiceOutage", group=name)
            if lost is None:
                self.dont_know(alertname="RedundancyLost", group=name)
            else:
                if not lost:
                    self.clear(back[needed - 1], alertname="RedundancyLost", group=name)
                state = 2 if outage else 1 if lost else 0
                for carrier in carriers:
                    self.samples.append(("redundancy", {"zone": group.zone, "group": name, "carrier": carrier},
                                         {"members_up": up, "members_needed": needed, "service_needed": service,
                                          "members_total": total, "state": state}))
            down = [what for s, what, _ in states if s == "down"]
            about = f"Redundancy group {name}" + (f" ({group.description})" if group.description else "")
            unknown_text = f" Unknown: {', '.join(w for s, w, _ in states if s == 'unknown')}." if unknown else ""
            detail = (f"{up} of {total} members up; the service needs {service}, its redundancy {needed}. "
                      f"Down: {', '.join(down)}.{unknown_text}")
            if outage:
                self.emit("ServiceOutage", labels, carriers,
                          f"{about}: " + ("every route is down" if up == 0 else f"only {up} of {total} routes up"),
                          f"Service outage for {self.names(carriers)}: {detail}")
            if lost:
                self.emit("RedundancyLost", labels, carriers, f"{about} has lost its redundancy",
                          f"The service runs without enough backup: {detail}",
                          f"ServiceOutage {name}" if outage else None)

    # ------------------------------------------------------------------------------------------ data loss

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

    # ------------------------------------------------------------------------------------------ probe health

    def probe_health(self) -> None:
        """ModemDown, SimProblem, ProbeClockSkew, SpoolFilling, ProbeDiskLow (``collector.alerting.health``)."""
        judge_health(self, self.facts.health, self.inv, self.ix.modem_plmn, self.ix.carrier_name)

    # ------------------------------------------------------------------------------------------ service quality

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

    # ------------------------------------------------------------------------------------------ coverage

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


def _area_context(median: float | None, readings: int, seen: str, rule: CoverageRule) -> str:
    """Return the sentence that puts one probe's coverage beside its area's."""
    how = "its worst probe" if rule.area == "worst" else f"at least {rule.share_pct:g} % of its probes"
    if median is None:
        return f"The area is judged by {how}."
    return f"The area's median is {_fmt(median)} dBm over {readings} readings from {seen}; it is judged by {how}."


_KIND: Final = {"bts": "BTS", "switch": "Switch", "router": "Router", "olt": "OLT", "ups": "UPS", "other": "Device"}


def _cause_device(muted_by: str) -> str | None:
    """Return the device a ``DeviceDown <device>`` mute names, or None for another kind of mute."""
    return muted_by.removeprefix("DeviceDown ") if muted_by.startswith("DeviceDown ") else None


def _merge_power(a: PowerFacts, b: PowerFacts) -> PowerFacts:
    """Return the newest of each value of two reports of one UPS (by id and by address)."""
    out = PowerFacts(a.zone, a.site or b.site)
    for x in (a, b):
        if x.on_battery_ns > out.on_battery_ns:
            out.on_battery, out.on_battery_ns = x.on_battery, x.on_battery_ns
        if x.battery_low_ns > out.battery_low_ns:
            out.battery_low, out.battery_low_ns = x.battery_low, x.battery_low_ns
        if x.battery_minutes_ns > out.battery_minutes_ns:
            out.battery_minutes, out.battery_minutes_ns = x.battery_minutes, x.battery_minutes_ns
        if x.on_bypass_ns > out.on_bypass_ns:
            out.on_bypass, out.on_bypass_ns, out.inverter_mode = x.on_bypass, x.on_bypass_ns, x.inverter_mode
        if x.rectifiers_failed_ns > out.rectifiers_failed_ns:
            out.rectifiers_failed, out.rectifiers_failed_ns = x.rectifiers_failed, x.rectifiers_failed_ns
    return out
