"""The alert engine's own health on the collector's registry (``/metrics``): its evaluations, the messages it
skipped, could not decode or had decoded for it, the notifications it handed on, and ``zonewatch_alerts``.

Updated by the engine (``collector.alerting.engine``); ``zonewatch_alerts`` is read by the scrape thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from collector.alerting.tracker import TrackedAlert

__all__ = ["AlertCounts", "EngineMetrics"]


class EngineMetrics:
    """The engine's own health on the collector's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.evaluations = Counter("zonewatch_alert_evaluations", "Rule evaluations", registry=r)
        self.evaluation_seconds = Histogram("zonewatch_alert_evaluation_seconds", "Time one evaluation took",
                                            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5), registry=r)
        self.dropped = Counter("zonewatch_alert_dropped_messages",
                               "Messages the engine skipped because it fell behind (stored all the same), by kind "
                               "(data; status_events only in a flood)", ["kind"], registry=r)
        self.rejected = Counter("zonewatch_alert_rejected_messages", "Messages the engine could not decode",
                                registry=r)
        self.decoded = Counter("zonewatch_alert_decoded_messages", "Data messages the engine judged, by who decoded "
                               "them: the ingest's preparer (ingest), or the engine itself (engine: while storage "
                               "holds the preparer up, or with no preparer to share)", ["by"], registry=r)
        self.notifications = Counter("zonewatch_alert_notifications", "Notifications handed to the receivers",
                                     ["status", "alertname"], registry=r)
        self.alerts = AlertCounts()
        r.register(self.alerts)


class AlertCounts:
    """``zonewatch_alerts``: the alerts tracked by name and state, as of the last evaluation, yielded whole at
    scrape time. (A gauge cleared and filled again showed a scrape in between no alert at all.)"""

    NAME, HELP = "zonewatch_alerts", "Alerts tracked, by state"

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}   # replaced whole, never changed in place

    def update(self, alerts: Iterable[TrackedAlert]) -> None:
        """Count ``alerts`` by name and state (a firing one that is muted as ``muted``); engine thread."""
        counts: dict[tuple[str, str], int] = {}
        for a in alerts:
            state: str = "muted" if a.state == "firing" and a.muted else a.state
            counts[(a.labels["alertname"], state)] = counts.get((a.labels["alertname"], state), 0) + 1
        self.counts = counts   # one reference replaced: a scrape sees the old counts or the new

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self.NAME, self.HELP, labels=["alertname", "state"])]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["alertname", "state"])
        for (name, state), count in sorted(self.counts.items()):
            family.add_metric([name, state], count)
        yield family
