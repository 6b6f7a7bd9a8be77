"""The run-time maintenance windows: a SQLite file beside the alert tracker's state (``maintenance.db``).

``zonewatch-collector maintenance add|end`` write it; the running collector's alert engine reads it, and sees a
change at its next evaluation (``changed``: SQLite's ``data_version``, so looking costs one pragma). One row
per window: its id, the window as JSON, when it was declared and, once ``end`` ran, when it was ended and by
whom. Ending a window of the inventory stores a row with no window (``doc`` NULL): the inventory is not
rewritten, the end is kept here.

Concurrency: several processes may open the file (one collector, any number of CLI runs); every write is one
transaction (WAL, ``synchronous=FULL``), so a reader sees a window whole or not at all.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from collector.maintenance import Declared, Window

__all__ = ["MaintenanceStore", "LiveWindows", "store_path", "merged", "StoreError"]

log = logging.getLogger(__name__)

FILE_NAME = "maintenance.db"


class StoreError(Exception):
    """The store refused a change (an id already used, an unknown id); the message says which."""


def store_path(state_path: str | Path) -> Path:
    """Return where the run-time windows live, given the alert tracker's state file."""
    return Path(state_path).with_name(FILE_NAME)


class MaintenanceStore:
    """Run-time windows in SQLite; see the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS window (id TEXT PRIMARY KEY, doc TEXT, declared_ns INTEGER "
                         "NOT NULL, ended_ns INTEGER, ended_by TEXT)")
        self._version: int | None = None

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def changed(self) -> bool:
        """Return True when the file may hold other windows than at the last call (True at the first)."""
        (version,) = self._db.execute("PRAGMA data_version").fetchone()
        (count,) = self._db.execute("SELECT total_changes()").fetchone()
        now = int(version) * 1_000_000 + int(count)   # other connections' commits, and this one's
        seen, self._version = self._version, now
        return seen != now

    def add(self, window_id: str | None, window: Window, now_ns: int) -> str:
        """Store ``window`` under ``window_id`` (None: the next free ``mw-N``); return its id."""
        doc = window.model_dump_json(exclude_none=True)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if window_id is None:
                (count,) = self._db.execute("SELECT COUNT(*) FROM window").fetchone()
                n = int(count) + 1
                while self._db.execute("SELECT 1 FROM window WHERE id = ?", (f"mw-{n}",)).fetchone():
                    n += 1
                window_id = f"mw-{n}"
            elif self._db.execute("SELECT 1 FROM window WHERE id = ?", (window_id,)).fetchone():
                raise StoreError(f"a window {window_id!r} exists already: choose another --id")
            self._db.execute("INSERT INTO window (id, doc, declared_ns) VALUES (?, ?, ?)", (window_id, doc, now_ns))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return window_id

    def end(self, window_id: str, now_ns: int, by: str | None, inventory_window: bool = False) -> None:
        """Record that ``window_id`` ends at ``now_ns`` (a window of the inventory: ``inventory_window``)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._db.execute("SELECT ended_ns FROM window WHERE id = ?", (window_id,)).fetchone()
            if row is not None and row[0] is not None:
                raise StoreError(f"window {window_id!r} was ended already")
            if row is None and not inventory_window:
                raise StoreError(f"no window {window_id!r} (see `maintenance list`)")
            if row is None:
                self._db.execute("INSERT INTO window (id, doc, declared_ns, ended_ns, ended_by) VALUES (?, NULL, ?, ?, "
                                 "?)", (window_id, now_ns, now_ns, by))
            else:
                self._db.execute("UPDATE window SET ended_ns = ?, ended_by = ? WHERE id = ?", (now_ns, by, window_id))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def rows(self) -> list[tuple[str, Window | None, int, int | None, str | None]]:
        """Return every row: (id, window or None for an inventory window's end, declared, ended, ended by)."""
        out: list[tuple[str, Window | None, int, int | None, str | None]] = []
        for window_id, doc, declared_ns, ended_ns, ended_by in self._db.execute(
                "SELECT id, doc, declared_ns, ended_ns, ended_by FROM window ORDER BY declared_ns, id"):
            window = Window.model_validate(json.loads(doc)) if doc is not None else None
            out.append((window_id, window, declared_ns, ended_ns, ended_by))
        return out


def merged(inventory: Mapping[str, Window], store: MaintenanceStore | None) -> list[Declared]:
    """Return the inventory's windows and the store's, with the ends the store recorded."""
    rows = store.rows() if store is not None else []
    ends = {window_id: (ended, by) for window_id, _, _, ended, by in rows if ended is not None}
    out = [Declared(k, w, "inventory", *ends.get(k, (None, None))) for k, w in inventory.items()]
    out += [Declared(window_id, window, "store", ended, by) for window_id, window, _, ended, by in rows
            if window is not None and window_id not in inventory]
    return out


class LiveWindows:
    """The windows the alert engine applies: the inventory's and the store's, the store re-read only when it
    changed. Called from the engine thread only."""

    def __init__(self, inventory: Mapping[str, Window], path: str | Path | None) -> None:
        self._inventory = dict(inventory)
        self._store = MaintenanceStore(path) if path is not None else None
        self._windows = merged(self._inventory, None)

    def current(self) -> list[Declared]:
        """Return every declared window; a store that cannot be read leaves the last ones known (logged)."""
        if self._store is not None:
            try:
                if self._store.changed():
                    self._windows = merged(self._inventory, self._store)
                    log.info("maintenance windows: %d (%s)", len(self._windows),
                             ", ".join(d.id for d in self._windows) or "none")
            except (sqlite3.Error, ValueError) as exc:
                log.warning("cannot read the maintenance windows in %s (keeping the last known): %s",
                            self._store.path, exc)
        return self._windows

    def close(self) -> None:
        """Close the store."""
        if self._store is not None:
            self._store.close()
