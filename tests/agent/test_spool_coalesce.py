"""The spool's joining of polled data (``spool.coalesce``): one batch, one seq and one message for the polls of
a few seconds, each poll on disk as soon as it was taken; events never wait; nothing joins a batch once handed
out, or after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.spool import COALESCE_BYTES, COALESCE_ROWS, Spool
from zonewatch import wire

S = 10**9
T0 = 1_700_000_000 * S
WINDOW = 5.0


def poll(t: int, device: str = "sw1", rows: int = 3) -> tuple[wire.Sample, ...]:
    return tuple(wire.Sample("interface", {"device": device, "ifname": f"ge-0/0/{i}"}, {"oper_up": True,
                                                                                         "in_octets": t // S + i}, t)
                 for i in range(rows))


def contents(spool: Spool) -> list[tuple[int, tuple[wire.Sample, ...]]]:
    """(seq, samples) of every batch in the file, as a fresh spool on it sees them (what survives a crash)."""
    again = Spool(spool.path, spool.zone, spool.probe)
    try:
        return [(b.seq, b.samples) for b in (wire.decode(e.payload) for e in again.pending(1000))]
    finally:
        again.close()


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool.db", "z1", "p1", coalesce_s=WINDOW)


def test_polls_within_the_window_are_one_batch_on_disk_after_each_poll(spool: Spool) -> None:
    a, b, c = poll(T0, "sw1"), poll(T0 + 2 * S, "sw2"), poll(T0 + 4 * S, "sw3")
    assert spool.append("data", T0, a) == 1
    assert contents(spool) == [(1, a)]              # durable at once: a crash now loses nothing
    assert spool.append("data", T0 + 2 * S, b) == 1
    assert contents(spool) == [(1, a + b)]
    assert spool.append("data", T0 + 4 * S, c) == 1
    assert contents(spool) == [(1, a + b + c)] and spool.depth() == 1
    assert spool.queue.get_meta("appended_samples") == 9
    d = poll(T0 + 5 * S, "sw4")                     # the window is over: a batch of its own
    assert spool.append("data", T0 + 5 * S, d) == 2
    assert contents(spool) == [(1, a + b + c), (2, d)]
    assert spool.size_bytes() == sum(len(e.payload) for e in spool.queue.pending(10))


def test_the_open_batch_waits_for_its_window_and_takes_nothing_more_once_handed_out(spool: Spool) -> None:
    spool.append("data", T0, poll(T0))
    assert spool.pending(10, T0 + 4 * S) == []      # more may still join it
    [entry] = spool.pending(10, T0 + 5 * S)         # its time is up: handed out ...
    assert entry.id == 1
    assert spool.append("data", T0 + 4 * S, poll(T0 + 4 * S)) == 2   # ... and closed, even to an earlier clock
    assert [b.seq for b in map(wire.decode, (e.payload for e in spool.pending(10)))] == [1, 2]


def test_events_go_at_once_and_leave_the_data_batch_open(spool: Spool) -> None:
    spool.append("data", T0, poll(T0))
    link = wire.Event("link_down", {"device": "sw1", "ifname": "ge-0/0/1"}, {}, T0 + S)
    assert spool.append("events", T0 + S, events=(link,)) == 2
    assert [e.kind for e in spool.pending(10, T0 + S)] == ["events"]
    assert spool.append("data", T0 + 2 * S, poll(T0 + 2 * S, "sw2")) == 1
    assert {seq: len(samples) for seq, samples in contents(spool)} == {1: 6, 2: 0}


def test_a_batch_is_joined_up_to_its_bounds_then_a_new_one_opens(spool: Spool) -> None:
    rows = COALESCE_ROWS // 4
    seqs = [spool.append("data", T0 + i * S // 10, poll(T0 + i * S // 10, f"sw{i}", rows)) for i in range(6)]
    assert seqs == [1, 1, 1, 1, 2, 2]
    assert [len(samples) for _, samples in contents(spool)] == [COALESCE_ROWS, 2 * rows]
    big = poll(T0 + S, "olt", COALESCE_ROWS)        # a poll as big as the bound goes alone, and opens nothing
    assert spool.append("data", T0 + S, big) == 3
    assert spool.append("data", T0 + S, poll(T0 + S)) == 4
    assert all(len(e.payload) <= COALESCE_BYTES for e in spool.queue.pending(10))


def test_nothing_joins_a_batch_from_before_a_restart_or_after_seal(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", "z1", "p1", coalesce_s=WINDOW)
    spool.append("data", T0, poll(T0))
    spool.close()
    again = Spool(tmp_path / "spool.db", "z1", "p1", coalesce_s=WINDOW)
    assert again.append("data", T0 + S, poll(T0 + S)) == 2
    assert [e.id for e in again.pending(10, T0 + S)] == [1]   # the old one goes; the new one waits
    again.seal()                                              # the agent stops: the open one goes now
    assert [e.id for e in again.pending(10, T0 + S)] == [1, 2]
    assert again.append("data", T0 + S, poll(T0 + S)) == 3
    again.close()


def test_a_clock_gone_back_neither_joins_nor_holds_the_batch(spool: Spool) -> None:
    spool.append("data", T0, poll(T0))
    assert spool.append("data", T0 - 60 * S, poll(T0 - 60 * S)) == 2   # before the open batch was made
    assert [e.id for e in spool.pending(10, T0 - 60 * S)] == [1]   # not held for the minute the clock went back
    assert [e.id for e in spool.pending(10, T0 - 55 * S)] == [1, 2]   # and the new one, its window over


def test_an_open_batch_the_bounds_dropped_is_not_joined_again(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", "z1", "p1", max_age_s=2, coalesce_s=WINDOW)
    spool.append("data", T0, poll(T0))
    spool.append("events", T0 + 3 * S, events=(wire.Event("link_up", {}, {}, T0 + 3 * S),))  # seq 1: too old
    assert spool.dropped() == 1
    assert spool.append("data", T0 + 4 * S, poll(T0 + 4 * S)) == 3   # within the window, but seq 1 is gone
    assert sorted(seq for seq, _ in contents(spool)) == [2, 3]


def test_without_a_window_every_poll_is_a_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", "z1", "p1")
    assert [spool.append("data", T0 + i, poll(T0 + i)) for i in range(3)] == [1, 2, 3]


def link(t: int, up: bool, octets: int = 0) -> tuple[wire.Sample, ...]:
    return (wire.Sample("interface", {"device": "sw1", "ifname": "ge-0/0/1"}, {"oper_up": up, "in_octets": octets},
                        t),)


def test_a_poll_that_changes_a_state_goes_at_once_with_what_waited_before_it(spool: Spool) -> None:
    assert spool.append("data", T0, link(T0, True)) == 1            # first seen: no news, it waits
    assert spool.append("data", T0 + S, link(T0 + S, True, 500)) == 1   # a counter moved: no news either
    assert spool.pending(10, T0 + S) == []
    assert spool.append("data", T0 + 2 * S, poll(T0 + 2 * S, "sw2")) == 1
    assert spool.append("data", T0 + 3 * S, link(T0 + 3 * S, False)) == 1   # the link went down: news
    [entry] = spool.pending(10, T0 + 3 * S)                          # at once, not at T0 + 5 s
    assert [s.fields["oper_up"] for s in wire.decode(entry.payload).samples if "oper_up" in s.fields
            and s.tags["device"] == "sw1" and s.tags["ifname"] == "ge-0/0/1"] == [True, True, False]
    assert spool.append("data", T0 + 3 * S, link(T0 + 3 * S, False)) == 2    # the next joins a new batch
    assert spool.pending(10, T0 + 3 * S, skip={1}) == []                    # which waits: nothing new in it
    assert spool.append("data", T0 + 4 * S, link(T0 + 4 * S, True)) == 2    # up again: news again
    assert [e.id for e in spool.pending(10, T0 + 4 * S, skip={1})] == [2]
    fresh = Spool(spool.path.parent / "fresh.db", "z1", "p1", coalesce_s=WINDOW)
    assert fresh.append("data", T0, link(T0, False)) == 1      # a first poll after a start is news to nobody
    assert fresh.pending(10, T0) == []
    fresh.close()
