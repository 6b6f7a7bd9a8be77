"""One receiver's durable outbox and the thread that delivers it.

``put`` commits messages (each a list of notifications the notifier sends as one) to a ``DiskQueue``
file before it returns. The delivery thread sends the oldest message, and only after the receiver took
it deletes it and goes on to the next: so a receiver that is down gets every message later, in order,
once (twice only if the collector dies between the receiver's answer and the delete, or the answer is lost
on the way). While the receiver fails with a retryable error, attempts back off exponentially from
``retry.initial`` to ``retry.max``; a message the receiver refuses for good is logged with the receiver
and the reason, counted and dropped. Failures are logged when they start and when they end, not at
every attempt.

The Alertmanager outbox also holds a *resend* list (the alerts firing now, replaced by each
``resend``): it is sent, without being stored, whenever the queue is empty.

``step(now)`` does at most one attempt and says when the next is due; the thread calls it in a loop, and
unit tests call it with a fake clock, without threads or sleeps.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from collector.alerting.config import RetryConfig
from collector.alerting.model import Notification
from collector.alerting.notify.base import Clock, Notifier, NotifyError
from collector.alerting.notify.metrics import NotifyMetrics
from collector.alerting.notify.payload import decode, encode
from zonewatch.backoff import Backoff
from zonewatch.queue import DiskQueue

log = logging.getLogger(__name__)

KIND = "message"


def describe(notifications: Sequence[Notification]) -> str:
    """Return a short description for logs: ``firing ServiceOutage (+2 more)``."""
    first = notifications[0]
    more = f" (+{len(notifications) - 1} more)" if len(notifications) > 1 else ""
    return f"{first.status} {first.labels.get('alertname', '?')}{more}"


class Outbox:
    """A receiver's queue file, its notifier and its delivery thread."""

    def __init__(self, name: str, notifier: Notifier, path: Path, retry: RetryConfig, metrics: NotifyMetrics,
                 clock: Clock, *, max_bytes: int, max_age_ns: int) -> None:
        self.name, self.notifier, self.retry, self.metrics, self.clock = name, notifier, retry, metrics, clock
        self.queue = DiskQueue(path, max_bytes, max_age_ns)
        self._lock = threading.Lock()  # the queue and the resend list: submitters and the delivery thread
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._next_try = 0.0
        self._resend: list[Notification] | None = None
        metrics.init(name)
        metrics.depth.labels(name).set(self.queue.depth())

    # any thread ------------------------------------------------------------------------------------------

    def put(self, messages: Sequence[Sequence[Notification]], now_ns: int) -> None:
        """Commit ``messages`` to the queue file (in order) and wake the delivery thread."""
        if not messages:
            return
        resolved = {n.key for m in messages for n in m if n.status == "resolved"}
        with self._lock:
            before = self.queue.dropped()
            self.queue.put_many([(KIND, encode(m)) for m in messages], now_ns)
            dropped = self.queue.dropped() - before
            depth = self.queue.depth()
            if self._resend is not None and resolved:
                # A resend list taken before these resolved must not fire them again after their resolution.
                self._resend = [n for n in self._resend if n.key not in resolved]
        self.metrics.queued.labels(self.name).inc(sum(len(m) for m in messages))
        self.metrics.depth.labels(self.name).set(depth)
        if dropped:
            self.metrics.dropped.labels(self.name, "bounds").inc(dropped)
            log.error("receiver %s: its outbox is over its bounds; the %d oldest messages were dropped",
                      self.name, dropped)
        self._wake.set()

    def resend(self, firing: Sequence[Notification]) -> None:
        """Replace the resend list with ``firing`` and wake the delivery thread."""
        with self._lock:
            self._resend = list(firing)
        self._wake.set()

    def depth(self) -> int:
        """Return how many messages wait."""
        with self._lock:
            return self.queue.depth()

    # the delivery thread (or a test) --------------------------------------------------------------------------

    def step(self, now: float) -> float | None:
        """Make at most one delivery attempt if one is due; return seconds until the next one (0: at once),
        or None when there is nothing to send."""
        if now < self._next_try:
            return self._next_try - now
        with self._lock:
            entries = self.queue.pending(1)
            resend = self._resend
        if entries:
            entry = entries[0]
            try:
                notifications = decode(entry.payload)
            except ValueError as exc:
                log.error("receiver %s: dropped outbox entry %d that cannot be read: %s", self.name, entry.id, exc)
                self.metrics.dropped.labels(self.name, "refused").inc()
                self._ack(entry.id)
                return 0
            outcome = self._attempt(notifications, now)
            if outcome == "retry":
                return self._next_try - now
            self._ack(entry.id)
            return 0
        if resend is not None:
            if resend:
                outcome = self._attempt(resend, now, stored=False)
                if outcome == "retry":
                    return self._next_try - now
            with self._lock:
                if self._resend is resend:  # not replaced meanwhile
                    self._resend = None
            return 0
        return None

    def _ack(self, entry_id: int) -> None:
        with self._lock:
            self.queue.ack([entry_id])
            depth = self.queue.depth()
        self.metrics.depth.labels(self.name).set(depth)

    def _attempt(self, notifications: Sequence[Notification], now: float, stored: bool = True) -> str:
        """Send once; return ``sent``, ``dropped`` or ``retry`` (with the back-off set)."""
        what = describe(notifications) if stored else f"resend of {len(notifications)} firing alerts"
        try:
            self.notifier.notify(notifications)
        except NotifyError as exc:
            if exc.retryable:
                return self._failed(str(exc), now)
            log.error("receiver %s refused %s for good, dropped: %s", self.name, what, exc)
            if stored:
                self.metrics.dropped.labels(self.name, "refused").inc(len(notifications))
            self.metrics.up.labels(self.name).set(0)
            return "dropped"
        except Exception as exc:  # noqa: BLE001 - a notifier bug must not lose the message or kill the thread
            log.exception("receiver %s: the notifier failed unexpectedly on %s", self.name, what)
            return self._failed(f"{type(exc).__name__}: {exc}", now)
        if self._failures:
            log.info("receiver %s is back: delivered %s after %d failed attempts", self.name, what, self._failures)
        self._failures = 0
        self._next_try = 0.0
        if stored:
            self.metrics.sent.labels(self.name).inc(len(notifications))
        self.metrics.up.labels(self.name).set(1)
        return "sent"

    def _failed(self, reason: str, now: float) -> str:
        self._failures += 1
        delay = Backoff(self.retry.initial, self.retry.max).delay(self._failures - 1)
        self._next_try = now + delay
        self.metrics.failures.labels(self.name).inc()
        self.metrics.up.labels(self.name).set(0)
        if self._failures == 1:
            log.warning("receiver %s is not taking notifications (%s); retrying with back-off, %d waiting",
                        self.name, reason, self.depth())
        else:
            log.debug("receiver %s: attempt %d failed (%s); next in %.3gs", self.name, self._failures, reason, delay)
        return "retry"

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                wait = self.step(self.clock.monotonic())
            except Exception:  # noqa: BLE001 - e.g. the disk: keep the thread, try again later
                log.exception("receiver %s: delivery failed", self.name)
                wait = self.retry.initial
            if wait == 0:
                continue
            self._wake.wait(wait)

    # lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the delivery thread."""
        self._thread = threading.Thread(target=self._run, name=f"zw-notify-{self.name}", daemon=True)
        self._thread.start()

    def signal_stop(self) -> None:
        """Ask the delivery thread to stop after its current attempt."""
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float) -> bool:
        """Wait for the thread; close the notifier and the queue if it ended; return whether it ended."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("receiver %s: delivery still busy at shutdown; its queue stays as it is", self.name)
                return False
        self.notifier.close()
        self.queue.close()
        return True
