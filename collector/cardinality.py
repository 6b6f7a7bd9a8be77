"""How many distinct series one probe may create: a runaway or hostile probe cannot fill the store.

A series is a measurement with one set of tag values (what a TSDB indexes). Each probe may have at most
``max_series`` series seen within ``window_ns``; a sample of a series it already has is always kept, a
sample of a new series over the limit is refused (the caller counts and reports it). A series not seen for
``window_ns`` stops counting, so a probe whose devices were replaced is not locked out for good.

Pure logic: time comes in as ``now_ns`` (the arrival time of the message). The state lives in memory; after
a collector restart each probe starts again from zero, which can let a probe that was over the limit add up
to ``max_series`` more series once (bounded).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from zonewatch import wire

__all__ = ["SeriesLimit", "Refused", "SeriesKey", "describe"]

# A series as the limit keys it: the measurement, then the tag keys, then the tag values, flat (cheaper to
# build and hash than pairs, and as exact). Built inline on the hot paths: ``(m, *tags, *tags.values())``.
SeriesKey = tuple[str, ...]


def describe(measurement: str, tags: Mapping[str, str]) -> str:
    """Return a series as a person reads it: ``interface,device=sw1,ifname=ge-0/0/1`` (tags sorted)."""
    return measurement + "".join(f",{k}={v}" for k, v in sorted(tags.items()))


@dataclass(slots=True)
class _Probe:
    seen: dict[SeriesKey, int] = field(default_factory=dict)  # series -> last seen (ns)
    pruned_ns: int = 0  # when ``seen`` was last pruned of series older than the window


@dataclass(frozen=True, slots=True)
class Refused:
    """What ``admit`` refused from one batch: how many samples, and one of their series as an example."""

    samples: int
    example: str


class SeriesLimit:
    """Distinct series per probe within a time window, bounded."""

    def __init__(self, max_series: int, window_ns: int) -> None:
        if max_series < 1 or window_ns < 1:
            raise ValueError("max_series and window_ns must be positive")
        self.max_series, self.window_ns = max_series, window_ns
        self._probes: dict[str, _Probe] = {}

    def count(self, probe: str) -> int:
        """Return how many series ``probe`` holds (seen within the window, as of the last prune)."""
        st = self._probes.get(probe)
        return len(st.seen) if st is not None else 0

    def table(self, probe: str, now_ns: int) -> tuple[dict[SeriesKey, int], Callable[[], bool]]:
        """Return ``probe``'s series (key -> last seen) and a call saying whether one more series fits now.

        For a caller that admits sample by sample, as ``admit`` does: a known key is admitted (its time set to
        ``now_ns``), a new key only if the call returns True (then it is added)."""
        st = self._probes.get(probe)
        if st is None:
            st = self._probes[probe] = _Probe(pruned_ns=now_ns)
        return st.seen, partial(self._room, st, now_ns)

    def admit(self, probe: str, samples: Sequence[wire.Sample],
              now_ns: int) -> tuple[Sequence[wire.Sample], Refused | None]:
        """Return the samples of ``probe`` to keep (``samples`` itself when all are), and what was refused."""
        seen, room = self.table(probe, now_ns)
        kept: list[wire.Sample] | None = None
        refused = 0
        example = ""
        for i, sample in enumerate(samples):
            tags = sample.tags
            key = (sample.measurement, *tags, *tags.values())
            if key in seen or room():
                seen[key] = now_ns
                if kept is not None:
                    kept.append(sample)
                continue
            if kept is None:
                kept = list(samples[:i])
            if not refused:
                example = describe(sample.measurement, tags)
            refused += 1
        if kept is None:
            return samples, None
        return kept, Refused(refused, example)

    def _room(self, st: _Probe, now_ns: int) -> bool:
        """Return True if one more series fits, after forgetting series older than the window if that is due.

        Pruning walks every series of the probe, so it is done at most once per tenth of the window."""
        if len(st.seen) < self.max_series:
            return True
        if now_ns - st.pruned_ns >= self.window_ns // 10:
            st.pruned_ns = now_ns
            floor = now_ns - self.window_ns
            for key in [k for k, t in st.seen.items() if t < floor]:  # in place: ``admit`` holds the dict
                del st.seen[key]
            return len(st.seen) < self.max_series
        return False
