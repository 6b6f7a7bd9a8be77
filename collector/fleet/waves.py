"""A rollout of a software release in waves: pure functions of what the probes reported and the time.

``zonewatch-collector fleet update --version V`` starts a rollout (``plan``): the managed probes in waves, a few first
(``--first N`` or ``--probes``), then the rest (all at once, or ``--batch M`` at a time). The fleet thread calls
``advance(rollout, views, now_ns)`` on every turn; it returns the rollout as it is now and what happened::

    a probe of the wave under way is
      healthy   it runs V, its status is online and its desired configuration (the one that says V) is in sync,
                all three for ``soak`` without a break (its time since the latest of them, on the collector's
                clock)
      failed    it reported the update ``rolled_back``, ``failed`` or ``refused`` (after the wave began); or it
                rejected or rolled back the configuration that says V; or it was not healthy ``deadline`` after
                the wave began (it did not come back, or runs something else)
      waiting   otherwise (installing, restarting, soaking)

    every probe of the wave healthy   the next wave begins now (its probes are desired V from now on); after the
                                      last one the rollout is ``done``
    a probe of the wave failed        the rollout is ``failed``: no further wave begins, the probes that have V
                                      desired keep it (ProbeUpdateFailed pages the NOC for the failed ones)

A probe of a finished wave is not judged again: what happens to it later is ProbeDown's or ProbeConfigRejected's.
``desired(rollout, pins)`` is the release each probe should run: V for the probes of the waves begun, the pin it
had before for the others. ``abort`` ends a rollout (no further wave; the failed probes' pins go back to what they
were). Nothing here reads a clock or a file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = ["ProbeView", "Rollout", "Change", "plan", "advance", "desired", "judge", "abort", "finished_pins",
           "PlanError"]

State = Literal["running", "done", "failed", "aborted"]
FAILED_RESULTS = ("rolled_back", "failed", "refused")


class PlanError(ValueError):
    """A rollout that cannot be made (an unknown probe, no probe, a bad size)."""


@dataclass(frozen=True, slots=True)
class ProbeView:
    """What the collector knows of one probe now (times on the collector's clock; 0: never)."""

    running: str = ""              # the release it last said it runs ("" not known)
    running_since_ns: int = 0      # when it was first seen running that release
    online: bool = False           # its retained status says online
    online_since_ns: int = 0
    config_in_sync: bool = False   # it runs its desired configuration (the one that says the release)
    config_problem: str = ""       # it rejected or rolled back its desired configuration: why ("" no)
    update_result: str = ""        # its last ``update`` report: requested, installed, rolled_back, failed, refused
    update_wanted: str = ""        # the release that report was about
    update_error: str = ""
    update_at_ns: int = 0


@dataclass(frozen=True, slots=True)
class Rollout:
    """One rollout: what, by whom, the waves, and how far it got."""

    version: str
    by: str
    started_ns: int
    waves: tuple[tuple[str, ...], ...]
    soak_s: float
    deadline_s: float
    previous: Mapping[str, str] = field(default_factory=dict)   # probe -> its pin before the rollout ("" none)
    wave: int = 0                                                # the wave under way (or the last one begun)
    wave_started_ns: int = 0
    state: State = "running"
    failed: Mapping[str, str] = field(default_factory=dict)     # probe -> why
    ended_ns: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """Something ``advance`` or ``abort`` did, for the audit and the log: ``action`` and the probes it is about."""

    action: Literal["wave", "done", "failed", "aborted"]
    probes: tuple[str, ...]
    detail: str = ""


def plan(version: str, by: str, now_ns: int, managed: Sequence[str], pins: Mapping[str, str], first: int = 1,
         probes: Sequence[str] = (), batch: int = 0, soak_s: float = 600.0, deadline_s: float = 1800.0) -> Rollout:
    """Return a rollout of ``version`` over the ``managed`` probes, begun at ``now_ns``: the first wave is ``probes``
    (if given) or the first ``first`` of them in name order, the rest follow ``batch`` at a time (0: all at once)."""
    names = sorted(set(managed))
    if not names:
        raise PlanError("no probe is managed from the centre (give one a config: in the inventory's probes)")
    unknown = [p for p in probes if p not in names]
    if unknown:
        raise PlanError(f"--probes {', '.join(unknown)}: not managed from the centre (managed: {', '.join(names)})")
    if first < 1 or batch < 0 or soak_s < 0 or deadline_s <= soak_s:
        raise PlanError("--first must be 1 or more, --batch 0 or more, and --deadline longer than --soak")
    head = list(dict.fromkeys(probes)) if probes else names[:first]
    rest = [p for p in names if p not in head]
    size = batch or len(rest) or 1
    waves = (tuple(head), *(tuple(rest[i:i + size]) for i in range(0, len(rest), size)))
    return Rollout(version, by, now_ns, waves, soak_s, deadline_s, {p: pins.get(p, "") for p in names},
                   wave_started_ns=now_ns)


def judge(rollout: Rollout, view: ProbeView, now_ns: int) -> tuple[Literal["healthy", "waiting", "failed"], str]:
    """Return what one probe of the wave under way is (see the module docstring), and why if failed."""
    v, began = rollout.version, rollout.wave_started_ns
    if view.update_wanted == v and view.update_result in FAILED_RESULTS and view.update_at_ns >= began:
        return "failed", f"it reported the update to {v} {view.update_result.replace('_', ' ')}: " \
                         f"{view.update_error or 'no reason given'}"
    if view.config_problem:
        return "failed", f"the configuration that asks for {v}: {view.config_problem}"
    if view.running == v and view.online and view.config_in_sync:
        since = max(view.running_since_ns, view.online_since_ns)
        if now_ns - since >= int(rollout.soak_s * 1e9):
            return "healthy", ""
    if now_ns - began >= int(rollout.deadline_s * 1e9):
        said = [f"it runs {view.running or 'an unknown release'}" if view.running != v else f"it runs {v}",
                "online" if view.online else "not online", "its configuration in sync" if view.config_in_sync
                else "its configuration not in sync"]
        return "failed", f"not healthy on {v} within {rollout.deadline_s:g}s of its wave: {', '.join(said)}"
    return "waiting", ""


def advance(rollout: Rollout, views: Mapping[str, ProbeView], now_ns: int) -> tuple[Rollout, list[Change]]:
    """Return the rollout at ``now_ns`` and what changed (see the module docstring)."""
    if rollout.state != "running":
        return rollout, []
    wave = rollout.waves[rollout.wave]
    verdicts = {p: judge(rollout, views.get(p, ProbeView()), now_ns) for p in wave}
    failed = {p: why for p, (what, why) in verdicts.items() if what == "failed"}
    if failed:
        done = replace(rollout, state="failed", failed=failed, ended_ns=now_ns)
        why = "; ".join(f"{p}: {w}" for p, w in sorted(failed.items()))
        return done, [Change("failed", tuple(sorted(failed)), why)]
    if any(what != "healthy" for what, _ in verdicts.values()):
        return rollout, []
    if rollout.wave + 1 == len(rollout.waves):
        return replace(rollout, state="done", ended_ns=now_ns), [Change("done", wave)]
    after = replace(rollout, wave=rollout.wave + 1, wave_started_ns=now_ns)
    return after, [Change("wave", after.waves[after.wave], f"wave {after.wave + 1} of {len(after.waves)}")]


def desired(rollout: Rollout | None, pins: Mapping[str, str]) -> dict[str, str]:
    """Return the release each probe should run now ("" left out: no release said)."""
    out = {p: v for p, v in pins.items() if v}
    if rollout is None or rollout.state == "aborted":
        return out
    for wave in rollout.waves[:rollout.wave + 1]:
        out.update(dict.fromkeys(wave, rollout.version))
    return out


def abort(rollout: Rollout, pins: Mapping[str, str], now_ns: int) -> tuple[Rollout, dict[str, str], list[Change]]:
    """End ``rollout``; return it, the pins from now on (the probes of the waves begun keep the release, but for
    the failed ones, which get back the pin they had before), and the change."""
    kept = desired(rollout, pins)
    for probe in rollout.failed:
        before = rollout.previous.get(probe, "")
        if before:
            kept[probe] = before
        else:
            kept.pop(probe, None)
    ended = replace(rollout, state="aborted", ended_ns=now_ns if rollout.state == "running" else rollout.ended_ns)
    return ended, kept, [Change("aborted", tuple(sorted(rollout.failed)))]


def finished_pins(rollout: Rollout, pins: Mapping[str, str]) -> dict[str, str]:
    """Return the pins once ``rollout`` is no longer the one under way (a new rollout replaces it)."""
    return desired(rollout, pins) if rollout.state != "aborted" else dict(pins)
