"""Where the report reads its points: the SQLite store or VictoriaMetrics, behind one protocol.

``VictoriaMetricsSource`` reads raw points with ``/api/v1/export`` (not PromQL), so both stores hand the
report exactly the points the collector wrote, and the same code computes the same answers from either.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlencode, urlsplit

from collector.storage import SqliteStorage
from collector.storage.sqlite import SqliteWriter

__all__ = ["ReportError", "StoreError", "Series", "PointSource", "SqliteSource", "VictoriaMetricsSource"]


class ReportError(Exception):
    """The report cannot be made from what it was given (zone, period, options); the message says why."""


class StoreError(ReportError):
    """The store could not be read (unreachable, refused, unreadable answer); the message names it."""


@dataclass(frozen=True)
class Series:
    """The points of one field of one series, by time."""

    tags: Mapping[str, str]
    points: list[tuple[int, float]]  # (time_ns, value)


class PointSource(Protocol):
    """A store the report reads from."""

    def series(self, measurement: str, field: str, zone: str, since_ns: int, until_ns: int) -> list[Series]:
        """Return every series of ``field`` of ``measurement`` in ``zone``, with its points in
        [since_ns, until_ns) in time order.

        Called from one thread; may be slow (a month of points). Raises StoreError when the store cannot
        be read; must not write points.
        """
        ...

    def describe(self) -> str:
        """Return where the points come from, for the report's header (no credentials)."""
        ...


class SqliteSource:
    """The embedded SQLite store the collector writes (``storage.type: sqlite``)."""

    def __init__(self, path: str) -> None:
        if not Path(path).is_file():
            raise ReportError(f"no SQLite store at {path}: give the collector's storage.path")
        self._path = path
        self._store = SqliteWriter(SqliteStorage(type="sqlite", path=path))

    def series(self, measurement: str, field: str, zone: str, since_ns: int, until_ns: int) -> list[Series]:
        """Return the series of one field, grouped by their tags."""
        from collector.storage import StorageError

        try:
            points = self._store.query(measurement, field, {"zone": zone}, since_ns, until_ns)
        except StorageError as exc:
            raise StoreError(f"cannot read the SQLite store: {exc}") from None
        grouped: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
        for p in points:
            grouped.setdefault(tuple(sorted(p.tags.items())), []).append((p.time_ns, float(p.value)))
        return [Series(dict(tags), pts) for tags, pts in grouped.items()]

    def describe(self) -> str:
        return f"SQLite store {self._path}"

    def close(self) -> None:
        """Close the database file."""
        self._store.close()


class VictoriaMetricsSource:
    """VictoriaMetrics, read through its export API (series ``<measurement>_<field>``)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ReportError(f"expected an http:// or https:// URL for VictoriaMetrics, got {url!r}")
        self._url = url.rstrip("/")
        self._shown = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"
        self._timeout = timeout

    def series(self, measurement: str, field: str, zone: str, since_ns: int, until_ns: int) -> list[Series]:
        """Return the raw points of ``<measurement>_<field>{zone=...}`` with their labels as tags."""
        selector = f'{{__name__="{measurement}_{field}",zone="{_escape(zone)}"}}'
        # The export API takes seconds and includes its end; points are stored in milliseconds.
        query = urlencode({"match[]": selector, "start": f"{since_ns / 1e9:.3f}",
                           "end": f"{(until_ns - 1_000_000) / 1e9:.3f}"})
        grouped: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
        try:
            with urllib.request.urlopen(f"{self._url}/api/v1/export?{query}", timeout=self._timeout) as r:
                for line in r:
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    tags = tuple(sorted((k, v) for k, v in item["metric"].items() if k != "__name__"))
                    grouped.setdefault(tags, []).extend(
                        (int(t) * 1_000_000, float(v)) for t, v in zip(item["timestamps"], item["values"],
                                                                        strict=True))
        except urllib.error.HTTPError as exc:
            raise StoreError(f"VictoriaMetrics at {self._shown} answered HTTP {exc.code} to an export of "
                              f"{measurement}_{field}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StoreError(f"cannot reach VictoriaMetrics at {self._shown}: {reason}") from None
        except (ValueError, KeyError) as exc:
            raise StoreError(f"VictoriaMetrics at {self._shown} sent an export this report cannot read: "
                              f"{exc}") from None
        return [Series(dict(tags), sorted(pts)) for tags, pts in grouped.items()]

    def describe(self) -> str:
        return f"VictoriaMetrics {self._shown}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
