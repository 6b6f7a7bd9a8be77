"""The collector's own health, exposed at /metrics from a private registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, ProcessCollector

from zonewatch import httpd


class CollectorMetrics:
    """Every metric the collector exports; one instance per collector, passed explicitly."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received_messages = Counter("zonewatch_ingest_messages", "MQTT messages received", registry=r)
        self.rejected_messages = Counter(
            "zonewatch_ingest_rejected_messages", "Messages rejected, by reason", ["reason"], registry=r)
        self.rejected_samples = Counter(
            "zonewatch_ingest_rejected_samples", "Samples refused from batches otherwise kept, by reason",
            ["reason"], registry=r)
        self.duplicate_batches = Counter(
            "zonewatch_ingest_duplicate_batches", "Batches dropped as repeats (same probe and seq)", registry=r)
        self.written_batches = Counter("zonewatch_storage_written_batches", "Batches written", registry=r)
        self.written_samples = Counter("zonewatch_storage_written_samples", "Samples written", registry=r)
        self.write_errors = Counter("zonewatch_storage_write_errors", "Failed storage writes", registry=r)
        self.dropped_batches = Counter(
            "zonewatch_storage_dropped_batches", "Batches the storage refused for good", registry=r)
        self.queue_depth = Gauge("zonewatch_ingest_queue_depth", "Messages received, not yet written", registry=r)
        self.seq_gaps = Gauge("zonewatch_probe_seq_gaps",
                              "Batches a probe numbered but the collector has not received", ["probe"], registry=r)
        self.lag = Gauge("zonewatch_ingest_lag_seconds",
                         "How far behind the broker the collector's data session is: the age of its newest tick "
                         "back (a tick it published queues behind everything waiting for it); NaN until one is",
                         registry=r)
        self.seq_jumps = Counter(
            "zonewatch_probe_seq_jumps", "Messages whose seq lay absurdly far from the probe's stream (stored, not "
            "believed: they move nothing until several follow on)", ["probe"], registry=r)
        self.refused_samples = Counter(
            "zonewatch_probe_refused_samples", "Samples and events refused because the probe may not report them "
            "(not_assigned: a device or carrier it does not watch; collector_only: a measurement only the collector "
            "writes; unknown_probe: a probe the inventory does not list)", ["probe", "reason"], registry=r)
        self.http_dropped = Counter(httpd.DROPPED_METRIC, httpd.DROPPED_HELP, ["reason"], registry=r)
        for reason in httpd.DROP_REASONS:
            self.http_dropped.labels(reason)
        # process_open_fds beside process_max_fds: what a leak or a flood of connections would use up
        ProcessCollector(registry=r)

    def count_http_drop(self, reason: str) -> None:
        """Count one /metrics connection closed unanswered (called from the HTTP server's threads)."""
        self.http_dropped.labels(reason).inc()
