"""Modem recovery in steps: a pure ladder of (events, now), its configuration, and the step that is not the port's.

When a modem stops answering (a poll raises: no answer, a flood, the port gone from USB), the cellular source
(``agent.sources.cellular``) tells its ``Recovery`` at every failed read, which asks the ``Ladder`` whether a step is
due; the next poll runs that step instead of reading (so a poll never waits for a failed read and a step one after
the other: it stays within its interval), logs it and counts it, and reads too when the step was a reopen that
worked. When the modem answers again, the ladder starts over::

    step        what it does                                              on
    reopen      close the serial port and open it again (ATE0, vendor,    AT backend
                setup), as after a USB reset
    cfun        AT+CFUN=1,1: the modem resets itself                      AT backend, ``recovery.cfun``
    usb_power   the USB port's power off and on: ``uhubctl`` (Debian's    either backend, only with
                package) through a command the operator may change        ``recovery.usb`` (hub and port)

Limits (``RecoveryConfig``): a step is due once ``after_failures`` reads in a row have failed; after a step the
next one waits ``wait``, doubled after each round of the whole ladder up to ``max_wait``; each step runs at most
``max_per_hour`` times in any hour, counted across episodes (a modem that keeps falling over is not reset without
end); the USB power cycle at most once every ``usb.min_interval``. A step the limits forbid is passed over for
the next; when none may run, the ladder waits for the next round. Each step run is one warning line (the step,
its place, what it gave) and one count in ``zonewatch_modem_recovery_steps_total{modem,step,result}`` (result
``ok`` or ``failed``); the modem answering again is one line naming every step of the episode.

The ladder reads no clock: ``now_ns`` comes from the poll (the runner's clock), so it is tested without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
import string
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from pydantic import Field, field_validator, model_validator

from zonewatch import strict
from zonewatch.backoff import Backoff

__all__ = ["STEPS", "STEP_NUMBER", "UsbPowerConfig", "RecoveryConfig", "Ladder", "Recovery", "power_cycle"]

log = logging.getLogger(__name__)

STEPS: Final = ("reopen", "cfun", "usb_power")
STEP_NUMBER: Final = {"reopen": 1, "cfun": 2, "usb_power": 3}   # the ``modem`` measurement's ``recovery_step``
HOUR_NS: Final = 3600 * 10**9
_HUB = re.compile(r"^\d+(-\d+(\.\d+)*)?$")   # uhubctl's location: bus-port.port..., e.g. 1-1.3
_PLACEHOLDERS: Final = frozenset({"hub", "port"})
_OUTPUT_CHARS: Final = 200   # what a log line keeps of the command's output


class UsbPowerConfig(strict.Strict):
    """The USB power cycle of the modem's hub port: the last step, only where the hub can switch port power."""

    hub: str                  # uhubctl --location: the hub, as `uhubctl` lists it ("1-1", "1-1.3")
    port: int                 # uhubctl --ports: the port of that hub the modem is plugged into
    command: list[str] = ["uhubctl", "--location", "{hub}", "--ports", "{port}", "--action", "cycle"]
    min_interval: strict.PositiveDuration = 1800.0   # never more often than this
    timeout: strict.PositiveDuration = 20.0          # the command is killed past this (uhubctl's cycle takes about 2 s)

    @field_validator("hub")
    @classmethod
    def _hub(cls, value: str) -> str:
        """Require a hub location as uhubctl prints it."""
        if not _HUB.match(value):
            raise ValueError(f"expected a hub location as `uhubctl` lists it, like '1-1' or '1-1.3', got {value!r}")
        return value

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        """Require a hub port number."""
        if not 1 <= value <= 255:
            raise ValueError(f"expected the hub's port number, 1 to 255, got {value}")
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str]) -> list[str]:
        """Require a program and arguments whose only placeholders are {hub} and {port}."""
        if not value or not value[0].strip():
            raise ValueError("expected the program and its arguments, e.g. [uhubctl, --location, '{hub}', ...]")
        for arg in value:
            try:
                names = {name for _, name, _, _ in string.Formatter().parse(arg) if name is not None}
            except ValueError as exc:
                raise ValueError(f"argument {arg!r}: {exc} (write a brace as {{{{ or }}}})") from None
            unknown = sorted(names - _PLACEHOLDERS)
            if unknown:
                raise ValueError(f"argument {arg!r} names {{{unknown[0]}}}: only {{hub}} and {{port}} are filled in")
        return value

    def argv(self) -> list[str]:
        """Return the command with the hub and the port filled in."""
        return [arg.format(hub=self.hub, port=self.port) for arg in self.command]


class RecoveryConfig(strict.Strict):
    """How a modem that stops answering is brought back (see the module docstring)."""

    enabled: bool = True
    after_failures: int = Field(default=1, ge=1)   # failed polls in a row before the first step
    wait: strict.PositiveDuration = 60.0           # after a step, the next no sooner than this
    max_wait: strict.PositiveDuration = 1800.0     # the wait doubles each round of the ladder, up to this
    max_per_hour: int = Field(default=3, ge=1)     # each step at most this often in any hour
    cfun: bool = True                              # AT+CFUN=1,1 as the second step
    usb: UsbPowerConfig | None = None              # the USB power cycle as the last step

    @model_validator(mode="after")
    def _waits(self) -> RecoveryConfig:
        """Require the longest wait to be at least the first."""
        if self.max_wait < self.wait:
            raise ValueError(f"max_wait ({strict.format_duration(self.max_wait)}) is shorter than wait "
                             f"({strict.format_duration(self.wait)})")
        return self

    def steps(self, port_steps: bool) -> tuple[str, ...]:
        """Return the ladder's steps in order: the port's own (``port_steps``: the AT backend), then USB power."""
        out = (["reopen"] + (["cfun"] if self.cfun else [])) if port_steps else []
        if self.usb is not None:
            out.append("usb_power")
        return tuple(out)


class Ladder:
    """One modem's recovery ladder: which step is due, given the failed reads and the limits. Pure."""

    def __init__(self, steps: Sequence[str], config: RecoveryConfig) -> None:
        self.steps = tuple(steps)
        self.config = config
        self.failures = 0                 # failed reads in a row
        self.since_ns: int | None = None  # time of the first of them
        self.held = ""                    # why no step is due after the last failure ("" when one is, or waits)
        self._next = 0                    # index of the next step of this round
        self._round = 0                   # rounds of the whole ladder in this episode
        self._not_before = 0              # no step before this time
        self._runs: dict[str, list[int]] = {s: [] for s in self.steps}   # when each step ran, within the hour
        self._usb_ns: int | None = None   # when the USB port was last power-cycled

    def failed(self, now_ns: int) -> str | None:
        """Take one failed read at ``now_ns``; return the step now due (the source runs it at its next poll), or
        None."""
        self.failures += 1
        if self.since_ns is None:
            self.since_ns = now_ns
        self.held = ""
        if not self.config.enabled or not self.steps or self.failures < self.config.after_failures:
            return None
        if now_ns < self._not_before:
            return None
        refused: list[str] = []
        for index in range(self._next, len(self.steps)):
            step = self.steps[index]
            why = self._forbidden(step, now_ns)
            if why:
                refused.append(why)
                continue
            self._next = index + 1
            if self._next == len(self.steps):   # the round is over: the next one waits longer
                self._next, self._round = 0, self._round + 1
            self._runs[step].append(now_ns)
            if step == "usb_power":
                self._usb_ns = now_ns
            self._not_before = now_ns + self._wait_ns()
            return step
        self._next, self._round = 0, self._round + 1
        self._not_before = now_ns + self._wait_ns()
        self.held = "; ".join(refused)
        return None

    def answered(self) -> None:
        """Take a read the modem answered: the episode is over, the next starts from the first step. The hourly
        counts and the USB interval go on across episodes."""
        self.failures, self.since_ns, self.held = 0, None, ""
        self._next = self._round = self._not_before = 0

    def _wait_ns(self) -> int:
        """Return the wait after a step in the current round."""
        return int(Backoff(self.config.wait, self.config.max_wait).delay(self._round) * 1e9)

    def _forbidden(self, step: str, now_ns: int) -> str:
        """Return why ``step`` may not run at ``now_ns`` ("" if it may)."""
        runs = self._runs[step]
        runs[:] = [t for t in runs if now_ns - t < HOUR_NS]
        if len(runs) >= self.config.max_per_hour:
            return f"{step} ran {len(runs)} times in the last hour (recovery.max_per_hour)"
        usb = self.config.usb
        if step == "usb_power" and usb is not None and self._usb_ns is not None \
                and now_ns - self._usb_ns < int(usb.min_interval * 1e9):
            return (f"usb_power ran {strict.format_duration(round((now_ns - self._usb_ns) / 1e9, 1))} ago "
                    f"(recovery.usb.min_interval {strict.format_duration(usb.min_interval)})")
        return ""


StepRunner = Callable[[str], Awaitable[tuple[bool, str]]]


@dataclass
class Recovery:
    """A modem's ladder as the cellular source runs it: steps run, logged, and kept for /metrics."""

    modem: str
    config: RecoveryConfig
    port_steps: bool            # the backend can reopen its port and send AT+CFUN (the AT backend)
    ladder: Ladder = field(init=False)
    episode: list[tuple[str, str]] = field(default_factory=list)   # (step, result) since the modem stopped
    counts: list[tuple[str, str]] = field(default_factory=list)    # (step, result) not yet taken for /metrics
    due: str | None = None      # the step the next poll runs instead of reading
    _held: str = ""

    def __post_init__(self) -> None:
        self.ladder = Ladder(self.config.steps(self.port_steps), self.config)

    def failed(self, now_ns: int) -> None:
        """Take a failed read at ``now_ns``: the step the ladder gives, if any, is due at the next poll."""
        step = self.ladder.failed(now_ns)
        if step is None:
            if self.ladder.held and self.ladder.held != self._held:
                log.warning("modem %s: no recovery step may run now: %s", self.modem, self.ladder.held)
            self._held = self.ladder.held
            return
        self._held, self.due = "", step

    async def run_due(self, now_ns: int, run_port_step: StepRunner) -> tuple[int, bool]:
        """Run the step that is due (``run_port_step`` for reopen and cfun); return its number (``STEP_NUMBER``;
        0 when none was due) and whether it worked. A poll cancelled in a step counts the step as failed."""
        step, self.due = self.due, None
        if step is None:
            return 0, False
        try:
            if step == "usb_power":
                assert self.config.usb is not None   # the ladder has this step only with it
                ok, said = await power_cycle(self.config.usb)
            else:
                ok, said = await run_port_step(step)
        except asyncio.CancelledError:
            self._done(step, False, "cancelled: the poll ran past its interval", now_ns)
            raise
        self._done(step, ok, said, now_ns)
        return STEP_NUMBER[step], ok

    def answered(self, now_ns: int) -> None:
        """Take a poll the modem answered; log the end of an episode that ran steps."""
        since, episode = self.ladder.since_ns, self.episode
        self.ladder.answered()
        self.episode, self._held, self.due = [], "", None
        if episode and since is not None:
            steps = ", ".join(f"{step} {result}" for step, result in episode)
            log.warning("modem %s answers again, %s after it stopped; recovery steps: %s", self.modem,
                        strict.format_duration(round(max(0, now_ns - since) / 1e9, 1)), steps)

    def take(self) -> list[tuple[str, str]]:
        """Return the (step, result) of the steps run since the last call, for /metrics (the runner's loop)."""
        counts, self.counts = self.counts, []
        return counts

    def _done(self, step: str, ok: bool, said: str, now_ns: int) -> None:
        result = "ok" if ok else "failed"
        self.episode.append((step, result))
        self.counts.append((step, result))
        since = self.ladder.since_ns if self.ladder.since_ns is not None else now_ns
        steps = self.ladder.steps
        log.warning("modem %s not answering for %s (%d reads): recovery step %d of %d, %s: %s: %s", self.modem,
                    strict.format_duration(round(max(0, now_ns - since) / 1e9, 1)), self.ladder.failures,
                    steps.index(step) + 1, len(steps), step, result, said)


async def power_cycle(usb: UsbPowerConfig) -> tuple[bool, str]:
    """Run the USB power cycle command; return whether it succeeded (exit code 0) and what it said."""
    argv = usb.argv()
    shown = shlex.join(argv)
    try:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
    except OSError as exc:
        return False, f"cannot run {shown}: {exc} (is uhubctl installed? apt install uhubctl)"
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), usb.timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False, f"{shown} did not finish within {strict.format_duration(usb.timeout)} (killed)"
    except asyncio.CancelledError:
        proc.kill()
        raise
    text = " ".join(out.decode("utf-8", "replace").split())
    text = text if len(text) <= _OUTPUT_CHARS else "..." + text[-_OUTPUT_CHARS:]
    return proc.returncode == 0, f"{shown} exited with {proc.returncode}" + (f": {text}" if text else "")
