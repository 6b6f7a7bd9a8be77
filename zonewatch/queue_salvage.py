"""What can still be read of a damaged queue file (``zonewatch.queue``): found on open, moved aside, salvaged.

``healthy`` runs SQLite's ``quick_check``; ``move_aside`` renames a damaged file (and its write-ahead log) to
``<name>.damaged-<n>``; ``read_damaged`` reads every meta value and every entry whose CRC still matches from such a
file, for ``DiskQueue`` to copy into a new one. A file cut short (a failing SD card) is read through a copy padded
with zero pages to the size its header states: SQLite refuses a file shorter than that, but padded it reads every
intact page and reports only the lost ones as malformed. Standard library only.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

__all__ = ["healthy", "move_aside", "read_damaged"]

T = TypeVar("T")


def healthy(path: Path) -> bool:
    """Return True if SQLite's quick_check passes on ``path``."""
    try:
        db = sqlite3.connect(path)
    except sqlite3.DatabaseError:
        return False
    try:
        return [r[0] for r in db.execute("PRAGMA quick_check")] == ["ok"]
    except sqlite3.DatabaseError:
        return False
    finally:
        db.close()


def move_aside(path: Path) -> Path:
    """Rename ``path`` and its ``-wal`` and ``-shm`` files to the first free ``<name>.damaged-<n>``; return it."""
    n = 1
    while (aside := path.with_name(f"{path.name}.damaged-{n}")).exists():
        n += 1
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(aside.with_name(aside.name + suffix))
    return aside


def read_damaged(damaged: Path) -> tuple[dict[str, int], list[tuple[object, ...]]] | None:
    """Return every readable meta value and every entry row (whole, its CRC checked) of a damaged queue file;
    None when not even the file's header survived."""
    padded = _padded_copy(damaged)
    if padded is None:
        return None
    old = sqlite3.connect(f"file:{padded}?mode=ro", uri=True)
    meta: dict[str, int] = {}
    rows: dict[int, tuple[object, ...]] = {}
    try:
        meta_sql, entry_sql = "SELECT value FROM meta WHERE key = ?", (
            "SELECT id, kind, created_ns, size, crc, payload FROM entries WHERE id = ?")
        for key in _try(lambda: [r[0] for r in old.execute("SELECT key FROM meta")]) or []:
            found = _try(partial(_one, old, meta_sql, key))
            if found is not None and isinstance(found[0], int):
                meta[str(key)] = found[0]
        ids: list[int] = []
        cursor = _try(lambda: old.execute("SELECT id FROM entries ORDER BY id"))
        while cursor is not None:
            row = _try(cursor.fetchone)
            if not row:
                break
            ids.append(int(row[0]))
        # Past a damaged page the scan stops; look further ids up one by one (other pages may be intact).
        high = min(max([*ids, *meta.values(), 0]), (ids[-1] if ids else 0) + 2_000_000)
        for entry_id in range(ids[-1] + 1 if ids else 1, high + 1):
            ids.append(entry_id)
        for entry_id in ids:
            row = _try(partial(_one, old, entry_sql, entry_id))
            if row is not None and isinstance(row[5], bytes) and zlib.crc32(row[5]) == row[4]:
                rows[entry_id] = tuple(row)
    finally:
        old.close()
        padded.unlink()
    return meta, list(rows.values())


def _one(db: sqlite3.Connection, sql: str, arg: object) -> tuple[object, ...] | None:
    """Return the first row of ``sql`` with one argument."""
    row: tuple[object, ...] | None = db.execute(sql, (arg,)).fetchone()
    return row


def _try(read: Callable[[], T]) -> T | None:
    """Return what ``read`` gives, or None if the damaged file refuses it."""
    try:
        return read()
    except sqlite3.DatabaseError:
        return None


def _padded_copy(damaged: Path) -> Path | None:
    """Copy a cut-short SQLite file, padded with zero pages to the size its header states.

    SQLite refuses a file shorter than its header says; padded, it reads every intact page and reports
    only the lost ones as malformed. Return None when not even the header survived.
    """
    data = damaged.read_bytes()
    if len(data) < 100 or not data.startswith(b"SQLite format 3\x00"):
        return None
    page_size = int.from_bytes(data[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(data[28:32], "big")
    copy = damaged.with_name(damaged.name + ".padded")
    copy.write_bytes(data + b"\x00" * max(0, pages * page_size - len(data)))
    return copy
