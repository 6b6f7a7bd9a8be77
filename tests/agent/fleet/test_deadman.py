"""The dead-man judgement: keep a configuration from the centre, or roll it back (pure, no clock)."""

from __future__ import annotations

import pytest

from agent.fleet.deadman import Health, Trial, judge, superseded

S = 10**9
TRIAL = Trial("sha256:" + "a" * 64, 3, started_ns=100 * S, deadline_ns=220 * S)   # a 2-minute trial


def test_waits_until_the_deadline_while_nothing_is_decided() -> None:
    assert judge(TRIAL, Health(False, 4, 0, 0), 150 * S).action == "wait"
    assert judge(TRIAL, Health(True, 4, 4, 2), 219 * S).action == "wait"   # half failed is not more than half


def test_keeps_it_at_the_deadline_when_the_broker_was_reached_and_most_sources_answer() -> None:
    assert judge(TRIAL, Health(True, 4, 4, 2), 220 * S).action == "keep"
    assert judge(TRIAL, Health(True, 0, 0, 0), 220 * S).action == "keep"   # nothing to poll: nothing failed


def test_rolls_back_at_the_deadline_when_the_broker_was_never_reached() -> None:
    verdict = judge(TRIAL, Health(False, 2, 2, 0), 220 * S)
    assert verdict.action == "roll_back"
    assert verdict.reason == "the broker was not reached within 120s of applying it"


def test_rolls_back_at_once_when_every_source_polled_and_most_failed() -> None:
    verdict = judge(TRIAL, Health(True, 3, 3, 2), 101 * S)
    assert verdict.action == "roll_back" and verdict.reason == "2 of its 3 sources failed their last poll"


@pytest.mark.parametrize(("polled", "failed", "action"), [(2, 2, "wait"), (3, 1, "wait")])
def test_does_not_judge_sources_early_before_all_have_polled(polled: int, failed: int, action: str) -> None:
    assert judge(TRIAL, Health(True, 3, polled, failed), 101 * S).action == action


def test_at_the_deadline_sources_that_never_polled_count_as_neither() -> None:
    # five sources, three polled, all three failed: more than half of five
    assert judge(TRIAL, Health(True, 5, 3, 3), 220 * S).action == "roll_back"
    # five sources, two polled and failed: not more than half of five
    assert judge(TRIAL, Health(True, 5, 2, 2), 220 * S).action == "keep"


def test_a_trial_superseded_with_nothing_against_it_counts_as_good() -> None:
    assert superseded(Health(True, 2, 1, 0))
    assert not superseded(Health(False, 2, 2, 0))   # its broker never answered
    assert not superseded(Health(True, 2, 2, 2))    # most of its sources fail
