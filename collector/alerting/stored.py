"""What the alert engine stores after each evaluation: the derived measurements and the ``alert`` series.

``StoredPoints`` is owned by the engine (``collector.alerting.engine``) and called on its thread only, once per
evaluation, with the evaluation time. It writes, through the engine's ``store`` (the intake queue, then storage):

- the rules' derived samples (``redundancy``, ``coverage``) that changed, or that were last written
  ``DERIVED_REFRESH_NS`` ago;
- ``alert`` points: ``firing 1`` for every firing alert when it starts firing or is notified firing, when its
  muting or its tags change (a maintenance window's: the series of the old tags gets its ``firing 0``), and at
  least every ``REFRESH_NS``; ``firing 0`` once it ends, notified or not, at the time its condition cleared
  unless it was held firing after that, and always after the last ``firing 1`` written for it.

An alert about a probe is stored under that probe (the batch header's probe becomes the ``probe`` tag); anything
else under ``STORE_PROBE``. It remembers what it wrote for as long as this process runs, no longer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from collector.alerting.maintenance import window_of
from collector.alerting.model import Evaluation, Notification, fingerprint
from collector.alerting.tracker import AlertTracker, TrackedAlert
from zonewatch import wire

__all__ = ["DERIVED_REFRESH_NS", "REFRESH_NS", "STORE_PROBE", "StoredPoints", "alert_key"]

STORE_PROBE = "collector"    # the probe name of the batches of derived measurements
REFRESH_NS = 60 * 10**9      # a firing alert's ``alert`` point is written again at least this often
DERIVED_REFRESH_NS = 30 * 10**9   # an unchanged ``redundancy``/``coverage`` point is written this often


class StoredPoints:
    """Write the points of each evaluation through ``store``, remembering what was written last."""

    def __init__(self, store: Callable[[list[wire.Batch]], None]) -> None:
        self.store = store
        self._written_ns: dict[str, tuple[int, bool | None]] = {}  # alert key -> when written, muted then
        self._written_tags: dict[str, dict[str, str]] = {}         # alert key -> the tags written last
        self._derived: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[int, dict[str, wire.FieldValue]]] = {}

    def write(self, evaluation: Evaluation, tracker: AlertTracker, notes: Sequence[Notification],
              now_ns: int) -> None:
        """Store what ``evaluation`` and the tracker's update at ``now_ns`` (with its ``notes``) changed."""
        points = [(m, tags, fields, now_ns) for m, tags, fields in self._changed(evaluation.samples, now_ns)]
        # Every firing alert that ended gets its ``firing 0``, notified or not (one muted for its whole life
        # too), at the time its condition cleared unless it was held firing after that (keep-firing, flap
        # control), and always after the last ``firing 1`` this engine wrote for it.
        for ended in tracker.ended:
            key = alert_key(ended.alert)
            last_ns = self._written_ns.pop(key, (0, None))[0]
            at = now_ns if ended.held else min(now_ns, ended.alert.cleared_ns)
            at = max(at, last_ns + 1_000_000) if last_ns else at    # VictoriaMetrics keeps milliseconds
            tags = self._written_tags.pop(key, None) or _alert_tags(ended.alert.labels, ended.alert.muted_by)
            points.append(("alert", tags, {"firing": 0, "muted": 0}, at))
        for alert in tracker.firing():
            key = alert_key(alert)
            last_ns, last_muted = self._written_ns.get(key, (0, None))
            tags, last_tags = _alert_tags(alert.labels, alert.muted_by), self._written_tags.get(key)
            if now_ns - last_ns < REFRESH_NS and last_muted == alert.muted and last_tags == tags \
                    and not _new(alert, notes):
                continue
            if last_tags is not None and last_tags != tags:   # a window opened or closed: its series ends here
                points.append(("alert", last_tags, {"firing": 0, "muted": 0}, max(now_ns, last_ns + 1_000_000)))
            self._written_ns[key] = (now_ns, alert.muted)
            self._written_tags[key] = tags
            points.append(("alert", tags, {"firing": 1, "muted": int(alert.muted)}, now_ns))
        live = {alert_key(a) for a in tracker.firing()}
        for key in [k for k in self._written_ns if k not in live]:
            del self._written_ns[key]
        for key in [k for k in self._written_tags if k not in live]:
            del self._written_tags[key]
        # The batch header's probe becomes the ``probe`` tag: an alert about a probe is stored under it.
        by_origin: dict[tuple[str, str], list[wire.Sample]] = {}
        for measurement, tags, fields, at in points:
            origin = (tags.get("zone", ""), tags.get("probe") or STORE_PROBE)
            rest = {k: v for k, v in tags.items() if k not in ("zone", "probe") and v}
            by_origin.setdefault(origin, []).append(wire.Sample(measurement, rest, fields, at))
        batches = [wire.Batch(zone, probe, 0, now_ns, tuple(samples))
                   for (zone, probe), samples in by_origin.items() if zone]
        if batches:
            self.store(batches)

    def _changed(self, samples: Sequence[tuple[str, dict[str, str], dict[str, wire.FieldValue]]],
                 now_ns: int) -> list[tuple[str, dict[str, str], dict[str, wire.FieldValue]]]:
        """Return the derived samples whose values changed, or that were last written long enough ago."""
        out = []
        for measurement, tags, fields in samples:
            key = (measurement, tuple(sorted(tags.items())))
            last = self._derived.get(key)
            if last is None or last[1] != fields or now_ns - last[0] >= DERIVED_REFRESH_NS:
                self._derived[key] = (now_ns, dict(fields))
                out.append((measurement, tags, fields))
        return out


def alert_key(alert: TrackedAlert) -> str:
    """Return the tracker key of ``alert``."""
    return fingerprint(alert.labels)


def _new(alert: TrackedAlert, notes: Sequence[Notification]) -> bool:
    return any(n.status == "firing" and n.labels == alert.labels for n in notes)


def _alert_tags(labels: Any, muted_by: str | None = None) -> dict[str, str]:
    """Return the ``alert`` measurement's tags: the labels, and ``maintenance`` (the window's id) while a
    maintenance window mutes it."""
    tags = {k: str(v) for k, v in labels.items() if v}
    window = window_of(muted_by)
    if window is not None:
        tags["maintenance"] = window
    return tags
