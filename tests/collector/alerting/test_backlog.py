"""The engine's data backlog: probes taken in turns, ticks kept in their meaning, the flooder pays."""

from __future__ import annotations

from collector.alerting.backlog import FairBacklog, Offered

TICK = "zonewatch/tick/collector"


def offered(messages: list[str]) -> list[Offered]:
    """Messages by probe name (or ``tick``), numbered in arrival order."""
    return [(TICK if m == "tick" else f"zw/v1/z/{m}/data", m.encode(), 0, n, 0) for n, m in enumerate(messages, 1)]


def fill(backlog: FairBacklog, messages: list[str]) -> int:
    return sum(len(backlog.add(m, tick=m[0] == TICK)) for m in offered(messages))


def names(taken: list[Offered]) -> list[str]:
    return [m[1].decode() for m in taken]


def test_a_flooding_probe_waits_behind_itself() -> None:
    backlog = FairBacklog(limit=10_000, share=3)
    fill(backlog, ["flood"] * 1000 + ["p1", "p2", "p1"])
    first = names(backlog.take(8))
    assert first == ["flood"] * 3 + ["p1", "p1", "p2"] + ["flood"] * 2   # the others come in the first turn
    assert len(backlog) == 1000 + 3 - 8


def test_a_probe_of_large_messages_gives_one_a_turn_and_a_slice_holding_one_ends_there() -> None:
    backlog = FairBacklog(limit=10_000, share=50, quantum=64 * 1024)
    big, small = b"x" * 2**20, b"y" * 5000
    for n, (probe, payload) in enumerate([("flood", big)] * 10 + [("p2", small)] * 20, 1):
        backlog.add((f"zw/v1/z/{probe}/data", payload, 0, n, 0))
    first = backlog.take(2000, most_bytes=256 * 1024)
    assert [m[1] for m in first] == [big]      # one large message is a slice: the next starts with p2
    second = backlog.take(2000, most_bytes=256 * 1024)
    assert [m[1] for m in second][:13] == [small] * 13   # p2's turn: 64 KiB of it
    assert second[13][1] == big and len(second) == 14


def test_each_probes_messages_keep_their_order_and_numbers() -> None:
    backlog = FairBacklog(limit=100, share=2)
    fill(backlog, ["a", "b", "a", "a", "b", "c", "a"])
    taken = []
    while len(backlog):
        taken += backlog.take(3)
    for probe in "abc":
        numbers = [m[3] for m in taken if m[1] == probe.encode()]
        assert numbers == sorted(numbers)
    assert sorted(m[3] for m in taken) == list(range(1, 8))


def test_a_tick_comes_out_only_after_everything_offered_before_it() -> None:
    backlog = FairBacklog(limit=100, share=2)
    fill(backlog, ["a", "a", "a", "b", "tick", "b", "a"])
    assert names(backlog.take(3)) == ["a", "a", "b"]          # an "a" before the tick still waits
    assert names(backlog.take(2)) == ["a", "a", "tick"]       # now none before it does (the "b" left came after)
    assert names(backlog.take(5)) == ["b"]
    assert len(backlog) == 0
    fill(backlog, ["tick"])
    assert names(backlog.take(5)) == ["tick"]                 # with nothing waiting, at once


def test_past_the_limit_the_longest_queue_loses_its_oldest() -> None:
    backlog = FairBacklog(limit=6, share=10)
    dropped = fill(backlog, ["flood"] * 6 + ["p1", "p2"])
    assert dropped == 2 and backlog.size == 6
    taken = backlog.take(10)
    assert names(taken) == ["flood"] * 4 + ["p1", "p2"]
    assert [m[3] for m in taken[:4]] == [3, 4, 5, 6]          # the flood's two oldest went
    many = FairBacklog(limit=2, share=1)                       # more probes than the limit: one each at most
    assert fill(many, ["a", "b", "c"]) == 1 and many.size == 2


def test_past_its_bytes_the_flood_loses_its_oldest_and_every_probe_keeps_its_newest() -> None:
    backlog = FairBacklog(limit=1000, share=10, limit_bytes=34)
    big = [("zw/v1/z/flood/data", bytes(10), 0, n, 0) for n in range(1, 4)]
    small = [(f"zw/v1/z/p{n}/data", bytes(5), 0, 10 + n, 0) for n in range(3)]
    assert [len(backlog.add(m)) for m in big + small] == [0, 0, 0, 1, 0, 1]   # 35 bytes, twice: the flood pays
    assert (backlog.size, backlog.bytes) == (4, 25)
    taken = backlog.take(10)
    assert [m[3] for m in taken] == [3, 10, 11, 12] and (backlog.size, backlog.bytes) == (0, 0)
    lone = FairBacklog(limit=1000, limit_bytes=10)          # a probe each, over the bytes: the newest stay
    assert sum(len(lone.add((f"zw/v1/z/p{n}/data", bytes(8), 0, n, 0))) for n in range(3)) == 0
    assert lone.size == 3
    lone.forget(lambda m: m[3] < 2)                          # what was taken another way counts no more
    assert (lone.size, lone.bytes) == (1, 8)
