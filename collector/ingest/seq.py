"""The ingest's sequence bookkeeping: which (probe, origin, seq) it has stored, which it lost.

Sequence bookkeeping (``SeqTracker``): per (probe, origin), a watermark below which every seq has been
seen or given up, and the seqs seen above it. A seq at or below the watermark, or already seen, is a
repeat. ``seq_gaps`` counts the seqs missing below the highest seen (late data still fill them in);
once more than ``window`` newer seqs have arrived, a missing one is given up and counted as lost. A seq absurdly
far from its stream is stored but not believed (``ProbeSeq``), and a probe's made-up origins are bounded
(``SeqTracker``).

The state lives in the intake queue's file (table ``seqstate``), stored by the committer in the same
transaction that deletes the entries it describes (``collector.ingest.pipeline``).

After a restore from a backup (``collector.backup``) the state is the backup's, and the seqs the old collector
took after the backup was made would count as lost: ``SeqTracker.resume`` has the first forward gap of each
stream known then taken as seen (once per stream), not counted.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

import orjson

from zonewatch import wire

_STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS seqstate(
    probe TEXT NOT NULL, origin INTEGER NOT NULL, watermark INTEGER NOT NULL, lost INTEGER NOT NULL,
    above TEXT NOT NULL, PRIMARY KEY (probe, origin));
"""


class SeqRanges:
    """Seqs seen above a watermark, as sorted, disjoint, non-adjacent inclusive ranges ``[lo, hi]``.

    One hole costs one range, not one entry per later seq: a seq that extends the top range (the common
    case, hole or not) is O(1) amortised; one that lands lower is placed by bisection, O(log r) for r ranges
    (opening a range or closing the hole between two also shifts the list entries after it, a memmove of r
    pointers). ``count`` (the seqs held) is kept as seqs come and go, so the gaps are O(1).

    Bounded: ``ProbeSeq.record`` keeps every range within ``window`` seqs above the watermark, and two
    ranges have at least one missing seq between them (and the first starts at least two past the
    watermark), so there are at most ``window / 2`` ranges, however far apart a broken or hostile probe
    sends its seqs.
    """

    __slots__ = ("_lo", "_hi", "count")

    def __init__(self) -> None:
        self._lo: list[int] = []  # the first seq of each range, ascending
        self._hi: list[int] = []  # the last seq of each range, ascending
        self.count = 0  # seqs held

    @property
    def top(self) -> int | None:
        """Return the highest seq held, or None."""
        return self._hi[-1] if self._hi else None

    def __len__(self) -> int:
        return self.count

    def __contains__(self, seq: int) -> bool:
        i = bisect_right(self._lo, seq) - 1
        return i >= 0 and seq <= self._hi[i]

    def ranges(self) -> list[tuple[int, int]]:
        """Return the ranges, lowest first."""
        return list(zip(self._lo, self._hi, strict=True))

    def add(self, seq: int) -> bool:
        """Hold ``seq``; return False if it was held already."""
        lo, hi = self._lo, self._hi
        if not hi or seq > hi[-1]:  # above everything held
            if hi and seq == hi[-1] + 1:
                hi[-1] = seq
            else:
                lo.append(seq)
                hi.append(seq)
        else:
            i = bisect_right(lo, seq) - 1  # the range that starts at or below seq, if any
            if i >= 0 and seq <= hi[i]:
                return False
            # seq is below hi[-1] and not in range i, so range i + 1 exists
            joins_left, joins_right = i >= 0 and hi[i] == seq - 1, lo[i + 1] == seq + 1
            if joins_left and joins_right:  # closes the hole between two ranges
                hi[i] = hi.pop(i + 1)
                del lo[i + 1]
            elif joins_left:
                hi[i] = seq
            elif joins_right:
                lo[i + 1] = seq
            else:
                lo.insert(i + 1, seq)
                hi.insert(i + 1, seq)
        self.count += 1
        return True

    def fill(self, lo: int, hi: int) -> None:
        """Hold every seq from ``lo`` through ``hi`` (``lo`` above every seq held, ``hi`` at least ``lo``)."""
        if self._hi and lo == self._hi[-1] + 1:
            self._hi[-1] = hi
        else:
            self._lo.append(lo)
            self._hi.append(hi)
        self.count += hi - lo + 1

    def trim(self, floor: int) -> int:
        """Drop every seq at or below ``floor``; return how many were held."""
        lo, hi = self._lo, self._hi
        i = bisect_right(hi, floor)  # ranges [0, i) end at or below the floor
        dropped = sum(hi[:i]) - sum(lo[:i]) + i
        del lo[:i], hi[:i]
        if lo and lo[0] <= floor:  # the range across the floor keeps its part above it
            dropped += floor + 1 - lo[0]
            lo[0] = floor + 1
        self.count -= dropped
        return dropped

    def run_from(self, seq: int) -> int:
        """Return the last seq of the unbroken run from ``seq``: the end of a range that starts right after it,
        removed, else ``seq`` itself (ranges are non-adjacent, so at most one range follows on)."""
        lo, hi = self._lo, self._hi
        if lo and lo[0] == seq + 1:
            end = hi[0]
            del lo[0], hi[0]
            self.count -= end - seq
            return end
        return seq

    def to_json(self) -> str:
        """Return the ranges as JSON ``[[lo, hi], ...]``: one pair per hole."""
        return orjson.dumps(self.ranges()).decode()

    @classmethod
    def from_json(cls, text: str) -> SeqRanges:
        """Read ``to_json``'s ranges, or a list of seqs as the set-based bookkeeping stored them."""
        items = sorted((s, s) if isinstance(s, int) else (int(s[0]), int(s[1])) for s in json.loads(text))
        out = cls()
        for lo, hi in items:
            if out._hi and lo <= out._hi[-1] + 1:  # overlaps or follows on: merge
                out.count += max(0, hi - out._hi[-1])
                out._hi[-1] = max(hi, out._hi[-1])
            else:
                out._lo.append(lo)
                out._hi.append(hi)
                out.count += hi - lo + 1
        return out


@dataclass(slots=True)
class ProbeSeq:
    """What the collector knows of one probe's sequence space: every seq up to ``watermark`` was seen or
    given up (``lost`` counts those given up); ``above`` holds the seqs seen above it. The first range of
    ``above`` never starts at ``watermark + 1`` (the watermark moves over it).

    A seq more than ``max_jump`` away from where the stream stands (above the highest seen, or below the
    watermark) is not believed at once: one corrupt or hostile seq would otherwise give up everything below
    it and turn every later message into a repeat. It is a *jump*: its message is stored, but it moves
    nothing. Only ``resync`` jumps in a row that follow on from each other (n, n + 1, ...) move the stream
    there; the seqs skipped forwards are then lost. The jump run is kept in memory only.
    """

    watermark: int = 0
    lost: int = 0
    above: SeqRanges = field(default_factory=SeqRanges)
    used: int = 0           # when this origin last sent (SeqTracker's message count): the least recent retires
    jump_first: int = 0     # the first seq of the run of jumps in a row, if any
    jump_run: int = 0       # how many jumps in a row follow on from jump_first

    @property
    def gaps(self) -> int:
        """Return the seqs missing below the highest seen, plus those given up."""
        top = self.above.top
        return self.lost + (top - self.watermark - self.above.count if top is not None else 0)

    def record(self, seq: int, window: int, max_jump: int = 1 << 24, resync: int = 8) -> bool | None:
        """Record ``seq``; return False if it was seen (or given up) before, None if it is a jump (see the class
        docstring) that moved nothing. Once the highest seq seen is more than ``window`` above the watermark,
        the missing seqs up to ``window`` below it are given up."""
        if seq == self.watermark + 1:  # next in line: the common case; the span only shrinks
            self.jump_run = 0
            self.watermark = self.above.run_from(seq)
            return True
        if seq <= self.watermark:
            if self.watermark - seq <= max_jump:
                return False
            return self._jump(seq, resync)
        top = self.above.top
        if seq - (self.watermark if top is None else top) > max_jump:
            return self._jump(seq, resync)
        if not self.above.add(seq):
            return False
        self.jump_run = 0
        top = self.above.top
        if top is not None and top - self.watermark > window:  # give up on the oldest missing ones
            floor = top - window
            self._lose(floor - self.watermark - self.above.trim(floor))
            self.watermark = self.above.run_from(floor)
        return True

    def _jump(self, seq: int, resync: int) -> bool | None:
        if self.jump_run and seq == self.jump_first + self.jump_run:
            self.jump_run += 1
        else:
            self.jump_first, self.jump_run = seq, 1
        if self.jump_run < resync:
            return None
        # The stream goes on from jump_first: believe it. Forwards, what lies between is lost.
        if self.jump_first > self.watermark:
            self._lose(self.jump_first - 1 - self.watermark - self.above.count)
        self.above, self.watermark, self.jump_run = SeqRanges(), seq, 0
        return True

    def _lose(self, n: int) -> None:
        self.lost = min(wire.MAX_SEQ, self.lost + n)  # fits the state's SQLite integer, however absurd the seqs


SeqRow = tuple[str, int, int, int, str]  # a seqstate row: probe, origin, watermark, lost, above (JSON ranges)
RETIRED = -1  # the origin of the seqstate row that keeps the seqs lost under origins no longer followed


class SeqTracker:
    """Repeat detection and gap counting per (zone/probe, origin); persisted in the intake queue's file.

    A probe gets a new origin when its spool is replaced, which is rare: at most ``max_origins`` of a probe's
    origins are followed, and a new one past that retires the one that sent least recently (its lost seqs
    are kept in the probe's count; its seqs, if it ever sends again, are news). So the cost of a message
    does not grow with the origins a broken or hostile probe makes up. ``jumps`` lists the (zone/probe,
    origin, seq) of every jump met (``ProbeSeq``) for the caller to count and report; the caller clears it.
    """

    def __init__(self, db: Any, window: int = 65536, max_jump: int = 1 << 24, resync: int = 8,
                 max_origins: int = 4) -> None:
        self.db, self.window, self.max_jump, self.resync, self.max_origins = db, window, max_jump, resync, max_origins
        db.executescript(_STATE_SCHEMA)
        self.state: dict[tuple[str, int], ProbeSeq] = {}
        self._origins: dict[str, dict[int, ProbeSeq]] = {}  # probe -> origin -> its state
        self._retired: dict[str, int] = {}  # probe -> seqs lost under origins retired
        self._used = 0
        self.jumps: list[tuple[str, int, int]] = []
        for probe, origin, watermark, lost, above in db.execute("SELECT * FROM seqstate ORDER BY rowid"):
            if origin == RETIRED:
                self._retired[probe] = lost
                continue
            st = self.state[(probe, origin)] = ProbeSeq(watermark, lost, SeqRanges.from_json(above))
            self._origins.setdefault(probe, {})[origin] = st
        self._dirty: set[tuple[str, int]] = set()
        self._gone: set[tuple[str, int]] = set()  # retired since the last snapshot: rows to delete
        self._resuming: set[tuple[str, int]] = set()   # streams whose first forward gap is not counted (resume)

    def resume(self) -> None:
        """Start after a restore from a backup: the first forward gap of each stream known now (seqs the old
        collector took after the backup) is taken as seen, once per stream; later gaps count as always."""
        self._resuming = set(self.state)

    def is_repeat(self, probe: str, origin: int, seq: int) -> bool:
        """Return True if (probe, origin, seq) was recorded before (a jump is not); record nothing."""
        st = self.state.get((probe, origin))
        return st is not None and (st.watermark - self.max_jump <= seq <= st.watermark or seq in st.above)

    def first_time(self, probe: str, origin: int, seq: int) -> bool:
        """Record (probe, origin, seq); return False if it was seen before."""
        key = (probe, origin)
        st = self.state.get(key)
        if st is None:
            st = self._new(probe, origin)
        self._used += 1
        st.used = self._used
        if self._resuming and key in self._resuming:
            self._resume(key, st, seq)
        done = st.record(seq, self.window, self.max_jump, self.resync)
        if done is None:
            self.jumps.append((probe, origin, seq))
            return True
        if not done:
            return False
        self._dirty.add(key)
        return True

    def _resume(self, key: tuple[str, int], st: ProbeSeq, seq: int) -> None:
        """Take the seqs between ``st``'s highest and ``seq`` as seen when ``seq`` is the stream's first forward
        gap since ``resume`` (a repeat, or the next in line, leaves it waiting for that gap)."""
        top = max(st.watermark, st.above.top or 0)
        if seq <= top + 1 or seq - top > self.max_jump:
            return
        if top == st.watermark:   # nothing missing below: the watermark moves up
            st.watermark = seq - 1
        else:                     # holes the backup knew of stay holes; what lies above them is seen
            st.above.fill(top + 1, seq - 1)
        self._resuming.discard(key)
        self._dirty.add(key)

    def _new(self, probe: str, origin: int) -> ProbeSeq:
        mine = self._origins.setdefault(probe, {})
        while len(mine) >= self.max_origins:
            oldest = min(mine, key=lambda o: mine[o].used)
            self._retired[probe] = min(wire.MAX_SEQ, self._retired.get(probe, 0) + mine.pop(oldest).gaps)
            del self.state[(probe, oldest)]
            self._dirty.discard((probe, oldest))
            self._gone.add((probe, oldest))
        st = self.state[(probe, origin)] = mine[origin] = ProbeSeq()
        self._gone.discard((probe, origin))
        return st

    def all_gaps(self) -> dict[str, int]:
        """Return the gaps of every probe known, by zone/probe."""
        return {probe: self.gaps(probe) for probe in self._origins.keys() | self._retired.keys()}

    def gaps(self, probe: str) -> int:
        """Return the gaps of every origin of one probe (at most ``wire.MAX_SEQ``)."""
        total = self._retired.get(probe, 0) + sum(st.gaps for st in self._origins.get(probe, {}).values())
        return min(wire.MAX_SEQ, total)

    def snapshot(self) -> tuple[list[SeqRow], dict[str, int]]:
        """Return the rows of the state changed since the last snapshot, and the gaps of the probes concerned.

        The writer takes a snapshot when it has decided what a round of entries is (which are repeats) and
        stores it with the deletion of those entries, so the stored state always matches what is deleted. A
        row with watermark -1 deletes the state of a retired origin.
        """
        rows: list[SeqRow] = []
        for key in self._dirty:
            st = self.state[key]
            rows.append((key[0], key[1], st.watermark, st.lost, st.above.to_json()))
        for probe, origin in self._gone:
            rows.append((probe, origin, -1, 0, ""))
        for probe in {probe for probe, _ in self._gone}:
            rows.append((probe, RETIRED, 0, self._retired[probe], "[]"))
        self._dirty.clear()
        self._gone.clear()
        return rows, {probe: self.gaps(probe) for probe in {row[0] for row in rows}}

    def store(self, rows: list[SeqRow]) -> None:
        """Write snapshot rows (inside the caller's transaction)."""
        self.db.executemany("INSERT OR REPLACE INTO seqstate VALUES (?, ?, ?, ?, ?)", [r for r in rows if r[2] >= 0])
        self.db.executemany("DELETE FROM seqstate WHERE probe = ? AND origin = ?",
                            [(r[0], r[1]) for r in rows if r[2] < 0])
