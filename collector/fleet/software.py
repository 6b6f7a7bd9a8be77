"""The collector's side of software releases: which release each probe should run, what each runs, and the rollout.

The release a probe should run travels in its desired configuration (``with_software``: ``software: {version: V}``
after the text the inventory gives it), so it is published, retained, versioned, audited and answered like the
rest of it (``config_publisher``); the probe's agent has its updater install it (``agent.fleet.update``). Which
release a probe should run is this module's: the pins (what finished rollouts left, by probe) and the rollout under
way (``waves``: its waves begun).

Threads: ``offer`` runs on the intake thread (it only queues what may matter: a status, a data message that may
hold the ``probe`` version sample, an events message that may hold an ``update`` report; it never decodes);
everything else runs on the fleet thread, in ``turn``, which the publisher calls on each of its turns::

    seen        from the queued messages: the release each probe runs (the newest ``probe`` sample with a
                ``version`` tag, by the probe's time; since when, by the collector's), its status (online,
                offline, stopping; since when) and its last ``update`` report. A retired probe's are not taken
    requests    ``fleet update`` (start a rollout: ``waves.plan``; refused while one is running) and ``fleet update
                --abort`` (``waves.abort``), as files in ``update-requests/``; every step is audited
    advance     ``waves.advance`` with each probe's view (seen, and its desired configuration's state): a wave
                begun, the rollout done or failed, audited and logged; the caller publishes what changed

Files in the fleet folder: ``software-state.json`` (pins, the rollout, what was seen; replaced atomically) and
``update-requests/``. ``load`` reads the state for the commands.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from collector.fleet import audit, waves
from collector.fleet.config_state import ProbeConfig, replace_file
from collector.fleet.desired import Rendered
from collector.fleet.inbox import Inbox
from collector.scope import Scope
from zonewatch import wire

log = logging.getLogger(__name__)

__all__ = ["Seen", "SoftwareState", "Software", "with_software", "load", "STATE_FILE", "REQUESTS_DIR", "Failure"]

STATE_FILE = "software-state.json"
REQUESTS_DIR = "update-requests"


@dataclass(slots=True)
class Seen:
    """What the collector last saw of one probe (times on the collector's clock, but ``running_ts``: the probe's)."""

    zone: str
    running: str = ""
    running_ts: int = 0
    running_since_ns: int = 0
    status: str = ""
    status_since_ns: int = 0
    update_result: str = ""
    update_wanted: str = ""
    update_error: str = ""
    update_at_ns: int = 0
    update_ts: int = 0          # the probe's time of that report (a report sent twice is taken once)


@dataclass(frozen=True, slots=True)
class Failure:
    """A probe a rollout failed at, while it does not run the release (ProbeUpdateFailed)."""

    version: str
    why: str
    at_ns: int


@dataclass(slots=True)
class SoftwareState:
    """``software-state.json``."""

    pins: dict[str, str] = field(default_factory=dict)
    rollout: waves.Rollout | None = None
    seen: dict[str, Seen] = field(default_factory=dict)

    def desired(self) -> dict[str, str]:
        """Return the release each probe should run now."""
        return waves.desired(self.rollout, self.pins)

    def apply(self, rendered: Mapping[str, Rendered]) -> dict[str, Rendered]:
        """Return the rendered configurations with each probe's desired release in them."""
        desired = self.desired()
        return {name: with_software(r, desired.get(name)) for name, r in rendered.items()}

    def failures(self) -> dict[str, Failure]:
        """Return the probes the last rollout failed at and that do not run its release now."""
        r = self.rollout
        if r is None or r.state != "failed":
            return {}
        return {p: Failure(r.version, why, r.ended_ns) for p, why in r.failed.items()
                if (self.seen.get(p) or Seen("")).running != r.version}

    def to_json(self) -> dict[str, Any]:
        rollout = None
        if self.rollout is not None:
            rollout = asdict(self.rollout)
            rollout["previous"], rollout["failed"] = dict(self.rollout.previous), dict(self.rollout.failed)
        return {"v": 1, "pins": dict(sorted(self.pins.items())), "rollout": rollout,
                "seen": {name: asdict(s) for name, s in sorted(self.seen.items())}}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SoftwareState:
        r = doc.get("rollout")
        rollout = None
        if r:
            rollout = waves.Rollout(**{**r, "waves": tuple(tuple(w) for w in r["waves"]),
                                       "previous": dict(r.get("previous", {})), "failed": dict(r.get("failed", {}))})
        return cls({str(k): str(v) for k, v in doc.get("pins", {}).items()}, rollout,
                   {str(k): Seen(**v) for k, v in doc.get("seen", {}).items()})


def load(folder: Path) -> SoftwareState:
    """Return the state kept in the fleet ``folder`` (none kept: empty); raise ValueError naming the file."""
    path = folder / STATE_FILE
    try:
        return SoftwareState.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return SoftwareState()
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


def with_software(rendered: Rendered, version: str | None) -> Rendered:
    """Return ``rendered`` with ``software: {version: V}`` after its text (unchanged for None)."""
    if not version:
        return rendered
    text = rendered.yaml + "# The release to run, from `zonewatch-collector fleet update`.\n" + yaml.safe_dump(
        {"software": {"version": version}}, sort_keys=False, default_flow_style=False)
    return replace(rendered, yaml=text, hash=wire.config_hash(text))


class Software:
    """See the module docstring."""

    def __init__(self, folder: Path, audit_path: Path, scope: Scope | None = None) -> None:
        self.folder, self.audit_path, self.scope = folder, audit_path, scope
        self.path, self.requests_dir = folder / STATE_FILE, folder / REQUESTS_DIR
        try:
            self.state = load(folder)
        except ValueError as exc:
            log.error("%s: starting with no rollout and no pins", exc)
            self.state = SoftwareState()
        self._inbox = Inbox(scope)
        self._desired = self.state.desired()

    # intake thread -----------------------------------------------------------------------------------

    def offer(self, messages: Sequence[tuple[str, bytes]], now_ns: int) -> None:
        """Queue what may say a probe's release, status or update report (intake thread; never blocks)."""
        for topic, payload in messages:
            if topic.endswith("/status") or (topic.endswith("/data") and b'"version"' in payload) \
                    or (topic.endswith("/events") and b'"update"' in payload):
                self._inbox.put(topic, payload, now_ns)

    # fleet thread ------------------------------------------------------------------------------------

    def turn(self, now_ns: int, managed: Sequence[str],
             configs: Mapping[str, ProbeConfig]) -> tuple[bool, str, set[str]]:
        """One turn (see the module docstring); return whether the releases desired changed, who for the audit,
        and the probes of a wave begun now that do not run its release: their configuration is to be issued again
        (under a new version) even when its text did not change, so that a probe asks for the release again."""
        changed = self._take(now_ns)
        by, begun = "", []
        for request in self._requests():
            changed = True
            who = self._request(request, managed, now_ns)
            rollout = self.state.rollout
            by = who or by
            if who and request.get("action") != "abort" and rollout is not None and rollout.state == "running":
                begun = [rollout.waves[0]]
        rollout = self.state.rollout
        if rollout is not None and rollout.state == "running":
            views = {p: self.view(p, configs.get(p)) for w in rollout.waves for p in w}
            after, changes = waves.advance(rollout, views, now_ns)
            if changes:
                self.state.rollout, changed = after, True
                for change in changes:
                    self._record(after, change, now_ns)
                    if change.action == "wave":
                        begun.append(change.probes)
                by = by or f"{after.by} (fleet update {after.version}, wave {after.wave + 1} of {len(after.waves)})"
        if changed:
            self.save()
        desired = self.state.desired()
        moved = desired != self._desired
        self._desired = desired
        again = {p for wave in begun for p in wave if (self.state.seen.get(p) or Seen("")).running != desired.get(p)}
        return moved or bool(again), by or "fleet update", again

    def view(self, probe: str, entry: ProbeConfig | None) -> waves.ProbeView:
        """Return what the wave logic needs of ``probe``."""
        s = self.state.seen.get(probe) or Seen("")
        status = entry.status if entry is not None else "unmanaged"
        problem = ""
        if status in ("rejected", "rolled_back") and entry is not None and entry.report is not None:
            problem = f"{status.replace('_', ' ')}: {entry.report.error or 'no reason given'}"
        return waves.ProbeView(s.running, s.running_since_ns, s.status == "online", s.status_since_ns,
                               status == "in sync", problem, s.update_result, s.update_wanted, s.update_error,
                               s.update_at_ns)

    def release(self, probe: str) -> str:
        """Return the release ``probe`` should run now ("" none said)."""
        return self._desired.get(probe, "")

    def apply(self, rendered: Mapping[str, Rendered]) -> dict[str, Rendered]:
        """Return the rendered configurations with each probe's desired release in them."""
        return {name: with_software(r, self._desired.get(name)) for name, r in rendered.items()}

    def save(self) -> None:
        replace_file(self.path, json.dumps(self.state.to_json(), indent=1).encode("utf-8") + b"\n", 0o640)

    # what the probes said ------------------------------------------------------------------------------

    def _take(self, now_ns: int) -> bool:
        changed = False
        for arrived in self._inbox.take():
            batch, at_ns = arrived.batch, arrived.at_ns
            if batch is None:
                changed = self._status(arrived.where.zone, arrived.where.probe, arrived.payload, at_ns) or changed
                continue
            for sample in batch.samples:
                version = sample.tags.get("version")
                if sample.measurement == "probe" and version is not None:
                    changed = self._version(batch.zone, batch.probe, version, sample.time_ns, at_ns) or changed
            for event in batch.events:
                report = wire.read_update_report(event)
                if report is not None:
                    changed = self._update(batch.zone, batch.probe, report, at_ns) or changed
        return changed

    def _seen(self, zone: str, probe: str) -> Seen:
        found = self.state.seen.get(probe)
        if found is None:
            found = self.state.seen[probe] = Seen(zone)
        found.zone = zone
        return found

    def _status(self, zone: str, probe: str, payload: bytes, at_ns: int) -> bool:
        word = payload.decode("ascii", "replace").strip()
        if word not in ("online", "offline", "stopping") or \
                (self.scope is not None and self.scope.why(zone, probe, None, {}) is not None):
            return False
        s = self._seen(zone, probe)
        if s.status == word:
            return False
        s.status, s.status_since_ns = word, at_ns
        return True

    def _version(self, zone: str, probe: str, version: str, ts: int, at_ns: int) -> bool:
        s = self._seen(zone, probe)
        if ts <= s.running_ts:
            return False   # an older sample (a backlog sent after a newer one): the present is already known
        s.running_ts = ts
        if version == s.running:
            return False
        log.info("probe %s/%s runs release %s (was %s)", zone, probe, version, s.running or "not known")
        s.running, s.running_since_ns = version, at_ns
        return True

    def _update(self, zone: str, probe: str, report: wire.UpdateReport, at_ns: int) -> bool:
        s = self._seen(zone, probe)
        if (s.update_result, s.update_wanted, s.update_error, s.update_ts) == (report.result, report.wanted,
                                                                                report.error, report.time_ns):
            return False   # the same report again (sent again after a lost acknowledgement)
        s.update_ts = report.time_ns
        s.update_result, s.update_wanted, s.update_error, s.update_at_ns = (report.result, report.wanted, report.error,
                                                                             at_ns)
        details: dict[str, Any] = {"zone": zone, "probe": probe, "software": report.wanted, "running": report.running}
        if report.error:
            details["error"] = report.error
        audit.append(self.audit_path, at_ns, f"probe {probe}", f"update_{report.result}", **details)
        (log.info if report.result in ("requested", "installed") else log.warning)(
            "probe %s/%s: update to %s %s%s", zone, probe, report.wanted, report.result.replace("_", " "),
            f": {report.error}" if report.error else "")
        return True

    # what the operator asked -----------------------------------------------------------------------------

    def _requests(self) -> list[dict[str, Any]]:
        """Return the ``fleet update`` requests waiting, oldest first, and remove their files."""
        try:
            names = sorted(p for p in os.listdir(self.requests_dir) if p.endswith(".json"))
        except FileNotFoundError:
            return []
        out: list[dict[str, Any]] = []
        for name in names:
            path = self.requests_dir / name
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(doc, dict) and isinstance(doc.get("by"), str):
                    out.append(doc)
                else:
                    log.error("ignoring the fleet update request %s: not one", path)
            except (OSError, ValueError) as exc:
                log.error("ignoring the unreadable fleet update request %s: %s", path, exc)
            try:
                path.unlink()
            except OSError as exc:
                log.error("cannot remove the fleet update request %s: %s", path, exc)
        return out

    def _request(self, doc: dict[str, Any], managed: Sequence[str], now_ns: int) -> str:
        """Carry out one request; return who asked ("" if refused)."""
        by, old = str(doc["by"]), self.state.rollout
        if doc.get("action") == "abort":
            if old is None or old.state == "aborted":
                log.warning("fleet update --abort by %s: no rollout to abort", by)
                return ""
            ended, self.state.pins, _ = waves.abort(old, self.state.pins, now_ns)
            self.state.rollout = ended
            audit.append(self.audit_path, now_ns, by, "rollout_aborted", software=old.version, was=old.state,
                         probes=sorted(old.failed))
            log.warning("rollout of %s aborted by %s (it was %s)", old.version, by, old.state)
            return by
        if old is not None and old.state == "running":
            log.error("fleet update --version %s by %s refused: the rollout of %s is under way (abort it first)",
                      doc.get("version"), by, old.version)
            return ""
        try:
            version = str(doc["version"])
            if not wire.valid_version(version):
                raise waves.PlanError(f"{version!r} is not a release version")
            pins = waves.finished_pins(old, self.state.pins) if old is not None else dict(self.state.pins)
            rollout = waves.plan(version, by, now_ns, managed, pins, int(doc.get("first", 1)),
                                 [str(p) for p in doc.get("probes", [])], int(doc.get("batch", 0)),
                                 float(doc.get("soak_s", 600.0)), float(doc.get("deadline_s", 1800.0)))
        except (waves.PlanError, KeyError, TypeError, ValueError) as exc:
            log.error("fleet update by %s refused: %s", by, exc)
            return ""
        self.state.pins, self.state.rollout = pins, rollout
        audit.append(self.audit_path, now_ns, by, "rollout", software=version,
                     waves=[list(w) for w in rollout.waves], soak_s=rollout.soak_s, deadline_s=rollout.deadline_s)
        log.info("rollout of %s by %s: %d waves (%s first)", version, by, len(rollout.waves),
                 ", ".join(rollout.waves[0]))
        return f"{by} (fleet update {version}, wave 1 of {len(rollout.waves)})"

    def _record(self, rollout: waves.Rollout, change: waves.Change, now_ns: int) -> None:
        who = f"{rollout.by} (fleet update {rollout.version})"
        if change.action == "wave":
            audit.append(self.audit_path, now_ns, who, "wave", software=rollout.version, wave=rollout.wave + 1,
                         probes=list(change.probes))
            log.info("rollout of %s: the wave before is healthy; %s begins (%s)", rollout.version, change.detail,
                     ", ".join(change.probes))
        elif change.action == "done":
            audit.append(self.audit_path, now_ns, who, "rollout_done", software=rollout.version)
            log.info("rollout of %s done: every wave is healthy on it", rollout.version)
        elif change.action == "failed":
            audit.append(self.audit_path, now_ns, who, "rollout_failed", software=rollout.version,
                         wave=rollout.wave + 1, probes=list(change.probes), error=change.detail)
            log.error("rollout of %s stopped at wave %d: %s", rollout.version, rollout.wave + 1, change.detail)
