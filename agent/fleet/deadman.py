"""The dead-man rule: keep a configuration the centre sent, or go back to the last known-good one.

A configuration from the centre is on trial from the moment it runs until ``deadline_ns`` (the time applied
plus ``remote_config.deadman``). ``judge(trial, health, now_ns)`` is pure; the agent's loop asks it on every
turn with what it has seen since the configuration was applied::

    roll_back   more than half of the sources failed their last poll, and every source has had one (at once);
                at the deadline: the broker was not reached since the apply, or more than half of the sources
                that have polled failed their last poll
    keep        the deadline has passed and neither holds: the configuration becomes the last known-good
    wait        otherwise

A listener (trap receiver, telemetry) counts as a source: failing to start is its failed poll. A source that
has not polled by the deadline (an interval longer than the trial) counts as neither.

``superseded(health)``: a newer configuration arrives while one is on trial (it came through the broker, so the
broker is reached). The one on trial becomes the last known-good if nothing counts against it so far (the
broker reached, not more than half of its sources failing): a roll back of the newer one then returns to it,
not to what ran before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Trial", "Health", "Verdict", "judge", "superseded"]


@dataclass(frozen=True, slots=True)
class Trial:
    """A configuration on trial: which one, and until when."""

    hash: str
    version: int
    started_ns: int
    deadline_ns: int


@dataclass(frozen=True, slots=True)
class Health:
    """What the agent has seen since the configuration on trial was applied."""

    broker_reached: bool     # connected to the broker (the configuration's) at some time since the apply
    sources: int             # polled sources and listeners the configuration runs
    polled: int              # of them, how many have polled (listeners: tried to start) since the apply
    failed: int              # of those, how many failed their last poll (listeners: could not start)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with the configuration on trial; ``reason`` says why, for a roll back."""

    action: Literal["wait", "keep", "roll_back"]
    reason: str = ""


def _sources_failed(health: Health) -> bool:
    return health.failed * 2 > health.sources


def judge(trial: Trial, health: Health, now_ns: int) -> Verdict:
    """Return what to do with ``trial`` at ``now_ns`` given ``health`` (see the module docstring)."""
    failed = f"{health.failed} of its {health.sources} sources failed their last poll"
    if _sources_failed(health) and health.polled >= health.sources:
        return Verdict("roll_back", failed)
    if now_ns < trial.deadline_ns:
        return Verdict("wait")
    seconds = (trial.deadline_ns - trial.started_ns) / 1e9
    if not health.broker_reached:
        return Verdict("roll_back", f"the broker was not reached within {seconds:g}s of applying it")
    if _sources_failed(health):
        return Verdict("roll_back", f"{failed} within {seconds:g}s of applying it")
    return Verdict("keep")


def superseded(health: Health) -> bool:
    """Return True if a configuration on trial that a newer one replaces counts as known-good (see above)."""
    return health.broker_reached and not _sources_failed(health)
