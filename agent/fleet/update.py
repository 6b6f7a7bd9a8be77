"""The agent's part in a software update: it asks for a release, says how it is doing, and reports what became of it.

The agent runs as an unprivileged user and cannot install anything. ``SoftwareUpdate`` belongs to the agent's
event loop (one thread); the loop calls ``step(host, now_ns)`` on every turn, and it never blocks (a few small
files, written only when something changed)::

    ask         the configuration running says ``software: {version: V}`` and V is not the running release:
                once the configuration carrying V has passed its dead-man trial (a restart during the trial
                would roll it back: a configuration change and a release change are never judged together),
                write ``request.json`` for the updater (``agent.fleet.updater``, root, started by the path unit)
                and report ``requested``. Each (V, configuration version) is asked once, across restarts: a
                release that was rolled back is not tried again until the centre issues it again (a new
                configuration version). Without an ``update`` section in the local file: report ``refused``
    health      keep ``health.json`` up to date: the release running, when this agent started, whether the broker
                acknowledged a batch since, how many sources polled and how many failed their last poll. The
                updater judges a new release by it
    results     the updater's ``result.json`` (installed, rolled back, failed) is reported once, as the
                ``update`` event (``zonewatch.wire.update_report``; spooled, ahead of data), by whichever release
                runs when it appears. A request no updater took within ``update.request_timeout`` is taken back
                and reported ``failed`` (the path unit is not running)

The files and what the updater trusts of them: ``agent.fleet.software``.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.config import AgentConfig
from agent.fleet.apply import RemoteConfig
from agent.fleet.deadman import Health
from agent.fleet.software import AGENT_STATE, HEALTH, REQUEST, RESULT, UpdateSettings, read_json, remove, write_json
from zonewatch import wire

log = logging.getLogger(__name__)

__all__ = ["Host", "SoftwareUpdate", "REMEMBERED"]

REMEMBERED = 16           # (version, configuration version) pairs asked, and result ids reported, kept
LOOK_EVERY_NS = 10**9     # how often the folder is looked at for a result
HEALTH_EVERY_NS = 10**9   # health.json is written at most this often (and only when it changed)


class Host(Protocol):
    """What ``SoftwareUpdate`` reads of the running agent (``agent.runner.Agent``)."""

    cfg: AgentConfig
    remote: RemoteConfig | None

    def health(self) -> Health:
        """Return what was seen since the last reconfigure (the sources that polled and failed)."""

    def acknowledged(self) -> int:
        """Return how many batches the broker acknowledged since this agent started."""

    def report(self, event: wire.Event) -> None:
        """Spool ``event`` for the events topic."""


@dataclass(slots=True)
class _Memory:
    """``agent.json``: what this probe asked for and reported already."""

    asked: list[tuple[str, int]] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)
    request: dict[str, Any] | None = None     # the last request written: id, version, requested_ns


class SoftwareUpdate:
    """See the module docstring."""

    def __init__(self, settings: UpdateSettings | None, folder: Path, version: str, started_ns: int,
                 pid: int | None = None) -> None:
        self.settings, self.folder, self.version, self.started_ns = settings, folder, version, started_ns
        self.pid = os.getpid() if pid is None else pid
        self.memory = self._load() if settings is not None else _Memory()
        self._health: tuple[object, ...] | None = None
        self._health_ns = 0
        self._looked_ns = 0
        self._failing = ""
        self._bad_result = ""

    # the event loop --------------------------------------------------------------------------------------

    def step(self, host: Host, now_ns: int) -> None:
        """Ask, keep the health file, report results (see the module docstring); never raises: what goes wrong
        here (a full disk) is logged once, and polling and sending go on."""
        try:
            if self.settings is not None:
                self._keep_health(host, now_ns)
                if now_ns - self._looked_ns >= LOOK_EVERY_NS:
                    self._looked_ns = now_ns
                    self._look(host, now_ns)
            self._ask(host, now_ns)
            self._failing = ""
        except Exception as exc:  # noqa: BLE001 - the data path must not stop for it
            if str(exc) != self._failing:
                log.error("software update: %s; carrying on", exc)
            self._failing = str(exc)

    def _ask(self, host: Host, now_ns: int) -> None:
        wanted = host.cfg.software
        if wanted is None or wanted.version == self.version:
            return
        remote = host.remote
        if remote is not None and remote.state.trial is not None:
            return   # the configuration that says V is on trial: a restart now would roll it back
        current = remote.state.current if remote is not None else None
        key = (wanted.version, current.version if current is not None else 0)
        if key in self.memory.asked:
            return
        if self.settings is None:
            self.memory.asked = [*self.memory.asked, key][-REMEMBERED:]
            log.warning("the centre wants release %s, and this probe's local file has no update section: it runs %s",
                        wanted.version, self.version)
            self._report(host, "refused", wanted.version, now_ns,
                         "this probe takes no release from the centre: its local file has no update section")
            return
        request = {"v": 1, "id": uuid.uuid4().hex[:16], "version": wanted.version, "from": self.version,
                   "requested_ns": now_ns}
        write_json(self.folder, REQUEST, request)   # first: a request that could not be written is asked again
        self.memory.asked = [*self.memory.asked, key][-REMEMBERED:]
        self.memory.request = request
        self._save()
        log.info("asked the updater for release %s (running %s; request %s)", wanted.version, self.version,
                 request["id"])
        self._report(host, "requested", wanted.version, now_ns)

    def _look(self, host: Host, now_ns: int) -> None:
        """Report a result not reported yet; take back a request nobody took in time."""
        try:
            result = read_json(self.folder, RESULT)
        except ValueError as exc:
            result = None
            if str(exc) != self._bad_result:   # logged once, not every second
                log.error("software update: ignoring the updater's result: %s", exc)
            self._bad_result = str(exc)
        if result is not None and str(result.get("id", "")) not in self.memory.reported:
            self._take_result(host, result, now_ns)
        request = self.memory.request
        assert self.settings is not None
        if request is None or now_ns - int(request["requested_ns"]) < int(self.settings.request_timeout * 1e9):
            return
        if remove(self.folder, REQUEST):
            self.memory.request = None
            self._save()
            wait = self.settings.request_timeout
            log.error("no updater took the request for release %s within %gs: is zonewatch-agent-update.path "
                      "enabled (systemctl status zonewatch-agent-update.path)?", request["version"], wait)
            self._report(host, "failed", str(request["version"]), now_ns,
                         f"no updater took the request within {wait:g}s: is zonewatch-agent-update.path enabled "
                         "and running on the probe?", (now_ns - int(request["requested_ns"])) / 1e9)

    def _take_result(self, host: Host, result: dict[str, Any], now_ns: int) -> None:
        rid, outcome, version = str(result.get("id", "")), result.get("result"), str(result.get("version", ""))
        self.memory.reported = [*self.memory.reported, rid][-REMEMBERED:]
        if self.memory.request is not None and self.memory.request.get("id") == rid:
            self.memory.request = None
        self._save()
        if outcome not in ("installed", "rolled_back", "failed") or not wire.valid_version(version):
            log.error("software update: the updater's result %s is not one this agent understands", rid)
            return
        seconds = result.get("seconds", 0)
        error = str(result.get("error", ""))
        (log.info if outcome == "installed" else log.error)(
            "the updater says: release %s %s%s", version, str(outcome).replace("_", " "), f": {error}" if error else "")
        self._report(host, str(outcome), version, now_ns, error,
                     float(seconds) if isinstance(seconds, int | float) and not isinstance(seconds, bool) else 0.0)

    def _keep_health(self, host: Host, now_ns: int) -> None:
        """Write ``health.json`` when what it says changed (at most every HEALTH_EVERY_NS)."""
        if now_ns - self._health_ns < HEALTH_EVERY_NS:
            return
        health = host.health()
        said = (host.acknowledged() > 0, health.sources, health.polled, health.failed)
        if said == self._health:
            return
        write_json(self.folder, HEALTH, {
            "v": 1, "version": self.version, "pid": self.pid, "started_ns": self.started_ns, "at_ns": now_ns,
            "published": said[0], "sources": health.sources, "polled": health.polled, "failed": health.failed})
        self._health, self._health_ns = said, now_ns

    # state -----------------------------------------------------------------------------------------------

    def _report(self, host: Host, result: str, wanted: str, now_ns: int, error: str = "",
                seconds: float = 0.0) -> None:
        host.report(wire.update_report(wire.UpdateReport(result, wanted, self.version, error, seconds, now_ns)))

    def _load(self) -> _Memory:
        try:
            doc = read_json(self.folder, AGENT_STATE)
            if doc is None:
                return _Memory()
            request = doc.get("request")
            asked = [(str(v), int(n)) for v, n in doc.get("asked", [])]
            return _Memory(asked, [str(r) for r in doc.get("reported", [])],
                           dict(request) if isinstance(request, dict) else None)
        except (ValueError, TypeError) as exc:
            log.error("software update: cannot read %s (%s): starting afresh", self.folder / AGENT_STATE, exc)
            return _Memory()

    def _save(self) -> None:
        if self.settings is None:
            return   # nothing to remember across restarts: no request is ever written
        write_json(self.folder, AGENT_STATE, {"v": 1, "asked": [list(k) for k in self.memory.asked],
                                              "reported": self.memory.reported, "request": self.memory.request})
