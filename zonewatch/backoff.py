"""Exponential back-off between bounds: how long to wait before the next try, given how many failed.

``Backoff(first, maximum, factor, jitter).delay(attempt, rand)`` is the wait after the ``attempt``-th failure
(0 for the first): ``first * factor ** attempt``, capped at ``maximum``, then, when ``jitter`` is set, multiplied
by a random factor in ``[1 - jitter, 1 + jitter]`` drawn from ``rand`` (so a jittered wait may be up to
``jitter`` above ``maximum``: the spread is around the capped value, and probes that failed together drift
apart even once they are all at the cap). ``waits`` yields the same sequence for a loop that keeps no count.

Pure: it reads no clock and owns no random source; the caller counts the attempts and passes the randomness,
so the schedule is tested without sleeping. Any attempt number is safe (no overflow, however many failures).

Standard library only; imports neither ``agent`` nor ``collector``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Waits that grow from ``first`` by ``factor`` per failed attempt up to ``maximum``, spread by ``jitter``."""

    first: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        """Reject bounds that make no schedule."""
        if not (self.first >= 0 and self.maximum >= 0):
            raise ValueError(f"back-off bounds must be 0 or more, got first={self.first!r} maximum={self.maximum!r}")
        if not self.factor >= 1:
            raise ValueError(f"back-off factor must be 1 or more, got {self.factor!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"back-off jitter must be at least 0 and below 1, got {self.jitter!r}")

    def delay(self, attempt: int, rand: random.Random | None = None) -> float:
        """Return the wait in seconds after the ``attempt``-th failure (0 for the first); ``rand`` is required
        when ``jitter`` is set and used once per call."""
        if attempt < 0:
            raise ValueError(f"attempt must be 0 or more, got {attempt}")
        wait = min(self.first, self.maximum)
        if attempt and 0 < self.first < self.maximum:
            try:
                wait = min(self.maximum, self.first * float(self.factor) ** attempt)
            except OverflowError:   # far past the cap
                wait = self.maximum
        if self.jitter:
            if rand is None:
                raise ValueError("a back-off with jitter needs a random source")
            wait *= rand.uniform(1 - self.jitter, 1 + self.jitter)
        return wait

    def waits(self, rand: random.Random | None = None) -> Iterator[float]:
        """Yield ``delay(0)``, ``delay(1)`` and so on without end; a fresh iterator starts again from ``first``."""
        attempt = 0
        while True:
            yield self.delay(attempt, rand)
            attempt += 1
