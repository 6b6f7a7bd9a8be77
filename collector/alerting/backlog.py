"""The alert engine's data backlog: one queue per probe, taken in turns, so no probe's flood delays another.

The engine decodes data in the order it was offered, except that each probe (each data topic) has a queue of
its own and the engine takes at most ``share`` messages and ``quantum`` bytes from one (always one message,
however large) before it turns to the next that has any.
A probe that floods the collector (a runaway agent, a compromised probe, a long replay) then waits behind
itself: the other probes' readings, and the faults they show, are judged as soon as they come.

Bounded: past ``limit`` messages or ``limit_bytes`` of payload in all, the oldest messages of the longest queue are
dropped (the flooder pays for its flood; past the bytes, the newest reading of every probe is kept). The bytes
bound the memory: a probe that joins its polls (``spool.coalesce``) sends messages ten times the size.

Ticks (``collector.ingest``: the collector's own marks of how far its data session has caught up) say
"everything offered before me has been taken": one is handed out only once no queue still holds a message
offered before it, so it keeps its meaning although the probes' messages are taken out of their arrival order.
Each probe's messages keep their own order, and each keeps its arrival number (``Facts`` uses it).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable

__all__ = ["FairBacklog", "Offered"]

# topic, payload, arrival time (ns), arrival number, id in the intake queue (0: none given)
Offered = tuple[str, bytes, int, int, int]


class FairBacklog:
    """Data messages waiting for the engine; not thread-safe (the engine holds its lock around every call)."""

    def __init__(self, limit: int, share: int = 50, quantum: int = 64 * 1024, limit_bytes: int = 256 * 2**20) -> None:
        self.limit, self.share, self.quantum, self.limit_bytes = limit, share, quantum, limit_bytes
        self._queues: OrderedDict[str, deque[Offered]] = OrderedDict()   # topic -> its messages; next turn first
        self._ticks: deque[Offered] = deque()
        self.size = 0   # data messages held (not ticks)
        self.bytes = 0  # and their payload bytes

    def __len__(self) -> int:
        return self.size + len(self._ticks)

    def add(self, message: Offered, tick: bool = False) -> list[Offered]:
        """Hold ``message`` (a tick if ``tick``); return the messages dropped to stay within the limit."""
        if tick:
            self._ticks.append(message)
            return []
        queue = self._queues.get(message[0])
        if queue is None:
            queue = self._queues[message[0]] = deque()
        queue.append(message)
        self.size += 1
        self.bytes += len(message[1])
        dropped: list[Offered] = []
        while self.size > self.limit or self.bytes > self.limit_bytes:
            longest = max(self._queues.values(), key=len)   # only past a limit: a scan of the probes
            if len(longest) == 1 and self.size <= self.limit:
                break   # over the bytes with one message a probe: each probe's newest stays
            old = longest.popleft()
            dropped.append(old)
            self.size -= 1
            self.bytes -= len(old[1])
            if not longest:
                self._drop_empty()
        return dropped

    def forget(self, taken: Callable[[Offered], bool]) -> None:
        """Drop from the front of each probe's queue the messages ``taken`` says were taken another way
        (``collector.alerting.engine``: decoded by the ingest's preparer), so that they count no more against the
        limit and hold back no tick."""
        for topic in list(self._queues):
            queue = self._queues[topic]
            n = 0
            while queue and taken(queue[0]):
                self.bytes -= len(queue.popleft()[1])
                n += 1
            if n:
                self.size -= n
                if not queue:
                    del self._queues[topic]

    def take(self, most: int, most_bytes: int = 256 * 1024) -> list[Offered]:
        """Return up to ``most`` data messages and about ``most_bytes`` of them, each probe in its turn giving
        ``share`` messages and ``quantum`` bytes at most (but always its next message, however large), then the
        ticks no message still held precedes. Decoding costs by the sample, and the samples by the byte: a probe
        sending 1 MiB messages gets one a turn, and a slice holding one ends there."""
        out: list[Offered] = []
        size = 0
        while len(out) < most and size < most_bytes and self._queues:
            topic, queue = next(iter(self._queues.items()))
            n = got = 0
            while queue and n < self.share and len(out) < most:
                length = len(queue[0][1])
                if n and (got + length > self.quantum or size + length > most_bytes):
                    break
                out.append(queue.popleft())
                n, got, size = n + 1, got + length, size + length
            self.size -= n
            self.bytes -= got
            if queue:
                self._queues.move_to_end(topic)   # its turn is over: the others first
            else:
                del self._queues[topic]
        oldest = min((q[0][3] for q in self._queues.values()), default=math.inf)
        while self._ticks and self._ticks[0][3] < oldest:
            out.append(self._ticks.popleft())
        return out

    def _drop_empty(self) -> None:
        for topic in [t for t, q in self._queues.items() if not q]:
            del self._queues[topic]
