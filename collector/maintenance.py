"""Maintenance windows: what a window covers, and when it is open. Pure: no clock, no I/O.

A window is declared in the inventory (``maintenance.<id>``) or at run time (``zonewatch-collector maintenance
add``, kept in ``collector.maintenance_store``); both are a ``Window``::

    Window          scope, when, and who: ticket, by, as_carrier (the carrier that declared it, if one did)
      WindowScope   exactly one of carrier, site, device, link, group, area (an area may name a carrier too)
      when          one-off: start and end (or start and duration), wall-clock times in ``time_zone``
                    recurring: every daily / weekly / monthly from ``start``, for ``duration``, until ``until``
    Declared        a window with its id, where it was declared, and when it was ended early (if it was)

Times are wall-clock times in the window's IANA time zone (``Asia/Ho_Chi_Minh``): a daily 22:00 window opens
at 22:00 local time on every day, across daylight-saving changes. A monthly window on day 29, 30 or 31 opens on
the month's last day in shorter months. ``occurrences`` turns a window into [start, end) spans in nanoseconds.

Who may declare what (``refusal``): a carrier acting as itself may declare windows on its own assets only: its
carrier scope, a site or device it owns, a link or redundancy group that carries it, or an area restricted to
its own alerts. ``co_owners`` are the other carriers with a stake in the asset: they are told of the window.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator, model_validator

from zonewatch.strict import Duration, Strict

if TYPE_CHECKING:
    from collector.inventory import Inventory

__all__ = ["Window", "WindowScope", "Declared", "Every", "occurrences", "open_span", "last_end", "parse_local",
           "refusal", "co_owners", "owners", "scope_problem", "describe_scope", "PERIOD_S"]

Every = Literal["daily", "weekly", "monthly"]
PERIOD_S: dict[str, float] = {"daily": 86400.0, "weekly": 7 * 86400.0, "monthly": 28 * 86400.0}  # longest duration
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LOCAL = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{1,2}:\d{2}(:\d{2})?)?$")
NS = 1_000_000_000


def parse_local(value: Any) -> datetime:
    """Return a wall-clock time (naive) from ``2025-11-28 22:00``, ``2025-11-28T22:00:00`` or a date."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError(f"give a wall-clock time without an offset (the window's time_zone says where), got "
                             f"{value.isoformat()}")
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if not isinstance(value, str) or not _LOCAL.match(value.strip()):
        raise ValueError(f"expected a local time like '2025-11-28 22:00' (in the window's time_zone), got {value!r}")
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(f"not a valid time {value!r}: {exc}") from None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: give an IANA name like Asia/Ho_Chi_Minh or UTC") from None


def _ns(local: datetime, tz: ZoneInfo) -> int:
    """Return the wall-clock time ``local`` in ``tz`` as ns since the epoch (a time a DST change skipped is
    read with the offset before the change, as zoneinfo does)."""
    return ((local.replace(tzinfo=tz) - _EPOCH) // timedelta(microseconds=1)) * 1000


def _local(ns: int, tz: ZoneInfo) -> datetime:
    return (_EPOCH + timedelta(microseconds=ns // 1000)).astimezone(tz).replace(tzinfo=None)


class WindowScope(Strict):
    """What a window covers: exactly one of carrier, site, device, link, group, area (``zone`` goes with an area
    when two zones have an area of that name; ``carrier`` with an area covers only that carrier's alerts)."""

    carrier: str | None = None
    site: str | None = None
    device: str | None = None
    link: str | None = None
    group: str | None = None
    area: str | None = None
    zone: str | None = None

    @model_validator(mode="after")
    def _one(self) -> WindowScope:
        given = [k for k in ("site", "device", "link", "group", "area") if getattr(self, k) is not None]
        if len(given) > 1 or (not given and self.carrier is None):
            raise ValueError("a scope is exactly one of carrier, site, device, link, group or area (an area may "
                             f"also name a carrier), got {given + (['carrier'] if self.carrier else []) or 'none'}")
        if given and given != ["area"] and self.carrier is not None:
            raise ValueError(f"carrier goes with an area only (a {given[0]} window covers every alert on it)")
        if self.zone is not None and given != ["area"]:
            raise ValueError("zone goes with an area only")
        return self

    @property
    def kind(self) -> str:
        """Return ``site``, ``device``, ``link``, ``group``, ``area`` or ``carrier``."""
        return next((k for k in ("site", "device", "link", "group", "area") if getattr(self, k) is not None),
                    "carrier")

    @property
    def target(self) -> str:
        """Return the name of what the scope covers (the carrier for a carrier scope)."""
        value = getattr(self, self.kind)
        assert isinstance(value, str)
        return value


def describe_scope(scope: WindowScope) -> str:
    """Return the scope as an operator reads it (``site bts-dv-01``, ``area north (viettel only)``)."""
    text = f"{scope.kind} {scope.target}"
    if scope.kind == "area":
        text += f" of zone {scope.zone}" if scope.zone else ""
        text += f" ({scope.carrier}'s alerts only)" if scope.carrier else ""
    return text


class Window(Strict):
    """One maintenance window; see the module docstring."""

    scope: WindowScope
    start: datetime
    end: datetime | None = None
    every: Every | None = None
    duration: Duration | None = None
    until: datetime | None = None
    time_zone: str = "UTC"
    ticket: str | None = None
    by: str | None = None
    as_carrier: str | None = None
    description: str | None = None

    @field_validator("start", "end", "until", mode="before")
    @classmethod
    def _local_time(cls, value: Any) -> Any:
        return None if value is None else parse_local(value)

    @field_validator("time_zone")
    @classmethod
    def _tz(cls, value: str) -> str:
        _zone(value)
        return value

    @model_validator(mode="after")
    def _when(self) -> Window:
        if self.every is None:
            if self.until is not None:
                raise ValueError("until goes with every (a recurring window); a one-off window has an end")
            if (self.end is None) == (self.duration is None):
                raise ValueError("a one-off window needs end or duration (one of them); a recurring one every and "
                                 "duration")
            if self.duration is not None and self.duration <= 0:
                raise ValueError(f"duration must be more than 0, got {self.duration:g} s")
            if self.end is not None and self.end <= self.start:
                raise ValueError(f"end ({self.end:%Y-%m-%d %H:%M}) must be after start ({self.start:%Y-%m-%d %H:%M})")
            return self
        if self.end is not None:
            raise ValueError(f"a recurring window ({self.every}) has a duration, not an end (until ends the "
                             "recurrence)")
        if self.duration is None:
            raise ValueError(f"a recurring window ({self.every}) needs a duration, e.g. 4h")
        longest = PERIOD_S[self.every]
        if not 0 < self.duration <= longest:
            raise ValueError(f"duration must be more than 0 and at most {longest / 86400:g} days for a {self.every} "
                             f"window, got {self.duration:g} s")
        if self.until is not None and self.until <= self.start:
            raise ValueError(f"until ({self.until:%Y-%m-%d %H:%M}) must be after start ({self.start:%Y-%m-%d %H:%M})")
        return self

    @property
    def tz(self) -> ZoneInfo:
        """Return the window's time zone."""
        return _zone(self.time_zone)

    def when(self) -> str:
        """Return when the window is open, as an operator reads it."""
        fmt = "%Y-%m-%d %H:%M"
        if self.every is None:
            end = self.end.strftime(fmt) if self.end is not None else f"+{_hours(self.duration or 0)}"
            return f"{self.start.strftime(fmt)} to {end} {self.time_zone}"
        at = {"daily": "", "weekly": f" on {self.start:%A}s",
              "monthly": f" on day {self.start.day}"}[self.every]
        until = f", until {self.until.strftime(fmt)}" if self.until is not None else ""
        return (f"{self.every}{at} at {self.start:%H:%M} {self.time_zone} for {_hours(self.duration or 0)}, "
                f"from {self.start:%Y-%m-%d}{until}")


def _hours(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m" if rest else f"{hours}h"


@dataclass(frozen=True)
class Declared:
    """A window with its id, where it was declared (``inventory`` or ``store``), and when it was ended early
    (``maintenance end``: no span starts at or after ``ended_ns``, the open one stops there)."""

    id: str
    window: Window
    origin: Literal["inventory", "store"] = "inventory"
    ended_ns: int | None = None
    ended_by: str | None = None


def _starts(window: Window, since_ns: int) -> Iterator[datetime]:
    """Yield the wall-clock starts of the window, from the last one that can still be open at ``since_ns``."""
    first, tz = window.start, window.tz
    if window.every is None:
        yield first
        return
    since = _local(since_ns, tz)
    if window.every == "monthly":
        k = max(0, (since.year - first.year) * 12 + since.month - first.month - 2)
        while True:
            month = first.month - 1 + k
            year, month = first.year + month // 12, month % 12 + 1
            day = min(first.day, calendar.monthrange(year, month)[1])
            yield first.replace(year=year, month=month, day=day)
            k += 1
    step = 1 if window.every == "daily" else 7
    k = max(0, (since.date() - first.date()).days // step - 2)
    while True:
        yield first + timedelta(days=k * step)
        k += 1


def occurrences(declared: Declared | Window, since_ns: int, until_ns: int) -> list[tuple[int, int]]:
    """Return the [start, end) spans (ns) in which the window is open that overlap [since_ns, until_ns)."""
    window = declared.window if isinstance(declared, Declared) else declared
    cut = declared.ended_ns if isinstance(declared, Declared) else None
    tz = window.tz
    stop = _ns(window.until, tz) if window.until is not None else None
    out: list[tuple[int, int]] = []
    for local in _starts(window, since_ns):
        start = _ns(local, tz)
        if start >= until_ns or (stop is not None and start >= stop) or (cut is not None and start >= cut):
            break
        if window.end is not None:
            end = _ns(window.end, tz)
        else:
            end = start + int((window.duration or 0) * NS)
        if cut is not None:
            end = min(end, cut)
        if end > since_ns and end > start:
            out.append((start, end))
    return out


def open_span(declared: Declared, now_ns: int) -> tuple[int, int] | None:
    """Return the span of ``declared`` open at ``now_ns``, or None while it is closed."""
    spans = occurrences(declared, now_ns, now_ns + 1)
    return spans[0] if spans else None


def last_end(declared: Declared, after_ns: int, now_ns: int) -> tuple[int, int] | None:
    """Return the last span of ``declared`` that ended in (after_ns, now_ns], or None."""
    window = declared.window
    lookback = int(PERIOD_S.get(window.every or "", 0) * NS) * 2 + int((window.duration or 0) * NS)
    since = max(after_ns, now_ns - lookback) if window.every is not None else after_ns
    ended = [s for s in occurrences(declared, since, now_ns + 1) if after_ns < s[1] <= now_ns]
    return ended[-1] if ended else None


# ------------------------------------------------------------------------------------------------ ownership


def _plmns(inventory: Inventory, names: list[str]) -> list[str]:
    return inventory.plmns(names)


def scope_problem(scope: WindowScope, inventory: Inventory) -> str | None:
    """Return what is wrong with ``scope`` in ``inventory`` (an unknown site, an ambiguous area), or None."""

    def unknown(kind: str, name: str, known: Any) -> str:
        return f"unknown {kind} {name!r} (known: {', '.join(sorted(known)) or 'none defined'})"

    if scope.carrier is not None and inventory.carrier_of(scope.carrier) is None:
        return unknown("carrier", scope.carrier, inventory.carriers)
    for kind, known in (("site", inventory.sites), ("device", inventory.devices), ("link", inventory.links),
                        ("group", inventory.redundancy_groups)):
        name = getattr(scope, kind)
        if name is not None and name not in known:
            return unknown(kind, name, known)
    if scope.area is not None:
        zones = [z for z, zone in inventory.zones.items() if scope.area in zone.areas]
        if scope.zone is not None:
            if scope.zone not in inventory.zones:
                return unknown("zone", scope.zone, inventory.zones)
            if scope.zone not in zones:
                return unknown(f"area of zone {scope.zone}", scope.area, inventory.zones[scope.zone].areas)
        elif not zones:
            return unknown("area", scope.area, {a for z in inventory.zones.values() for a in z.areas})
        elif len(zones) > 1:
            return f"area {scope.area!r} is in zones {', '.join(sorted(zones))}: name the zone too"
    return None


def owners(scope: WindowScope, inventory: Inventory) -> tuple[list[str], list[str]]:
    """Return (who may declare on the scope, who has a stake in it) as PLMNs, for an asset scope; both empty
    for a carrier or area scope (they cover alerts, not an asset) and for an asset the inventory lacks."""
    if scope.site is not None and scope.site in inventory.sites:
        site = inventory.sites[scope.site]
        stake = list(site.owners)
        for dev in inventory.devices.values():
            if dev.site == scope.site:
                stake += dev.owners
        return _plmns(inventory, site.owners), _plmns(inventory, stake)
    if scope.device is not None and scope.device in inventory.devices:
        found = _plmns(inventory, inventory.devices[scope.device].owners)
        return found, found
    if scope.link is not None and scope.link in inventory.links:
        link = inventory.links[scope.link]
        device = inventory.devices.get(link.device)
        found = _plmns(inventory, link.carriers or (device.owners if device is not None else []))
        return found, found
    if scope.group is not None and scope.group in inventory.redundancy_groups:
        found = _plmns(inventory, inventory.redundancy_groups[scope.group].carriers)
        return found, found
    return [], []


def refusal(window: Window, inventory: Inventory) -> str | None:
    """Return why the carrier the window is declared as (``as_carrier``) may not declare it, or None."""
    if window.as_carrier is None:
        return None
    carrier = inventory.carrier_of(window.as_carrier)
    if carrier is None:
        return f"unknown carrier {window.as_carrier!r} (known: {', '.join(sorted(inventory.carriers)) or 'none'})"
    scope, me = window.scope, carrier.plmn
    who = f"carrier {carrier.name} ({me})"
    if scope.kind == "carrier":
        other = inventory.carrier_of(scope.target)
        if other is None or other.plmn != me:
            return f"{who} may declare a carrier-wide window for itself only, not for {scope.target}"
        return None
    if scope.kind == "area":
        other = inventory.carrier_of(scope.carrier) if scope.carrier is not None else None
        if other is None or other.plmn != me:
            return (f"{who} may declare an area window on its own alerts only: give the area with carrier "
                    f"{me} (an area holds other carriers' assets)")
        return None
    allowed, _ = owners(scope, inventory)
    if me not in allowed:
        held = ", ".join(inventory.carrier_of(p).name if inventory.carrier_of(p) else p  # type: ignore[union-attr]
                         for p in allowed) or "no carrier"
        return (f"{who} may not declare maintenance on {describe_scope(scope)}: it belongs to {held}. A carrier "
                "declares windows on its own assets only")
    return None


def co_owners(window: Window, inventory: Inventory) -> list[str]:
    """Return the PLMNs of the carriers with a stake in the window's asset, other than the one that declared it
    (every owner when the NOC declared it); empty for a carrier or area window."""
    _, stake = owners(window.scope, inventory)
    declarer = inventory.carrier_of(window.as_carrier) if window.as_carrier is not None else None
    return [p for p in stake if declarer is None or p != declarer.plmn]
