"""What goes over the wire: Alertmanager's webhook JSON (version 4) and the outbox's own encoding.

Receivers written for Alertmanager's webhook work unchanged: the same keys, RFC 3339 times, Alertmanager's
zero time as ``endsAt`` while firing, and Alertmanager's own label fingerprint.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from collector.alerting.model import Notification

# The labels a group shares: one webhook message, one email per group (the rendered Alertmanager
# configuration groups by the same labels).
GROUP_BY = ("alertname", "zone", "carrier", "group", "device")
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, which Alertmanager sends as endsAt while firing

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEPARATOR = 0xFF


def rfc3339(ns: int) -> str:
    """Return ``ns`` since the epoch as RFC 3339 in UTC, as Go's RFC3339Nano writes it (0 is the zero time)."""
    if ns <= 0:
        return ZERO_TIME
    seconds, frac = divmod(ns, 1_000_000_000)
    text = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def am_fingerprint(labels: Mapping[str, str]) -> str:
    """Return Alertmanager's fingerprint of a label set (FNV-1a 64 over the sorted names and values)."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode("utf-8"):
                h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
            h = ((h ^ _SEPARATOR) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def group_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Return the group a notification belongs to: its values of the GROUP_BY labels it has."""
    return tuple((name, labels[name]) for name in GROUP_BY if name in labels)


def group(notifications: Sequence[Notification]) -> list[list[Notification]]:
    """Split notifications into groups, in the order each group first appears, keeping their order within."""
    groups: dict[tuple[tuple[str, str], ...], list[Notification]] = {}
    for n in notifications:
        groups.setdefault(group_key(n.labels), []).append(n)
    return list(groups.values())


def _common(maps: Sequence[Mapping[str, str]]) -> dict[str, str]:
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def alert_annotations(n: Notification) -> dict[str, str]:
    """Return the annotations to send: the alert's own, plus ``flapping: "true"`` on a flapping notice."""
    out = dict(n.annotations)
    if n.flapping:
        out["flapping"] = "true"
    return out


def webhook_alert(n: Notification, generator_url: str = "") -> dict[str, Any]:
    """Return one alert of Alertmanager's webhook message."""
    return {
        "status": n.status,
        "labels": dict(n.labels),
        "annotations": alert_annotations(n),
        "startsAt": rfc3339(n.starts_ns),
        "endsAt": rfc3339(n.ends_ns) if n.status == "resolved" else ZERO_TIME,
        "generatorURL": generator_url,
        "fingerprint": am_fingerprint(n.labels),
    }


def webhook_message(notifications: Sequence[Notification], receiver: str, external_url: str = "",
                    generator_url: str = "") -> dict[str, Any]:
    """Return Alertmanager's webhook JSON (version 4) for one group of notifications."""
    if not notifications:
        raise ValueError("a webhook message needs at least one notification")
    common = _common([n.labels for n in notifications])
    group_labels = {k: common[k] for k in GROUP_BY if k in common}
    key = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(group_labels.items()))
    return {
        "version": "4",
        "groupKey": f"{{}}:{{{key}}}",
        "truncatedAlerts": 0,
        "status": "firing" if any(n.status == "firing" for n in notifications) else "resolved",
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common,
        "commonAnnotations": _common([alert_annotations(n) for n in notifications]),
        "externalURL": external_url,
        "alerts": [webhook_alert(n, generator_url) for n in notifications],
    }


def encode(notifications: Sequence[Notification]) -> bytes:
    """Return notifications as the outbox stores them (JSON, every field kept)."""
    return json.dumps({"v": 1, "notifications": [
        {"status": n.status, "labels": dict(n.labels), "annotations": dict(n.annotations),
         "starts_ns": n.starts_ns, "ends_ns": n.ends_ns, "flapping": n.flapping}
        for n in notifications]}, separators=(",", ":"), sort_keys=True).encode()


def decode(payload: bytes) -> list[Notification]:
    """Return the notifications ``encode`` stored; raise ValueError on anything else."""
    try:
        body = json.loads(payload)
        if body.get("v") != 1:
            raise ValueError(f"unknown outbox format {body.get('v')!r}")
        out = [Notification(status=d["status"], labels=dict(d["labels"]), annotations=dict(d["annotations"]),
                             starts_ns=int(d["starts_ns"]), ends_ns=int(d["ends_ns"]), flapping=bool(d["flapping"]))
               for d in body["notifications"]]
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not an outbox entry: {exc}") from exc
    if not out or any(n.status not in ("firing", "resolved") for n in out):
        raise ValueError("not an outbox entry: no notifications, or a status other than firing/resolved")
    return out
