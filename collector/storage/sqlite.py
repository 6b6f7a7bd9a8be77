"""The embedded default store: one SQLite file in WAL mode, laid out for reports.

Schema (``PRAGMA user_version`` = 1)::

    series  id INTEGER PRIMARY KEY
            measurement TEXT            "cellular"
            tags TEXT                   '{"carrier":"452-04","probe":"p1","zone":"dinh-vu"}'
            UNIQUE (measurement, tags)  tags are canonical JSON: keys sorted, no spaces, so one
                                        series has exactly one row
    points  series_id INTEGER           -> series.id
            field TEXT                  "rsrp_dbm"
            time_ns INTEGER             nanoseconds since the epoch
            value                       no type affinity, so each value keeps its type:
                                          INTEGER for ints and booleans (0/1), exact;
                                          REAL for floats;
                                          TEXT (decimal) for an integer outside signed 64 bits,
                                          such as a Counter64 above 2**63 - 1 (read helpers
                                          return it as an int; SQL aggregates must CAST it)
            PRIMARY KEY (series_id, field, time_ns), WITHOUT ROWID

The primary key is the index reports use (one series, one field, a time range) and makes writes
idempotent: writing the same point again replaces it, as a time-series database does. A report on
per-carrier coverage or availability selects series by measurement and tags, then reads points of one
field over the month.

One ``write()`` is one transaction. NaN and infinities are not stored; a sample without a storable
field adds nothing. ``query`` and ``latest`` may be called from any thread; all use of the connection
is serialized by a lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, NamedTuple

from collector.storage import SqliteStorage, StorageError
from zonewatch import wire

__all__ = ["SqliteWriter", "StoredPoint"]

SCHEMA_VERSION: Final = 1
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS series (
    id          INTEGER PRIMARY KEY,
    measurement TEXT NOT NULL,
    tags        TEXT NOT NULL,
    UNIQUE (measurement, tags)
);
CREATE TABLE IF NOT EXISTS points (
    series_id INTEGER NOT NULL REFERENCES series (id),
    field     TEXT NOT NULL,
    time_ns   INTEGER NOT NULL,
    value     NOT NULL,
    PRIMARY KEY (series_id, field, time_ns)
) WITHOUT ROWID;
"""
_INSERT_POINT: Final = "INSERT OR REPLACE INTO points (series_id, field, time_ns, value) VALUES (?, ?, ?, ?)"
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1
_INF: Final = float("inf")
_MAX_CACHED_SERIES: Final = 200_000

StoredValue = int | float | str
SeriesKey = tuple[str, str, str, tuple[tuple[str, str], ...]]


class StoredPoint(NamedTuple):
    """One stored value of one field of one series."""

    tags: dict[str, str]
    time_ns: int
    value: int | float


def _stored(key: str, value: object) -> StoredValue | None:
    """Return ``value`` as stored in the points table, or None if it is not stored (NaN, infinity)."""
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int):
        number = int(value)
        return number if _INT64_MIN <= number <= _INT64_MAX else str(number)
    if isinstance(value, float):
        real = float(value)
        return real if -_INF < real < _INF else None
    raise ValueError(f"field {key!r}: {type(value).__name__} {value!r} is not a number or a boolean")


def _loaded(value: StoredValue) -> int | float:
    """Return a value read from the points table as the number that was written."""
    return int(value) if isinstance(value, str) else value


def _canonical_tags(tags: Mapping[str, str], zone: str, probe: str) -> str:
    """Return the series' tags, with the batch's zone and probe, as canonical JSON."""
    merged = {k: v for k, v in tags.items() if v}
    merged["zone"] = zone
    merged["probe"] = probe
    return json.dumps(merged, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _error(path: str, exc: BaseException) -> StorageError:
    """Return the StorageError for a failed database operation."""
    # Integrity, data and programming errors are about what was written; every other failure (busy,
    # locked, disk full, I/O, cannot open) is about the store and may pass.
    retryable = not isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError,
                                     sqlite3.InterfaceError, ValueError))
    return StorageError(f"sqlite {path}: {type(exc).__name__}: {exc}", retryable=retryable)


class SqliteWriter:
    """Writer into a local SQLite file, with read helpers for reports and tests."""

    def __init__(self, config: SqliteStorage) -> None:
        self._path = config.path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._series: dict[SeriesKey, int] = {}

    def _connection(self) -> sqlite3.Connection:
        """Return the open connection, opening the file and creating the schema on first use."""
        if self._conn is not None:
            return self._conn
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=5.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a batch is acknowledged once write() returns
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StorageError(f"sqlite {self._path}: schema version {version} is newer than this"
                                   f" collector's {SCHEMA_VERSION}; upgrade the collector", retryable=True)
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def write(self, batches: Sequence[wire.Batch]) -> None:
        """Store every sample of ``batches`` in one transaction."""
        with self._lock:
            try:
                conn = self._connection()
            except (sqlite3.Error, OSError) as exc:
                raise _error(self._path, exc) from None
            added: dict[SeriesKey, int] = {}
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    rows = self._rows(conn, batches, added)
                    conn.executemany(_INSERT_POINT, rows)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
                        conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, ValueError) as exc:
                raise _error(self._path, exc) from None
            # Series ids are remembered only once their rows are committed.
            if len(self._series) + len(added) > _MAX_CACHED_SERIES:
                self._series.clear()
            self._series.update(added)

    def _rows(self, conn: sqlite3.Connection, batches: Sequence[wire.Batch],
              added: dict[SeriesKey, int]) -> list[tuple[int, str, int, StoredValue]]:
        """Return the points rows of ``batches``, inserting new series as needed."""
        rows: list[tuple[int, str, int, StoredValue]] = []
        for batch in batches:
            try:
                self._batch_rows(conn, batch, rows, added)
            except ValueError as exc:
                raise ValueError(f"zone {batch.zone} probe {batch.probe} seq {batch.seq}: {exc}") from None
        return rows

    def _batch_rows(self, conn: sqlite3.Connection, batch: wire.Batch,
                    rows: list[tuple[int, str, int, StoredValue]], added: dict[SeriesKey, int]) -> None:
        """Append the points rows of one batch to ``rows``."""
        series = self._series
        zone, probe = batch.zone, batch.probe
        for sample in batch.samples:
            values = [(k, v) for k, v in ((k, _stored(k, v)) for k, v in sample.fields.items())
                      if v is not None]
            if not values:
                continue
            key = (zone, probe, sample.measurement, tuple(sample.tags.items()))
            series_id = series.get(key)
            if series_id is None:
                series_id = added.get(key)
            if series_id is None:
                series_id = added[key] = self._series_id(conn, sample.measurement,
                                                         _canonical_tags(sample.tags, zone, probe))
            t = sample.time_ns
            rows.extend((series_id, k, t, v) for k, v in values)

    @staticmethod
    def _series_id(conn: sqlite3.Connection, measurement: str, tags: str) -> int:
        """Return the id of a series, adding it if it is new."""
        conn.execute("INSERT OR IGNORE INTO series (measurement, tags) VALUES (?, ?)", (measurement, tags))
        row = conn.execute("SELECT id FROM series WHERE measurement = ? AND tags = ?",
                           (measurement, tags)).fetchone()
        return int(row[0])

    def prune(self, before_ns: int, start: tuple[int, str] | None = None, max_rows: int = 2000,
              max_pairs: int = 100) -> tuple[int, tuple[int, str] | None]:
        """Delete points older than ``before_ns``: one step of a pass, in one short transaction.

        A pass visits every (series, field) in key order, from ``start`` (inclusive; None: the first); a step
        ends after deleting ``max_rows`` points or visiting ``max_pairs`` of them, so the lock that writes wait
        for is held briefly. Every lookup is a seek on the primary key (no scan of the table). Returns the
        points deleted and where the next step starts (None: the pass is done). Series rows are kept: they are
        small, and the writer's cache of series ids stays valid.
        """
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = self._prune(conn, before_ns, start, max(1, max_rows), max(1, max_pairs))
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError) as exc:
                raise _error(self._path, exc) from None
        return result

    @staticmethod
    def _prune(conn: sqlite3.Connection, before_ns: int, start: tuple[int, str] | None, max_rows: int,
               max_pairs: int) -> tuple[int, tuple[int, str] | None]:
        """Delete old points within an open transaction (see ``prune``)."""
        if start is None:
            row = conn.execute("SELECT series_id, field FROM points ORDER BY series_id, field LIMIT 1").fetchone()
        else:
            row = conn.execute("SELECT series_id, field FROM points WHERE (series_id, field) >= (?, ?) "
                               "ORDER BY series_id, field LIMIT 1", start).fetchone()
        pair: tuple[int, str] | None = None if row is None else (int(row[0]), str(row[1]))
        deleted = visited = 0
        while pair is not None and deleted < max_rows and visited < max_pairs:
            series_id, field = pair
            left = max_rows - deleted
            nth = conn.execute("SELECT time_ns FROM points WHERE series_id = ? AND field = ? AND time_ns < ? "
                               "ORDER BY time_ns LIMIT 1 OFFSET ?", (series_id, field, before_ns, left - 1)).fetchone()
            if nth is not None:  # more old points than this step may delete: the oldest ``left``, then stay here
                deleted += conn.execute("DELETE FROM points WHERE series_id = ? AND field = ? AND time_ns <= ?",
                                        (series_id, field, nth[0])).rowcount
                break
            deleted += conn.execute("DELETE FROM points WHERE series_id = ? AND field = ? AND time_ns < ?",
                                    (series_id, field, before_ns)).rowcount
            visited += 1
            row = conn.execute("SELECT series_id, field FROM points WHERE (series_id, field) > (?, ?) "
                               "ORDER BY series_id, field LIMIT 1", pair).fetchone()
            pair = None if row is None else (int(row[0]), str(row[1]))
        return deleted, pair

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._series.clear()

    def _matching_series(self, conn: sqlite3.Connection, measurement: str,
                         tags: Mapping[str, str] | None) -> list[tuple[int, dict[str, str]]]:
        """Return (id, tags) of every series of ``measurement`` whose tags include ``tags``."""
        wanted = tuple((tags or {}).items())
        found = []
        for series_id, text in conn.execute(
                "SELECT id, tags FROM series WHERE measurement = ? ORDER BY tags", (measurement,)):
            have: dict[str, str] = json.loads(text)
            if all(have.get(k) == v for k, v in wanted):
                found.append((int(series_id), have))
        return found

    def query(self, measurement: str, field: str, tags: Mapping[str, str] | None = None,
              since_ns: int | None = None, until_ns: int | None = None) -> list[StoredPoint]:
        """Return the points of ``field`` in matching series with since_ns <= time < until_ns, by time."""
        low = _INT64_MIN if since_ns is None else since_ns
        high = _INT64_MAX if until_ns is None else until_ns - 1
        out: list[StoredPoint] = []
        with self._lock:
            try:
                conn = self._connection()
                for series_id, series_tags in self._matching_series(conn, measurement, tags):
                    out.extend(StoredPoint(series_tags, t, _loaded(v)) for t, v in conn.execute(
                        "SELECT time_ns, value FROM points"
                        " WHERE series_id = ? AND field = ? AND time_ns BETWEEN ? AND ? ORDER BY time_ns",
                        (series_id, field, low, high)))
            except (sqlite3.Error, OSError) as exc:
                raise _error(self._path, exc) from None
        out.sort(key=lambda p: p.time_ns)  # stable: series order (by tags) within one time
        return out

    def latest(self, measurement: str, field: str,
               tags: Mapping[str, str] | None = None) -> list[StoredPoint]:
        """Return the newest point of ``field`` in each matching series, ordered by tags."""
        out: list[StoredPoint] = []
        with self._lock:
            try:
                conn = self._connection()
                for series_id, series_tags in self._matching_series(conn, measurement, tags):
                    row = conn.execute(
                        "SELECT time_ns, value FROM points WHERE series_id = ? AND field = ?"
                        " ORDER BY time_ns DESC LIMIT 1", (series_id, field)).fetchone()
                    if row is not None:
                        out.append(StoredPoint(series_tags, int(row[0]), _loaded(row[1])))
            except (sqlite3.Error, OSError) as exc:
                raise _error(self._path, exc) from None
        return out
