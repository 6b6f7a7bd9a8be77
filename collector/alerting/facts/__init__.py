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

Each family's records live in a module with the code that sets them, as a class; ``Facts`` is those classes in
a chain (each family over the one before it), and ``observe`` hands each sample to its family's method by its
measurement. They stay one object's methods, so a sample costs one method call, as in a single class; ``interface``
samples (most of what the probes send) cost less: a run of them in a batch is one call (``_interfaces``)::

    probes.py    ProbeFacts, Loss, Misbehaviour, ConfigView; the probe's status, and what the engine hands
                 over besides batches (observe_gaps, observe_refused, observe_configs, observe_bridge, caught_up)
    devices.py   Poll, Reach, DeviceFacts, Interface: ``device``, ``interface`` and ``reach`` samples
    cellular.py  Reading, Modem and the QoS histories: ``cellular`` and ``qos`` samples
    power.py     PowerFacts, Optical, Pon: ``power``, ``optical`` and ``pon`` samples
    events.py    link, restart and UPS traps (and ``event`` samples), applied to the records above
    fields.py    a field read as a bool or a number

Import the records from here (``from collector.alerting.facts import Interface``); the constants of a family
(``NO_PATH``, ``MAX_READINGS``, ``OPTICAL_BUCKETS``) from its module.
"""

from __future__ import annotations

from itertools import groupby
from operator import attrgetter

from collector.alerting.config import RuleSettings
from collector.alerting.facts.cellular import Modem, Reading
from collector.alerting.facts.devices import UPTIME_WRAP_S, DeviceFacts, Interface, Poll, Reach
from collector.alerting.facts.events import EventObservers
from collector.alerting.facts.power import Optical, Pon, PowerFacts
from collector.alerting.facts.probes import ConfigView, Loss, ProbeFacts
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

_MEASUREMENT = attrgetter("measurement")


class Facts(EventObservers):
    """The latest known state, fed by ``observe``; read by the rules. See the module docstring."""

    def __init__(self, settings: RuleSettings | None = None, *, started_ns: int | None = None) -> None:
        super().__init__(settings or RuleSettings())
        self.started_ns = started_ns  # when the collector started listening (set by the first batch if None)
        self.fault: tuple[str, str, int] | None = None   # thread, error, when: a death that stopped the last run

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
        offline = spool_empty = False
        # Runs of samples of one measurement, in the batch's order: the interfaces of an SNMP poll (most samples of a
        # data message) go to their family as one run, the others one by one.
        for m, run in groupby(batch.samples, _MEASUREMENT):
            if m == "interface":
                self._interfaces(batch.zone, run, now_ns)
                continue
            for sample in run:
                if sample.time_ns > now_ns:  # a clock ahead (or a lie) must not outrank readings that come later
                    sample = wire.Sample(m, sample.tags, sample.fields, now_ns)
                if m == "probe":
                    self.health.report(batch, sample)
                    offline = self._status(probe, sample, now_ns) or offline
                    spool_empty = spool_empty or sample.fields.get("spool_depth") == 0
                elif m == "device":
                    self._device(batch, sample)
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
        if spool_empty:
            loss = self.loss.get(batch.probe)
            if loss is None:
                loss = self.loss[batch.probe] = Loss()
            loss.spool_empty_ns = now_ns
        if not offline and now_ns >= probe.alive_ns and self._order > probe.alive_order:
            if probe.offline or probe.alive_ns == 0 or now_ns - probe.alive_ns > self.probe_timeout_ns:
                probe.back_ns = now_ns
            probe.alive_ns, probe.alive_order = now_ns, self._order
