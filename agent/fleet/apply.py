"""Applies the configuration the centre sends: validated, switched atomically, kept or rolled back, reported.

``RemoteConfig`` is the agent's side of "configuration from the centre". It belongs to the agent's event loop
(one thread); the uplink hands it each payload of the probe's ``config`` topic (``offer``), and the loop calls
``step(host, now_ns)`` on every turn. It decides; the running agent (``Host``, in practice
``agent.runner.Agent``) does the switching and the spooling::

    offer(payload)          the newest payload wins (a retained message comes again on every reconnect)
    step: a new payload     decode (zonewatch.wire) -> same hash as running: nothing (a new version of it: reported
                            applied) -> a (hash, version) tried before: nothing -> validate with the strict
                            loader (agent.fleet.desired; error: ``rejected``, with key and line) -> host.reconfigure
                            (atomic: the new sources are all made before the old ones stop; error: ``rejected``,
                            the old configuration still runs) -> ``applied``, on trial
    step: on trial          agent.fleet.deadman.judge: ``keep`` makes it the last known-good; ``roll_back``
                            switches to the last known-good (or the local file) and reports ``rolled_back``; a
                            newer configuration arriving meanwhile ends the trial (``deadman.superseded``)
    startup(host, now_ns)   the configuration to start with: the one that ran, unless the agent stopped while it
                            was on trial (then it is rolled back: it may be what stopped the agent)

The spool is the agent's and is never touched here: a switch keeps it, its seq and every batch in it; reports
go through it too (``host.report``: the events topic, at-least-once, ahead of data).

State (``remote_config.state_dir``, default beside the spool, ``remote-config.json``, replaced atomically and
synced): the configuration running (``current``) and the last known-good (``good``) as the collector sent them,
the trial, and the (hash, version) pairs tried lately with their outcome. The next start runs ``current``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.config import AgentConfig
from agent.fleet.deadman import Health, Trial, judge, superseded
from agent.fleet.desired import effective
from zonewatch import wire
from zonewatch.strict import ConfigError

log = logging.getLogger(__name__)

__all__ = ["Host", "Held", "State", "RemoteConfig", "load_state", "save_state", "running_config"]

TRIED_KEPT = 16   # (hash, version) outcomes remembered, newest last


class Host(Protocol):
    """What ``RemoteConfig`` needs of the running agent."""

    async def reconfigure(self, cfg: AgentConfig) -> None:
        """Run ``cfg`` instead of what runs now, keeping the spool and its seq; raise (with the old configuration
        still running, untouched) if it cannot be started. Called on the agent's event loop only."""

    def report(self, event: wire.Event) -> None:
        """Spool ``event`` for the events topic. Called on the agent's event loop only."""

    def health(self) -> Health:
        """Return what was seen since the last ``reconfigure`` (the broker reached, sources that failed)."""


@dataclass(frozen=True, slots=True)
class Held:
    """A configuration from the centre, as kept on disk."""

    version: int
    hash: str
    yaml: str
    zone: str
    probe: str

    def desired(self) -> wire.DesiredConfig:
        return wire.DesiredConfig(self.zone, self.probe, self.version, self.hash, 0, self.yaml)


@dataclass(slots=True)
class State:
    """What ``remote-config.json`` holds (see the module docstring)."""

    current: Held | None = None
    good: Held | None = None
    trial: Trial | None = None
    tried: list[tuple[str, int, str]] = field(default_factory=list)   # (hash, version, result)


def load_state(path: Path) -> State:
    """Return the state kept at ``path``; an absent file is a fresh state, an unreadable one too (logged)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        held = {k: Held(**doc[k]) if doc.get(k) else None for k in ("current", "good")}
        trial = Trial(**doc["trial"]) if doc.get("trial") else None
        tried = [(str(h), int(v), str(r)) for h, v, r in doc.get("tried", [])]
        return State(held["current"], held["good"], trial, tried)
    except FileNotFoundError:
        return State()
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.error("cannot read %s (%s): starting from the local configuration file", path, exc)
        return State()


def save_state(path: Path, state: State) -> None:
    """Replace ``path`` with ``state``: written beside it, synced, renamed over it, the folder synced."""
    doc: dict[str, Any] = {
        "v": 1,
        "current": asdict(state.current) if state.current else None,
        "good": asdict(state.good) if state.good else None,
        "trial": asdict(state.trial) if state.trial else None,
        "tried": [list(t) for t in state.tried[-TRIED_KEPT:]],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(doc, indent=1).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def running_config(local: AgentConfig) -> AgentConfig:
    """Return the configuration ``run`` starts with (``once`` polls it), changing nothing: the one from the
    centre that ran (the last known-good if one was on trial), else ``local``."""
    if not local.remote_config.enabled:
        return local
    state = load_state(local.remote_config.state_path(local.spool.path))
    for held in ((state.good,) if state.trial is not None else (state.current, state.good)):
        if held is not None:
            try:
                return effective(held.desired(), local)
            except ConfigError as exc:
                log.error("desired config v%d kept from before cannot be used now: %s", held.version, exc)
    return local


def _short(hash_: str) -> str:
    return hash_[:15] if hash_.startswith("sha256:") else hash_


class RemoteConfig:
    """The probe's handling of desired configurations (see the module docstring)."""

    def __init__(self, local: AgentConfig, clock: Callable[[], int] = time.time_ns) -> None:
        self.local = local
        self.settings = local.remote_config
        self.path = self.settings.state_path(local.spool.path)
        self.clock = clock   # only to time a switch (the ``seconds`` of the report)
        self.state = load_state(self.path)
        self._pending: bytes | None = None

    # what runs ------------------------------------------------------------------------------------------

    def _config_of(self, held: Held | None) -> AgentConfig:
        return self.local if held is None else effective(held.desired(), self.local)

    def _running(self) -> tuple[str, int]:
        current = self.state.current
        return (current.hash, current.version) if current else (wire.LOCAL_CONFIG, 0)

    def _report(self, host: Host, result: str, hash_: str, version: int, now_ns: int, error: str = "",
                seconds: float = 0.0) -> None:
        running, running_version = self._running()
        host.report(wire.config_report(wire.ConfigReport(result, hash_, version, running, running_version, error,
                                                         seconds, now_ns)))

    def _tried(self, hash_: str, version: int, result: str) -> None:
        self.state.tried = [*self.state.tried, (hash_, version, result)][-TRIED_KEPT:]

    def startup(self, host: Host, now_ns: int) -> AgentConfig:
        """Return the configuration to start with (see the module docstring); report what start-up undid."""
        state = self.state
        if state.trial is not None:
            trial, state.trial = state.trial, None
            self._tried(trial.hash, trial.version, "rolled_back")
            state.current = state.good
            save_state(self.path, state)
            log.warning("desired config v%d (%s) was on trial when the agent stopped: rolled back to %s",
                        trial.version, _short(trial.hash), self._describe(state.current))
            self._report(host, "rolled_back", trial.hash, trial.version, now_ns,
                         "the agent stopped while it was on trial (a crash, or a stop on purpose)")
        for held in (state.current, state.good):
            if held is None:
                continue
            try:
                cfg = self._config_of(held)
            except ConfigError as exc:
                log.error("desired config v%d (%s) kept from before cannot be used now: %s", held.version,
                          _short(held.hash), exc)
                continue
            if held is not state.current:
                state.current = held
                save_state(self.path, state)
            log.info("starting with %s", self._describe(held))
            return cfg
        if state.current is not None:
            state.current = state.good = None
            save_state(self.path, state)
        return self.local

    def forget(self) -> None:
        """Run the local file from now on: what was kept from the centre cannot be started (see the log)."""
        self.state = State(tried=self.state.tried)
        save_state(self.path, self.state)

    @staticmethod
    def _describe(held: Held | None) -> str:
        return "the local configuration file" if held is None else f"desired config v{held.version} " \
                                                                   f"({_short(held.hash)})"

    # the event loop --------------------------------------------------------------------------------------

    def offer(self, payload: bytes) -> None:
        """Take a payload of the config topic (an empty one clears it); the newest offered wins."""
        self._pending = payload

    async def step(self, host: Host, now_ns: int) -> None:
        """Handle a new payload, then judge the configuration on trial (see the module docstring)."""
        payload, self._pending = self._pending, None
        if payload is not None:
            await self._consider(host, payload, now_ns)
        trial = self.state.trial
        if trial is None:
            return
        verdict = judge(trial, host.health(), now_ns)
        if verdict.action == "keep":
            self.state.good, self.state.trial = self.state.current, None
            save_state(self.path, self.state)
            log.info("desired config v%d (%s) passed its trial: it is the last known-good", trial.version,
                     _short(trial.hash))
        elif verdict.action == "roll_back":
            await self._roll_back(host, trial, verdict.reason, now_ns)

    async def _consider(self, host: Host, payload: bytes, now_ns: int) -> None:
        state = self.state
        if not payload.strip():
            if state.current is None and state.good is None:
                return
            log.warning("the collector cleared this probe's desired config: going back to the local file")
            try:
                await host.reconfigure(self.local)
            except Exception as exc:  # noqa: BLE001 - what runs keeps running
                log.error("cannot go back to the local configuration file: %s", exc)
                return
            state.current = state.good = state.trial = None
            save_state(self.path, state)
            self._report(host, "applied", wire.LOCAL_CONFIG, 0, now_ns)
            return
        try:
            desired = wire.decode_config(payload)
        except wire.WireError as exc:
            log.error("unreadable desired config: %s", exc)
            self._report(host, "rejected", "unreadable", 0, now_ns, f"unreadable desired config: {exc}")
            return
        running, version = self._running()
        if desired.hash == running:
            if desired.version != version and state.current is not None:   # the same text issued again
                state.current = Held(desired.version, desired.hash, desired.yaml, desired.zone, desired.probe)
                if state.good is not None and state.good.hash == desired.hash:
                    state.good = state.current
                save_state(self.path, state)
                self._report(host, "applied", desired.hash, desired.version, now_ns)
            return
        if any(h == desired.hash and v == desired.version for h, v, _ in state.tried):
            return   # decided before (a retained message comes again on every reconnect)
        started = self.clock()
        if state.trial is not None and superseded(host.health()):
            log.info("desired config v%d (%s), on trial, is superseded with nothing against it: it is the last "
                     "known-good", state.trial.version, _short(state.trial.hash))
            state.good = state.current
        try:
            cfg = effective(desired, self.local)
        except ConfigError as exc:
            self._refuse(host, desired, str(exc), now_ns)
            return
        try:
            await host.reconfigure(cfg)
        except Exception as exc:  # noqa: BLE001 - whatever a source's constructor raises, the old config runs on
            self._refuse(host, desired, f"{type(exc).__name__}: {exc}", now_ns)
            return
        seconds = (self.clock() - started) / 1e9
        state.current = Held(desired.version, desired.hash, desired.yaml, desired.zone, desired.probe)
        deadline = now_ns + int(self.settings.deadman * 1e9)
        state.trial = Trial(desired.hash, desired.version, now_ns, deadline)
        save_state(self.path, state)
        log.info("applied desired config v%d (%s) in %.3f s; on trial for %gs", desired.version,
                 _short(desired.hash), seconds, self.settings.deadman)
        self._report(host, "applied", desired.hash, desired.version, now_ns, seconds=seconds)

    def _refuse(self, host: Host, desired: wire.DesiredConfig, error: str, now_ns: int) -> None:
        log.error("rejected desired config v%d (%s): %s", desired.version, _short(desired.hash), error)
        self._tried(desired.hash, desired.version, "rejected")
        save_state(self.path, self.state)
        self._report(host, "rejected", desired.hash, desired.version, now_ns, error)

    async def _roll_back(self, host: Host, trial: Trial, reason: str, now_ns: int) -> None:
        state = self.state
        target = state.good
        started = self.clock()
        try:
            cfg = self._config_of(target)
        except ConfigError as exc:
            log.error("the last known-good config cannot be used now (%s): going back to the local file", exc)
            target, cfg = None, self.local
        try:
            await host.reconfigure(cfg)
        except Exception as exc:  # noqa: BLE001 - the local file is the last resort
            log.error("cannot start the last known-good config again (%s): going back to the local file", exc)
            target = None
            await host.reconfigure(self.local)
        seconds = (self.clock() - started) / 1e9
        state.current, state.trial = target, None
        self._tried(trial.hash, trial.version, "rolled_back")
        save_state(self.path, state)
        log.error("rolled back desired config v%d (%s) to %s: %s", trial.version, _short(trial.hash),
                  self._describe(target), reason)
        self._report(host, "rolled_back", trial.hash, trial.version, now_ns, reason, seconds)
