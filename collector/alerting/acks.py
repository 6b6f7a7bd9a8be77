"""Acknowledgements: who took a paged alert, and when; kept durably with the escalations, for the report.

::

    AckStore        SQLite (WAL): one row per paged alert (an *incident*: its labels and ``startsAt``) and an
                    event log (paged, acknowledged, escalated, resolved) with times
    Incident        one row, with ``ref`` (the short reference people type) and the annotations an ack adds
    AckError        an ack that cannot be made; ``reason`` says which kind (unknown, ambiguous, acked, invalid)

An incident is one firing of one label set: the same alert firing again after it resolved is a new incident
and needs a new acknowledgement. Its reference is Alertmanager's fingerprint of the labels (the ``fingerprint``
every webhook message carries): ``alerts`` shows its first ``REF_LEN`` hex digits, and any unique prefix of at
least ``MIN_REF`` digits names it.

The collector's alert engine writes incidents as it pages and resolves (``collector.alerting.responder``);
``zonewatch-collector ack`` (another process) and the HTTP API (the collector's HTTP threads) write
acknowledgements. Every change is one transaction; readers in other processes see it at once (WAL).
Times come in as arguments: nothing here reads a clock.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from collector.alerting.notify.payload import am_fingerprint, rfc3339

__all__ = ["AckError", "AckStore", "Incident", "MIN_REF", "REF_LEN"]

REF_LEN: Final = 8
MIN_REF: Final = 4
MAX_BY: Final = 100
MAX_COMMENT: Final = 500
_HEX = re.compile(r"^[0-9a-f]+$")

Reason = Literal["unknown", "ambiguous", "acked", "invalid"]


class AckError(Exception):
    """An acknowledgement that cannot be made; the message says why and what to do, ``reason`` which kind."""

    def __init__(self, message: str, reason: Reason) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True)
class Incident:
    """One paged alert: from its first firing notification (``paged_ns``) to its resolve."""

    fingerprint: str
    starts_ns: int
    labels: Mapping[str, str]
    paged_ns: int
    acked_ns: int | None = None
    acked_by: str = ""
    acked_via: str = ""
    comment: str = ""
    steps: int = 0                        # escalation steps taken
    escalated_to: tuple[str, ...] = ()    # the escalation receivers that got its firing notification
    ends_ns: int | None = None
    resolved_ns: int | None = None

    @property
    def ref(self) -> str:
        """Return the short reference shown to people."""
        return self.fingerprint[:REF_LEN]

    @property
    def carrier(self) -> str | None:
        """Return the owner carrier's PLMN, or None for the NOC's own alerts."""
        return self.labels.get("carrier")

    @property
    def open(self) -> bool:
        """Return True until it resolved."""
        return self.resolved_ns is None

    def annotations(self) -> dict[str, str]:
        """Return what an acknowledgement adds to the alert's annotations (nothing before one)."""
        if self.acked_ns is None:
            return {}
        out = {"acknowledged_by": self.acked_by, "acknowledged_at": rfc3339(self.acked_ns)}
        if self.comment:
            out["acknowledged_comment"] = self.comment
        return out

    def to_json(self) -> dict[str, object]:
        """Return it as the API and ``alerts --json`` show it."""
        return {"ref": self.ref, "fingerprint": self.fingerprint, "labels": dict(self.labels),
                "startsAt": rfc3339(self.starts_ns), "pagedAt": rfc3339(self.paged_ns),
                "acknowledged": None if self.acked_ns is None else {
                    "by": self.acked_by, "via": self.acked_via, "at": rfc3339(self.acked_ns), "comment": self.comment},
                "escalationSteps": self.steps, "escalatedTo": list(self.escalated_to),
                "endsAt": None if self.ends_ns is None else rfc3339(self.ends_ns)}


_COLUMNS = ("fp, starts_ns, labels, paged_ns, acked_ns, acked_by, acked_via, comment, steps, escalated_to, ends_ns, "
            "resolved_ns")


def _incident(row: tuple[object, ...]) -> Incident:
    fp, starts, labels, paged, acked, by, via, comment, steps, to, ends, resolved = row
    return Incident(str(fp), int(str(starts)), json.loads(str(labels)), int(str(paged)),
                    None if acked is None else int(str(acked)), str(by or ""), str(via or ""), str(comment or ""),
                    int(str(steps)), tuple(json.loads(str(to))), None if ends is None else int(str(ends)),
                    None if resolved is None else int(str(resolved)))


def _text(value: str, what: str, limit: int, required: bool) -> str:
    value = value.strip()
    if required and not value:
        raise AckError(f"{what} is empty: say who acknowledges (a name, as the receivers will read it)", "invalid")
    if len(value) > limit or not all(c.isprintable() for c in value):
        raise AckError(f"{what} must be at most {limit} printable characters on one line", "invalid")
    return value


class AckStore:
    """The incidents and their events in one SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS incident (fp TEXT NOT NULL, starts_ns INTEGER NOT NULL, labels TEXT NOT NULL,"
            " zone TEXT NOT NULL, carrier TEXT, paged_ns INTEGER NOT NULL, acked_ns INTEGER, acked_by TEXT,"
            " acked_via TEXT, comment TEXT, steps INTEGER NOT NULL DEFAULT 0, escalated_to TEXT NOT NULL DEFAULT '[]',"
            " ends_ns INTEGER, resolved_ns INTEGER, PRIMARY KEY (fp, starts_ns))")
        self._db.execute("CREATE INDEX IF NOT EXISTS incident_open ON incident (resolved_ns)")
        self._db.execute("CREATE INDEX IF NOT EXISTS incident_paged ON incident (zone, paged_ns)")
        self._db.execute("CREATE TABLE IF NOT EXISTS event (id INTEGER PRIMARY KEY, fp TEXT NOT NULL, starts_ns INTEGER"
                         " NOT NULL, kind TEXT NOT NULL, at_ns INTEGER NOT NULL, detail TEXT NOT NULL)")

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    # --------------------------------------------------------------------------------------------- reading

    def open_incidents(self) -> list[Incident]:
        """Return every incident not resolved yet, oldest page first."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM incident WHERE resolved_ns IS NULL "
                                    "ORDER BY paged_ns, fp").fetchall()
        return [_incident(r) for r in rows]

    def paged_between(self, zone: str, start_ns: int, end_ns: int) -> list[Incident]:
        """Return the incidents of ``zone`` that paged in [start_ns, end_ns)."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM incident WHERE zone = ? AND paged_ns >= ? AND "
                                    "paged_ns < ? ORDER BY paged_ns, fp", (zone, start_ns, end_ns)).fetchall()
        return [_incident(r) for r in rows]

    def events(self, fingerprint: str) -> list[tuple[str, int, dict[str, object]]]:
        """Return (kind, time, detail) of every event of the alert with ``fingerprint``, in order."""
        with self._lock:
            rows = self._db.execute("SELECT kind, at_ns, detail FROM event WHERE fp = ? ORDER BY id",
                                    (fingerprint,)).fetchall()
        return [(str(k), int(t), json.loads(d)) for k, t, d in rows]

    def find(self, ref: str, carrier: str | None = None) -> Incident:
        """Return the open incident ``ref`` names (a prefix of its fingerprint), among ``carrier``'s if given."""
        ref = ref.strip().lower()
        if len(ref) < MIN_REF or not _HEX.match(ref):
            raise AckError(f"{ref!r} is not an alert reference: give at least {MIN_REF} hex digits of the REF that "
                           "`zonewatch-collector alerts` shows (or of the webhook message's fingerprint)", "invalid")
        found = [i for i in self.open_incidents() if i.fingerprint.startswith(ref)
                 and (carrier is None or i.carrier == carrier)]
        if not found:
            whose = f" of carrier {carrier}" if carrier else ""
            raise AckError(f"no firing alert{whose} has the reference {ref} (resolved already, or never paged: "
                           "`zonewatch-collector alerts` lists the firing ones)", "unknown")
        if len(found) > 1:
            refs = ", ".join(i.fingerprint for i in found)
            raise AckError(f"{ref} names {len(found)} firing alerts ({refs}): give more of its digits", "ambiguous")
        return found[0]

    # --------------------------------------------------------------------------------------------- writing

    def paged(self, labels: Mapping[str, str], starts_ns: int, now_ns: int) -> Incident | None:
        """Note that the alert with ``labels`` starting at ``starts_ns`` paged at ``now_ns``; return the new
        incident, or None if it was noted before."""
        fp = am_fingerprint(labels)
        with self._tx():
            cur = self._db.execute(
                "INSERT OR IGNORE INTO incident (fp, starts_ns, labels, zone, carrier, paged_ns) VALUES (?,?,?,?,?,?)",
                (fp, starts_ns, json.dumps(dict(labels), sort_keys=True), labels.get("zone", ""),
                 labels.get("carrier"), now_ns))
            if not cur.rowcount:
                return None
            self._event(fp, starts_ns, "paged", now_ns, {})
        return Incident(fp, starts_ns, dict(labels), now_ns)

    def acknowledge(self, ref: str, by: str, via: str, now_ns: int, comment: str = "",
                    carrier: str | None = None) -> Incident:
        """Acknowledge the open incident ``ref`` names (among ``carrier``'s alerts, if given); return it acked.

        Raises AckError: unknown or ambiguous reference, already acknowledged (naming by whom), bad text."""
        by = _text(by, "the name (--by)", MAX_BY, required=True)
        comment = _text(comment, "the comment", MAX_COMMENT, required=False)
        incident = self.find(ref, carrier)
        with self._tx():
            cur = self._db.execute("UPDATE incident SET acked_ns = ?, acked_by = ?, acked_via = ?, comment = ? WHERE "
                                   "fp = ? AND starts_ns = ? AND acked_ns IS NULL AND resolved_ns IS NULL",
                                   (now_ns, by, via, comment, incident.fingerprint, incident.starts_ns))
            if not cur.rowcount:
                row = self._db.execute(f"SELECT {_COLUMNS} FROM incident WHERE fp = ? AND starts_ns = ?",
                                       (incident.fingerprint, incident.starts_ns)).fetchone()
                now = _incident(row)
                if now.acked_ns is not None:
                    raise AckError(f"{now.ref} was acknowledged already, by {now.acked_by} at "
                                   f"{rfc3339(now.acked_ns)}", "acked")
                raise AckError(f"{now.ref} resolved in the meantime: nothing to acknowledge", "unknown")
            self._event(incident.fingerprint, incident.starts_ns, "acknowledged", now_ns,
                        {"by": by, "via": via, "comment": comment})
        return Incident(**{**incident.__dict__, "acked_ns": now_ns, "acked_by": by, "acked_via": via,
                           "comment": comment})

    def escalated(self, incident: Incident, step: int, receivers: Iterable[str], now_ns: int) -> None:
        """Note that ``incident`` went to escalation step ``step`` (0 first) and its ``receivers`` at ``now_ns``."""
        names = list(receivers)
        to = [*incident.escalated_to, *(r for r in names if r not in incident.escalated_to)]
        with self._tx():
            self._db.execute("UPDATE incident SET steps = MAX(steps, ?), escalated_to = ? WHERE fp = ? AND "
                             "starts_ns = ?", (step + 1, json.dumps(to), incident.fingerprint, incident.starts_ns))
            self._event(incident.fingerprint, incident.starts_ns, "escalated", now_ns,
                        {"step": step, "receivers": names})

    def resolved(self, incident: Incident, ends_ns: int, now_ns: int) -> None:
        """Note that ``incident`` resolved (its ``endsAt`` is ``ends_ns``), seen at ``now_ns``."""
        with self._tx():
            self._db.execute("UPDATE incident SET ends_ns = ?, resolved_ns = ? WHERE fp = ? AND starts_ns = ? AND "
                             "resolved_ns IS NULL", (ends_ns, now_ns, incident.fingerprint, incident.starts_ns))
            self._event(incident.fingerprint, incident.starts_ns, "resolved", now_ns, {"ends_ns": ends_ns})

    def prune(self, now_ns: int, keep_s: float) -> int:
        """Forget incidents resolved more than ``keep_s`` before ``now_ns``, with their events; return how many."""
        before = now_ns - int(keep_s * 1e9)
        with self._tx():
            self._db.execute("DELETE FROM event WHERE (fp, starts_ns) IN (SELECT fp, starts_ns FROM incident WHERE "
                             "resolved_ns < ?)", (before,))
            return self._db.execute("DELETE FROM incident WHERE resolved_ns < ?", (before,)).rowcount

    @contextmanager
    def _tx(self) -> Iterator[None]:
        """Hold the lock and one write transaction (BEGIN IMMEDIATE: another process waits, never half-sees)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _event(self, fp: str, starts_ns: int, kind: str, at_ns: int, detail: Mapping[str, object]) -> None:
        self._db.execute("INSERT INTO event (fp, starts_ns, kind, at_ns, detail) VALUES (?,?,?,?,?)",
                         (fp, starts_ns, kind, at_ns, json.dumps(detail, sort_keys=True)))
