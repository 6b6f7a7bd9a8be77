"""The inventory's zones: areas, their outlines and plan, coverage thresholds per technology and the area rule.

``zones.<id>`` is a ``Zone``; ``Thresholds`` are its limits for one technology (or ``default``), ``CoverageRule``
how an area's coverage follows from its probes' (``collector.alerting.coverage``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from collector.positions import Outline, Plan
from zonewatch.strict import Strict, SubkeyError

TECHNOLOGIES = ("lte", "nr5g-sa", "nr5g-nsa", "umts", "gsm")


class Thresholds(Strict):
    """Limits for one technology: RSRP under ``hole_dbm`` is a coverage hole, under ``fair_dbm`` weak; with RSRP
    at ``fair_dbm`` or better, SINR under ``sinr_poor_db`` or RSRQ under ``rsrq_poor_db`` is interference (the
    signal is there, drowned). The SINR and RSRQ defaults are the "poor" bounds usual in LTE planning
    (SINR < 0 dB, RSRQ < -15 dB)."""

    hole_dbm: float = -110.0
    fair_dbm: float = -100.0
    good_dbm: float = -90.0
    sinr_poor_db: float = 0.0
    rsrq_poor_db: float = -15.0

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not self.hole_dbm < self.fair_dbm <= self.good_dbm:
            raise ValueError(f"expected hole_dbm < fair_dbm <= good_dbm, got {self.hole_dbm} / {self.fair_dbm} / "
                             f"{self.good_dbm}")
        return self


class CoverageRule(Strict):
    """How an area's coverage follows from its probes', each judged on its own: ``worst`` (the default: a
    hole at one gate is a hole in the area), or ``share`` (the area is at a level when at least ``share_pct``
    of its probes are at that level or worse)."""

    area: Literal["worst", "share"] = "worst"
    share_pct: float | None = None

    @model_validator(mode="after")
    def _share(self) -> CoverageRule:
        if self.area == "share" and (self.share_pct is None or not 0 < self.share_pct <= 100):
            raise SubkeyError(("share_pct",), "area: share needs share_pct, a percentage over 0 and at most 100 "
                              f"(got {self.share_pct})")
        if self.area == "worst" and self.share_pct is not None:
            raise SubkeyError(("share_pct",), "share_pct applies to area: share only (area is worst here)")
        return self


class Zone(Strict):
    """An industrial park or economic zone, divided into areas."""

    name: str
    areas: list[str] = []
    thresholds: dict[str, Thresholds] = {}
    plan: Plan | None = None                 # the park's plan image and its corners (collector.positions)
    outlines: dict[str, Outline] = {}        # area -> its outline, in the same coordinates
    coverage: CoverageRule = CoverageRule()

    @field_validator("thresholds")
    @classmethod
    def _technologies(cls, value: dict[str, Thresholds]) -> dict[str, Thresholds]:
        for tech in value:
            if tech not in ("default", *TECHNOLOGIES):
                raise ValueError(f"unknown technology {tech!r} (expected default, {', '.join(TECHNOLOGIES)})")
        return value

    def threshold(self, rat: str | None) -> Thresholds:
        """Return the thresholds for technology ``rat``: its own, else the zone's default, else the built-in."""
        if rat is not None and rat in self.thresholds:
            return self.thresholds[rat]
        return self.thresholds.get("default", Thresholds())
