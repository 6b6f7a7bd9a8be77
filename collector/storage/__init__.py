"""Where the collector stores samples: one writer interface, two backends.

Layout::

    collector/storage/
      __init__.py    Writer and LineWriter protocols, prepare_write, StorageError, config models, the registry
                     (STORAGES: type -> Backend), make_writer
      lineproto.py   samples -> Influx line protocol (pure, on the hot path)
      influx.py      InfluxWriter: line protocol over HTTP to VictoriaMetrics or InfluxDB 2
      sqlite.py      SqliteWriter: the embedded default, plus read helpers for reports and tests

Every backend stores the same thing: for each sample of each batch, one point of ``sample.measurement``
at ``sample.time_ns``, tagged with the sample's tags plus ``zone`` and ``probe`` from the batch header
(the header wins over a sample's own ``zone``/``probe`` tag), with the sample's fields as values.
Booleans are stored as 0 and 1. In VictoriaMetrics a point becomes one series per field, named
``<measurement>_<field>`` (``interface_in_octets``), its tags becoming labels.

Exceptions::

    StorageError     a write did not complete; ``retryable`` says whether the same data may succeed later
                     (connection refused, timeout, HTTP 5xx, 408, 429, database busy: True) or never will
                     (HTTP 4xx, data that cannot be encoded: False)

Configuration (``storage:`` in the collector config, keyed by ``type``)::

    {type: victoriametrics, url: http://vm:8428, timeout: 10s}
    {type: influxdb, url: http://influx:8086, org: zone-authority, bucket: zonewatch,
     token: {env: INFLUX_TOKEN}}
    {type: sqlite, path: /var/lib/zonewatch/samples.db}

Registry: ``STORAGES`` maps each ``type`` to its ``Backend``: the writer's factory and what the store declares
(``lines``: it takes Influx line protocol, so the ingest encodes for it on its fast path; ``same_point``: a
point written again replaces the first). ``make_writer`` looks the type up and holds the writer to the
declaration; a meta-test keeps ``STORAGES`` equal to the types ``StorageConfig`` accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol, TypeGuard, Union
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from zonewatch import strict, wire

if TYPE_CHECKING:
    from collector.storage.lineproto import Encoded, Encoder

__all__ = [
    "Writer",
    "LineWriter",
    "takes_lines",
    "prepare_write",
    "StorageError",
    "VictoriaMetricsStorage",
    "InfluxDBStorage",
    "SqliteStorage",
    "StorageConfig",
    "Backend",
    "STORAGES",
    "make_writer",
]


class StorageError(Exception):
    """A write that did not complete; ``retryable`` is True when the same data may succeed later."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Writer(Protocol):
    """A time-series store the collector writes every accepted batch to."""

    def write(self, batches: Sequence[wire.Batch]) -> None:
        """Store every sample of every batch, or raise StorageError.

        Called by the collector's sender thread (never concurrently with itself, with a send returned by
        ``prepare``, or with close) with batches taken from the durable queue; the queue releases them
        only after this returns. A batch may be written again after a failure or a restart, so a write
        must be idempotent: the same series, field and time overwrite the earlier value. Must not retry
        or sleep on its own (the caller owns retries and backoff), and must not keep references to the
        batches.
        """
        ...

    def close(self) -> None:
        """Release connections and files.

        Called once, after the collector's last write at shutdown. No method is called afterwards.
        Must not raise for a store that is unreachable.
        """
        ...


class LineWriter(Writer, Protocol):
    """A writer that stores Influx line protocol, and so also takes messages already encoded.

    ``encoder`` is for the collector's preparer thread (never the sender's): with it the preparer encodes a
    message's rows straight from the parsed payload (``Encoder.encode_rows``) and hands the ``Encoded``
    result, among ordinary batches, to ``prepare`` and ``write``, which store its lines as they are.
    """

    encoder: Encoder

    def write(self, batches: Sequence[wire.Batch | Encoded]) -> None:
        """As ``Writer.write``, for batches and encoded messages."""
        ...

    def prepare(self, batches: Sequence[wire.Batch | Encoded]) -> Callable[[], None]:
        """Encode what is not encoded yet; return the call that writes it all (see ``prepare_write``)."""
        ...


def takes_lines(writer: Any) -> TypeGuard[LineWriter]:
    """Return True if ``writer`` is a LineWriter (has an ``encoder`` and ``prepare``)."""
    return hasattr(writer, "encoder") and hasattr(writer, "prepare")


def prepare_write(writer: Writer, batches: Sequence[wire.Batch]) -> Callable[[], None]:
    """Return a call that writes ``batches``, with what can be done before sending done now.

    A writer may have ``prepare(batches) -> Callable[[], None]``: the collector's preparer thread calls it
    (one thread, concurrently with the sender's writes), and its sender thread calls what it returns,
    once or, after a retryable StorageError, again; that call has the contract of ``write``. ``prepare``
    raises StorageError (not retryable) when some batch can never be written. Without ``prepare``, the
    call is ``write(batches)``.
    """
    prepare: Callable[[Sequence[wire.Batch]], Callable[[], None]] | None = getattr(writer, "prepare", None)
    if prepare is not None:
        return prepare(batches)
    return partial(writer.write, batches)


def _check_http_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {url!r}")
    return url.rstrip("/")


class VictoriaMetricsStorage(strict.Strict):
    """Write to VictoriaMetrics through its InfluxDB-compatible endpoint."""

    type: Literal["victoriametrics"]
    url: str
    timeout: strict.Duration = 10.0

    @field_validator("url")
    @classmethod
    def check_url(cls, url: str) -> str:
        """Reject a URL that is not http(s) with a host; drop a trailing slash."""
        return _check_http_url(url)


class InfluxDBStorage(strict.Strict):
    """Write to an InfluxDB 2.x (or 3.x, v2 write API) bucket."""

    type: Literal["influxdb"]
    url: str
    org: str
    bucket: str
    token: strict.Secret
    timeout: strict.Duration = 10.0

    @field_validator("url")
    @classmethod
    def check_url(cls, url: str) -> str:
        """Reject a URL that is not http(s) with a host; drop a trailing slash."""
        return _check_http_url(url)


class SqliteStorage(strict.Strict):
    """Store into a local SQLite file: the embedded default for one site and the demo."""

    type: Literal["sqlite"]
    path: str
    retention: strict.Duration = 400 * 86400.0   # points older than this are pruned (in small steps); 0: keep all
    prune_every: strict.PositiveDuration = 3600.0  # how often the pruning looks for old points


StorageConfig = Annotated[
    Union[VictoriaMetricsStorage, InfluxDBStorage, SqliteStorage],
    Field(discriminator="type"),
]


@dataclass(frozen=True)
class Backend:
    """One storage type: its writer's factory (validates, no I/O) and what its store does.

    ``lines``       the writer is a ``LineWriter`` (``takes_lines``): it stores Influx line protocol, and the
                    ingest hands it messages already encoded (its fast path)
    ``same_point``  a point written again (same series, field and time) replaces the first: the ingest writes
                    batches again after a failure or a crash and relies on it (``Writer.write``)
    """

    make: Callable[[Any], Writer]
    lines: bool
    same_point: bool


def _sqlite(config: SqliteStorage) -> Writer:
    from collector.storage.sqlite import SqliteWriter  # imported on use: each backend brings its own libraries

    return SqliteWriter(config)


def _influx(config: VictoriaMetricsStorage | InfluxDBStorage) -> Writer:
    from collector.storage.influx import InfluxWriter

    return InfluxWriter(config)


STORAGES: dict[str, Backend] = {
    # same_point: with -dedup.minScrapeInterval=1ms, as the central install runs it
    "victoriametrics": Backend(_influx, lines=True, same_point=True),
    "influxdb": Backend(_influx, lines=True, same_point=True),    # by series key and time
    "sqlite": Backend(_sqlite, lines=False, same_point=True),     # by primary key (series, field, time)
}


def make_writer(config: VictoriaMetricsStorage | InfluxDBStorage | SqliteStorage,
                storages: Mapping[str, Backend] = STORAGES) -> Writer:
    """Return the writer for ``config``; no connection is made until the first write. Raise ValueError for a
    type that is not registered, or whose store or writer is not what the collector needs or what it declares."""
    backend = storages.get(config.type)
    if backend is None:
        raise ValueError(f"storage type {config.type!r} is not registered: add its Backend to STORAGES in "
                         f"collector/storage/__init__.py (registered: {', '.join(sorted(storages))})")
    if not backend.same_point:
        raise ValueError(f"storage type {config.type!r} does not replace a point written again: the collector "
                         "writes batches again after a failure or a crash, which would store them twice")
    writer = backend.make(config)
    if takes_lines(writer) != backend.lines:
        writer.close()
        raise ValueError(f"storage type {config.type!r} declares lines={backend.lines} but its writer "
                         f"({type(writer).__name__}) {'is not' if backend.lines else 'is'} a LineWriter "
                         "(encoder and prepare): fix the declaration in STORAGES or the writer")
    return writer
