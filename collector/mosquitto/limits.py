"""The general options of mosquitto.conf that bound each client: its packets, what is in flight to it, its queue.

Queue limits. While the collector is down or behind, the broker holds every message for its persistent
session, up to ``max_queued_messages`` (mosquitto's default: 1,000 per client) and ``max_queued_bytes``;
past them it drops what comes next, silently (the probes already had their acknowledgement, so their
spools forget it). ``render_limits`` sizes both for the fleet and for the longest collector outage the
broker must bridge (``QueueSizing``), and says what that costs in the broker's memory; the collector
reports every seq a probe lost as a gap and, once the probe's spool is empty, as a DataLoss alert.

Per-client limits. Mosquitto (2.0) applies its limits to every client alike, on every listener
(``per_listener_settings`` covers authentication and ACLs only), so whatever bounds a probe bounds the
collector too. ``render_limits`` writes the ones that cost the collector nothing:

- ``max_packet_size``: the collector's wire limit (``zonewatch.wire.Limits.max_bytes``, 1 MiB of payload) plus
  ``PUBLISH_OVERHEAD`` for the topic and the MQTT header. The broker refuses a larger packet from its
  fixed header, before reading the payload, and disconnects the client: a 100 MiB message costs it nothing,
  and never reaches the collector (mosquitto 2.0 counts a packet without its remaining-length field). MQTT
  v5 clients learn the limit from the CONNACK. The collector's own messages (a probe's configuration,
  alerts on MQTT) must stay under it too: over it, the broker would cut the session they share with the
  ingest.
- ``max_inflight_messages`` (mosquitto's default, 20) and ``max_inflight_bytes`` (``INFLIGHT_LARGEST``
  largest messages): what the broker sends one client before its acknowledgements. Agent-shaped batches
  (5 KiB) never reach the byte limit; a run of 1 MiB messages goes to the collector a few at a time.
  Mosquitto also announces the message count to MQTT v5 clients as their receive maximum, but acknowledges
  a QoS 1 message as it arrives: the agent's window of 100 unacknowledged messages still flows.
- ``max_queued_messages`` and ``max_queued_bytes`` (above): they are per client too, and there is no
  per-listener form, so they cannot be made smaller for probes than the collector's session needs. They
  need not be: a probe may only read its own ``config`` and ``command`` topics, so nothing else can queue for it.

What mosquitto cannot bound per client: how fast a client publishes (it has no rate limit; an in-limit
message is acknowledged at once, however many came before), and what share of the collector's queue one
publisher's messages take (the queue belongs to the subscriber). A probe publishing 1 MiB messages as fast
as its link allows fills the collector's session ahead of every other probe; bounding that is the
collector's per-probe fairness, not the broker's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from zonewatch import wire

PUBLISH_OVERHEAD = 1024   # a PUBLISH packet beyond its payload: fixed header (5), topic (2 + at most 140 for the
                          # longest names wire.valid_name allows), packet id (2), MQTT v5 properties (the rest)
INFLIGHT_MESSAGES = 20    # mosquitto's default, written out
INFLIGHT_LARGEST = 4      # largest-size messages in flight to one client
WIRE_LIMITS = wire.Limits()   # what the collector accepts in one message


@dataclass(frozen=True)
class QueueSizing:
    """What the broker must hold for the collector's session: every message ``probes`` probes send at
    ``rate`` messages a second each (one batch per source poll: 50 SNMP devices and 4 modems every 30 s is
    about 2) for ``hold_s`` seconds of collector outage, at ``message_bytes`` each (an SNMP batch of one
    device and 20 interfaces is about 5 KiB; a cellular one 0.3 KiB). The defaults hold an agent that sends a
    batch a poll (``spool.coalesce: 0s``); with the agent's default of 5 s it sends a tenth of the messages, ten
    times the size, so the same bytes, and the message count has room to spare."""

    probes: int
    rate: float = 2.0
    hold_s: float = 1800.0
    message_bytes: int = 4608

    @property
    def messages(self) -> int:
        """Return the queue length needed (never under mosquitto's own default of 1,000)."""
        return max(1000, math.ceil(max(1, self.probes) * self.rate * self.hold_s))

    @property
    def bytes(self) -> int:
        """Return the queued bytes needed."""
        return self.messages * self.message_bytes


def max_packet_size(limits: wire.Limits = WIRE_LIMITS) -> int:
    """Return the largest MQTT packet the broker should take: the collector's largest message and its header."""
    return limits.max_bytes + PUBLISH_OVERHEAD


def render_limits(sizing: QueueSizing, limits: wire.Limits = WIRE_LIMITS) -> str:
    """Return mosquitto's general options that bound each client: its packets (by the collector's wire
    ``limits``), what is in flight to it, and its queue (sized by ``sizing``). See the module docstring."""
    mib = sizing.bytes / 2**20
    packet = max_packet_size(limits)
    return "\n".join([
        "# ZoneWatch broker limits, rendered by `zonewatch-collector render-mosquitto`: general options for",
        "# mosquitto.conf (anywhere in it). Mosquitto applies each of them to every client, on every listener.",
        f"# A packet over {packet} bytes (the collector's largest message, {limits.max_bytes} bytes, with its topic",
        "# and header) is refused before its payload is read, and its sender disconnected.",
        f"max_packet_size {packet}",
        f"# In flight to one client before it acknowledges: {INFLIGHT_MESSAGES} messages, at most {INFLIGHT_LARGEST} "
        "of the largest.",
        f"max_inflight_messages {INFLIGHT_MESSAGES}",
        f"max_inflight_bytes {INFLIGHT_LARGEST * packet}",
        "# Queued for one client (only the collector's session queues much: a probe reads only its config).",
        f"# Sized for {max(1, sizing.probes)} probes x {sizing.rate:g} messages/s x {sizing.hold_s:g} s of collector "
        f"outage = {sizing.messages} messages,",
        f"# {mib:,.0f} MiB of the broker's memory when full. Past either limit the broker drops new messages for",
        "# the collector (they show as seq gaps and a DataLoss alert): raise --hold, or give the broker memory.",
        f"max_queued_messages {sizing.messages}",
        f"max_queued_bytes {sizing.bytes}",
        "# Mosquitto has no per-client publish rate limit, and one publisher may fill the collector's queue: the",
        "# collector's per-probe fairness bounds what one probe's messages cost the others.",
    ]) + "\n"

