"""The QoS planner: what runs when, and what the SIM's budget allows (pure: times are arguments, nothing sleeps)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from agent.sources import qosplan
from agent.sources.qosplan import Planned, Rules, State

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
MB = 10**6


def at(text: str) -> float:
    """Return the epoch seconds of a local Ho Chi Minh City time ``YYYY-MM-DD HH:MM``."""
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=HCM).timestamp()


def rules(monthly: int = 2000 * MB, reset_day: int = 1, windows: tuple[str, ...] = ("01:00-05:00",)) -> Rules:
    return Rules(tuple(qosplan.parse_window(w) for w in windows), monthly, reset_day, HCM)


DNS = Planned("dns:qos.zone", False, 300, 512)
HTTP = Planned("http:portal", False, 300, 300_000)
DOWN = Planned("download:qos.zone", True, 7200, 10_600_000)
UP = Planned("upload:qos.zone", True, 7200, 5_300_000)
TESTS = [DNS, HTTP, DOWN, UP]


def keys(tests: tuple[Planned, ...]) -> list[str]:
    return [t.key for t in tests]


def test_windows_are_local_time_and_may_wrap_past_midnight() -> None:
    night = [qosplan.parse_window("22:00-05:00")]
    assert qosplan.in_windows(at("2025-11-28 23:30"), night, HCM)
    assert qosplan.in_windows(at("2025-11-28 04:59"), night, HCM)
    assert not qosplan.in_windows(at("2025-11-28 05:00"), night, HCM)
    assert not qosplan.in_windows(at("2025-11-28 21:59"), night, HCM)
    whole = [qosplan.parse_window("00:00-24:00")]
    assert qosplan.in_windows(at("2025-11-28 13:00"), whole, HCM)
    # 01:00 in Ho Chi Minh City is 18:00 UTC the day before: the zone decides, not the machine's clock
    assert qosplan.in_windows(dt.datetime(2025, 11, 27, 18, 30, tzinfo=dt.timezone.utc).timestamp(),
                              [qosplan.parse_window("01:00-05:00")], HCM)


@pytest.mark.parametrize("text", ["1:00-5:00", "25:00-05:00", "01:00-01:00", "01:60-02:00", "night"])
def test_a_bad_window_is_refused_with_the_form_expected(text: str) -> None:
    with pytest.raises(ValueError, match="window"):
        qosplan.parse_window(text)


def test_budget_periods_start_on_the_billing_day_at_local_midnight() -> None:
    assert qosplan.period_start(at("2025-12-01 00:30"), 1, HCM) == dt.date(2025, 12, 1)
    assert qosplan.period_start(at("2025-11-30 23:59"), 1, HCM) == dt.date(2025, 11, 1)
    assert qosplan.period_start(at("2025-01-10 12:00"), 15, HCM) == dt.date(2024, 12, 15)
    assert qosplan.period_start(at("2025-03-15 00:00"), 15, HCM) == dt.date(2025, 3, 15)


def test_short_tests_run_together_and_transfers_wait_for_the_night() -> None:
    state = State()
    day = at("2025-11-28 14:00")
    step = qosplan.plan(TESTS, state, day, rules())
    assert keys(step.run) == ["dns:qos.zone", "http:portal"] and step.refused == ()
    for t in step.run:
        qosplan.charge(state, t, 1000, day)
    # due again only after their interval; transfers never in the day
    assert qosplan.plan(TESTS, state, day + 299, rules()).run == ()
    assert keys(qosplan.plan(TESTS, state, day + 300, rules()).run) == ["dns:qos.zone", "http:portal"]
    assert qosplan.plan(TESTS, State(last={DNS.key: day, HTTP.key: day}), day + 60, rules()).run == ()


def test_at_night_one_transfer_per_tick_the_most_overdue_first() -> None:
    night = at("2025-11-28 02:00")
    state = State(last={DNS.key: night, HTTP.key: night, DOWN.key: night - 9000, UP.key: night - 20000})
    first = qosplan.plan(TESTS, state, night, rules())
    assert keys(first.run) == ["upload:qos.zone"]   # 20000 s against 7200 is later than 9000 s
    qosplan.charge(state, first.run[0], 5_300_000, night)
    assert keys(qosplan.plan(TESTS, state, night + 60, rules()).run) == ["download:qos.zone"]
    # due short tests go first: a transfer never runs in the same tick as they do
    state = State(last={DOWN.key: night - 9000})
    assert keys(qosplan.plan(TESTS, state, night, rules()).run) == ["dns:qos.zone", "http:portal"]


def test_a_25_mb_budget_refuses_the_third_10_mb_transfer_and_counts_it() -> None:
    ten = Planned("download:qos.zone", True, 60, 10 * MB)
    night = at("2025-11-28 01:30")
    state = State()
    r = rules(monthly=25 * MB)
    for i in range(2):
        step = qosplan.plan([ten], state, night + i * 60, r)
        assert keys(step.run) == [ten.key]
        qosplan.charge(state, ten, 10_550_000, night + i * 60)   # what the interface counted
    third = qosplan.plan([ten], state, night + 120, r)
    assert third.run == () and keys(third.refused) == [ten.key]
    assert (state.used, state.refused) == (21_100_000, 1)
    assert qosplan.budget_left(state, night + 120, r) == 3_900_000
    # refused, it waits its interval like a run (it is not refused again at every tick)
    assert qosplan.plan([ten], state, night + 150, r) == qosplan.Step((), ())
    assert keys(qosplan.plan([ten], state, night + 180, r).refused) == [ten.key] and state.refused == 2
    # the next period gives the whole budget back
    december = at("2025-12-01 01:30")
    step = qosplan.plan([ten], state, december, r)
    assert keys(step.run) == [ten.key] and (state.used, state.refused, state.period) == (0, 0, "2025-12-01")


def test_the_expected_cost_is_what_the_test_used_last_time() -> None:
    big = Planned("http:portal", False, 60, 1000)
    state = State()
    r = rules(monthly=100_000)
    now = at("2025-11-28 10:00")
    assert qosplan.plan([big], state, now, r).run == (big,)
    qosplan.charge(state, big, 60_000, now)
    assert qosplan.plan([big], state, now + 60, r).refused == (big,)   # 60,000 + 60,000 > 100,000


def test_short_tests_of_one_tick_share_the_budget_left() -> None:
    a, b = Planned("dns:a", False, 60, 600), Planned("dns:b", False, 60, 600)
    state = State()
    step = qosplan.plan([a, b], state, at("2025-11-28 10:00"), rules(monthly=1000))
    assert keys(step.run) == ["dns:a"] and keys(step.refused) == ["dns:b"]


def test_a_diagnostic_round_runs_everything_now_whatever_the_window() -> None:
    noon = at("2025-11-28 12:00")
    state = State(last={t.key: noon - 10 for t in TESTS})
    assert qosplan.plan(TESTS, state, noon, rules()).run == ()

    def tick(now: float) -> list[str]:
        step = qosplan.plan(TESTS, state, now, rules())
        for t in step.run:
            qosplan.charge(state, t, 100, now)
        return keys(step.run)

    qosplan.request_round(state, TESTS, transfers=True)
    ticks = [tick(noon + 60 * i) for i in range(4)]
    assert ticks == [["dns:qos.zone", "http:portal"], ["download:qos.zone"], ["upload:qos.zone"], []]
    qosplan.request_round(state, TESTS, transfers=False)
    assert tick(noon + 270) == ["dns:qos.zone", "http:portal"]   # before their interval is over
    assert tick(noon + 330) == []


def test_a_tick_names_the_tests_a_diagnostic_round_handed_out_and_only_those() -> None:
    noon = at("2025-11-28 12:00")
    state = State(last={DNS.key: noon - 400, HTTP.key: noon - 10, DOWN.key: noon - 10, UP.key: noon - 10})
    qosplan.request_round(state, [HTTP], transfers=False)
    step = qosplan.plan(TESTS, state, noon, rules())
    assert keys(step.run) == ["dns:qos.zone", "http:portal"]   # dns was due anyway: not part of the round
    assert step.diagnostic == {"http:portal"}
    assert qosplan.plan(TESTS, state, noon + 60, rules()).diagnostic == frozenset()
    # a round refused for the budget is still the round's: it gives no sample, and is not asked again
    poor = State(period="2025-11-01", used=2000 * MB - 100, last={t.key: noon - 10 for t in TESTS})
    qosplan.request_round(poor, TESTS, transfers=False)
    step = qosplan.plan(TESTS, poor, noon, rules())
    assert step.run == () and step.diagnostic == {"dns:qos.zone", "http:portal"} == set(keys(step.refused))


def test_state_survives_a_restart_and_garbage_is_refused() -> None:
    state = State("2025-11-01", 123, 2, {"dns:a": 1.5}, {"dns:a": 512}, ["dns:a"])
    back = qosplan.load(qosplan.dump(state))
    assert (back.period, back.used, back.refused, back.last, back.cost, back.round) == (
        "2025-11-01", 123, 2, {"dns:a": 1.5}, {"dns:a": 512}, [])
    for text in ("", "[]", '{"version": 1}', '{"version": 1, "period": "x", "used": -1, "refused": 0, "last": {}, '
                 '"cost": {}}', '{"version": 1, "period": "x", "used": 1, "refused": 0, "last": {"a": true}, '
                 '"cost": {}}'):
        with pytest.raises(ValueError):
            qosplan.load(text)
