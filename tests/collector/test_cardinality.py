"""The per-probe series limit: pure logic, time as an argument."""

from __future__ import annotations

import pytest

from collector.cardinality import SeriesLimit
from zonewatch import wire

S = 10**9


def samples(*cells: str, m: str = "cell") -> tuple[wire.Sample, ...]:
    return tuple(wire.Sample(m, {"modem": "m1", "cell_id": c}, {"rsrp_dbm": -90.0}, 0) for c in cells)


def cell_ids(kept: object) -> list[str]:
    return [s.tags["cell_id"] for s in kept]  # type: ignore[attr-defined]


def test_within_the_limit_the_same_samples_come_back() -> None:
    lim = SeriesLimit(3, 3600 * S)
    batch = samples("a", "b", "c", "a")
    kept, refused = lim.admit("z/p1", batch, 0)
    assert kept is batch and refused is None
    assert lim.count("z/p1") == 3


def test_over_the_limit_only_new_series_are_refused_and_known_ones_keep_flowing() -> None:
    lim = SeriesLimit(3, 3600 * S)
    lim.admit("z/p1", samples("a", "b"), 0)
    kept, refused = lim.admit("z/p1", samples("x", "a", "y", "b", "z"), S)
    assert cell_ids(kept) == ["x", "a", "b"]  # x took the last place; y and z are new and over
    assert refused is not None and refused.samples == 2
    assert refused.example == "cell,cell_id=y,modem=m1"
    kept, refused = lim.admit("z/p1", samples("a", "b", "x"), 2 * S)
    assert cell_ids(kept) == ["a", "b", "x"] and refused is None


def test_each_probe_has_its_own_limit() -> None:
    lim = SeriesLimit(2, 3600 * S)
    lim.admit("z/p1", samples("a", "b", "c", "d"), 0)
    kept, refused = lim.admit("z/p2", samples("a", "b"), 0)
    assert cell_ids(kept) == ["a", "b"] and refused is None


def test_a_series_is_its_measurement_and_every_tag_value() -> None:
    lim = SeriesLimit(2, 3600 * S)
    lim.admit("z/p1", samples("a") + samples("a", m="signal"), 0)  # same tags, two measurements: two series
    kept, refused = lim.admit("z/p1", (wire.Sample("cell", {"modem": "m2", "cell_id": "a"}, {"x": 1}, 0),), 0)
    assert kept == [] and refused is not None and refused.samples == 1


def test_series_not_seen_for_the_window_stop_counting() -> None:
    lim = SeriesLimit(2, 100 * S)
    lim.admit("z/p1", samples("old1", "old2"), 0)
    kept, refused = lim.admit("z/p1", samples("new"), 50 * S)  # the old ones are still within the window
    assert refused is not None
    lim.admit("z/p1", samples("old2"), 60 * S)  # old2 stays alive
    kept, refused = lim.admit("z/p1", samples("new"), 120 * S)  # old1 was last seen 120 s ago: forgotten
    assert cell_ids(kept) == ["new"] and refused is None
    assert lim.count("z/p1") == 2


def test_pruning_is_not_repeated_for_every_refused_sample() -> None:
    lim = SeriesLimit(1, 100 * S)
    lim.admit("z/p1", samples("a"), 0)
    lim.admit("z/p1", samples("b"), 95 * S)  # prunes at 95 s: "a" (0 s) is within the window, kept
    kept, refused = lim.admit("z/p1", samples("b"), 101 * S)  # "a" expired, but pruned 6 s ago (< window/10)
    assert refused is not None
    kept, refused = lim.admit("z/p1", samples("b"), 106 * S)  # 11 s since the last prune: prunes, "b" fits
    assert cell_ids(kept) == ["b"] and refused is None


def test_a_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SeriesLimit(0, S)
