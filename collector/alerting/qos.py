"""Service quality per carrier and area, from the probes' ``qos`` samples: DataAccessFailure, ThroughputBelowTarget.

The probes test each carrier's mobile Internet service through its modem (``agent.sources.qos``) the way
Vietnam's QCVN 81:2019/BTTTT measures it. This module keeps those results (``QosHistory``, fed by
``Facts``) and judges them (``judge``); ``collector.alerting.rules`` turns the judgements into alerts per zone
area and carrier. Pure: no clock, no I/O.

What counts::

    access test    dns, tcp, http, download, upload: a service access. It failed when ``success`` is false and
                   (a transfer) it did not start (``dropped`` absent); ``time_ms`` of those that succeeded is the
                   access time
    transfer       download, upload that started (``dropped`` present): dropped or completed; a completed
                   download's ``down_mbps`` (upload's ``up_mbps``) is a speed sample

DataAccessFailure fires, for a carrier in an area, when the modems on that carrier are registered (the cellular
source says so: a modem that is not is NoService's case) and, over ``access_window``, at least
``access_min_tests`` access tests ran and more than ``max_failed_pct`` failed, or their mean access time is
over ``max_access_ms``. ThroughputBelowTarget fires when, over ``transfer_window``, at least ``min_transfers``
transfers started and: more than ``max_dropped_pct`` were dropped, or fewer than ``down_share_pct`` of the
downloads reached ``down_min_mbps``, or the mean download (upload) speed is under ``down_avg_mbps``
(``up_avg_mbps``) when that is set. ``carriers`` sets any of the throughput targets per PLMN (what each carrier
declared for the zone).

Defaults from the regulation: failed access at most 10 %, mean access time at most 10 s, dropped transfers at
most 10 % (the limits the regulator's published measurements cite; QCVN 81:2019 keeps these three indicators),
and at least 95 % of download samples at or above the minimum download speed. The regulation has carriers
declare their own minimum and average speeds for their service area; 5 Mbit/s is the 4G minimum the regulator
measured against in its published 4G results, a default to replace with each carrier's declared figures.
"""

from __future__ import annotations

import bisect
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from pydantic import Field

from zonewatch import wire
from zonewatch.strict import Duration, Strict

__all__ = ["QosSettings", "CarrierTargets", "Result", "QosHistory", "Access", "Transfers", "judge_access",
           "judge_transfers", "ACCESS_TESTS", "TRANSFER_TESTS"]

ACCESS_TESTS: Final = frozenset({"dns", "tcp", "http", "download", "upload"})
TRANSFER_TESTS: Final = frozenset({"download", "upload"})
MAX_RESULTS: Final = 2048   # results kept per modem (a day of the default schedule is about 2,300 short tests
                            # with 8 tests: the access window needs far fewer; transfers are a few a night)


class CarrierTargets(Strict):
    """Throughput targets of one carrier (its declared figures); unset ones come from ``QosSettings``."""

    down_min_mbps: float | None = Field(default=None, gt=0)
    down_share_pct: float | None = Field(default=None, ge=0, le=100)
    down_avg_mbps: float | None = Field(default=None, gt=0)
    up_avg_mbps: float | None = Field(default=None, gt=0)
    max_dropped_pct: float | None = Field(default=None, ge=0, le=100)


class QosSettings(Strict):
    """``alerting.settings.qos``: the limits DataAccessFailure and ThroughputBelowTarget judge against."""

    access_window: Duration = 1800.0
    access_min_tests: int = Field(default=6, ge=1)
    max_failed_pct: float = Field(default=10.0, ge=0, le=100)
    max_access_ms: float = Field(default=10_000.0, gt=0)
    transfer_window: Duration = 86400.0
    min_transfers: int = Field(default=3, ge=1)
    max_dropped_pct: float = Field(default=10.0, ge=0, le=100)
    down_min_mbps: float = Field(default=5.0, gt=0)
    down_share_pct: float = Field(default=95.0, ge=0, le=100)
    down_avg_mbps: float | None = Field(default=None, gt=0)
    up_avg_mbps: float | None = Field(default=None, gt=0)
    carriers: dict[str, CarrierTargets] = {}   # PLMN -> that carrier's declared targets

    def targets(self, plmn: str) -> CarrierTargets:
        """Return the throughput targets for ``plmn``: its own where set, else these defaults."""
        own = self.carriers.get(plmn, CarrierTargets())
        return CarrierTargets(
            down_min_mbps=own.down_min_mbps or self.down_min_mbps,
            down_share_pct=self.down_share_pct if own.down_share_pct is None else own.down_share_pct,
            down_avg_mbps=own.down_avg_mbps or self.down_avg_mbps,
            up_avg_mbps=own.up_avg_mbps or self.up_avg_mbps,
            max_dropped_pct=self.max_dropped_pct if own.max_dropped_pct is None else own.max_dropped_pct,
        )


@dataclass(frozen=True, slots=True)
class Result:
    """One test result of one modem."""

    time_ns: int
    test: str
    success: bool
    dropped: bool | None = None     # transfers that started: False completed, True dropped
    time_ms: float | None = None
    down_mbps: float | None = None
    up_mbps: float | None = None


@dataclass(slots=True)
class QosHistory:
    """The recent results of one modem (``(probe, carrier, modem)`` in ``Facts.qos``), oldest first, bounded."""

    zone: str
    results: list[Result] = field(default_factory=list)

    def add(self, sample: wire.Sample, window_ns: int) -> None:
        """Take one ``qos`` sample (the budget sample and samples without ``success`` are not results); keep
        ``window_ns`` before the newest and at most ``MAX_RESULTS``."""
        test, success = sample.tags.get("test"), sample.fields.get("success")
        if test is None or not isinstance(success, bool):
            return
        f = sample.fields
        result = Result(sample.time_ns, test, success, _flag(f.get("dropped")), _num(f.get("time_ms")),
                        _num(f.get("down_mbps")), _num(f.get("up_mbps")))
        rs = self.results
        if not rs or result.time_ns >= rs[-1].time_ns:
            rs.append(result)
        else:
            rs.insert(bisect.bisect_right([r.time_ns for r in rs], result.time_ns), result)
        cut = bisect.bisect_left([r.time_ns for r in rs], rs[-1].time_ns - window_ns)
        drop = max(cut, len(rs) - MAX_RESULTS)
        if drop:
            del rs[:drop]

    def since(self, start_ns: int) -> list[Result]:
        """Return the results at or after ``start_ns``."""
        return [r for r in self.results if r.time_ns >= start_ns]


def _flag(value: wire.FieldValue | None) -> bool | None:
    return value if isinstance(value, bool) else None


def _num(value: wire.FieldValue | None) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if number >= 0 else None   # no physical meaning below 0: ignore rather than judge


@dataclass(frozen=True, slots=True)
class Access:
    """Service access over a window: how many tests, how many failed, the mean access time."""

    tests: int
    failed: int
    mean_ms: float | None

    @property
    def failed_pct(self) -> float:
        return 100.0 * self.failed / self.tests if self.tests else 0.0


@dataclass(frozen=True, slots=True)
class Transfers:
    """Transfers over a window: started, dropped, download speeds against the minimum, mean speeds."""

    started: int
    dropped: int
    downloads: int              # completed downloads with a speed
    below_min: int              # of them, under the minimum speed
    mean_down: float | None
    mean_up: float | None

    @property
    def dropped_pct(self) -> float:
        return 100.0 * self.dropped / self.started if self.started else 0.0

    @property
    def share_at_min_pct(self) -> float:
        return 100.0 * (self.downloads - self.below_min) / self.downloads if self.downloads else 100.0


def judge_access(results: Iterable[Result]) -> Access:
    """Return the access figures of ``results`` (only access tests count)."""
    tests = failed = 0
    times: list[float] = []
    for r in results:
        if r.test not in ACCESS_TESTS:
            continue
        tests += 1
        if not r.success and r.dropped is None:
            failed += 1
        elif r.time_ms is not None:
            times.append(r.time_ms)
    return Access(tests, failed, statistics.fmean(times) if times else None)


def judge_transfers(results: Iterable[Result], min_mbps: float) -> Transfers:
    """Return the transfer figures of ``results`` against the minimum download speed ``min_mbps``."""
    started = dropped = 0
    down: list[float] = []
    up: list[float] = []
    for r in results:
        if r.test not in TRANSFER_TESTS or r.dropped is None:
            continue
        started += 1
        dropped += r.dropped
        if r.test == "download" and r.down_mbps is not None and not r.dropped:
            down.append(r.down_mbps)
        if r.test == "upload" and r.up_mbps is not None and not r.dropped:
            up.append(r.up_mbps)
    return Transfers(started, dropped, len(down), sum(1 for v in down if v < min_mbps),
                     statistics.fmean(down) if down else None, statistics.fmean(up) if up else None)


def access_problems(access: Access, settings: QosSettings) -> list[str]:
    """Return what is wrong with ``access`` (empty: within the limits)."""
    out = []
    if access.failed_pct > settings.max_failed_pct:
        out.append(f"{access.failed} of {access.tests} service access tests failed ({access.failed_pct:.0f} %, the "
                   f"limit is {settings.max_failed_pct:g} %)")
    if access.mean_ms is not None and access.mean_ms > settings.max_access_ms:
        out.append(f"the mean access time is {access.mean_ms / 1000:.1f} s (the limit is "
                   f"{settings.max_access_ms / 1000:g} s)")
    return out


def transfer_problems(t: Transfers, targets: CarrierTargets) -> list[str]:
    """Return what is wrong with ``t`` against ``targets`` (empty: on target)."""
    out = []
    assert targets.max_dropped_pct is not None and targets.down_share_pct is not None
    assert targets.down_min_mbps is not None
    if t.dropped_pct > targets.max_dropped_pct:
        out.append(f"{t.dropped} of {t.started} transfers dropped ({t.dropped_pct:.0f} %, the limit is "
                   f"{targets.max_dropped_pct:g} %)")
    if t.downloads and t.share_at_min_pct < targets.down_share_pct:
        out.append(f"{t.downloads - t.below_min} of {t.downloads} downloads reached {targets.down_min_mbps:g} Mbit/s "
                   f"({t.share_at_min_pct:.0f} %, at least {targets.down_share_pct:g} % should)")
    if targets.down_avg_mbps is not None and t.mean_down is not None and t.mean_down < targets.down_avg_mbps:
        out.append(f"the mean download speed is {t.mean_down:.1f} Mbit/s (the target is {targets.down_avg_mbps:g})")
    if targets.up_avg_mbps is not None and t.mean_up is not None and t.mean_up < targets.up_avg_mbps:
        out.append(f"the mean upload speed is {t.mean_up:.1f} Mbit/s (the target is {targets.up_avg_mbps:g})")
    return out


def speeds(t: Transfers) -> str:
    """Return the speeds of ``t`` as a description says them."""
    parts = []
    if t.mean_down is not None:
        parts.append(f"mean download {t.mean_down:.1f} Mbit/s over {t.downloads}")
    if t.mean_up is not None:
        parts.append(f"mean upload {t.mean_up:.1f} Mbit/s")
    return "; ".join(parts) or "no completed transfer"


def merge(histories: Mapping[str, Iterable[Result]]) -> list[Result]:
    """Return the results of several modems together (probe -> results), in time order."""
    return sorted((r for rs in histories.values() for r in rs), key=lambda r: r.time_ns)
