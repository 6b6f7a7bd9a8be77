"""The responder: acknowledgements and escalation between the alert engine and the dispatcher.

It stands where the engine expects its dispatcher (``submit``, ``sync_alertmanager``) and passes everything on
to the real one (``collector.alerting.notify.Dispatcher``), with the acknowledgement's annotations added
(``acknowledged_by``, ``acknowledged_at``, ``acknowledged_comment``) to every notification of an acknowledged
alert: its resolve, and the alerts re-sent to Alertmanager. The engine calls ``tick(now_ns, firing)`` after
every evaluation, with the alerts firing and notified then; at each tick the responder

1. notes every alert that paged since the last tick as an incident (``AckStore.paged``, at ``now_ns``);
2. sends each resolve (and the end of an incident the tracker no longer has firing) to every escalation receiver
   that got its firing notification, then notes it resolved: everyone notified hears the end;
3. takes the escalation steps due (``collector.alerting.escalation.due``): sends the firing notification, with
   the annotation ``escalation`` saying how long it has gone unacknowledged, to the step's receivers, then notes
   the step. Sending goes first (to a durable outbox), so a crash in between may send twice, never loses.

Escalation receivers are always served by the collector (an outbox each under ``<outbox_dir>/escalation/``),
also when Alertmanager delivers the first notifications: Alertmanager knows nothing of acknowledgements.

Threads: ``submit``, ``sync_alertmanager`` and ``tick`` are called by the engine thread only; the store is
shared with the HTTP API's threads and with ``zonewatch-collector ack`` in other processes (it is re-read at
every tick, so an acknowledgement made anywhere stops the next step).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from collector.alerting.acks import AckStore, Incident
from collector.alerting.config import AlertingConfig
from collector.alerting.escalation import Policies, due, policies
from collector.alerting.model import Notification
from collector.alerting.notify.base import Clock, Notifier, SystemClock
from collector.alerting.notify.metrics import NotifyMetrics
from collector.alerting.notify.mqtt import MqttPublisher
from collector.alerting.notify.outbox import Outbox
from collector.alerting.notify.payload import am_fingerprint, group
from collector.alerting.notify.registry import Context, make_notifier
from collector.alerting.notify.routing import key_path
from collector.inventory import EmailReceiver, Inventory, MqttReceiver

__all__ = ["Forward", "Responder", "ESCALATION_DIR"]

log = logging.getLogger(__name__)

ESCALATION_DIR = "escalation"


class Forward(Protocol):
    """The dispatcher the responder passes notifications on to (the engine's ``Dispatcher`` protocol)."""

    def submit(self, notifications: Sequence[Notification]) -> None:
        """Hand notifications over; return once they are durable."""

    def sync_alertmanager(self, firing: Sequence[Notification], now_ns: int) -> None:
        """Re-send the alerts that are firing to Alertmanager."""


def _minutes(ns: int) -> str:
    minutes = ns / 60e9
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def decorate(n: Notification, incident: Incident | None) -> Notification:
    """Return ``n`` with the acknowledgement's annotations of ``incident`` (unchanged without one)."""
    extra = incident.annotations() if incident is not None and incident.starts_ns == n.starts_ns else {}
    return replace(n, annotations={**n.annotations, **extra}) if extra else n


class Responder:
    """See the module docstring."""

    def __init__(self, forward: Forward, store: AckStore, inventory: Inventory, cfg: AlertingConfig,
                 registry: CollectorRegistry, *, outbox_dir: str | Path | None = None, clock: Clock | None = None,
                 publisher: MqttPublisher | None = None, notifiers: Mapping[str, Notifier] | None = None,
                 notify_metrics: NotifyMetrics | None = None, timeout: float = 10.0) -> None:
        self.forward, self.store, self.cfg = forward, store, cfg
        self.policies: Policies = policies(inventory)
        folder = outbox_dir if outbox_dir is not None else cfg.outbox_dir
        self.folder = Path(folder) / ESCALATION_DIR if folder is not None else None
        if self.policies.receivers and self.folder is None:
            raise ValueError("alerting.outbox_dir: no folder for the escalation receivers' outboxes")
        given = dict(notifiers or {})
        for spec in self.policies.receivers.values():
            if spec.name in given:
                continue
            if isinstance(spec.config, EmailReceiver) and cfg.smtp is None:
                raise ValueError(f"{key_path(spec.where)}: an email receiver needs alerting.smtp (the relay to send "
                                 "through)")
            if isinstance(spec.config, MqttReceiver) and publisher is None:
                raise ValueError(f"{key_path(spec.where)}: an mqtt escalation receiver needs the collector's broker "
                                 "connection")
        self.clock: Clock = clock or SystemClock()
        ctx = Context(clock=self.clock, smtp=cfg.smtp, publisher=publisher, external_url=cfg.external_url,
                      timeout=timeout)
        self.notifiers: dict[str, Notifier] = {name: given.get(name) or make_notifier(spec, ctx)
                                               for name, spec in self.policies.receivers.items()}
        # Per receiver, as the dispatcher's receivers (pass its NotifyMetrics: one set of series per registry).
        self.metrics = notify_metrics or (NotifyMetrics(registry) if self.notifiers else None)
        self.escalations = Counter("zonewatch_alert_escalations", "Escalation steps taken (an alert unacknowledged "
                                   "past a step's time), by carrier", ["carrier"], registry=registry)
        self.outboxes: dict[str, Outbox] = {}
        self._pending: list[Notification] = []   # handed on since the last tick

    # lifecycle ---------------------------------------------------------------------------------------

    def open(self) -> None:
        """Open the escalation receivers' outboxes without delivering (``start`` does both; tests step them)."""
        if not self.notifiers or self.folder is None or self.metrics is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, notifier in self.notifiers.items():
            self.outboxes[name] = Outbox(name, notifier, self.folder / f"{name}.db", self.cfg.retry, self.metrics,
                                         self.clock, max_bytes=self.cfg.outbox_max_bytes,
                                         max_age_ns=int(self.cfg.outbox_max_age * 1e9))

    def start(self) -> None:
        """Open the outboxes and start delivering."""
        self.open()
        for box in self.outboxes.values():
            box.start()
        if self.outboxes:
            log.info("escalation: %d receivers (%s)", len(self.outboxes), ", ".join(self.outboxes))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop delivering (what is undelivered stays on disk) and close the store."""
        for box in self.outboxes.values():
            box.signal_stop()
        for box in self.outboxes.values():
            box.join(timeout)
        self.outboxes = {}
        self.store.close()

    # the engine thread --------------------------------------------------------------------------------

    def submit(self, notifications: Sequence[Notification]) -> None:
        """Pass ``notifications`` on (acknowledged ones annotated); return once they are durable."""
        acked = self._acked()
        self.forward.submit([decorate(n, acked.get(am_fingerprint(n.labels))) for n in notifications])
        self._pending.extend(notifications)

    def sync_alertmanager(self, firing: Sequence[Notification], now_ns: int) -> None:
        """Pass the alerts firing now on to Alertmanager, acknowledged ones annotated."""
        acked = self._acked()
        self.forward.sync_alertmanager([decorate(n, acked.get(am_fingerprint(n.labels))) for n in firing], now_ns)

    def tick(self, now_ns: int, firing: Sequence[Notification]) -> list[tuple[Incident, int]]:
        """Note pages and resolves, and take the escalation steps due at ``now_ns``; return (incident, step)
        of each step taken. ``firing``: every alert firing and notified after the evaluation at ``now_ns``."""
        pending, self._pending = self._pending, []
        for n in [*pending, *firing]:
            if n.status == "firing":
                self.store.paged(n.labels, n.starts_ns, now_ns)
        live = {(am_fingerprint(n.labels), n.starts_ns) for n in firing}
        ended = {(am_fingerprint(n.labels), n.starts_ns): n for n in pending if n.status == "resolved"}
        for incident in self.store.open_incidents():
            key = (incident.fingerprint, incident.starts_ns)
            if key in live:
                continue
            note = ended.get(key) or Notification("resolved", dict(incident.labels), {}, incident.starts_ns, now_ns)
            self._put(incident.escalated_to, [decorate(note, incident)], now_ns)
            self.store.resolved(incident, note.ends_ns or now_ns, now_ns)
        taken: list[tuple[Incident, int]] = []
        for incident, index, step in due(self.store.open_incidents(), self.policies.steps, now_ns):
            waited = _minutes(now_ns - incident.paged_ns)
            note = Notification("firing", dict(incident.labels), {
                **_annotations(firing, incident), "escalation": f"step {index + 1}: unacknowledged for {waited} "
                "since it paged"}, incident.starts_ns)
            self._put(step.receivers, [note], now_ns)
            self.store.escalated(incident, index, step.receivers, now_ns)
            self.escalations.labels(incident.carrier or "").inc()
            log.info("alert %s %s unacknowledged for %s: escalated (step %d) to %s", incident.ref,
                     incident.labels.get("alertname"), waited, index + 1, ", ".join(step.receivers) or "nobody")
            taken.append((incident, index))
        return taken

    def _acked(self) -> dict[str, Incident]:
        return {i.fingerprint: i for i in self.store.open_incidents() if i.acked_ns is not None}

    def _put(self, receivers: Sequence[str], notifications: list[Notification], now_ns: int) -> None:
        for name in receivers:
            box = self.outboxes.get(name)
            if box is None:
                log.warning("escalation receiver %s is no longer configured: it misses %s of %s", name,
                            notifications[0].status, notifications[0].labels.get("alertname"))
                continue
            box.put(group(notifications), now_ns)


def _annotations(firing: Sequence[Notification], incident: Incident) -> dict[str, str]:
    """Return the alert's current annotations (summary, description), if it is among ``firing``."""
    for n in firing:
        if n.starts_ns == incident.starts_ns and dict(n.labels) == dict(incident.labels):
            return dict(n.annotations)
    return {}
