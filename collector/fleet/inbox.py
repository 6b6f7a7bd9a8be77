"""What the fleet thread reads from the probes' messages: an inbox filled on the intake thread, read on its own.

The intake thread ``put``s the messages a part may care about (a cheap byte test first: most data messages are
not); the fleet thread ``take``s them, each once, checked: a topic that does not parse, a payload that does not
decode, or a batch whose zone and probe are not its topic's are passed over (the ingest counts and names those),
and so is a probe the collector's scope refuses (retired, outside its zones). A status message comes with its
raw payload and no batch: it is not a batch.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from dataclasses import dataclass

from collector.scope import Scope
from zonewatch import wire

__all__ = ["Inbox", "Arrived"]


@dataclass(frozen=True)
class Arrived:
    """One message taken from the inbox."""

    where: wire.Topic
    batch: wire.Batch | None       # None for a status message (``payload`` is what the probe sent)
    payload: bytes
    at_ns: int                     # when the intake took it


class Inbox:
    """A queue the intake thread fills and the fleet thread empties."""

    def __init__(self, scope: Scope | None = None) -> None:
        self.scope = scope
        self._queue: queue.SimpleQueue[tuple[str, bytes, int]] = queue.SimpleQueue()

    def put(self, topic: str, payload: bytes, now_ns: int) -> None:
        """Queue one message (intake thread; never blocks)."""
        self._queue.put((topic, payload, now_ns))

    def take(self) -> Iterator[Arrived]:
        """Yield every message waiting, checked (see the module docstring)."""
        while True:
            try:
                topic, payload, at_ns = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                where = wire.parse_topic(topic)
                if where.kind == "status":
                    yield Arrived(where, None, payload, at_ns)
                    continue
                batch = wire.decode(payload)
            except wire.WireError:
                continue
            if (batch.zone, batch.probe) != (where.zone, where.probe):
                continue
            if self.scope is not None and self.scope.why(batch.zone, batch.probe, None, {}) is not None:
                continue
            yield Arrived(where, batch, payload, at_ns)
