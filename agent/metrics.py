"""The agent's own health, exposed at /metrics from a private registry (never the process-global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class AgentMetrics:
    """Every metric the agent exports; one instance per agent, passed explicitly."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.source_last_success = Gauge(
            "zonewatch_source_last_success_timestamp_seconds", "When the source last polled successfully",
            ["source", "type"], registry=r)
        self.source_duration = Histogram(
            "zonewatch_source_duration_seconds", "How long one poll of the source took", ["source", "type"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.source_errors = Counter(
            "zonewatch_source_errors", "Polls that failed", ["source", "type"], registry=r)
        self.source_samples = Counter(
            "zonewatch_source_samples", "Samples produced", ["source", "type"], registry=r)
        self.listener_inputs = Gauge(
            "zonewatch_listener_inputs", "What a listener received, by result (accepted or why it was dropped)",
            ["source", "type", "result"], registry=r)
        self.spool_depth = Gauge("zonewatch_spool_batches", "Batches waiting in the spool", registry=r)
        self.spool_bytes = Gauge("zonewatch_spool_bytes", "Payload bytes waiting in the spool", registry=r)
        self.spool_dropped = Gauge(
            "zonewatch_spool_dropped_batches", "Batches dropped by the spool bounds, ever", registry=r)
        self.mqtt_connected = Gauge("zonewatch_mqtt_connected", "1 while connected to the broker", registry=r)
        self.published = Counter("zonewatch_mqtt_published_messages", "Messages published", registry=r)
        self.acknowledged = Counter(
            "zonewatch_mqtt_acknowledged_messages", "Messages the broker acknowledged", registry=r)
        self.refused = Counter(
            "zonewatch_mqtt_refused_messages", "Batches the broker refused (MQTT v5 PUBACK failure; they stay in the "
            "spool and are tried again), by kind (data, events) and the broker's reason", ["kind", "reason"],
            registry=r)
        self.modem_recovery = Counter(
            "zonewatch_modem_recovery_steps", "Recovery steps run on a modem that stopped answering, by step "
            "(reopen, cfun, usb_power) and result (ok, failed)", ["modem", "step", "result"], registry=r)
        self.modem_dropped = Counter(
            "zonewatch_modem_values_dropped", "Modem values dropped as physically impossible (a scale or sign the "
            "firmware got wrong), by the command that gave them and the field", ["modem", "command", "field"],
            registry=r)
        self.modem_empty = Counter(
            "zonewatch_modem_empty_polls", "Polls a modem answered with no value at all (no reading published)",
            ["modem"], registry=r)
        self.commands = Counter(
            "zonewatch_commands", "Messages on the probe's command topic, by kind (diagnostic_round; other when "
            "unreadable) and result (accepted, or why refused: expired, duplicate, unknown_kind, not_json, "
            "bad_schema, not_this_probe, no_source ...)", ["kind", "result"], registry=r)
        self.profile_empty = Gauge(
            "zonewatch_snmp_profile_empty", "1 while an SNMP poll profile of the device reads nothing (no rows, or "
            "no usable value) on polls without read failures; 0 once it reads", ["device", "profile"], registry=r)
