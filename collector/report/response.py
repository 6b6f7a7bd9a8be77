"""How fast each carrier answers its alerts: time to acknowledge and time to resolve, from the collector's
acknowledgement store (``collector.alerting.acks``).

Definitions (the report repeats them):

- An alert counts for the period when it *paged* in it (its first firing notification), for the carrier of its
  ``carrier`` label; the NOC's own alerts (no carrier) are shown as ``noc``.
- Time to acknowledge: from the page to the first acknowledgement. An alert still unacknowledged when it
  resolved, or at the report's generation, counts as unacknowledged, not as a time.
- Time to resolve: from the page to the alert's end (``endsAt``: when the evidence says the condition cleared;
  0 if it cleared before it paged, as with a hold after the fault). Alerts still firing are counted apart.
- Median and 90th percentile (nearest rank) in minutes; escalated: alerts that went to at least one escalation
  step.

``rows`` is pure; ``read`` opens the store read-only.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from collector.alerting.acks import AckStore, Incident

__all__ = ["HEADER", "NOTE", "ResponseRow", "read", "rows", "table"]

NOC: Final = "noc"
NOTE: Final = ("Alerts that paged in the period, per carrier (noc: the NOC's own). Time to acknowledge: from the "
               "page to the first acknowledgement; time to resolve: from the page to the alert's end. Median and "
               "90th percentile in minutes; unacknowledged and still-firing alerts are counted, not timed. "
               "Escalated: alerts that went to at least one escalation step.")
HEADER: Final = ["zone", "carrier", "carrier_name", "paged", "acknowledged", "unacknowledged", "escalated",
                 "ack_median_min", "ack_p90_min", "resolved", "still_firing", "resolve_median_min", "resolve_p90_min"]


@dataclass(frozen=True)
class ResponseRow:
    """One carrier's answers to its alerts in the period (times in ns)."""

    carrier: str
    paged: int
    acked: tuple[int, ...]      # time to acknowledge of each acknowledged alert
    escalated: int
    resolved: tuple[int, ...]   # time to resolve of each resolved alert

    @property
    def unacked(self) -> int:
        """Return how many paged and were never acknowledged."""
        return self.paged - len(self.acked)

    @property
    def still_firing(self) -> int:
        """Return how many paged and had not resolved."""
        return self.paged - len(self.resolved)


def _rank(values: Sequence[int], q: float) -> int | None:
    """Return the nearest-rank ``q`` quantile of ``values``, or None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def rows(incidents: Sequence[Incident], until_ns: int) -> list[ResponseRow]:
    """Return one row per carrier (``noc`` for alerts without one) of the ``incidents`` that paged, as known
    at ``until_ns`` (an acknowledgement or end after it is not counted yet)."""
    by: dict[str, list[Incident]] = {}
    for i in incidents:
        by.setdefault(i.carrier or NOC, []).append(i)
    out = []
    for carrier, found in sorted(by.items()):
        acked = tuple(i.acked_ns - i.paged_ns for i in found if i.acked_ns is not None and i.acked_ns <= until_ns)
        resolved = tuple(max(0, i.ends_ns - i.paged_ns) for i in found
                         if i.ends_ns is not None and i.resolved_ns is not None and i.resolved_ns <= until_ns)
        out.append(ResponseRow(carrier, len(found), acked, sum(1 for i in found if i.steps), resolved))
    return out


def read(path: str | Path, zone: str, start_ns: int, end_ns: int) -> list[Incident]:
    """Return the incidents of ``zone`` that paged in [start_ns, end_ns) from the store at ``path`` (none if
    there is no store there: a collector without alerting)."""
    if not Path(path).is_file():
        return []
    try:
        store = AckStore(path)
    except sqlite3.Error as exc:
        raise OSError(f"cannot read the acknowledgement store {path}: {exc}") from None
    try:
        return store.paged_between(zone, start_ns, end_ns)
    finally:
        store.close()


def _min(ns: int | None) -> str:
    return "" if ns is None else f"{ns / 60e9:.1f}"


def table(zone: str, found: Sequence[ResponseRow], names: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """Return the report's table (header, rows of text), as the CSV file and the HTML show it."""
    return list(HEADER), [[zone, r.carrier, names.get(r.carrier, ""), str(r.paged), str(len(r.acked)), str(r.unacked),
                           str(r.escalated), _min(_rank(r.acked, 0.5)), _min(_rank(r.acked, 0.9)),
                           str(len(r.resolved)), str(r.still_firing), _min(_rank(r.resolved, 0.5)),
                           _min(_rank(r.resolved, 0.9))] for r in found]
