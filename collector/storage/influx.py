"""Write line protocol to VictoriaMetrics or InfluxDB 2 through influxdb-client.

Lines are encoded by ``lineproto`` and sent with the client's synchronous write API, at most
``CHUNK_LINES`` lines per request to ``<url>/api/v2/write?precision=ns``. VictoriaMetrics ignores org,
bucket and token (placeholders are sent) and names each series ``<measurement>_<field>``; it stores
timestamps in milliseconds and values as float64. InfluxDB 2 uses all three.

``prepare`` encodes the request bodies (bytes) in the collector's preparer thread and returns the call
that posts them, which its sender thread makes while the next batches are being encoded; ``write`` does
both at once, in the sender thread. Each has its own ``Encoder`` (an encoder is not thread-safe); the
preparer's is ``encoder``, with which the collector encodes most messages before they become batches (an
InfluxWriter is a ``LineWriter``), and those ``Encoded`` messages are sent as they are.

A write that fails part-way has stored the chunks before the failing one; the caller writes the whole
call again, which overwrites those points with the same values.

Error mapping (``StorageError.retryable``)::

    connection refused or reset, timeout, TLS failure    True
    HTTP 5xx, 408, 429                                   True
    HTTP 401, 403, 404 (bad token, no such bucket/path)  True: a configuration fault, not bad data;
                                                         the collector keeps the batches until fixed
    other HTTP 4xx (bad data)                            False
    a sample that cannot be encoded                      False
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Final, cast
from urllib.parse import urlsplit, urlunsplit

import urllib3
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException

from collector.storage import InfluxDBStorage, StorageError, VictoriaMetricsStorage
from collector.storage.lineproto import Encoded, Encoder, OwnerLookup
from zonewatch import wire

__all__ = ["InfluxWriter", "CHUNK_LINES"]

CHUNK_LINES: Final = 5_000
_PIECE_LINES: Final = 256  # lines encoded at a time into a body: some 50 KB, below the allocator's mmap threshold
_PLACEHOLDER: Final = "zonewatch"  # org and bucket sent to VictoriaMetrics, which ignores them
_RETRYABLE_4XX: Final = frozenset({401, 403, 404, 408, 429})
_MAX_DETAIL: Final = 300
# The client annotates write_precision as WritePrecision but its constants are plain strings.
_NS: Final = cast(WritePrecision, WritePrecision.NS)


def _display_url(url: str) -> str:
    """Return ``url`` without any user:password part."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


class InfluxWriter:
    """Writer for VictoriaMetrics and InfluxDB 2 over the InfluxDB v2 write API."""

    def __init__(self, config: VictoriaMetricsStorage | InfluxDBStorage) -> None:
        self._url = config.url
        self._shown_url = _display_url(config.url)
        if isinstance(config, InfluxDBStorage):
            self._token = config.token.get_secret_value()
            self._org, self._bucket = config.org, config.bucket
        else:
            self._token = ""
            self._org = self._bucket = _PLACEHOLDER
        # No I/O here: the client opens connections on the first request.
        self._client = InfluxDBClient(url=config.url, token=self._token, org=self._org,
                                      timeout=max(1, round(config.timeout * 1000)))
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self.encoder = Encoder()  # prepare's and the preparer's (LineWriter), in the preparer thread
        self._write_encoder = Encoder()  # write's, in the sender thread

    def set_owners(self, owners: OwnerLookup | None) -> None:
        """Label every series written from now on with its owner labels (``collector.ownership``). Called before
        the collector's threads start (both encoders forget the prefixes they made)."""
        self.encoder.set_owners(owners)
        self._write_encoder.set_owners(owners)

    def write(self, batches: Sequence[wire.Batch | Encoded]) -> None:
        """Send every sample of ``batches``, in chunks of at most CHUNK_LINES lines."""
        self._send(self._bodies(self._write_encoder, batches))

    def prepare(self, batches: Sequence[wire.Batch | Encoded]) -> Callable[[], None]:
        """Encode ``batches`` now; return the call that sends them (see ``collector.storage.prepare_write``)."""
        return partial(self._send, self._bodies(self.encoder, batches))

    def _bodies(self, encoder: Encoder, batches: Sequence[wire.Batch | Encoded]) -> list[bytes]:
        """Return the request bodies for ``batches``: at most CHUNK_LINES lines each, joined by newlines.

        A body is joined as bytes from pieces of _PIECE_LINES lines, not made one str and then encoded: that str
        (about a megabyte) would be allocated and freed at once, glibc's malloc gives such blocks back to the
        system, and the next one is faulted in page by page again (parts of agent-shaped messages: 90% fewer
        page faults in the preparer thread, a sixth less time here)."""
        try:
            lines = encoder.encode(batches)
        except ValueError as exc:
            raise StorageError(f"cannot encode for {self._shown_url}: {exc}", retryable=False) from None
        bodies = []
        for start in range(0, len(lines), CHUNK_LINES):
            end = min(start + CHUNK_LINES, len(lines))
            bodies.append(b"\n".join(["\n".join(lines[at:min(at + _PIECE_LINES, end)]).encode()
                                      for at in range(start, end, _PIECE_LINES)]))
        return bodies

    def _send(self, bodies: list[bytes]) -> None:
        """Post each body; the first failure raises (the caller sends them all again)."""
        for body in bodies:
            try:
                self._write_api.write(bucket=self._bucket, org=self._org, record=body,
                                      write_precision=_NS)
            except (InfluxDBError, urllib3.exceptions.HTTPError, OSError) as exc:
                raise self._error(exc) from None

    def ping(self) -> bool:
        """Return True if the server answers its ping endpoint."""
        return bool(self._client.ping())

    def close(self) -> None:
        """Close the write API and the HTTP connection pool."""
        self._write_api.close()  # type: ignore[no-untyped-call]  # unannotated in the client
        self._client.close()  # type: ignore[no-untyped-call]

    def _error(self, exc: BaseException) -> StorageError:
        """Return the StorageError for a failed request, naming the URL and never the token."""
        if isinstance(exc, ApiException) and exc.status:
            status = int(exc.status)
            detail = str(getattr(exc, "message", None) or exc.reason or "").strip()
            retryable = status >= 500 or status in _RETRYABLE_4XX
            message = f"write to {self._shown_url} failed: HTTP {status}: {detail}"
        elif isinstance(exc, urllib3.exceptions.LocationValueError):
            retryable = False
            message = f"write to {self._shown_url} failed: bad URL: {exc}"
        else:
            retryable = True
            message = f"write to {self._shown_url} failed: {type(exc).__name__}: {exc}"
        if self._token:
            message = message.replace(self._token, "**********")
        return StorageError(message[:_MAX_DETAIL], retryable=retryable)
