"""Which QoS test runs next, and whether the SIM's data budget lets it: pure functions of a state and ``now``.

A QoS source (``agent.sources.qos``) runs active tests through one modem whose SIM has a monthly data
allowance. Every tick of the source asks ``plan(tests, state, now, rules)`` what to do, runs what it is told,
and records each run with ``charge``. Nothing here reads a clock, a file or the network: the source hands in
``now`` (seconds since the epoch) and keeps ``State`` on disk between runs (``dump``/``load``).

The rules a plan follows::

    one at a time       a tick runs either every short test that is due, one after the other, or one long test
                        (a transfer); the runner never runs a source twice at once, so a modem never carries two
                        tests together
    often and at night  a test is due ``every`` seconds after its last run (or refusal); a long test only while
                        ``now`` is inside one of the long windows (local time of ``tz``; ``22:00-05:00`` wraps
                        past midnight)
    budget              a test whose expected cost would take the period's use past ``monthly`` bytes is
                        refused: it is counted in ``State.refused``, waits its interval again, and gives no
                        measurement. Its expected cost is what its last run used (measured on the modem's
                        interface), or the configured estimate before its first run
    period              the budget restarts at 00:00 local time on ``reset_day`` of each month (the SIM's
                        billing day; 1 to 28, so every month has it)
    diagnostic round    ``request_round`` makes every test (every short test, or every test with transfers) due
                        once, at once, whatever its interval or window; the budget still applies; ``Step.diagnostic``
                        names the tests of the round a tick hands out
    order               short tests run in configuration order; of the long tests due, the most overdue (the
                        longest past its ``every``, relative to it) runs first

Exceptions: none. A state that cannot be read back (``load``) is replaced by a fresh one by the caller.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard
from zoneinfo import ZoneInfo

__all__ = [
    "Planned",
    "Window",
    "Rules",
    "State",
    "Step",
    "parse_window",
    "period_start",
    "in_windows",
    "plan",
    "charge",
    "request_round",
    "budget_left",
    "dump",
    "load",
]

STATE_VERSION: Final = 1
_WINDOW = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


@dataclass(frozen=True, slots=True)
class Planned:
    """One configured test as the planner sees it: its key (unique within a source), kind and cadence."""

    key: str            # "download:qos.zone.example"; the key of its state
    long: bool          # a transfer: runs only inside the long windows (or in a diagnostic round), one per tick
    every_s: float      # seconds between two runs
    cost: int           # bytes it is expected to use before it has run once


@dataclass(frozen=True, slots=True)
class Window:
    """A daily span of local time in minutes after midnight; ``start > end`` wraps past midnight."""

    start: int
    end: int

    def holds(self, minute: int) -> bool:
        """Return True if ``minute`` (0..1439) is inside the window."""
        if self.start <= self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


@dataclass(frozen=True, slots=True)
class Rules:
    """What the plan obeys: the long-test windows, the monthly budget and its reset day, the time zone."""

    windows: tuple[Window, ...]
    monthly: int                 # bytes per budget period
    reset_day: int               # 1..28
    tz: ZoneInfo


@dataclass(slots=True)
class State:
    """What a source remembers between ticks (and across restarts: see ``dump``)."""

    period: str = ""                                      # the budget period's first day (ISO date); "" none yet
    used: int = 0                                         # bytes the tests used in this period
    refused: int = 0                                      # tests refused in this period for the budget
    last: dict[str, float] = field(default_factory=dict)  # test key -> when it last ran or was refused
    cost: dict[str, int] = field(default_factory=dict)    # test key -> bytes its last run used
    round: list[str] = field(default_factory=list)        # keys of a diagnostic round not yet run (not saved)


@dataclass(frozen=True, slots=True)
class Step:
    """What one tick does: the tests to run (in order) and those refused for the budget (already counted);
    ``diagnostic``: the keys of those (run or refused) that a diagnostic round asked for."""

    run: tuple[Planned, ...]
    refused: tuple[Planned, ...]
    diagnostic: frozenset[str] = frozenset()


def parse_window(text: str) -> Window:
    """Return the window ``HH:MM-HH:MM`` (24:00 allowed as an end); raise ValueError naming the problem."""
    m = _WINDOW.match(text.strip())
    if m is None:
        raise ValueError(f"expected a window like 01:00-05:00 (local time, HH:MM-HH:MM), got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60:
        raise ValueError(f"window {text!r}: hours run 00..23 (24:00 only as an end), minutes 00..59")
    if start == end:
        raise ValueError(f"window {text!r} is empty; for the whole day write 00:00-24:00")
    return Window(start, end)


def period_start(now: float, reset_day: int, tz: ZoneInfo) -> dt.date:
    """Return the first day of the budget period ``now`` falls in (periods start at 00:00 on ``reset_day``)."""
    local = dt.datetime.fromtimestamp(now, tz).date()
    if local.day >= reset_day:
        return local.replace(day=reset_day)
    year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    return dt.date(year, month, reset_day)


def in_windows(now: float, windows: Sequence[Window], tz: ZoneInfo) -> bool:
    """Return True if the local time of ``now`` is inside one of ``windows``."""
    local = dt.datetime.fromtimestamp(now, tz)
    minute = local.hour * 60 + local.minute
    return any(w.holds(minute) for w in windows)


def _roll(state: State, now: float, rules: Rules) -> None:
    """Start a new budget period when ``now`` is past the current one."""
    period = period_start(now, rules.reset_day, rules.tz).isoformat()
    if period != state.period:
        state.period, state.used, state.refused = period, 0, 0


def budget_left(state: State, now: float, rules: Rules) -> int:
    """Return the bytes left in the period of ``now`` (never below 0)."""
    _roll(state, now, rules)
    return max(0, rules.monthly - state.used)


def request_round(state: State, tests: Sequence[Planned], transfers: bool) -> None:
    """Make every short test (and with ``transfers`` every long one) due once, at the next ticks."""
    state.round = [t.key for t in tests if transfers or not t.long]


def _overdue(test: Planned, state: State, now: float) -> float | None:
    """Return how far past its interval ``test`` is (in intervals; >= 0 means due), None if it never ran."""
    last = state.last.get(test.key)
    if last is None:
        return None
    return (now - last - test.every_s) / test.every_s


def plan(tests: Sequence[Planned], state: State, now: float, rules: Rules) -> Step:
    """Return what this tick runs, and refuse (counting them in ``state``) the tests the budget cannot carry.

    Changes ``state``: the period rolls over, refused tests are counted and wait their interval again, and a
    diagnostic round forgets the tests it hands out or refuses.
    """
    _roll(state, now, rules)
    in_round = set(state.round)
    due: list[Planned] = []
    for test in tests:
        late = _overdue(test, state, now)
        if test.key in in_round or ((late is None or late >= 0) and (not test.long or in_windows(
                now, rules.windows, rules.tz))):
            due.append(test)
    short = [t for t in due if not t.long]
    if short:
        chosen = short
    else:
        longs = sorted(due, key=lambda t: -(_overdue(t, state, now) or float("inf")))
        chosen = longs[:1]
    run: list[Planned] = []
    refused: list[Planned] = []
    diagnostic: set[str] = set()
    reserved = 0
    for test in chosen:
        expected = state.cost.get(test.key, test.cost)
        if state.used + reserved + expected > rules.monthly:
            refused.append(test)
            state.refused += 1
            state.last[test.key] = now
        else:
            run.append(test)
            reserved += expected
        if test.key in in_round:
            state.round.remove(test.key)
            diagnostic.add(test.key)
    return Step(tuple(run), tuple(refused), frozenset(diagnostic))


def charge(state: State, test: Planned, used: int, now: float) -> None:
    """Record a run of ``test`` at ``now`` that used ``used`` bytes on the modem (counted in the period)."""
    used = max(0, used)
    state.used += used
    state.cost[test.key] = used
    state.last[test.key] = now


def dump(state: State) -> str:
    """Return the state as JSON (without a pending diagnostic round: a restart does not replay one)."""
    return json.dumps({"version": STATE_VERSION, "period": state.period, "used": state.used,
                       "refused": state.refused, "last": state.last, "cost": state.cost}, sort_keys=True)


def load(text: str) -> State:
    """Return the state ``dump`` wrote; raise ValueError for anything else (the caller starts afresh)."""
    try:
        doc: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
        raise ValueError(f"not a version {STATE_VERSION} state")
    period, used, refused = doc.get("period"), doc.get("used"), doc.get("refused")
    last, cost = doc.get("last"), doc.get("cost")
    if not isinstance(period, str) or not _count(used) or not _count(refused):
        raise ValueError("period, used or refused is missing or of the wrong type")
    if not isinstance(last, dict) or not all(isinstance(k, str) and isinstance(v, (int, float))
                                             and not isinstance(v, bool) for k, v in last.items()):
        raise ValueError("last must map test keys to times")
    if not isinstance(cost, dict) or not all(isinstance(k, str) and _count(v) for k, v in cost.items()):
        raise ValueError("cost must map test keys to byte counts")
    return State(period, used, refused, {k: float(v) for k, v in last.items()}, dict(cost))


def _count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
