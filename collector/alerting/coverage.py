"""Coverage judged per probe and carrier, and an area's level from its probes' (pure; the rules call it).

A probe's level for a carrier comes from its own readings over ``coverage_window`` (every modem it has on
that carrier together), against the zone's thresholds for the technology most of them were on:

    level  name        the probe's median RSRP
    0      good        at ``good_dbm`` or better
    1      fair        at ``fair_dbm`` or better
    2      weak        at ``hole_dbm`` or better
    3      hole        under ``hole_dbm``
    4      no_service  the newest reading says not registered (whatever RSRP it last had)

Interference is apart from the level: a probe whose median RSRP is fair or better (level 0 or 1) while its
median SINR is under ``sinr_poor_db`` or its median RSRQ under ``rsrq_poor_db``. There the carrier's signal
arrives and is drowned (a neighbour cell on the same channel, an overshooting site, external noise): the
fix is frequency or neighbour planning, not another site, so it is its own alert (CoverageInterference).

The area's level follows from its probes' by the zone's ``coverage`` rule (``collector.inventory.
CoverageRule``): ``worst`` takes the worst probe (one gate in a hole is a hole), ``share`` the worst level
that at least ``share_pct`` of the probes are at, or worse. The same rule decides whether the area has
interference: any probe (``worst``), or at least that share of them.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from collector.alerting.facts import Reading
from collector.inventory import CoverageRule, Thresholds, Zone

__all__ = ["LEVELS", "GOOD", "FAIR", "WEAK", "HOLE", "NO_SERVICE", "ProbeCoverage", "judge_probe",
           "area_level", "area_has"]

LEVELS: Final = ("good", "fair", "weak", "hole", "no_service")   # ``level`` 0..4
GOOD, FAIR, WEAK, HOLE, NO_SERVICE = range(5)


@dataclass(frozen=True)
class ProbeCoverage:
    """One probe's coverage by one carrier over the window."""

    probe: str
    signal: int | None            # GOOD..HOLE by the median RSRP; None: no RSRP in the window
    registered: bool | None       # the newest reading's registration (None: not said)
    rsrp_dbm: float | None        # medians over the window
    sinr_db: float | None
    rsrq_db: float | None
    interference: bool
    readings: int                 # readings with RSRP
    rat: str | None
    limits: Thresholds

    @property
    def level(self) -> int | None:
        """Return the probe's level: NO_SERVICE when its newest reading says not registered, else its signal."""
        if self.registered is False:
            return NO_SERVICE
        return self.signal

    def why_interference(self) -> str:
        """Return what makes this probe's coverage interference, in words."""
        parts = []
        if self.sinr_db is not None and self.sinr_db < self.limits.sinr_poor_db:
            parts.append(f"SINR {_fmt(self.sinr_db)} dB (under {_fmt(self.limits.sinr_poor_db)} dB)")
        if self.rsrq_db is not None and self.rsrq_db < self.limits.rsrq_poor_db:
            parts.append(f"RSRQ {_fmt(self.rsrq_db)} dB (under {_fmt(self.limits.rsrq_poor_db)} dB)")
        return " and ".join(parts)


def judge_probe(probe: str, readings: Sequence[Reading], zone: Zone) -> ProbeCoverage:
    """Return the coverage of one probe from its readings of one carrier (oldest first, within the window)."""
    rat = _dominant([r.rat for r in readings if r.rat])
    limits = zone.threshold(rat)
    rsrp = _median([r.rsrp_dbm for r in readings])
    sinr = _median([r.sinr_db for r in readings])
    rsrq = _median([r.rsrq_db for r in readings])
    signal: int | None = None
    if rsrp is not None:
        signal = GOOD if rsrp >= limits.good_dbm else FAIR if rsrp >= limits.fair_dbm else \
            WEAK if rsrp >= limits.hole_dbm else HOLE
    drowned = (sinr is not None and sinr < limits.sinr_poor_db) or (rsrq is not None and rsrq < limits.rsrq_poor_db)
    registered = readings[-1].registered if readings else None
    return ProbeCoverage(probe, signal, registered, rsrp, sinr, rsrq,
                         signal is not None and signal <= FAIR and drowned,
                         sum(1 for r in readings if r.rsrp_dbm is not None), rat, limits)


def area_level(levels: Sequence[int], rule: CoverageRule) -> int | None:
    """Return the area's level from its probes' (None: no probe has one)."""
    if not levels:
        return None
    if rule.area == "worst":
        return max(levels)
    assert rule.share_pct is not None
    return max(level for level in levels if _share(sum(1 for x in levels if x >= level), len(levels), rule))


def area_has(count: int, total: int, rule: CoverageRule) -> bool:
    """Return True if ``count`` of the area's ``total`` probes with a condition give the area that condition."""
    if count <= 0 or total <= 0:
        return False
    return rule.area == "worst" or _share(count, total, rule)


def _share(count: int, total: int, rule: CoverageRule) -> bool:
    assert rule.share_pct is not None
    return 100.0 * count >= rule.share_pct * total


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def _dominant(rats: list[str]) -> str | None:
    """Return the technology most readings were on (on a tie, the one read last)."""
    if not rats:
        return None
    counts: dict[str, int] = {}
    for rat in rats:
        counts[rat] = counts.get(rat, 0) + 1
    best = max(counts.values())
    return next(rat for rat in reversed(rats) if counts[rat] == best)


def _fmt(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.1f}"
