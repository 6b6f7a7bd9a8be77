"""The notifiers' health on the collector's registry, per receiver (names as in ``routing``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class NotifyMetrics:
    """Counters and gauges labelled by ``receiver``; one instance per dispatcher, registry passed in."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.queued = Counter("zonewatch_notify_queued", "Notifications put in a receiver's outbox",
                              ["receiver"], registry=r)
        self.sent = Counter("zonewatch_notify_sent", "Notifications the receiver accepted", ["receiver"], registry=r)
        self.failures = Counter("zonewatch_notify_failures",
                                "Delivery attempts that failed and will be retried", ["receiver"], registry=r)
        self.dropped = Counter("zonewatch_notify_dropped",
                               "Notifications given up: refused by the receiver, or over the outbox's bounds",
                               ["receiver", "reason"], registry=r)
        self.depth = Gauge("zonewatch_notify_queue_depth", "Messages waiting in a receiver's outbox",
                           ["receiver"], registry=r)
        self.up = Gauge("zonewatch_notify_receiver_up",
                        "1 if the last delivery attempt to the receiver succeeded (or none was needed yet)",
                        ["receiver"], registry=r)

    def init(self, receiver: str) -> None:
        """Create every series of ``receiver`` at zero so that dashboards see it before the first alert."""
        for metric in (self.queued, self.sent, self.failures, self.depth):
            metric.labels(receiver)
        for reason in ("refused", "bounds"):
            self.dropped.labels(receiver, reason)
        self.up.labels(receiver).set(1)
