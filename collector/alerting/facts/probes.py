"""The facts about probes: their connection, lost batches, refused rows and desired configuration.

Records: ``ProbeFacts`` (proof of life, the last will), ``Loss`` (seq gaps, for DataLoss), ``Misbehaviour``
(what ``collector.scope`` refused, for ProbeMisbehaving) and ``ConfigView`` (the fleet's view of a probe).
``ProbeObservers`` holds them with each park's bridge state and the probes' health, and takes what the
engine hands over besides the batches (``observe_gaps``, ``observe_refused``, ``observe_configs``,
``observe_bridge``, ``caught_up``); ``Facts.observe`` applies a ``probe`` sample's status here (``_status``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collector.alerting.config import RuleSettings
from collector.alerting.health import HealthFacts
from collector.alerting.parks import Bridges
from zonewatch import wire


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


class ProbeObservers:
    """The probes' facts and how they are taken: the root of ``Facts`` (``collector.alerting.facts``)."""

    def __init__(self, settings: RuleSettings) -> None:
        self.probe_timeout_ns = int(settings.probe_timeout * 1e9)
        self.probes: dict[str, ProbeFacts] = {}
        self.loss: dict[str, Loss] = {}
        self.data_loss_hold_ns = int(settings.data_loss_hold * 1e9)
        self.misbehaviour: dict[str, Misbehaviour] = {}
        self.misbehaving_hold_ns = int(settings.misbehaving_hold * 1e9)
        self.configs: dict[str, ConfigView] = {}          # probe -> its desired configuration and last report
        self.health = HealthFacts(settings.health)   # modems, probes' storage and clocks (collector.alerting.health)
        # The collector's own tick time up to which every data message has been observed (None: no ticks, as in
        # tests: everything up to now is taken to be in). A probe's silence is proven only up to it.
        self.caught_up_ns: int | None = None
        # Each park's uplink as its broker's bridge last said (collector.alerting.parks: ParkUplinkDown, and
        # whether a park's probes are judged by their silence).
        self.bridges = Bridges()
        self._order = 0   # the arrival order of the batch being observed (``Facts.observe``)

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
