"""The preparer's choice of intake entries (collector.ingest.taking) on a real intake queue file: in order while it
keeps up, and behind a backlog one probe's flood waits behind itself while every other probe's entries come
in the next round."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.ingest.taking import FairTake
from zonewatch.queue import DiskQueue, QueueReader

P1, P2, P3 = "zw/v1/z/p1/data", "zw/v1/z/p2/data", "zw/v1/z/p3/events"


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[DiskQueue]:
    q = DiskQueue(tmp_path / "intake.db", max_bytes=2**34, max_age_ns=10**18)
    yield q
    q.close()


@pytest.fixture
def reader(queue: DiskQueue) -> Iterator[QueueReader]:
    r = queue.reader()
    yield r
    r.close()


def put(queue: DiskQueue, kind: str, n: int, size: int = 100) -> list[int]:
    return [queue.put(kind, bytes(size), 1) for _ in range(n)]


def test_while_it_keeps_up_everything_comes_in_arrival_order(queue: DiskQueue, reader: QueueReader) -> None:
    ids = [i for _ in range(3) for kind in (P1, P2, P3) for i in put(queue, kind, 1)]
    take = FairTake(reader, round_entries=10)
    assert [e.id for e in take.take()] == ids
    assert not take.fair and take.take() == []
    more = put(queue, P2, 2)
    assert [e.id for e in take.take()] == more


def test_behind_a_flood_another_probes_entries_come_in_the_next_round(queue: DiskQueue,
                                                                       reader: QueueReader) -> None:
    flood = put(queue, P1, 5000)
    others = put(queue, P2, 3) + put(queue, P3, 2)
    take = FairTake(reader, round_entries=500, share=50)
    first = take.take()
    assert [e.id for e in first] == flood[:500] and take.fair   # a full round: a backlog
    second = [e.id for e in take.take()]
    assert set(others) <= set(second), "the other probes waited behind the flood"
    # entry by entry across the topics: each other entry is within the first few of the round
    assert max(second.index(i) for i in others) < 3 * 3
    assert [i for i in second if i in flood] == flood[500:500 + len(second) - len(others)]


def test_a_topic_of_large_messages_gives_one_a_round_and_small_ones_flow_beside_it(queue: DiskQueue,
                                                                                   reader: QueueReader) -> None:
    put(queue, P1, 500)                         # the backlog that turns taking fair
    big = put(queue, P1, 20, size=2**20)
    small = put(queue, P2, 100, size=5000)
    take = FairTake(reader, round_entries=500, share=50, quantum=256 * 1024)
    take.take()
    rounds = [[e.id for e in take.take()] for _ in range(3)]
    for got in rounds:
        assert len([i for i in got if i in big]) == 1
        assert len([i for i in got if i in small]) == 50 or not set(small) - set().union(*rounds)
    assert set(small) <= set(rounds[0]) | set(rounds[1])
    assert [i for r in rounds for i in r if i in big] == big[:3]


def test_reset_starts_again_from_the_oldest_entry_once_everything_taken_is_committed(
        queue: DiskQueue, reader: QueueReader) -> None:
    put(queue, P1, 30)
    put(queue, P2, 5)
    take = FairTake(reader, round_entries=10, share=2)
    taken = [e.id for e in take.take()] + [e.id for e in take.take()]
    queue.ack(taken)
    take.reset()
    assert not take.fair
    left = [e.id for e in queue.pending(100)]
    assert [e.id for e in take.take()] == left[:10]


def test_kinds_lists_each_topic_with_an_entry_once(queue: DiskQueue, reader: QueueReader) -> None:
    assert reader.kinds() == []
    put(queue, P2, 3)
    put(queue, P1, 2)
    put(queue, P3, 1)
    assert reader.kinds() == sorted({P1, P2, P3})


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([P1, P2, P3, "derived:" + P1]), st.integers(1, 40),
                          st.sampled_from([10, 5000, 300_000])), min_size=1, max_size=12),
       st.integers(1, 30), st.integers(1, 4))
def test_every_entry_is_taken_once_and_each_topic_in_its_own_order(tmp_path_factory: pytest.TempPathFactory,
                                                                   puts: list[tuple[str, int, int]],
                                                                   round_entries: int, commit_every: int) -> None:
    """Puts and takes interleaved, with commits (ack + reset once nothing is in flight) now and then."""
    q = DiskQueue(tmp_path_factory.mktemp("q") / "intake.db", max_bytes=2**34, max_age_ns=10**18)
    r = q.reader()
    try:
        take = FairTake(r, round_entries=round_entries, share=3, quantum=20_000)
        put_ids: dict[str, list[int]] = {}
        taken: list[tuple[str, int]] = []
        in_flight: list[int] = []
        for n, (kind, count, size) in enumerate(puts):
            put_ids.setdefault(kind, []).extend(put(q, kind, count, size))
            for _ in range(2):
                got = take.take()
                taken += [(e.kind, e.id) for e in got]
                in_flight += [e.id for e in got]
            if n % commit_every == 0:
                q.ack(in_flight)
                in_flight.clear()
                take.reset()
        while got := take.take():
            taken += [(e.kind, e.id) for e in got]
        ids = [i for _, i in taken]
        assert len(ids) == len(set(ids)), "an entry was taken twice"
        assert sorted(ids) == sorted(i for v in put_ids.values() for i in v), "an entry was never taken"
        for kind, expected in put_ids.items():
            assert [i for k, i in taken if k == kind] == expected, f"{kind} out of order"
    finally:
        r.close()
        q.close()


def test_behind_a_backlog_every_entry_comes_with_its_own_payload_small_or_large(queue: DiskQueue,
                                                                                reader: QueueReader) -> None:
    """Small entries are read whole with their sizes; a large one's payload only once it is chosen."""
    put(queue, P1, 10)                                                    # the backlog that turns taking fair
    sizes = [10, 10, 300_000, 5000, 10, 10, 10, 300_000, 7000, 10]   # runs of small ones, and mixed rounds
    payloads = {queue.put(kind, bytes([n % 251]) * size, n): bytes([n % 251]) * size
                for n, size in enumerate(sizes * 3) for kind in (P1, P2)}
    take = FairTake(reader, round_entries=10, share=3, quantum=20_000)
    take.take()
    assert take.fair
    got = {}
    while entries := take.take():
        got.update((e.id, e.payload) for e in entries)
    assert got == payloads
