"""The wave logic of a rollout, as pure functions of what the probes said and the time (no clock, no sleep)."""

from __future__ import annotations

import pytest

from collector.fleet import waves
from collector.fleet.waves import ProbeView, Rollout

S = 10**9
T0 = 1_800_000_000 * S
V = "0.2.0"
PROBES = ["p1", "p2", "p3", "p4", "p5"]


def healthy_since(t: int, version: str = V) -> ProbeView:
    """A probe that has run ``version``, online and in sync, since ``t``."""
    return ProbeView(version, t, True, t, True)


def start(**kw: object) -> Rollout:
    return waves.plan(V, "alice", T0, PROBES, {"p1": "0.1.0"}, soak_s=60, deadline_s=600, **kw)  # type: ignore[arg-type]


def test_a_few_first_then_the_rest() -> None:
    r = start(first=2)
    assert r.waves == (("p1", "p2"), ("p3", "p4", "p5"))
    assert waves.plan(V, "a", T0, PROBES, {}, probes=["p4"], batch=2).waves == (("p4",), ("p1", "p2"), ("p3", "p5"))
    assert waves.desired(r, {"p1": "0.1.0", "p5": "0.1.0"}) == {"p1": V, "p2": V, "p5": "0.1.0"}


def test_the_rest_begins_only_once_the_first_wave_ran_it_healthy_for_the_soak() -> None:
    r = start(first=1)
    # p1 restarted on the new release at +30 s: not yet soaked at +60 s
    views = {"p1": healthy_since(T0 + 30 * S)}
    r, changes = waves.advance(r, views, T0 + 60 * S)
    assert (r.wave, changes) == (0, [])
    # still the old release on another probe does not matter: it is not in this wave
    r, changes = waves.advance(r, {**views, "p2": healthy_since(T0, "0.1.0")}, T0 + 89 * S)
    assert (r.wave, changes) == (0, [])
    r, changes = waves.advance(r, views, T0 + 90 * S)
    assert r.wave == 1 and r.wave_started_ns == T0 + 90 * S
    assert changes == [waves.Change("wave", ("p2", "p3", "p4", "p5"), "wave 2 of 2")]
    assert set(waves.desired(r, {})) == set(PROBES)
    rest = {p: healthy_since(T0 + 100 * S) for p in PROBES}
    r, changes = waves.advance(r, rest, T0 + 159 * S)
    assert r.state == "running" and changes == []
    r, changes = waves.advance(r, rest, T0 + 160 * S)
    assert r.state == "done" and changes[0].action == "done"


@pytest.mark.parametrize("view, why", [
    (ProbeView("0.1.0", T0, True, T0 + 20 * S, True, update_result="rolled_back", update_wanted=V,
               update_error="release 0.2.0 did not start", update_at_ns=T0 + 20 * S),
     "it reported the update to 0.2.0 rolled back: release 0.2.0 did not start"),
    (ProbeView("0.1.0", T0, True, T0, False, config_problem="rejected: desired config v3:9: software.version: ..."),
     "the configuration that asks for 0.2.0: rejected: desired config v3:9: software.version: ..."),
    (ProbeView("0.1.0", T0, True, T0, True, update_result="refused", update_wanted=V, update_error="no update section",
               update_at_ns=T0 + S), "it reported the update to 0.2.0 refused: no update section"),
])
def test_a_probe_that_rolled_back_or_was_refused_fails_the_rollout_at_once(view: ProbeView, why: str) -> None:
    r, changes = waves.advance(start(), {"p1": view}, T0 + 25 * S)
    assert r.state == "failed" and r.failed == {"p1": why} and r.ended_ns == T0 + 25 * S
    assert changes == [waves.Change("failed", ("p1",), f"p1: {why}")]
    # failed stays failed, and no further wave begins whatever the probes say now
    assert waves.advance(r, {"p1": healthy_since(T0)}, T0 + 999 * S) == (r, [])
    assert waves.desired(r, {}) == {"p1": V}


def test_a_report_from_before_the_wave_began_does_not_count() -> None:
    old = ProbeView("0.1.0", T0, True, T0, True, update_result="rolled_back", update_wanted=V, update_at_ns=T0 - S)
    r, changes = waves.advance(start(), {"p1": old}, T0 + S)
    assert r.state == "running" and changes == []


def test_a_probe_that_does_not_come_back_fails_at_the_deadline() -> None:
    r = start()
    gone = ProbeView("0.1.0", T0, False, T0 + 5 * S, True)   # it said stopping, and never came back
    assert waves.advance(r, {"p1": gone}, T0 + 599 * S)[0].state == "running"
    r, _ = waves.advance(r, {"p1": gone}, T0 + 600 * S)
    assert r.state == "failed"
    assert r.failed["p1"] == ("not healthy on 0.2.0 within 600s of its wave: it runs 0.1.0, not online, its "
                              "configuration in sync")
    # an update of a probe that is online but never got its configuration in sync fails too
    r, _ = waves.advance(start(), {"p1": ProbeView(V, T0, True, T0, False)}, T0 + 600 * S)
    assert r.failed["p1"].endswith("it runs 0.2.0, online, its configuration not in sync")


def test_a_probe_that_goes_away_during_its_soak_starts_the_soak_again() -> None:
    r = start()
    r, _ = waves.advance(r, {"p1": ProbeView(V, T0 + 10 * S, True, T0 + 50 * S, True)}, T0 + 100 * S)
    assert r.wave == 0   # back online at +50 s: soaked at +110 s only
    r, _ = waves.advance(r, {"p1": ProbeView(V, T0 + 10 * S, True, T0 + 50 * S, True)}, T0 + 110 * S)
    assert r.wave == 1


def test_abort_keeps_the_release_where_it_went_well_and_gives_the_failed_probes_their_pin_back() -> None:
    r = waves.plan(V, "alice", T0, PROBES, {"p1": "0.1.0"}, first=2, soak_s=60, deadline_s=600)
    r, _ = waves.advance(r, {"p1": ProbeView("0.1.0", T0, True, T0, True, update_result="rolled_back",
                                             update_wanted=V, update_at_ns=T0 + S),
                             "p2": healthy_since(T0)}, T0 + 2 * S)
    ended, pins, changes = waves.abort(r, {"p1": "0.1.0"}, T0 + 3 * S)
    assert ended.state == "aborted" and changes == [waves.Change("aborted", ("p1",))]
    assert pins == {"p1": "0.1.0", "p2": V}
    assert waves.desired(ended, pins) == pins
    assert waves.advance(ended, {}, T0 + 999 * S) == (ended, [])


def test_a_new_rollout_starts_from_what_the_last_one_left() -> None:
    r = waves.plan(V, "alice", T0, PROBES, {}, first=1)
    r, _ = waves.advance(r, {"p1": ProbeView(update_result="failed", update_wanted=V, update_at_ns=T0 + S)}, T0 + S)
    pins = waves.finished_pins(r, {})
    assert pins == {"p1": V}   # still desired: it is tried again by the next rollout of it
    again = waves.plan(V, "bob", T0 + 9 * S, PROBES, pins)
    assert again.previous["p1"] == V and again.waves[0] == ("p1",)


@pytest.mark.parametrize("kw, message", [
    ({"managed": []}, "no probe is managed from the centre"),
    ({"probes": ["p9"]}, "--probes p9: not managed from the centre (managed: p1, p2, p3, p4, p5)"),
    ({"first": 0}, "--first must be 1 or more"),
    ({"soak_s": 600, "deadline_s": 60}, "--deadline longer than --soak"),
])
def test_a_rollout_that_cannot_be_made_is_refused_with_the_reason(kw: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"managed": PROBES, **kw}
    managed = args.pop("managed")
    with pytest.raises(waves.PlanError, match=message.replace("(", r"\(").replace(")", r"\)")):
        waves.plan(V, "alice", T0, managed, {}, **args)  # type: ignore[arg-type]
