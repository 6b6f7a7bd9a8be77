"""The alert tracker: turns each evaluation's findings into pending, firing and resolved alerts.

Called by one thread (the engine), once per evaluation, with the evaluation time ``now_ns``; it never reads a
clock. What it does, per alert (keyed by its labels):

- **Hold-down**: a finding is *pending* until its condition has held for the rule's ``for``; then it fires.
  ``startsAt`` is when the condition first held, so outage durations include the hold.
- **Keep-firing**: a firing alert whose condition clears resolves only after ``keep_firing_for``; if the
  condition returns before then, nothing is sent.
- **Flap control**: an alert that would change state (fire or resolve) ``flap.changes`` times within
  ``flap.window`` is marked flapping: it pages once more, saying so, then is held firing until its condition
  has been clear for ``flap.settle``. Paging again and again is what makes people mute a system.
- **Muting** (dependencies, ServiceOutage over RedundancyLost): a muted alert is tracked as any other, but no
  firing notification goes out while it is muted. If it is still firing when the mute lifts, it is notified
  then. A resolved notification goes out for every alert whose firing was notified, muted or not: a receiver
  is never left with an incident nobody closes. An alert muted for its whole life sends nothing at all.
- **Unknown**: an alert matched by one of the evaluation's ``unknown`` matchers is left exactly as it was
  (its observer is down; absence of evidence is not recovery). During ``restart_grace`` after a start, an
  alert without a finding is treated so unless one of the evaluation's ``clear`` matchers says it is clear
  on evidence, because the facts are still being rebuilt: fresh evidence resolves at once, only the rest
  waits for the grace to end.
- **End time**: a resolved alert's ``endsAt`` is when the evidence says its condition cleared (the
  ``clear`` matcher's time: a link's first poll up, even if it arrived late, as after a restart), never
  before it started; without such evidence, the evaluation that saw it clear. ``ended`` lists, after each update, the
  firing alerts that ended in it, notified or not (a muted one too: its stored series must end as well).
- **Persistence**: with a ``store_path``, the state is saved (SQLite, one transaction per evaluation that
  changed something) and loaded at start: a restart neither pages again nor forgets what was firing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from collector.alerting.config import AlertingConfig
from collector.alerting.model import Evaluation, Finding, Notification

State = Literal["pending", "firing"]


@dataclass
class TrackedAlert:
    """An alert the tracker holds: pending (condition true, waiting for ``for``) or firing."""

    labels: dict[str, str]
    annotations: dict[str, str]
    state: State
    active_ns: int                 # when the condition was first seen true (startsAt once firing)
    last_true_ns: int              # the last evaluation that found it true
    cleared_ns: int = 0            # when the condition went false while firing; 0 while it holds
    muted_by: str | None = None
    notified: bool = False         # a firing notification went out (so a resolved one must follow)
    flapping: bool = False

    @property
    def muted(self) -> bool:
        """Return True while the alert's notifications are held by a dependency."""
        return self.muted_by is not None

    @property
    def starts_ns(self) -> int:
        """Return the alert's start (Alertmanager's ``startsAt``)."""
        return self.active_ns

    def notification(self, status: Literal["firing", "resolved"], ends_ns: int = 0,
                     flapping: bool = False, settle_s: float = 0.0) -> Notification:
        """Return the notification for this alert in ``status`` (a flapping one says how long it is held)."""
        annotations = dict(self.annotations)
        if flapping:
            annotations["flapping"] = "true"
            annotations["description"] = (
                f"{annotations.get('description', '')} This alert flaps: it stays firing until its condition has "
                f"been clear for {round(settle_s / 60)} min, even if it is clear now (a link up again, its "
                "redundancy group whole again).").strip()
        return Notification(status, dict(self.labels), annotations, self.active_ns, ends_ns, flapping)


@dataclass(frozen=True)
class Ended:
    """A firing alert that ended: ``held`` when it ended later than its condition cleared (keep-firing or
    flap control held it), so it was still firing (and stored so) after ``alert.cleared_ns``."""

    alert: TrackedAlert
    held: bool


@dataclass
class _History:
    """When an alert last changed state (fired or resolved), within the flap window."""

    changes: list[int] = field(default_factory=list)


def _matches(labels: Mapping[str, str], matchers: Sequence[Mapping[str, str]]) -> bool:
    return any(all(labels.get(k) == v for k, v in m.items()) for m in matchers)


_ClearIndex = dict[str, dict[tuple[str, ...], dict[tuple[str, ...], int]]]


def _clear_index(clear: Sequence[tuple[Mapping[str, str], int]]) -> _ClearIndex:
    """Index clear matchers by alert name, then by the label names they match on, then by their values, so
    that finding an alert's evidence costs a few lookups, not a scan of every matcher."""
    index: _ClearIndex = {}
    for matcher, since in clear:
        names = tuple(sorted(k for k in matcher if k != "alertname"))
        table = index.setdefault(matcher.get("alertname", ""), {}).setdefault(names, {})
        values = tuple(matcher[k] for k in names)
        table[values] = max(since, table.get(values, since))
    return index


def _clear_since(labels: Mapping[str, str], index: _ClearIndex) -> int | None:
    """Return since when the evidence says the alert with ``labels`` is clear (the latest if several say
    so), or None if none does. Every clear matcher names its alert."""
    times = [t for names, table in index.get(labels.get("alertname", ""), {}).items()
             if (t := table.get(tuple(labels.get(k, "") for k in names))) is not None]
    return max(times) if times else None


class AlertTracker:
    """Pending/firing/resolved bookkeeping with hold times, flap control, muting and persistence."""

    def __init__(self, config: AlertingConfig, store_path: str | None = None, started_ns: int = 0) -> None:
        self.config = config
        self.started_ns = started_ns
        self._alerts: dict[str, TrackedAlert] = {}
        self._history: dict[str, _History] = {}
        self._db: sqlite3.Connection | None = None
        self.ended: list[Ended] = []   # the firing alerts that ended in the last update
        if store_path is not None:
            self._db = sqlite3.connect(store_path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("CREATE TABLE IF NOT EXISTS alert (key TEXT PRIMARY KEY, doc TEXT NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS history (key TEXT PRIMARY KEY, doc TEXT NOT NULL)")
            self._load()

    # ------------------------------------------------------------------------------------------ public

    def alerts(self) -> list[TrackedAlert]:
        """Return every pending and firing alert."""
        return list(self._alerts.values())

    def firing(self) -> list[TrackedAlert]:
        """Return the firing alerts."""
        return [a for a in self._alerts.values() if a.state == "firing"]

    def update(self, evaluation: Evaluation, now_ns: int,
               deliver: Callable[[list[Notification]], None] | None = None) -> list[Notification]:
        """Apply one evaluation made at ``now_ns``; return the notifications to send, in order.

        ``deliver`` (when given) gets the notifications before the new state is saved: if it raises, the
        state is not saved and the same notifications come out of the next evaluation.
        """
        out: list[Notification] = []
        self.ended = []
        changed: set[str] = set()
        found: dict[str, Finding] = {f.key: f for f in evaluation.findings}
        in_grace = now_ns < self.started_ns + int(self.config.restart_grace * 1e9)
        clear = _clear_index(evaluation.clear)
        for key, finding in found.items():
            if self._true(key, finding, now_ns, out):
                changed.add(key)
        # Newest first: when an outage and the loss of redundancy under it clear together, the receiver
        # hears "outage over" before "redundancy back".
        for key in sorted((k for k in self._alerts if k not in found), key=lambda k: -self._alerts[k].active_ns):
            alert = self._alerts[key]
            if _matches(alert.labels, evaluation.unknown):
                continue
            since = _clear_since(alert.labels, clear)
            if in_grace and since is None:
                continue
            if self._false(key, alert, now_ns, out, since):
                changed.add(key)
        if deliver is not None and out:
            try:
                deliver(out)
            except BaseException:
                self._reload()
                raise
        self._save(changed)
        return out

    def close(self) -> None:
        """Close the store."""
        if self._db is not None:
            self._db.close()
            self._db = None

    # ------------------------------------------------------------------------------------------ steps

    def _true(self, key: str, finding: Finding, now_ns: int, out: list[Notification]) -> bool:
        """The condition holds at ``now_ns``; return True when the stored state changed."""
        alert = self._alerts.get(key)
        if alert is None:
            alert = TrackedAlert(dict(finding.labels), dict(finding.annotations), "pending", now_ns, now_ns)
            self._alerts[key] = alert
        was_muted, was = alert.muted_by, (alert.state, alert.notified, alert.cleared_ns, alert.flapping)
        alert.labels, alert.annotations = dict(finding.labels), dict(finding.annotations)
        alert.last_true_ns, alert.cleared_ns, alert.muted_by = now_ns, 0, finding.muted_by
        policy = self.config.policy(alert.labels["alertname"])
        if alert.state == "pending" and now_ns - alert.active_ns >= int(policy.for_ * 1e9):
            alert.state = "firing"
            flapping = self._change(key, now_ns)
            alert.flapping = flapping
            if not alert.muted:
                alert.notified = True
                out.append(alert.notification("firing", flapping=flapping, settle_s=self.config.flap.settle))
        elif alert.state == "firing" and not alert.muted and not alert.notified:
            alert.notified = True   # fired while muted; the mute lifted and it still holds
            out.append(alert.notification("firing", flapping=alert.flapping, settle_s=self.config.flap.settle))
        return was_muted != alert.muted_by or was != (alert.state, alert.notified, alert.cleared_ns,
                                                      alert.flapping) or alert.state == "pending"

    def _false(self, key: str, alert: TrackedAlert, now_ns: int, out: list[Notification],
               since: int | None = None) -> bool:
        """The condition does not hold at ``now_ns`` (clear since ``since`` by the evidence, if known); return
        True when the stored state changed."""
        if alert.state == "pending":
            del self._alerts[key]
            return True
        held = alert.cleared_ns != 0
        if not held:
            alert.cleared_ns = now_ns if since is None else min(now_ns, max(since, alert.active_ns))
        policy = self.config.policy(alert.labels["alertname"])
        hold = self.config.flap.settle if alert.flapping else policy.keep_firing_for
        if now_ns - alert.cleared_ns < int(hold * 1e9):
            return True
        del self._alerts[key]
        self._change(key, now_ns)
        self.ended.append(Ended(alert, held))
        if alert.notified:
            out.append(alert.notification("resolved", ends_ns=alert.cleared_ns))
        return True

    def _change(self, key: str, now_ns: int) -> bool:
        """Record a state change of ``key``; return True when the alert now counts as flapping."""
        window = int(self.config.flap.window * 1e9)
        history = self._history.setdefault(key, _History())
        history.changes = [t for t in history.changes if now_ns - t < window]
        history.changes.append(now_ns)
        return len(history.changes) >= self.config.flap.changes

    # ------------------------------------------------------------------------------------------ store

    def _reload(self) -> None:
        """Forget the unsaved changes of this evaluation (only possible with a store)."""
        if self._db is not None:
            self._alerts.clear()
            self._history.clear()
            self._load()

    def _load(self) -> None:
        assert self._db is not None
        for key, doc in self._db.execute("SELECT key, doc FROM alert"):
            self._alerts[key] = TrackedAlert(**json.loads(doc))
        for key, doc in self._db.execute("SELECT key, doc FROM history"):
            self._history[key] = _History(**json.loads(doc))

    def _save(self, keys: set[str]) -> None:
        if self._db is None or not keys:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for key in sorted(keys):
                alert = self._alerts.get(key)
                if alert is None:
                    db.execute("DELETE FROM alert WHERE key = ?", (key,))
                else:
                    db.execute("INSERT OR REPLACE INTO alert VALUES (?, ?)", (key, json.dumps(asdict(alert))))
                history = self._history.get(key)
                if history is not None:
                    db.execute("INSERT OR REPLACE INTO history VALUES (?, ?)", (key, json.dumps(asdict(history))))
            self._prune_history(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _prune_history(self, db: sqlite3.Connection) -> None:
        """Forget change histories that are all older than the flap window (keeps the store bounded)."""
        if len(self._history) < 4 * len(self._alerts) + 1000:
            return
        newest = max((max(h.changes, default=0) for h in self._history.values()), default=0)
        window = int(self.config.flap.window * 1e9)
        for key in [k for k, h in self._history.items() if k not in self._alerts
                    and all(newest - t >= window for t in h.changes)]:
            del self._history[key]
            db.execute("DELETE FROM history WHERE key = ?", (key,))
