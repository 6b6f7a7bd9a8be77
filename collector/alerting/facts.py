"""Facts: the latest known state of every probe, device, interface, path and modem, fed batch by batch.

``Facts.observe(batch, now_ns)`` is called by one thread (the alert engine) for every decoded batch (data,
events and status) in arrival order, including replayed backlog. It never reads a clock and does no I/O; the
rules (``collector.alerting.rules``) only read what it holds. What it keeps, by key::

    probes       probe -> ProbeFacts          last arrival of a message that proves the probe is alive, and the
                                              retained status (``online``, or the last will ``offline``)
    polls        (probe, device) -> Poll      the latest SNMP poll: answered or not, unanswered polls in a row
    reach        (probe, target) -> Reach     the latest ICMP/TCP poll: loss, unanswered polls in a row, path
    devices      device -> DeviceFacts        uptime and the time of the last reboot
    interfaces   (device, ifname) -> Interface  oper/admin status from polls and from link traps, link id
    power        device -> PowerFacts         on_battery, battery_low, battery_minutes, on_bypass,
                                              rectifiers_failed (each with its time), inverter_mode
    optical      (device, port) -> Optical    the latest rx_dbm and a baseline (bucket means over a day)
    pon          (device, port) -> Pon        a PON port's ONUs configured and online (``pon`` samples), and
                                              when ONUs were last seen online there
    cellular     (probe, carrier, modem) -> Modem  readings within the coverage window (bounded)
    loss         probe -> Loss                the ingest's count of the probe's lost seqs (``observe_gaps``)
                                              and when the probe last said its spool was empty
    misbehaviour probe -> Misbehaviour        rows it sent that it may not (refused by ``collector.scope``) and
                                              absurd seq jumps, counted per episode (``observe_refused``)
    configs      probe -> ConfigView          its desired configuration and its last report about one, as the
                                              fleet keeps them (``observe_configs``, from ``collector.fleet``)
    qos          (probe, carrier, modem) -> QosHistory  the modem's recent active test results (``qos`` samples,
                                              bounded: ``collector.alerting.qos``)
    bridges      Bridges                      each park's uplink as its bridge's state says (``observe_bridge``;
                                              ``collector.alerting.parks``)
    health       HealthFacts                  each modem's health (from its ``cellular`` and ``modem`` samples), each
                                              probe's storage self-report and its clock as the collector measures it
                                              (``collector.alerting.health``)

Time: every entry remembers the measurement time (``time_ns`` of the sample or event) it comes from, and a reading older
than what is known does not replace it (a time later than the batch's arrival counts as the arrival: a probe whose clock
runs ahead, or lies, cannot make its reading outrank those that come after), so a probe's backlog arriving after fresher
data fills the store but not the present. Entries also remember since when their current good state holds (a poll
answered since, a device recovered at, an interface up since, a path taken since, a probe back since): the rules use
these to tell an alert's real end, and to tell stale evidence from fresh. A reboot is a fact whenever it is learned (the
latest one is kept). Memory is bounded by the number of things the probes report on: latest values and counters, a fixed
number of optical buckets per port and of cellular readings per modem, no history.

Device keys are the ``device`` tag as sent: the inventory id (the SNMP source's name), or, for a trap from a
sender the probe has no name for, its address; the rules look up both the id and the inventory ``address``.

Link traps: an event newer than the last poll of the interface sets its state at once; a later poll overrides
it. A trap without ``ifname`` but with ``if_index`` is applied to the interface name learned from an earlier
trap of that device carrying both, else to ``ifIndex.<n>`` (the name the poll gives an interface that has
neither ifName nor ifDescr); a trap with neither is only stored, not applied. A link trap without
``admin_up`` keeps the admin status known from the last poll. A link trap with ``present=False`` (a port that
is not there: ifOperStatus notPresent, or one the agent's last poll found so) is not applied at all.

Events arrive twice in a batch from ``collector.ingest.parse_entry`` (as ``events`` and as ``event``
samples for the store): ``event`` samples are read only from a batch without events (data replayed from the
store), so nothing is counted twice.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Final

from collector.alerting.config import RuleSettings
from collector.alerting.health import HealthFacts
from collector.alerting.parks import Bridges
from collector.alerting.qos import QosHistory
from zonewatch import wire

__all__ = [
    "Facts",
    "ProbeFacts",
    "Poll",
    "Reach",
    "DeviceFacts",
    "Interface",
    "PowerFacts",
    "Optical",
    "Pon",
    "Modem",
    "Reading",
    "ConfigView",
    "UPTIME_WRAP_S",
]

UPTIME_WRAP_S: Final = 2**32 / 100  # sysUpTime is 32-bit TimeTicks: it wraps after about 497 days
MAX_READINGS: Final = 64            # cellular readings kept per modem (within the coverage window)
OPTICAL_BUCKETS: Final = 24         # the optical baseline window is cut into this many buckets
NO_PATH: Final = "none"             # the reach source's path when no hop answered


@dataclass(slots=True)
class ProbeFacts:
    """What is known about one probe's connection."""

    zone: str
    alive_ns: int = 0          # arrival time of the last message that proves the probe is connected
    alive_order: int = 0       # arrival order of that message
    offline_order: int = 0     # arrival order of the last ``offline`` status (the last will); 0 = none
    offline_ns: int = 0        # its arrival time
    planned: bool = False      # that status was ``stopping`` (a stop on purpose), not the last will
    back_ns: int = 0           # arrival of the first message after the probe was offline or silent

    @property
    def offline(self) -> bool:
        """Return True when the last will was published and nothing has arrived from the probe since."""
        return self.offline_order > self.alive_order


@dataclass(slots=True)
class Loss:
    """What the collector knows of one probe's lost batches (seq gaps), for DataLoss.

    Times are the collector's arrival times. A gap is a loss for certain only once the probe has said its
    spool is empty in a message that arrived with or after the one that showed the gap: until then the
    missing batches may be a backlog still on its way (the agent sends live data ahead of it)."""

    gaps: int = 0              # the probe's seq gaps now (missing below the highest seen, and given up)
    base: int = 0              # the count before the current episode of losses
    rose_ns: int = 0           # arrival of the message with which the count last rose; 0: not since the start
    first_ns: int = 0          # when the current episode began
    counted: bool = False      # the first count (the baseline) is taken
    spool_empty_ns: int = 0    # arrival of the newest self-report saying the spool is empty


@dataclass(slots=True)
class Misbehaviour:
    """What a probe sent that it may not (``collector.scope``), and absurd seq jumps, in the current episode.

    Times are arrival times; an episode ends ``misbehaving_hold`` after its last refusal (the next starts
    its counts afresh)."""

    zone: str
    counts: dict[str, int] = field(default_factory=dict)     # reason -> rows (or seqs) in this episode
    examples: dict[str, str] = field(default_factory=dict)   # reason -> the first example of this episode
    first_ns: int = 0
    last_ns: int = 0


@dataclass(frozen=True, slots=True)
class ConfigView:
    """A probe's desired configuration, the probe's last report about a desired configuration, and a rollout of a
    software release that failed at it (``collector.fleet.software``)."""

    zone: str
    desired_hash: str
    desired_version: int
    result: str = ""           # the last report: applied, rejected or rolled_back ("" none yet)
    report_hash: str = ""      # the configuration it was about
    report_version: int = 0
    error: str = ""
    reported_ns: int = 0       # when it arrived
    update_failed: str = ""    # a rollout of a release stopped at this probe: why ("" none did; ProbeUpdateFailed)
    update_version: str = ""   # that release
    update_failed_ns: int = 0  # when the rollout stopped


@dataclass(slots=True)
class Poll:
    """The latest poll of one device by one probe (SNMP), or of one target (ICMP/TCP, see ``Reach``)."""

    time_ns: int = -1
    answered: bool = True
    misses: int = 0            # unanswered polls in a row, up to the latest
    miss_since_ns: int = 0     # time of the first of them
    answered_since_ns: int = 0  # time of the first of the answered polls in a row up to the latest (0: none)
    recovered_ns: int = 0      # time of the first answered poll after a run of misses long enough to be down


@dataclass(slots=True)
class Reach(Poll):
    """The latest reach poll of one target by one probe."""

    loss_pct: float = 0.0
    path: str | None = None    # the known path name, ``unknown:<hash>`` or ``none``; None without traceroute
    path_ns: int = -1
    path_since_ns: int = -1    # time of the first sample of the current path
    zone: str = ""


@dataclass(slots=True)
class DeviceFacts:
    """Uptime and reboots of one device (whichever probe polled it)."""

    zone: str
    uptime_s: float | None = None
    uptime_ns: int = -1
    reboot_ns: int | None = None   # when the device last restarted (estimated from its uptime when known)
    reboot_how: str = ""           # what told us: "sysUpTime went back", "coldStart trap", ...


@dataclass(slots=True)
class Interface:
    """Operational and administrative status of one interface."""

    zone: str
    oper_up: bool | None = None
    admin_up: bool | None = None
    time_ns: int = -1
    from_trap: bool = False    # the state comes from a link trap newer than the last poll
    up_since_ns: int = -1      # time of the first oper up reading of the current up run (-1: not up)
    link: str | None = None    # the ``link`` tag the agent gave it (its inventory link id)


@dataclass(slots=True)
class PowerFacts:
    """UPS state of one device; each value keeps its own time (a trap carries only some of them)."""

    zone: str
    site: str | None = None
    on_battery: bool | None = None
    on_battery_ns: int = -1
    battery_low: bool | None = None
    battery_low_ns: int = -1
    battery_minutes: float | None = None
    battery_minutes_ns: int = -1
    on_bypass: bool | None = None
    on_bypass_ns: int = -1
    rectifiers_failed: float | None = None
    rectifiers_failed_ns: int = -1
    inverter_mode: bool = False  # the latest poll said: battery output with the mains present (not an outage)

    @property
    def time_ns(self) -> int:
        """Return the time of the newest value."""
        return max(self.on_battery_ns, self.battery_low_ns, self.battery_minutes_ns, self.on_bypass_ns,
                   self.rectifiers_failed_ns)


@dataclass(slots=True)
class Optical:
    """Receive power of one optical port: the latest reading and a bounded baseline."""

    zone: str
    rx_dbm: float | None = None
    time_ns: int = -1
    buckets: dict[int, tuple[int, float]] = field(default_factory=dict)  # bucket -> (count, sum)
    version: int = 0           # changes with the buckets
    memo: tuple[int, int, float | None] = (-1, -1, None)   # (bucket of now, version, baseline)

    def baseline(self, now_ns: int, bucket_ns: int) -> float | None:
        """Return the median of the bucket means before the current bucket, within the window; None if none.

        The value is remembered until the current bucket or the data change (it is asked every evaluation).
        """
        current = now_ns // bucket_ns
        if self.memo[0] == current and self.memo[1] == self.version:
            return self.memo[2]
        value = self._baseline(current)
        self.memo = (current, self.version, value)
        return value

    def _baseline(self, current: int) -> float | None:
        means = sorted(total / count for b, (count, total) in self.buckets.items()
                       if current - OPTICAL_BUCKETS <= b < current)
        if not means:
            return None
        mid = len(means) // 2
        return means[mid] if len(means) % 2 else (means[mid - 1] + means[mid]) / 2


@dataclass(slots=True)
class Pon:
    """ONU counts of one PON port of an OLT: the latest, and since when none or some are online."""

    zone: str
    onus: float = 0.0          # ONUs configured on the port
    online: float = 0.0        # of them online
    time_ns: int = -1
    online_ns: int = -1        # the newest reading with ONUs online (-1: none seen since the collector started)
    dark_since_ns: int = -1    # the first reading of the current run with none online (-1: some are online)
    lit_since_ns: int = -1     # the first reading of the current run with some online (-1: none are)


@dataclass(slots=True, frozen=True)
class Reading:
    """One cellular reading of one modem."""

    time_ns: int
    rsrp_dbm: float | None
    registered: bool | None
    rat: str | None
    sinr_db: float | None = None   # the serving cell's SINR and RSRQ: interference when RSRP is fine
    rsrq_db: float | None = None


@dataclass(slots=True)
class Modem:
    """Readings of one modem within the coverage window, oldest first."""

    zone: str
    readings: list[Reading] = field(default_factory=list)

    @property
    def latest(self) -> Reading | None:
        """Return the newest reading."""
        return self.readings[-1] if self.readings else None


def _bool(value: wire.FieldValue | None) -> bool | None:
    return None if value is None else bool(value)


def _number(value: wire.FieldValue | None) -> float | None:
    return None if value is None or isinstance(value, bool) else float(value)


class Facts:
    """The latest known state, fed by ``observe``; read by the rules. See the module docstring."""

    def __init__(self, settings: RuleSettings | None = None, *, started_ns: int | None = None) -> None:
        settings = settings or RuleSettings()
        self.started_ns = started_ns  # when the collector started listening (set by the first batch if None)
        self.coverage_window_ns = int(settings.coverage_window * 1e9)
        self.down_polls = settings.device_down_polls
        self.probe_timeout_ns = int(settings.probe_timeout * 1e9)
        self.optical_bucket_ns = max(1, int(settings.optical_baseline * 1e9) // OPTICAL_BUCKETS)
        self.probes: dict[str, ProbeFacts] = {}
        self.polls: dict[tuple[str, str], Poll] = {}
        self.reach: dict[tuple[str, str], Reach] = {}
        self.devices: dict[str, DeviceFacts] = {}
        self.interfaces: dict[tuple[str, str], Interface] = {}
        self.power: dict[str, PowerFacts] = {}
        self.optical: dict[tuple[str, str], Optical] = {}
        self.pon: dict[tuple[str, str], Pon] = {}
        self.cellular: dict[tuple[str, str, str], Modem] = {}
        self.loss: dict[str, Loss] = {}
        self.data_loss_hold_ns = int(settings.data_loss_hold * 1e9)
        self.misbehaviour: dict[str, Misbehaviour] = {}
        self.misbehaving_hold_ns = int(settings.misbehaving_hold * 1e9)
        self.fault: tuple[str, str, int] | None = None   # thread, error, when: a death that stopped the last run
        self.configs: dict[str, ConfigView] = {}          # probe -> its desired configuration and last report
        self.qos: dict[tuple[str, str, str], QosHistory] = {}   # (probe, carrier, modem) -> recent QoS results
        self.qos_window_ns = int(max(settings.qos.access_window, settings.qos.transfer_window) * 1e9)
        self.health = HealthFacts(settings.health)   # modems, probes' storage and clocks (collector.alerting.health)
        # The collector's own tick time up to which every data message has been observed (None: no ticks, as in
        # tests: everything up to now is taken to be in). A probe's silence is proven only up to it.
        self.caught_up_ns: int | None = None
        # Each park's uplink as its broker's bridge last said (collector.alerting.parks: ParkUplinkDown, and
        # whether a park's probes are judged by their silence).
        self.bridges = Bridges()
        # Indexes for the rules (kept here so that an evaluation never scans every interface).
        self.pollers: dict[str, set[str]] = {}            # device -> probes that poll it
        self.reachers: dict[str, set[str]] = {}           # target -> probes that reach it
        self.links: dict[tuple[str, str], Interface] = {}  # interfaces the agent tagged with a link id
        self.modems_of: dict[str, list[tuple[str, str, str]]] = {}  # probe -> its cellular keys
        self.if_names: dict[tuple[str, int], str] = {}    # (device, ifIndex) -> ifname, learned from traps
        self._order = 0

    # -------------------------------------------------------------------------------------------- feeding

    def observe(self, batch: wire.Batch, now_ns: int, order: int | None = None) -> None:
        """Take one decoded batch that arrived at ``now_ns`` (data, events or status).

        ``order`` is its place in the arrival order, when batches are taken out of it (the engine takes
        status and events ahead of a data backlog): a data batch that arrived before a probe's last will
        then never makes the probe look back. Without it, batches are taken to come in arrival order."""
        if self.started_ns is None:
            self.started_ns = now_ns
        self._order = self._order + 1 if order is None else order
        probe = self.probes.get(batch.probe)
        if probe is None:
            probe = self.probes[batch.probe] = ProbeFacts(batch.zone)
        probe.zone = batch.zone
        offline = False
        for sample in batch.samples:
            if sample.time_ns > now_ns:  # a clock ahead (or a lie) must not outrank readings that come later
                sample = wire.Sample(sample.measurement, sample.tags, sample.fields, now_ns)
            m = sample.measurement
            if m == "probe":
                self.health.report(batch, sample)
                offline = self._status(probe, sample, now_ns) or offline
            elif m == "device":
                self._device(batch, sample)
            elif m == "interface":
                self._interface(batch, sample)
            elif m == "reach":
                self._reach(batch, sample)
            elif m == "cellular":
                self._cellular(batch, sample)
                self.health.modem(batch, sample)
            elif m == "power":
                self._power_sample(batch, sample)
            elif m == "optical":
                self._optical(batch, sample)
            elif m == "pon":
                self._pon(batch, sample)
            elif m == "qos":
                self._qos(batch, sample)
            elif m == "modem":
                self.health.modem(batch, sample)
            elif m == "event" and not batch.events and "event" in sample.tags:
                tags = {k: v for k, v in sample.tags.items() if k != "event"}
                fields = {k: v for k, v in sample.fields.items() if k != "occurred"}
                self._event(batch, wire.Event(sample.tags["event"], tags, fields, sample.time_ns))
        for event in batch.events:
            if event.time_ns > now_ns:
                event = wire.Event(event.name, event.tags, event.fields, now_ns)
            self._event(batch, event)
        if any(s.measurement == "probe" and s.fields.get("spool_depth") == 0 for s in batch.samples):
            loss = self.loss.get(batch.probe)
            if loss is None:
                loss = self.loss[batch.probe] = Loss()
            loss.spool_empty_ns = now_ns
        if not offline and now_ns >= probe.alive_ns and self._order > probe.alive_order:
            if probe.offline or probe.alive_ns == 0 or now_ns - probe.alive_ns > self.probe_timeout_ns:
                probe.back_ns = now_ns
            probe.alive_ns, probe.alive_order = now_ns, self._order

    def caught_up(self, sent_ns: int) -> None:
        """Take a tick of the collector's data session (see ``collector.ingest``): every data message published
        before ``sent_ns`` has been observed."""
        self.caught_up_ns = max(self.caught_up_ns or 0, sent_ns)

    def observe_refused(self, zone: str, probe: str, counts: dict[str, int], examples: dict[str, str],
                        now_ns: int) -> None:
        """Take what was refused of a probe's message that arrived at ``now_ns``: rows by reason
        (``collector.scope``), or ``seq_jump``, with an example each."""
        m = self.misbehaviour.get(probe)
        if m is None or now_ns - m.last_ns >= self.misbehaving_hold_ns:
            m = self.misbehaviour[probe] = Misbehaviour(zone, first_ns=now_ns)
        for reason, n in counts.items():
            m.counts[reason] = m.counts.get(reason, 0) + n
            m.examples.setdefault(reason, examples.get(reason, ""))
        m.last_ns = max(m.last_ns, now_ns)

    def observe_bridge(self, topic: str, payload: bytes, now_ns: int) -> bool:
        """Take a park bridge's state message that arrived at ``now_ns``; return False if ``topic`` is not one."""
        return self.bridges.observe(topic, payload, now_ns)

    def observe_configs(self, views: dict[str, ConfigView]) -> None:
        """Take the desired configuration of every managed probe and its last report (the fleet's whole view)."""
        self.configs = dict(views)

    def observe_gaps(self, probe: str, gaps: int, now_ns: int) -> None:
        """Take the ingest's count of ``probe``'s seq gaps at ``now_ns``.

        What a probe had lost before the collector first counted it here is history, not news: the first
        count is the baseline. A rise starts an episode unless one is under way (a rise within
        ``data_loss_hold`` of the last), so DataLoss counts every batch lost in one episode."""
        loss = self.loss.get(probe)
        if loss is None:
            loss = self.loss[probe] = Loss()
        if not loss.counted:
            loss.gaps, loss.base, loss.counted = gaps, gaps, True
            return
        if gaps > loss.gaps:
            if loss.rose_ns == 0 or now_ns - loss.rose_ns >= self.data_loss_hold_ns:
                loss.base, loss.first_ns = loss.gaps, now_ns
            loss.rose_ns = now_ns
        loss.gaps = gaps

    def _status(self, probe: ProbeFacts, sample: wire.Sample, now_ns: int) -> bool:
        """Apply a ``probe`` sample's ``up``; return True if it says the probe is gone (the last will
        ``offline``, or ``stopping``: a stop on purpose, with ``planned``).

        ``online`` (and the agent's own ``up``) need nothing more: any message from the probe proves it is
        connected. An ``offline`` older than the last proof of life (a replay) is not applied.
        """
        up = sample.fields.get("up")
        if up is None or up:
            return False
        if sample.time_ns >= probe.alive_ns and self._order > probe.offline_order:
            probe.offline_order, probe.offline_ns = self._order, now_ns
            probe.planned = sample.fields.get("planned") is True
        return True

    def _device(self, batch: wire.Batch, sample: wire.Sample) -> None:
        device = sample.tags.get("device")
        up = sample.fields.get("up")
        if device is None:
            return
        t = sample.time_ns
        if up is not None:
            key = (batch.probe, device)
            poll = self.polls.get(key)
            if poll is None:
                poll = self.polls[key] = Poll()
                self.pollers.setdefault(device, set()).add(batch.probe)
            _count(poll, bool(up), t, self.down_polls)
        uptime = _number(sample.fields.get("uptime_s"))
        rebooted = sample.fields.get("rebooted") is True
        if uptime is None and not rebooted:
            return
        facts = self.devices.get(device)
        if facts is None:
            facts = self.devices[device] = DeviceFacts(batch.zone)
        booted = t - int(uptime * 1e9) if uptime is not None else t
        if rebooted:
            _reboot(facts, booted, "sysUpTime went back")
        if uptime is not None and t > facts.uptime_ns:
            if facts.uptime_s is not None and uptime < facts.uptime_s and not rebooted:
                elapsed = (t - facts.uptime_ns) / 1e9
                if facts.uptime_s + elapsed < UPTIME_WRAP_S - 1:   # not a 32-bit wrap of sysUpTime
                    _reboot(facts, booted, "sysUpTime went back")
            facts.uptime_s, facts.uptime_ns = uptime, t

    def _interface(self, batch: wire.Batch, sample: wire.Sample) -> None:
        device, ifname = sample.tags.get("device"), sample.tags.get("ifname")
        if device is None or ifname is None:
            return
        state = self._interface_of(batch.zone, device, ifname)
        link = sample.tags.get("link")
        if link is not None and state.link != link:
            state.link = link
            self.links[(device, ifname)] = state
        oper, admin = _bool(sample.fields.get("oper_up")), _bool(sample.fields.get("admin_up"))
        if sample.time_ns < state.time_ns or (oper is None and admin is None):
            return
        state.time_ns, state.from_trap = sample.time_ns, False
        if oper is not None:
            _oper(state, oper, sample.time_ns)
        if admin is not None:
            state.admin_up = admin

    def _interface_of(self, zone: str, device: str, ifname: str) -> Interface:
        state = self.interfaces.get((device, ifname))
        if state is None:
            state = self.interfaces[(device, ifname)] = Interface(zone)
        return state

    def _reach(self, batch: wire.Batch, sample: wire.Sample) -> None:
        target = sample.tags.get("target")
        loss = _number(sample.fields.get("loss_pct"))
        if target is None:
            return
        key = (batch.probe, target)
        reach = self.reach.get(key)
        if reach is None:
            reach = self.reach[key] = Reach(zone=batch.zone)
            self.reachers.setdefault(target, set()).add(batch.probe)
        path = sample.tags.get("path")
        if path is not None and sample.time_ns >= reach.path_ns:
            if path != reach.path:
                reach.path_since_ns = sample.time_ns
            reach.path, reach.path_ns = path, sample.time_ns
        if loss is not None:
            if _count(reach, loss < 100, sample.time_ns, self.down_polls):
                reach.loss_pct = loss

    def _cellular(self, batch: wire.Batch, sample: wire.Sample) -> None:
        carrier, modem = sample.tags.get("carrier", ""), sample.tags.get("modem", "")
        key = (batch.probe, carrier, modem)
        state = self.cellular.get(key)
        if state is None:
            state = self.cellular[key] = Modem(batch.zone)
            self.modems_of.setdefault(batch.probe, []).append(key)
        reading = Reading(sample.time_ns, _number(sample.fields.get("rsrp_dbm")),
                          _bool(sample.fields.get("registered")), sample.tags.get("rat"),
                          _number(sample.fields.get("sinr_db")), _number(sample.fields.get("rsrq_db")))
        readings = state.readings
        newest = max(reading.time_ns, readings[-1].time_ns if readings else reading.time_ns)
        if reading.time_ns < newest - self.coverage_window_ns:
            return  # replayed: older than the window the rules look at
        if not readings or reading.time_ns >= readings[-1].time_ns:
            readings.append(reading)
        else:
            readings.insert(bisect.bisect_right([r.time_ns for r in readings], reading.time_ns), reading)
        cut = bisect.bisect_left([r.time_ns for r in readings], newest - self.coverage_window_ns)
        drop = max(cut, len(readings) - MAX_READINGS)
        if drop:
            del readings[:drop]

    def _qos(self, batch: wire.Batch, sample: wire.Sample) -> None:
        key = (batch.probe, sample.tags.get("carrier", ""), sample.tags.get("modem", ""))
        history = self.qos.get(key)
        if history is None:
            history = self.qos[key] = QosHistory(batch.zone)
        history.add(sample, self.qos_window_ns)

    def _power_of(self, zone: str, device: str) -> PowerFacts:
        state = self.power.get(device)
        if state is None:
            state = self.power[device] = PowerFacts(zone)
        return state

    def _power_sample(self, batch: wire.Batch, sample: wire.Sample) -> None:
        device = sample.tags.get("device")
        if device is None:
            return
        state = self._power_of(batch.zone, device)
        state.site = sample.tags.get("site", state.site)
        f, t = sample.fields, sample.time_ns
        _set_power(state, t, _bool(f.get("on_battery")), _bool(f.get("battery_low")), _number(f.get("battery_minutes")))
        bypass, failed = _bool(f.get("on_bypass")), _number(f.get("rectifiers_failed"))
        if bypass is not None and t >= state.on_bypass_ns:
            state.on_bypass, state.on_bypass_ns = bypass, t
            state.inverter_mode = f.get("inverter_mode") is True
        if failed is not None and t >= state.rectifiers_failed_ns:
            state.rectifiers_failed, state.rectifiers_failed_ns = failed, t

    def _optical(self, batch: wire.Batch, sample: wire.Sample) -> None:
        device, port = sample.tags.get("device"), sample.tags.get("port")
        rx = _number(sample.fields.get("rx_dbm"))
        if device is None or port is None or rx is None:
            return
        state = self.optical.get((device, port))
        if state is None:
            state = self.optical[(device, port)] = Optical(batch.zone)
        t = sample.time_ns
        if t >= state.time_ns:
            state.rx_dbm, state.time_ns = rx, t
        bucket = t // self.optical_bucket_ns
        newest = state.time_ns // self.optical_bucket_ns
        if bucket <= newest - OPTICAL_BUCKETS - 1:
            return  # older than the baseline window
        count, total = state.buckets.get(bucket, (0, 0.0))
        state.buckets[bucket] = (count + 1, total + rx)
        state.version += 1
        if len(state.buckets) > OPTICAL_BUCKETS + 1:
            for old in [b for b in state.buckets if b < newest - OPTICAL_BUCKETS]:
                del state.buckets[old]

    def _pon(self, batch: wire.Batch, sample: wire.Sample) -> None:
        device, port = sample.tags.get("device"), sample.tags.get("port")
        onus, online = _number(sample.fields.get("onus")), _number(sample.fields.get("onus_online"))
        if device is None or port is None or onus is None or online is None:
            return
        state = self.pon.get((device, port))
        if state is None:
            state = self.pon[(device, port)] = Pon(batch.zone)
        t = sample.time_ns
        if online > 0:
            state.online_ns = max(state.online_ns, t)   # a backlog still tells that ONUs were online
        if t < state.time_ns:
            return
        if online > 0 and state.lit_since_ns < 0:
            state.lit_since_ns, state.dark_since_ns = t, -1
        elif online <= 0 and state.dark_since_ns < 0:
            state.dark_since_ns, state.lit_since_ns = t, -1
        state.onus, state.online, state.time_ns = onus, online, t

    def _event(self, batch: wire.Batch, event: wire.Event) -> None:
        device = event.tags.get("device")
        if device is None:
            return
        name, f, t = event.name, event.fields, event.time_ns
        if name in ("link_down", "link_up"):
            self._link_event(batch, device, event)
        elif name == "device_restarted":
            facts = self.devices.get(device)
            if facts is None:
                facts = self.devices[device] = DeviceFacts(batch.zone)
            _reboot(facts, t, "coldStart trap" if f.get("cold") else "warmStart trap")
        elif name == "power_on_battery":
            state = self._power_of(batch.zone, device)
            cleared = bool(f.get("cleared", False))
            if not cleared and state.inverter_mode:
                return  # an inverter in inverter mode sends upsTrapOnBattery while its mains are present
            _set_power(state, t, not cleared, None, _number(f.get("battery_minutes")))
        elif name == "battery_low":
            state = self._power_of(batch.zone, device)
            _set_power(state, t, None, not bool(f.get("cleared", False)), None)

    def _link_event(self, batch: wire.Batch, device: str, event: wire.Event) -> None:
        f = event.fields
        if f.get("present") is False:   # an empty slot or cage (notPresent): no link went down or came up
            return
        index = f.get("if_index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else None
        ifname = event.tags.get("ifname")
        if ifname is not None and index is not None:
            self.if_names[(device, index)] = ifname
        elif ifname is None and index is not None:
            ifname = self.if_names.get((device, index), f"ifIndex.{index}")
        if ifname is None:
            return
        state = self._interface_of(batch.zone, device, ifname)
        if event.time_ns < state.time_ns:
            return
        oper = _bool(f.get("oper_up"))
        _oper(state, (event.name == "link_up") if oper is None else oper, event.time_ns)
        admin = _bool(f.get("admin_up"))
        if admin is not None:
            state.admin_up = admin
        state.time_ns, state.from_trap = event.time_ns, True


def _count(poll: Poll, answered: bool, time_ns: int, down_polls: int) -> bool:
    """Apply one poll result to ``poll`` unless it is older than the latest; return True if applied.

    An answer after ``down_polls`` misses or more in a row is a recovery (``recovered_ns``)."""
    if time_ns <= poll.time_ns:
        return False
    if answered:
        if poll.misses >= down_polls:
            poll.recovered_ns = time_ns
        if not poll.answered or poll.answered_since_ns == 0:
            poll.answered_since_ns = time_ns
        poll.misses = 0
    else:
        poll.answered_since_ns = 0
        if poll.misses == 0:
            poll.miss_since_ns = time_ns
        poll.misses += 1
    poll.answered, poll.time_ns = answered, time_ns
    return True


def _oper(state: Interface, oper_up: bool, time_ns: int) -> None:
    """Set an interface's operational status, remembering since when it is up."""
    if oper_up and state.oper_up is not True:
        state.up_since_ns = time_ns
    elif not oper_up:
        state.up_since_ns = -1
    state.oper_up = oper_up


def _reboot(facts: DeviceFacts, booted_ns: int, how: str) -> None:
    if facts.reboot_ns is None or booted_ns > facts.reboot_ns:
        facts.reboot_ns, facts.reboot_how = booted_ns, how


def _set_power(state: PowerFacts, t: int, on_battery: bool | None, low: bool | None, minutes: float | None) -> None:
    if on_battery is not None and t >= state.on_battery_ns:
        state.on_battery, state.on_battery_ns = on_battery, t
    if low is not None and t >= state.battery_low_ns:
        state.battery_low, state.battery_low_ns = low, t
    if minutes is not None and t >= state.battery_minutes_ns:
        state.battery_minutes, state.battery_minutes_ns = minutes, t
