"""The collector's own health, exposed at /metrics from a private registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


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
