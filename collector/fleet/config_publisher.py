"""The running collector's fleet thread: publishes each probe's desired configuration and takes its reports.

Threads::

    intake thread (ingest)  ``offer(messages, now_ns)``: picks the events messages that may hold a ``config``
                            report and queues them, and hands ``collector.fleet.software`` what may tell a
                            probe's release. Never blocks, never decodes.
    fleet thread (zw-fleet) every ``interval``: (1) decodes the reports queued (``zonewatch.wire.read_config_report``;
                            the payload's probe must be its topic's, and one the ingest's scope check lets
                            speak: not a retired probe), records them (``config_state``) and audits
                            them; (2) notices an edited inventory file (its size, time and then its hash) and
                            reads it again (strictly: a bad one is logged, once, and the one before stays in use);
                            (3) takes the requests of ``fleet push`` (who asked; which probes get their config
                            issued again under a new version); (3b) lets ``collector.fleet.software`` take the
                            probes' releases and update reports, ``fleet update`` and the rollout's waves (a wave
                            begun changes the release some probes should run: published at once, in the name of
                            who started the rollout); (4) once the broker session is up, renders every
                            managed probe's configuration (``desired``) and publishes, retained, QoS 1, each one
                            whose hash differs from what this collector last published for it (a new version;
                            audited with who asked), and clears the config of a probe no longer managed; (5)
                            saves the state and hands the alert engine its view (ProbeConfigRejected, and
                            ProbeUpdateFailed for the probes a rollout failed at).

An edit noticed by itself is published ``SETTLE`` seconds later (a ``fleet push`` for it in that time publishes
at once, in the pusher's name); ``by`` is then ``inventory change``. The rest of the collector (the scope check,
the alert rules) reads the inventory at start: a change beyond ``probe_defaults`` and ``probes.<id>.config``
(a new device, probe or link) is logged as taking effect at the next restart.

What was last published is this collector's record (``config_state``), not read back from the broker (the
rendered ACL lets the collector write the config topics, not read them): a broker that lost its retained
messages gets them again with ``fleet push --again``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import paho.mqtt.client as mqtt

from collector.alerting.facts import ConfigView
from collector.fleet import audit
from collector.fleet.config_state import AUDIT_FILE, REQUESTS_DIR, STATE_FILE, Desired, FleetConfigState, file_hash
from collector.fleet.desired import render_all
from collector.fleet.inbox import Inbox
from collector.fleet.software import Failure, Software
from collector.inventory import Inventory, load_inventory
from collector.scope import Scope
from collector.secrets import SecretSource
from collector.shard import restrict
from collector.threads import named
from zonewatch import wire
from zonewatch.strict import ConfigError

log = logging.getLogger(__name__)

__all__ = ["ConfigPublisher", "mqtt_publish", "SETTLE"]

SETTLE = 2.0         # seconds between noticing an edited inventory and publishing what it changed
INTERVAL = 0.5       # seconds between two turns of the fleet thread

Publish = Callable[[str, bytes], bool]   # publish retained, QoS 1; True once the broker acknowledged it


def mqtt_publish(client: mqtt.Client, timeout: float = 10.0) -> Publish:
    """Return a ``Publish`` through ``client`` (the collector's data session)."""

    def publish(topic: str, payload: bytes) -> bool:
        info = client.publish(topic, payload, qos=1, retain=True)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    return publish


def _beyond_configs(inventory: Inventory) -> Inventory:
    """Return ``inventory`` without the desired configurations (to tell what else an edit changed)."""
    probes = {k: p.model_copy(update={"config": None}) for k, p in inventory.probes.items()}
    return inventory.model_copy(update={"probe_defaults": None, "probes": probes})


class ConfigPublisher:
    """See the module docstring."""

    def __init__(self, inventory: Inventory, inventory_path: Path | None, secrets: SecretSource, folder: Path,
                 publish: Publish, connected: threading.Event,
                 on_views: Callable[[dict[str, ConfigView]], None] | None = None,
                 clock: Callable[[], int] = time.time_ns, interval: float = INTERVAL,
                 scope: Scope | None = None, zones: Sequence[str] = ()) -> None:
        self.inventory, self.inventory_path, self.secrets = inventory, inventory_path, secrets
        self.folder, self.publish, self.connected = folder, publish, connected
        self.on_views, self.clock, self.interval = on_views, clock, interval
        self.scope = scope   # the ingest's: a report the probe may not send (it was retired) is not taken
        self.zones = list(zones)   # a shard's zones (collector.shard): an edited inventory is cut to them too
        self.state_path, self.audit_path = folder / STATE_FILE, folder / AUDIT_FILE
        self.requests_dir = folder / REQUESTS_DIR
        self.state = FleetConfigState.load(self.state_path)
        self.inventory_hash = ""
        self._seen: tuple[int, int, int] | None = None     # the inventory file's (inode, size, mtime) last read
        self._refused_hash = ""                            # an edited inventory that did not load (logged once)
        self._due_ns: int | None = 0                       # publish at this time (0: at once; None: nothing due)
        self._by = audit.INVENTORY_CHANGE
        self._again: set[str] = set()                      # probes whose config ``fleet push --again`` re-issues
        self._inbox = Inbox(scope)
        self._stop = threading.Event()
        self._thread = named(self._loop, "zw-fleet")
        self.software = Software(folder, self.audit_path, scope)   # the release each probe should run, and rollouts
        self._failures: dict[str, Failure] = {}                    # update failures the alert engine was handed
        if inventory_path is not None:
            try:
                self._seen, data = self._read(inventory_path)
                self.inventory_hash = file_hash(data)
            except OSError as exc:
                log.error("cannot read the inventory %s: %s", inventory_path, exc)

    # intake thread -----------------------------------------------------------------------------------

    def offer(self, messages: Sequence[tuple[str, bytes]], now_ns: int) -> None:
        """Queue the events messages that may hold a configuration report (called on the intake thread)."""
        for topic, payload in messages:
            if topic.endswith("/events") and b'"config"' in payload:
                self._inbox.put(topic, payload, now_ns)
        self.software.offer(messages, now_ns)

    # the fleet thread --------------------------------------------------------------------------------

    def start(self) -> None:
        """Hand the alert engine the view kept from before, and start the thread."""
        self._views()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.turn(self.clock())

    def turn(self, now_ns: int) -> None:
        """One turn of the fleet thread (see the module docstring)."""
        changed = self._take_reports()
        self._reload(now_ns)
        for by, probes in self._requests():
            self._by, self._due_ns = by, 0
            self._again.update(probes)
        managed = [name for name, probe in self.inventory.probes.items() if probe.config is not None]
        moved, by, again = self.software.turn(now_ns, managed, self.state.probes)   # releases (fleet update)
        if moved:
            self._by, self._due_ns = by, 0
            self._again.update(again)
        if self._due_ns is not None and now_ns >= self._due_ns and self.connected.is_set():
            changed = self._publish(now_ns) or changed
        if changed or self.software.state.failures() != self._failures:
            self.state.save(self.state_path)
            self._views()

    def _views(self) -> None:
        if self.on_views is None:
            return
        views: dict[str, ConfigView] = {}
        self._failures = failures = self.software.state.failures()
        for name, entry in self.state.probes.items():
            if entry.desired is None:
                continue
            report = entry.report
            views[name] = ConfigView(entry.zone, entry.desired.hash, entry.desired.version,
                                     *((report.result, report.hash, report.version, report.error, report.at_ns)
                                       if report is not None else ()))
            if name in failures:   # a rollout failed at it (ProbeUpdateFailed)
                failed = failures[name]
                views[name] = replace(views[name], update_failed=failed.why, update_version=failed.version,
                                      update_failed_ns=failed.at_ns)
        self.on_views(views)

    def _take_reports(self) -> bool:
        changed = False
        for arrived in self._inbox.take():
            batch = arrived.batch
            if batch is None:
                continue
            for event in batch.events:
                report = wire.read_config_report(event)
                if report is None or (self.scope is not None and self.scope.why(batch.zone, batch.probe, None,
                                                                                  event.tags) is not None):
                    continue
                if not self.state.take(batch.probe, report, arrived.at_ns):
                    continue
                changed = True
                self._audit_report(batch.zone, batch.probe, report, arrived.at_ns)
        return changed

    def _audit_report(self, zone: str, probe: str, report: wire.ConfigReport, at_ns: int) -> None:
        details = {"zone": zone, "probe": probe, "version": report.version, "hash": report.hash,
                   "running": report.running}
        if report.error:
            details["error"] = report.error
        audit.append(self.audit_path, at_ns, f"probe {probe}", report.result, **details)
        if report.result == "applied":
            log.info("probe %s/%s applied desired config v%d (%s) in %.3f s", zone, probe, report.version,
                     report.hash[:15], report.seconds)
        else:
            log.warning("probe %s/%s %s desired config v%d (%s): %s", zone, probe, report.result.replace("_", " "),
                        report.version, report.hash[:15], report.error)

    @staticmethod
    def _read(path: Path) -> tuple[tuple[int, int, int], bytes]:
        with open(path, "rb") as file:
            info = os.fstat(file.fileno())
            return (info.st_ino, info.st_size, info.st_mtime_ns), file.read()

    def _reload(self, now_ns: int) -> None:
        """Read the inventory again if its file changed (see the module docstring)."""
        path = self.inventory_path
        if path is None:
            return
        try:
            info = os.stat(path)
            if (info.st_ino, info.st_size, info.st_mtime_ns) == self._seen:
                return
            self._seen, data = self._read(path)
        except OSError as exc:
            log.error("cannot read the inventory %s: %s", path, exc)
            return
        digest = file_hash(data)
        if digest in (self.inventory_hash, self._refused_hash):
            return
        try:
            inventory = load_inventory(path, self.secrets)
            inventory = restrict(inventory, self.zones)
        except (ConfigError, ValueError) as exc:   # ValueError: restrict names a reference across a shard's zones
            self._refused_hash = digest
            log.error("the edited inventory cannot be used (the desired configurations stay as they were): %s", exc)
            return
        if _beyond_configs(inventory) != _beyond_configs(self.inventory):
            log.warning("the inventory changed beyond the probes' desired configurations: the collector takes "
                        "that (devices, links, probes, carriers ...) at its next restart")
        log.info("inventory %s changed (%s); publishing what it changes in %gs", path, digest[:15], SETTLE)
        self.inventory, self.inventory_hash = inventory, digest
        self._due_ns, self._by = now_ns + int(SETTLE * 1e9), audit.INVENTORY_CHANGE

    def _requests(self) -> list[tuple[str, list[str]]]:
        """Return (who, probes to issue again) of each ``fleet push`` waiting, and remove their files."""
        try:
            names = sorted(p for p in os.listdir(self.requests_dir) if p.endswith(".json"))
        except FileNotFoundError:
            return []
        out: list[tuple[str, list[str]]] = []
        for name in names:
            path = self.requests_dir / name
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                out.append((str(doc["by"]), [str(p) for p in doc.get("again", [])]))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("ignoring the unreadable fleet request %s: %s", path, exc)
            try:
                path.unlink()
            except OSError as exc:
                log.error("cannot remove the fleet request %s: %s", path, exc)
        return out

    def _publish(self, now_ns: int) -> bool:
        """Publish what differs from what was published; return True if anything was."""
        again, self._again = self._again, set()
        inventory_gives, problems = render_all(self.inventory)
        rendered = self.software.apply(inventory_gives)   # with the release each probe should run (fleet update)
        for problem in problems:   # a loaded inventory has none (its check_refs renders too)
            log.error("desired configuration at %s: %s", problem.path, problem.message)
        changed, failed = False, False
        by = self._by
        for name in sorted(again - rendered.keys()):
            log.warning("fleet push --again %s: the probe has no desired configuration", name)
        for name, r in rendered.items():
            entry = self.state.entry(name, r.zone)
            if entry.desired is not None and entry.desired.hash == r.hash and name not in again:
                continue
            version = entry.issued + 1
            payload = wire.encode_config(wire.DesiredConfig(r.zone, name, version, r.hash, now_ns, r.yaml))
            if not self.publish(wire.topic(r.zone, name, "config"), payload):
                log.warning("the broker did not acknowledge the desired config of probe %s; trying again", name)
                failed = True
                self._again.update({name} & again)
                continue
            entry.issued, entry.desired, changed = version, Desired(version, r.hash, now_ns), True
            release = self.software.release(name)
            audit.append(self.audit_path, now_ns, by, "publish", zone=r.zone, probe=name, version=version,
                         hash=r.hash, inventory=self.inventory_hash, **({"software": release} if release else {}))
            log.info("published desired config v%d of probe %s/%s (%s, %d bytes) for %s", version, r.zone, name,
                     r.hash[:15], len(payload), by)
        for name, entry in self.state.probes.items():
            if entry.desired is None or name in rendered:
                continue
            if not self.publish(wire.topic(entry.zone, name, "config"), b""):
                failed = True
                continue
            entry.desired, changed = None, True
            audit.append(self.audit_path, now_ns, by, "clear", zone=entry.zone, probe=name,
                         inventory=self.inventory_hash)
            log.info("cleared the desired config of probe %s/%s (no longer managed from the centre)", entry.zone, name)
        self._due_ns = now_ns + int(5e9) if failed else None
        self._by = audit.INVENTORY_CHANGE
        return changed
