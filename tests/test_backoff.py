"""The shared back-off schedule: growth, bounds, jitter, and no overflow however many attempts."""

from __future__ import annotations

import itertools
import random

import pytest

from zonewatch.backoff import Backoff


def test_the_wait_doubles_from_first_up_to_maximum() -> None:
    assert [Backoff(0.5, 30.0).delay(n) for n in range(9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_another_factor_grows_by_it() -> None:
    assert [Backoff(1.0, 100.0, factor=3.0).delay(n) for n in range(6)] == [1.0, 3.0, 9.0, 27.0, 81.0, 100.0]
    assert [Backoff(2.0, 100.0, factor=1.0).delay(n) for n in range(3)] == [2.0, 2.0, 2.0]


def test_a_first_wait_above_the_maximum_is_capped() -> None:
    assert [Backoff(60.0, 10.0).delay(n) for n in range(3)] == [10.0, 10.0, 10.0]


def test_a_zero_first_wait_stays_zero() -> None:
    assert [Backoff(0.0, 10.0).delay(n) for n in (0, 1, 10_000)] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("attempt", [63, 1_100, 10_000, 10**18])
def test_no_overflow_at_any_attempt(attempt: int) -> None:
    assert Backoff(1.0, 300.0).delay(attempt) == 300.0
    assert Backoff(1e-9, 1e300, factor=10.0).delay(attempt + 300) == 1e300   # past the float range on the way
    assert 225.0 <= Backoff(1.0, 300.0, jitter=0.25).delay(attempt, random.Random(1)) <= 375.0


def test_jitter_spreads_each_wait_around_the_capped_value() -> None:
    backoff, rand = Backoff(10.0, 300.0, jitter=0.25), random.Random(7)
    for n in range(12):
        nominal = min(300.0, 10.0 * 2**n)
        waits = [backoff.delay(n, rand) for _ in range(200)]
        assert all(0.75 * nominal <= w <= 1.25 * nominal for w in waits)
        assert min(waits) < 0.8 * nominal and max(waits) > 1.2 * nominal   # the whole range is used


def test_jitter_draws_once_per_wait_from_the_source_given() -> None:
    backoff = Backoff(10.0, 300.0, jitter=0.25)
    mine, theirs = random.Random(3), random.Random(3)
    assert [backoff.delay(n, mine) for n in range(5)] == [min(300.0, 10.0 * 2**n) * theirs.uniform(0.75, 1.25)
                                                         for n in range(5)]


def test_jitter_without_a_random_source_is_an_error() -> None:
    with pytest.raises(ValueError, match="random source"):
        Backoff(1.0, 10.0, jitter=0.1).delay(0)


def test_waits_yields_the_schedule_and_starts_again_when_asked_anew() -> None:
    backoff = Backoff(0.5, 4.0)
    first = backoff.waits()
    assert list(itertools.islice(first, 6)) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert next(backoff.waits()) == 0.5   # a reset: a fresh iterator
    assert next(first) == 4.0             # the one in use goes on


@pytest.mark.parametrize(("args", "message"), [
    ((-1.0, 10.0), "bounds"), ((1.0, float("nan")), "bounds"), ((1.0, 10.0, 0.5), "factor"),
    ((1.0, 10.0, 2.0, 1.0), "jitter"), ((1.0, 10.0, 2.0, -0.1), "jitter"),
])
def test_a_schedule_that_makes_no_sense_is_refused(args: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(*args)


def test_a_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff(1.0, 10.0).delay(-1)
