"""What the ingest's preparer hands on to its sender and committer: a ``Part`` of the entries it took from the
intake queue, and the ``Item``s it stores, one per message (see ``collector.ingest.pipeline`` for the threads).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from collector.ingest.seq import SeqRow
from collector.storage.lineproto import Encoded
from zonewatch import wire

__all__ = ["Item", "Part", "as_batches", "sample_count"]

Item = wire.Batch | Encoded  # what a part stores of one message: encoded already only for a LineWriter


def sample_count(item: Item) -> int:
    """Return how many samples ``item`` holds."""
    return item.samples if isinstance(item, Encoded) else len(item.samples)


def as_batches(items: list[Item]) -> list[wire.Batch]:
    """Return ``items`` as batches: for a writer that is not a LineWriter, which is never given Encoded."""
    assert not any(isinstance(item, Encoded) for item in items)
    return items  # type: ignore[return-value]  # checked just above


@dataclass(slots=True)
class Part:
    """What the preparer made of some entries taken from the intake queue, for the sender and committer."""

    ids: list[int]  # every entry taken (to store, rejected or a repeat): deleted together once written
    batches: list[Item]  # to store, with the probes' seq_gaps samples
    send: Callable[[], None] | None  # writes ``batches`` (encoded by the preparer); None: nothing to store
    seq_rows: list[SeqRow]  # the sequence bookkeeping as of this part, stored with the deletion
    gaps: dict[str, int]  # probe -> gaps, for the metric once committed
