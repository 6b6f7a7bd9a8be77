"""What the centre published to each probe, and what each probe reported: desired, applied, drift.

The running collector (``config_publisher``) is the only writer; ``zonewatch-collector fleet status`` reads the
file. It lives in the collector's fleet folder (``fleet/`` beside ``queue.path``)::

    config-state.json   per probe: the desired configuration published (version, hash, when), the last version
                        issued (versions never go back, even after a probe stopped being managed), and its last
                        report (``zonewatch.wire.ConfigReport``: result, about which hash and version, the error, what
                        runs now, when it arrived)
    requests/           what ``fleet push`` asks of the running collector (one JSON file a request)
    audit.jsonl         every change (``audit``)

A probe's state, as ``status`` says it::

    in sync     it runs its desired configuration
    pending     published; the probe has not reported on it yet (it is offline, or busy with it)
    rejected    the probe refused it (the error names the key and the line); its previous configuration runs
    rolled_back the probe applied it and the dead-man rule undid it
    unmanaged   no desired configuration: the probe runs its local file (or what it ran before)

Drift: the desired hash differs from the hash the probe last said it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zonewatch import wire

__all__ = ["Desired", "Reported", "ProbeConfig", "FleetConfigState", "STATE_FILE", "REQUESTS_DIR", "AUDIT_FILE",
           "fleet_dir", "replace_file", "file_hash"]

STATE_FILE = "config-state.json"
REQUESTS_DIR = "requests"
AUDIT_FILE = "audit.jsonl"


def fleet_dir(queue_path: str) -> Path:
    """Return the collector's fleet folder: ``fleet/`` beside its intake queue."""
    return Path(queue_path).parent / "fleet"


@dataclass(frozen=True, slots=True)
class Desired:
    """A desired configuration as published (retained) on a probe's config topic."""

    version: int
    hash: str
    issued_ns: int


@dataclass(frozen=True, slots=True)
class Reported:
    """A probe's last report (``zonewatch.wire.ConfigReport``), with its arrival time."""

    result: str
    hash: str
    version: int
    running: str
    running_version: int
    error: str
    seconds: float
    at_ns: int


@dataclass(slots=True)
class ProbeConfig:
    """One probe's entry."""

    zone: str
    desired: Desired | None = None
    issued: int = 0                  # the last version issued to it
    report: Reported | None = None

    @property
    def status(self) -> str:
        """Return in sync, pending, rejected, rolled_back or unmanaged (see the module docstring)."""
        if self.desired is None:
            return "unmanaged"
        report = self.report
        if report is not None and report.running == self.desired.hash:
            return "in sync"
        if report is not None and report.hash == self.desired.hash and report.result != "applied":
            return report.result
        return "pending"

    @property
    def drift(self) -> bool | None:
        """Return True if the probe runs something else than desired; None when that is not known yet."""
        if self.desired is None or self.report is None:
            return None
        return self.report.running != self.desired.hash


@dataclass(slots=True)
class FleetConfigState:
    """Every probe's entry, by probe id."""

    probes: dict[str, ProbeConfig] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> FleetConfigState:
        """Return the state kept at ``path`` (an absent file: empty); raise ValueError naming it if unreadable."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {path}: {exc}") from None
        try:
            probes = {name: ProbeConfig(str(e["zone"]), Desired(**e["desired"]) if e.get("desired") else None,
                                        int(e.get("issued", 0)), Reported(**e["report"]) if e.get("report") else None)
                      for name, e in doc["probes"].items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"cannot read {path}: unexpected content ({exc})") from None
        return cls(probes)

    def to_json(self) -> dict[str, Any]:
        return {"v": 1, "probes": {name: asdict(entry) for name, entry in sorted(self.probes.items())}}

    def save(self, path: Path) -> None:
        """Replace ``path`` with this state (atomically)."""
        replace_file(path, json.dumps(self.to_json(), indent=1).encode("utf-8") + b"\n", 0o640)

    def entry(self, probe: str, zone: str) -> ProbeConfig:
        """Return the entry of ``probe``, made if new."""
        found = self.probes.get(probe)
        if found is None:
            found = self.probes[probe] = ProbeConfig(zone)
        found.zone = zone
        return found

    def take(self, probe: str, report: wire.ConfigReport, at_ns: int) -> bool:
        """Record a report of ``probe``; return False if it says nothing new (a repeat of the last)."""
        entry = self.probes.get(probe)
        if entry is None:
            return False
        new = Reported(report.result, report.hash, report.version, report.running, report.running_version,
                       report.error, report.seconds, at_ns)
        old = entry.report
        if old is not None and (old.result, old.hash, old.version, old.running, old.error) == \
                (new.result, new.hash, new.version, new.running, new.error):
            return False
        entry.report = new
        return True


def file_hash(data: bytes) -> str:
    """Return the hash an inventory file is audited under: ``sha256:`` and its hex digest."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` atomically: written beside it with ``mode``, synced, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
