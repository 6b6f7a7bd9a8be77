"""The period a report covers: a calendar month in the zone's time zone, or an explicit span."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from collector.report.source import ReportError

__all__ = ["Period", "month_period", "span_period", "time_zone", "show_time"]


@dataclass(frozen=True)
class Period:
    """[start_ns, end_ns), shown in time zone ``tz`` (an IANA name such as Asia/Ho_Chi_Minh)."""

    start_ns: int
    end_ns: int
    label: str
    tz: str = "UTC"

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def time_zone(name: str) -> ZoneInfo:
    """Return the time zone called ``name``, or raise ReportError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"unknown time zone {name!r} (expected an IANA name such as UTC or "
                          "Asia/Ho_Chi_Minh)") from None


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def month_period(month: str, tz: str = "UTC") -> Period:
    """Return the calendar month ``YYYY-MM`` in time zone ``tz``."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ReportError(f"month {month!r}: expected YYYY-MM, such as 2025-11")
    zone = time_zone(tz)
    year, mon = int(match.group(1)), int(match.group(2))
    start = datetime(year, mon, 1, tzinfo=zone)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=zone)
    return Period(_ns(start), _ns(end), month, tz)


def _parse(text: str, zone: ZoneInfo, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(f"{what} {text!r}: expected an ISO 8601 time such as 2025-11-01T00:00 "
                          "(or with an offset, 2025-11-01T00:00+07:00)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def span_period(start: str, end: str, tz: str = "UTC") -> Period:
    """Return the span [start, end); times without an offset are in time zone ``tz``."""
    zone = time_zone(tz)
    begin, finish = _parse(start, zone, "--from"), _parse(end, zone, "--to")
    if finish <= begin:
        raise ReportError(f"--to {end!r} is not after --from {start!r}")
    if finish - begin > timedelta(days=366):
        raise ReportError(f"the span {start} .. {end} is longer than a year; report a month or a few")
    label = f"{begin.isoformat(timespec='minutes')} to {finish.isoformat(timespec='minutes')}"
    return Period(_ns(begin), _ns(finish), label, tz)


def show_time(time_ns: int, tz: str) -> str:
    """Return ``time_ns`` as ISO 8601 with the offset of time zone ``tz``, to the second."""
    return datetime.fromtimestamp(time_ns / 1e9, time_zone(tz)).isoformat(timespec="seconds")
