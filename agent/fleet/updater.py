"""The probe's privileged updater: installs the release its agent asked for; rolls it back unless it comes up healthy.

The agent runs unprivileged (user ``zonewatch``, a hardened unit) and must never get root. It only writes a request
(``agent.fleet.update``); this program, run as root by ``zonewatch-agent-update.service`` (a oneshot, started by
``zonewatch-agent-update.path`` when the request appears), does the rest::

    zonewatch-agent-update -c /etc/zonewatch/agent.yaml --install /opt/zonewatch/agent/deploy/install.sh

1. reads the probe's configuration file (root's): ``update.source`` (the zone's package index) and
   ``update.health_timeout``; the shared folder is ``update/`` beside ``spool.path``. Without an ``update`` section
   it refuses (exit 2): this probe takes no release from the centre;
2. takes the request (removes it first, so the path unit does not start it again): its version, checked as
   ``zonewatch.wire.valid_version`` checks it, and its id; the source comes from the configuration, never from the
   request. The running release's ``health.json`` is the baseline;
3. runs ``install.sh agent --from SOURCE --version V``: V is fetched from the zone's index and installed beside the
   running release, becomes current, and the agent is restarted on it (install.sh switches back by itself when the
   new release does not start at all). If install.sh fails, the result is ``failed`` (nothing changed) or
   ``rolled_back`` (it had switched back);
4. waits up to ``health_timeout`` for the new agent's ``health.json`` (``judge``): healthy once V runs in an agent
   started after step 3 began, the broker acknowledged a batch from it, every source polled, and no more of them
   fail than before the update (or than half of them). At the timeout what has polled is judged;
5. not healthy: ``install.sh agent --rollback`` makes the release before current again and restarts it; the
   result is ``rolled_back`` with the reason. Healthy: ``installed``.

The result goes to ``result.json``, which the agent that runs reports to the centre. Exit code 0 for installed (or
nothing asked), 1 for failed or rolled back, 2 for a configuration or usage error.

``--restart-command CMD`` is run after each install.sh that switched releases, for an installation beneath
``--root`` (an image being built, the tests), where install.sh does not restart the service itself; options after
``--`` are passed to install.sh (``--prefix``, ``--wheels``, ``--python``, ``--root``).

Everything this program needs is imported before step 3: the release it runs from stops being current during its
run (its files stay: install.sh keeps three releases), and a later import could come from the new one. ``judge``
is pure; only ``main``'s loop reads the clock.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.config import AgentConfig
from agent.fleet.software import HEALTH, REQUEST, RESULT, read_json, remove, update_dir, write_json
from zonewatch import wire
from zonewatch.strict import ConfigError, load_file

log = logging.getLogger("zonewatch-agent-update")

__all__ = ["AgentHealth", "Verdict", "judge", "parse_health", "main"]

POLL_S = 0.5   # how often health.json is read while waiting


@dataclass(frozen=True, slots=True)
class AgentHealth:
    """What an agent said of itself in ``health.json``."""

    version: str
    started_ns: int
    published: bool      # the broker acknowledged a batch from it
    sources: int
    polled: int
    failed: int


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with the new release: wait, keep it (healthy), or roll it back (with why)."""

    action: Literal["wait", "healthy", "unhealthy"]
    reason: str = ""


def parse_health(doc: dict[str, Any] | None) -> AgentHealth | None:
    """Return the health in ``doc`` (the agent's file, not trusted), or None if it is absent or not a whole one."""
    if doc is None:
        return None
    version, started, published = doc.get("version"), doc.get("started_ns"), doc.get("published")
    counts: list[Any] = [doc.get(k) for k in ("sources", "polled", "failed")]
    if not isinstance(version, str) or type(started) is not int or type(published) is not bool \
            or not all(type(c) is int and c >= 0 for c in counts):
        return None
    sources, polled, failed = (int(c) for c in counts)
    return AgentHealth(version, started, published, sources, polled, failed)


def judge(health: AgentHealth | None, wanted: str, since_ns: int, before: AgentHealth | None, now_ns: int,
          deadline_ns: int, timeout_s: float) -> Verdict:
    """Judge release ``wanted`` from the agent's ``health`` (see the module docstring): ``before`` is the release
    that ran before it, ``since_ns`` when the install began, ``deadline_ns`` the end of the wait."""
    new = health if health is not None and health.version == wanted and health.started_ns >= since_ns else None
    baseline = before.failed if before is not None and before.version != wanted else 0

    def sources_ok(h: AgentHealth) -> bool:
        return h.failed * 2 <= h.sources or h.failed <= baseline

    if new is not None and new.published and new.polled >= new.sources and sources_ok(new):
        return Verdict("healthy")
    if now_ns < deadline_ns:
        return Verdict("wait")
    if new is None:
        return Verdict("unhealthy", f"release {wanted} did not start, or did not say so, within {timeout_s:g}s")
    if not new.published:
        return Verdict("unhealthy", f"release {wanted} started, but the broker acknowledged nothing from it within "
                                    f"{timeout_s:g}s")
    if not sources_ok(new):
        return Verdict("unhealthy", f"release {wanted}: {new.failed} of its {new.sources} sources failed their last "
                                    f"poll within {timeout_s:g}s (before the update: {baseline})")
    return Verdict("healthy")


class _Run:
    """One request, from taking it to writing its result."""

    def __init__(self, args: argparse.Namespace, cfg: AgentConfig) -> None:
        assert cfg.update is not None
        self.settings, self.folder = cfg.update, update_dir(cfg.spool.path)
        self.install, self.options = str(args.install), list(args.install_options)
        self.restart = shlex.split(args.restart_command) if args.restart_command else []

    def installer(self, *argv: str) -> tuple[int, str]:
        """Run install.sh with ``argv`` and the pass-through options; echo its output; return (code, last line)."""
        proc = subprocess.run([self.install, "agent", *argv, *self.options], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        said = [line for line in (proc.stderr + proc.stdout).splitlines() if line.startswith("install.sh:")]
        last = next((line for line in reversed(proc.stderr.splitlines()) if line.startswith("install.sh:")), "")
        return proc.returncode, (last or (said[-1] if said else f"install.sh exited {proc.returncode}"))

    def restart_agent(self) -> None:
        if self.restart:
            code = subprocess.run(self.restart, stdin=subprocess.DEVNULL).returncode
            if code != 0:
                log.error("the restart command %s exited %d", shlex.join(self.restart), code)

    def result(self, request: dict[str, Any], outcome: str, error: str, started_ns: int, now_ns: int) -> None:
        write_json(self.folder, RESULT, {
            "v": 1, "id": request["id"], "version": request["version"], "from": request.get("from", ""),
            "result": outcome, "error": error, "seconds": round((now_ns - started_ns) / 1e9, 3), "at_ns": now_ns},
            mode=0o644)
        (log.info if outcome == "installed" else log.error)("release %s: %s%s", request["version"], outcome,
                                                            f": {error}" if error else "")


def take_request(folder: Path) -> dict[str, Any] | None:
    """Return the agent's request (removed from the folder), None if there is none; raise ValueError if it is not
    one (it is removed all the same)."""
    try:
        doc = read_json(folder, REQUEST)
    finally:
        remove(folder, REQUEST)
    if doc is None:
        return None
    rid, version = doc.get("id"), doc.get("version")
    if not isinstance(rid, str) or not rid.isalnum() or len(rid) > 32:
        raise ValueError(f"{folder / REQUEST}: no request id")
    if not isinstance(version, str) or not wire.valid_version(version):
        raise ValueError(f"{folder / REQUEST}: the version asked for is not a release version")
    source = doc.get("from")
    return {"id": rid, "version": version, "from": source if isinstance(source, str) and wire.valid_version(source)
            else ""}


def update(run: _Run, request: dict[str, Any], clock: Callable[[], int] = time.time_ns,
           sleep: Callable[[float], None] = time.sleep) -> int:
    """Install ``request``'s release, judge it, keep it or roll it back; write the result; return the exit code."""
    wanted, folder = request["version"], run.folder
    try:
        before = parse_health(read_json(folder, HEALTH))
    except ValueError as exc:
        log.warning("no baseline: %s", exc)
        before = None
    started = clock()
    log.info("installing release %s (running %s) from %s", wanted, request["from"] or "?", run.settings.source)
    code, said = run.installer("--from", run.settings.source, "--version", wanted)
    if code != 0:
        outcome = "rolled_back" if "switched back" in said else "failed"
        run.result(request, outcome, said.removeprefix("install.sh: "), started, clock())
        return 1
    run.restart_agent()
    timeout = run.settings.health_timeout
    deadline = clock() + int(timeout * 1e9)
    while True:
        now = clock()
        try:
            health = parse_health(read_json(folder, HEALTH))
        except ValueError:
            health = None
        verdict = judge(health, wanted, started, before, now, deadline, timeout)
        if verdict.action == "healthy":
            run.result(request, "installed", "", started, clock())
            return 0
        if verdict.action == "unhealthy":
            break
        sleep(POLL_S)
    log.error("%s: rolling back", verdict.reason)
    code, said = run.installer("--rollback")
    if code != 0:
        run.result(request, "failed", f"{verdict.reason}; and the roll back failed: {said}", started, clock())
        return 1
    run.restart_agent()
    run.result(request, "rolled_back", f"{verdict.reason}; rolled back to the release before", started, clock())
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """Take the agent's request and carry it out (see the module docstring); return the exit code."""
    parser = argparse.ArgumentParser(prog="zonewatch-agent-update",
                                     description="Install the release the ZoneWatch agent asked for (as root).")
    parser.add_argument("-c", "--config", default="/etc/zonewatch/agent.yaml", help="the probe's configuration file")
    parser.add_argument("--install", required=True, type=Path, help="install.sh, as install.sh put it on the probe")
    parser.add_argument("--restart-command", help="restart the agent after a switch (only where install.sh does not)")
    parser.add_argument("install_options", nargs="*", help="after --: options for install.sh")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(levelname)s %(message)s")
    try:
        cfg = load_file(AgentConfig, args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    if cfg.update is None:
        log.error("%s has no update section: this probe takes no release from the centre", args.config)
        return 2
    if not args.install.is_file():
        log.error("--install %s: no such file", args.install)
        return 2
    run = _Run(args, cfg)
    try:
        request = take_request(run.folder)
    except ValueError as exc:
        log.error("ignoring the request: %s", exc)
        return 1
    if request is None:
        log.info("nothing asked (no %s)", run.folder / REQUEST)
        return 0
    try:
        return update(run, request)
    except Exception as exc:  # noqa: BLE001 - the agent and the centre must hear of it, not only the journal
        log.exception("the update to %s failed", request["version"])
        now = time.time_ns()
        run.result(request, "failed", f"the updater failed: {type(exc).__name__}: {exc}", now, now)
        return 1


if __name__ == "__main__":
    sys.exit(main())
