"""Backup and restore of the collector's state, taken while it runs (``zonewatch-collector backup``, ``restore``).

What the state is, in the order a backup copies it::

    alerts     the tracker's state (alerting.state_path, alerts.db): what fires, what was notified
    outbox     every receiver's outbox (alerting.outbox_dir/*.db): notifications not delivered yet
    intake     the intake queue (queue.path, intake.db): what the broker handed over and storage has not taken
               yet, and in the same file the sequence bookkeeping (repeats, seq gaps)
    enrol      the enrolment registry (enrol.db), with an ``enrol`` section
    fleet      the fleet folder (fleet/: what was published to each probe, their reports, the audit)
    fault      fault.json, if the last run stopped on a thread's death (CollectorFault at the next start)
    store      the SQLite store (storage.path), only with ``--with-store`` (VictoriaMetrics keeps its own data)

Each SQLite file is copied with SQLite's online backup (a consistent snapshot of that file while the collector
writes it: its WAL included), the others as they are. The tracker saves its state only after the outboxes hold
what it notified, so copying ``alerts`` before ``outbox`` keeps the tracker's promise: a notification may be
sent twice after a restore, never lost. What happened after the backup is not in it. What the old collector
acknowledged to the broker after it was written to storage by then, if it was stopped (storage deduplicates
what the restored intake writes again); ``restore`` leaves ``RESTORED`` beside the intake queue, and the
restored collector takes the first forward gap of each probe's stream as those seqs, not as lost
(``collector.ingest.seq``). A notification sent after the backup may be sent again. Restore the newest
backup, on a collector that takes over the same MQTT ``client_id`` (the broker kept its session: what came
after the old one stopped is delivered to the new one). A collector killed with the machine loses what it had
acknowledged after the backup and not yet written.

A backup is a folder: ``manifest.json`` (when, from which configuration, each item with its size and SHA-256)
and ``files/<item>/...``. ``restore`` copies each item to where the *restoring* configuration puts it (a new
machine may use other folders), refuses to overwrite state that is there unless told to, and checks every
hash first. Neither needs the collector's code beyond its configuration; both are pure file work.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from collector.config import CollectorConfig
from collector.storage import SqliteStorage

__all__ = ["MANIFEST", "RESTORED", "Item", "backup", "restore", "state_items"]

MANIFEST = "manifest.json"
RESTORED = "restored.json"   # beside the intake queue: the next start resumes the probes' streams (seq gaps)
FORMAT = 1
Kind = Literal["sqlite", "sqlite_dir", "dir", "file"]


@dataclass(frozen=True)
class Item:
    """One part of the state: its name, where the configuration keeps it, and how it is copied."""

    name: str
    path: Path
    kind: Kind


def state_items(cfg: CollectorConfig, with_store: bool = False) -> list[Item]:
    """Return the state of the collector ``cfg`` configures, in the order a backup copies it."""
    data = Path(cfg.queue.path).parent
    items = [
        Item("alerts", Path(cfg.alerting.state_path or data / "alerts.db"), "sqlite"),
        Item("outbox", Path(cfg.alerting.outbox_dir or data / "outbox"), "sqlite_dir"),
        Item("intake", Path(cfg.queue.path), "sqlite"),
    ]
    if cfg.enrol is not None:
        from collector.fleet.enrol import registry_path

        items.append(Item("enrol", registry_path(cfg), "sqlite"))
    items += [Item("fleet", data / "fleet", "dir"), Item("fault", data / "fault.json", "file")]
    if with_store and isinstance(cfg.storage, SqliteStorage):
        items.append(Item("store", Path(cfg.storage.path), "sqlite"))
    return items


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _copy_sqlite(source: Path, dest: Path) -> None:
    """Copy the database ``source`` (as it stands now, its WAL included) into a new file ``dest``."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        out = sqlite3.connect(dest)
        try:
            src.backup(out)   # SQLite's online backup: a consistent snapshot while others write
        finally:
            out.close()
    finally:
        src.close()


def _files(item: Item) -> Iterator[tuple[Path, str]]:
    """Return (source file, path relative to the item) of each file of ``item`` that exists now."""
    if item.kind in ("sqlite", "file"):
        if item.path.is_file():
            yield item.path, item.path.name
    elif item.path.is_dir():
        for path in sorted(item.path.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            if path.name.endswith(("-wal", "-shm", "-journal")) or (item.kind == "sqlite_dir" and path.suffix != ".db"):
                continue   # a database's own side files: the online backup takes what they hold
            yield path, str(path.relative_to(item.path))


def backup(cfg: CollectorConfig, out: Path, source: str = "", with_store: bool = False) -> dict[str, object]:
    """Copy the state into the new folder ``out`` (see the module docstring); return the manifest written."""
    out.mkdir(parents=True, exist_ok=False, mode=0o700)
    entries = []
    for item in state_items(cfg, with_store):
        for path, rel in _files(item):
            dest = out / "files" / item.name / rel
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if item.kind in ("sqlite", "sqlite_dir") or path.suffix == ".db":   # a database in the fleet folder too
                _copy_sqlite(path, dest)
            else:
                shutil.copyfile(path, dest)
            os.chmod(dest, 0o600)
            entries.append({"item": item.name, "path": rel, "bytes": dest.stat().st_size, "sha256": _sha256(dest)})
    manifest: dict[str, object] = {"format": FORMAT, "taken_ns": time.time_ns(), "config": source,
                                   "mqtt_client_id": cfg.mqtt.client_id if cfg.mqtt is not None else None,
                                   "files": entries}
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, out / MANIFEST)
    return manifest


def restore(cfg: CollectorConfig, source: Path, force: bool = False) -> list[Path]:
    """Copy a backup into the places ``cfg`` configures; return the files written.

    Raise ValueError (naming what) when the backup is incomplete or damaged, or when state is already there and
    ``force`` is not given; nothing is written then."""
    try:
        manifest = json.loads((source / MANIFEST).read_text())
        files = [(str(e["item"]), str(e["path"]), str(e["sha256"])) for e in manifest["files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{source}: not a collector backup ({MANIFEST}: {exc})") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{source}: backup format {manifest.get('format')!r}, this version reads {FORMAT}")
    items = {item.name: item for item in state_items(cfg, with_store=True)}
    plan: list[tuple[Path, Path]] = []
    for name, rel, digest in files:
        item = items.get(name)
        if item is None:
            raise ValueError(f"{source}: the backup holds {name!r}, which this configuration has no place for "
                             "(an enrol section? SQLite storage?)")
        held = source / "files" / name / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise ValueError(f"{source}: {name}/{rel}: a path outside its item")
        if not held.is_file() or _sha256(held) != digest:
            raise ValueError(f"{source}: {name}/{rel} is missing or damaged (SHA-256 differs from the manifest)")
        dest = item.path if item.kind in ("sqlite", "file") else item.path / rel
        plan.append((held, dest))
    present = [dest for _, dest in plan if dest.exists()]
    present += [item.path for item in items.values() if item.kind in ("sqlite_dir", "dir") and item.path.is_dir()
                and any(p.is_file() for p in item.path.rglob("*"))]
    if present and not force:
        raise ValueError(f"state is already there ({', '.join(sorted({str(p) for p in present}))}): restore onto a "
                         "collector that has none (stopped, its folders empty), or give --force to replace it")
    written = []
    for held, dest in plan:
        dest.parent.mkdir(parents=True, exist_ok=True)
        for stale in (dest.with_name(dest.name + "-wal"), dest.with_name(dest.name + "-shm")):
            stale.unlink(missing_ok=True)   # a WAL left beside a replaced database would be applied to it
        tmp = dest.with_name(f".{dest.name}.restore")
        shutil.copyfile(held, tmp)
        os.chmod(tmp, 0o600)
        _same_owner(tmp, dest.parent)
        os.replace(tmp, dest)
        written.append(dest)
    if any(name == "intake" for name, _, _ in files):
        marker = Path(cfg.queue.path).parent / RESTORED
        marker.write_text(json.dumps({"from": str(source), "taken_ns": manifest.get("taken_ns")}) + "\n")
        _same_owner(marker, marker.parent)
        written.append(marker)
    return written


def _same_owner(path: Path, folder: Path) -> None:
    """Give ``path`` the owner of ``folder`` where this user may (root restoring for the service's user)."""
    info = folder.stat()
    if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(path, info.st_uid, info.st_gid)
        except PermissionError:
            pass
