"""Enrolment: a new probe asks with its zone's bootstrap credential, an operator decides, the probe gets its own.

The flow (topics and payloads: ``zonewatch.wire``, "Enrolment")::

    probe ──request (bootstrap user enrol-<zone>)──► broker ──► collector (EnrolService): checked, bounded,
        pending in the registry (``collector.fleet.registry``)            counted; never a crash
    operator: zonewatch-collector probes list | approve | reject | retire   (edits the registry, from a shell)
        approve: a new password, hashed into the broker's password file and the ACL
                 (``collector.mosquitto.bundle.write_access``, as render-mosquitto renders them), the broker reloaded
                 (``enrol.reload_command``); the answer (id, username, password) sealed to the probe's key
    collector (polls the registry every ``poll_interval``) ──sealed reply, retained──► probe
    probe logs in as itself ──status online──► collector clears the reply (or ``reply_ttl`` after publishing it)
    retire: the user leaves the password file and ACL, the broker reloads (mosquitto drops a connected client
        whose credentials no longer hold) and the collector refuses every row of the probe (``Scope.retired``)

Choices, and why:

- The running collector receives the requests: it owns the broker sessions (a command cannot log in as the
  collector: ``use_username_as_clientid`` would throw the running one off). It uses a third session,
  ``<client_id>-enrol`` as ``<username>-enrol`` (same password; ``render-mosquitto`` writes the user), so the
  ingest's two sessions stay as they are. The session is persistent: requests sent while the collector is down
  are delivered when it is back.
- The registry keeps the password's hash only; the password exists in the clear only in the ``approve`` command's
  memory and, sealed (libsodium's sealed box: X25519 and XSalsa20-Poly1305, through PyNaCl), in the reply. Every
  holder of the bootstrap credential may read reply topics; only the probe's private key opens its reply. The
  reply's origin rests on the broker: only the collector's enrolment user may write reply topics, and the probe
  verifies the broker's TLS certificate.
- ``approve`` needs the request (its id, a unique prefix of at least six hex digits, or the fingerprint as the
  probe prints it); the id defaults to the one the probe asked for (``--id`` gives another); the zone is the
  request's, which is the bootstrap credential's (the ACL pins each bootstrap user to its zone's topics); the area
  is optional. An approved probe the inventory does not list may publish, about itself only (``collector.scope``):
  it watches nothing until the inventory lists it, and ``probes list`` says so.
- Bounds: a request is at most ``max_request_bytes``; each zone takes ``rate`` requests a minute (a burst of as
  many) and holds at most ``max_pending`` pending requests; a pending request not heard from for ``pending_ttl``
  is forgotten. Whatever is refused (malformed, too large, over a bound, replayed: from a key that is retired or
  whose credentials were used already) is counted by reason (``zonewatch_enrol_requests{result}`` and the
  registry, which ``probes list`` shows) and logged at most once a minute a reason.
- Sending a request again is harmless: the request id is the key's, so it is the same request (two probes
  sharing a bootstrap username throw each other off the broker and send again; see ``agent.fleet.enrol``).

Modules: this one (the ``enrol`` configuration and the pure checks of a request), ``enrol_service`` (the running
side: the enrolment session and its thread), ``enrol_cli`` (``zonewatch-collector probes``), ``registry``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nacl.public import PublicKey, SealedBox
from pydantic import Field, field_validator

from collector import mosquitto
from collector.fleet.registry import Registry
from zonewatch import wire
from zonewatch.strict import Duration, RefPath, Strict

if TYPE_CHECKING:
    from collector.config import CollectorConfig
    from collector.inventory import Inventory

__all__ = ["EnrolConfig", "RateLimit", "Refused", "check_request", "sealed_reply", "access", "registry_path",
           "problems", "current_access"]

log = logging.getLogger(__name__)

REGISTRY_FILE = "enrol.db"   # default: beside the intake queue
FORGET_EVERY_NS = 60 * 10**9
INBOX = 10_000               # messages from the broker waiting for the service's thread, at most


class EnrolConfig(Strict):
    """``enrol:`` of the collector configuration: which zones take new probes, and how the broker follows."""

    zones: list[str] = Field(min_length=1)
    broker_dir: str                        # where the broker reads passwd and acl (render-mosquitto --out)
    reload_command: list[str] = Field(default=["systemctl", "reload", "mosquitto"], min_length=1)
    registry: str | None = None            # default: enrol.db beside queue.path
    reply_ttl: Duration = 3600.0           # a reply stays on the broker at most this long (the probe asks again)
    pending_ttl: Duration = 7 * 86400.0    # a pending request not heard from for this long is forgotten
    max_pending: int = Field(default=20, ge=1)        # pending requests per zone
    rate: int = Field(default=30, ge=1)               # requests a minute per zone (and the burst)
    max_request_bytes: int = Field(default=wire.ENROL_MAX_BYTES, ge=256, le=wire.ENROL_MAX_BYTES)
    poll_interval: Duration = 1.0          # how often the running collector looks at the registry

    @field_validator("zones")
    @classmethod
    def _zones(cls, value: list[str]) -> list[str]:
        for zone in value:
            if not wire.valid_name(zone) or zone == wire.ENROL_ZONE:
                raise ValueError(f"zone {zone!r} is not a zone id (lowercase letters, digits, - _ .; not "
                                 f"{wire.ENROL_ZONE!r})")
        if len(set(value)) != len(value):
            raise ValueError("a zone is listed twice")
        return value


def registry_path(cfg: CollectorConfig) -> Path:
    """Return the registry file of a collector configuration (``enrol.registry``, else beside the queue)."""
    assert cfg.enrol is not None
    return Path(cfg.enrol.registry) if cfg.enrol.registry else Path(cfg.queue.path).parent / REGISTRY_FILE


def problems(cfg: CollectorConfig, inventory: Inventory | None) -> list[tuple[RefPath, str]]:
    """Return what in ``enrol`` the inventory contradicts: a zone it does not define."""
    if cfg.enrol is None or inventory is None:
        return []
    known = ", ".join(sorted(inventory.zones)) or "none defined"
    return [(("enrol", "zones", i), f"unknown zone {zone!r} (the inventory's: {known})")
            for i, zone in enumerate(cfg.enrol.zones) if zone not in inventory.zones]


def access(zones: Sequence[str], registry: Registry | None) -> mosquitto.Enrolment:
    """Return what enrolment adds to the broker's users, from the registry as it stands (none yet: nothing)."""
    if registry is None:
        return mosquitto.Enrolment(tuple(zones))
    return mosquitto.Enrolment(tuple(zones), registry.approved(), registry.retired())


def current_access(cfg: CollectorConfig) -> mosquitto.Enrolment | None:
    """Return enrolment's users for ``render-mosquitto``: None without an ``enrol`` section; the open zones and
    what the registry holds (nothing before the collector first made it)."""
    if cfg.enrol is None:
        return None
    path = registry_path(cfg)
    if not path.exists():
        return access(cfg.enrol.zones, None)
    try:
        registry = Registry(path, create=False)
        try:
            return access(cfg.enrol.zones, registry)
        finally:
            registry.close()
    except (OSError, sqlite3.Error) as exc:
        raise ValueError(f"cannot read the enrolment registry {path}: {exc}") from None


# ---------------------------------------------------------------------------------------------- pure logic


class Refused(Exception):
    """A request that is not taken; ``reason`` is a short token for counting, ``detail`` says what."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def request_zone(topic: str, zones: Iterable[str]) -> str:
    """Return the zone of a request topic, or raise Refused: not a request topic, or a zone not open."""
    try:
        zone, _, kind = wire.parse_enrol_topic(topic)
    except wire.WireError as exc:
        raise Refused(exc.reason, str(exc)) from None
    if kind != "request":
        raise Refused("bad_topic", f"{topic[:120]!r} is not a request topic")
    if zone not in zones:
        raise Refused("zone_closed", f"zone {zone!r} takes no new probes (enrol.zones)")
    return zone


def check_request(topic: str, payload: bytes, zones: Iterable[str], max_bytes: int) -> wire.EnrolRequest:
    """Return the request in a message, or raise Refused: malformed, too large, from a zone not open, or not
    matching its topic (the request id is the key's, and the zone is the topic's, which the ACL pins)."""
    zone = request_zone(topic, zones)
    request_id = topic.split("/")[4]
    try:
        request = wire.decode_enrol_request(payload, max_bytes)
    except wire.WireError as exc:
        raise Refused(exc.reason, str(exc)) from None
    if (request.zone, request.request_id) != (zone, request_id):
        raise Refused("identity_mismatch", f"{topic[:120]}: the payload is zone {request.zone!r}, key "
                      f"{request.request_id[:12]}")
    return request


class RateLimit:
    """At most ``per_minute`` requests a minute per zone, a burst of as many (a token bucket per zone)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, int]] = {}   # zone -> (tokens, when counted)

    def allow(self, zone: str, now_ns: int) -> bool:
        """Take one request of ``zone`` at ``now_ns``; return False if it is over the rate."""
        tokens, then = self._buckets.get(zone, (float(self.per_minute), now_ns))
        tokens = min(float(self.per_minute), tokens + max(0, now_ns - then) * self.per_minute / 60e9)
        if tokens < 1.0:
            self._buckets[zone] = (tokens, now_ns)
            return False
        self._buckets[zone] = (tokens - 1.0, now_ns)
        return True


def sealed_reply(key: bytes, answer: wire.EnrolAnswer) -> bytes:
    """Return the reply to publish for ``answer``: sealed to the probe's public ``key``."""
    sealed = SealedBox(PublicKey(key)).encrypt(wire.encode_enrol_answer(answer))
    return wire.encode_enrol_reply(answer.request, sealed)


