"""The alert rules: ``evaluate(facts, inventory, settings, now_ns) -> Evaluation``. Pure: no clock, no I/O.

Called by the alert engine's thread (and by tests) with the evaluation time; reads ``Facts`` and the inventory,
changes neither, and may be called as often as wanted. ``Rules(inventory)`` indexes the inventory once (device
addresses, links by port, carriers, areas) and its ``evaluate(facts, settings, now_ns)`` reuses that index: the
engine, which may evaluate five times a second, holds one; ``evaluate`` indexes anew at each call. Every alert
is one ``Finding`` per owner carrier (``carrier`` = the owner's PLMN; an asset without owners gives one finding
without ``carrier``)::

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

from collector.alerting.config import RuleSettings
from collector.alerting.facts import Facts
from collector.alerting.model import Evaluation
from collector.alerting.rules.base import LEVELS, REDUNDANCY_STATES, _index
from collector.alerting.rules.service import ServiceRules
from collector.inventory import Inventory

__all__ = ["evaluate", "Rules", "LEVELS", "REDUNDANCY_STATES"]


class _Run(ServiceRules):
    """One evaluation, with every family's steps (base, probes, devices, equipment, fleet, service)."""


class Rules:
    """The rules over one inventory, indexed once here (the inventory is not changed after it is loaded)."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self._index = _index(inventory)

    def evaluate(self, facts: Facts, settings: RuleSettings, now_ns: int) -> Evaluation:
        """Return every condition that holds at ``now_ns``, what cannot be decided, and the derived measurements.

        Changes neither ``facts`` nor the index: may be called from any thread while ``facts`` is not changed."""
        run = _Run(facts, self.inventory, self._index, settings, now_ns)
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


def evaluate(facts: Facts, inventory: Inventory, settings: RuleSettings, now_ns: int) -> Evaluation:
    """Return ``Rules(inventory).evaluate(facts, settings, now_ns)``: the inventory indexed for this call only (a
    caller that evaluates over and over holds a ``Rules``)."""
    return Rules(inventory).evaluate(facts, settings, now_ns)
