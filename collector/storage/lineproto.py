"""Encode samples as Influx line protocol, the format both InfluxDB and VictoriaMetrics ingest.

One sample becomes one line::

    interface,device=sw1,ifname=ge-0/0/1,probe=p1,zone=dinh-vu in_octets=123i,oper_up=1i 1764289990000000000
    ^measurement ^tags, sorted by key                         ^fields, in sample order    ^time in ns

Rules, after the line-protocol reference:

- Escaping: in the measurement, comma and space; in tag keys, tag values and field keys, comma, equals
  sign and space. A backslash is written as two, so that a value ending in a backslash cannot escape
  the separator after it. Newline, carriage return and tab are written as ``\\n``, ``\\r`` and ``\\t``
  (two characters each): a raw line break would split the line, so such a value is stored with the
  two-character spelling.
- Field values: ``bool`` becomes ``1i``/``0i`` (VictoriaMetrics stores numbers only, so a boolean is
  stored, and read back, as 0 or 1); ``int`` becomes ``<n>i``, or ``<n>u`` when it is above 2**63 - 1 (a
  Counter64 near its top, which a signed integer would corrupt); ``float`` is written in its shortest
  round-tripping form (``repr``). NaN and infinities are left out: a value that is not a number is
  missing, never a sentinel.
- Tags with an empty value are left out (line protocol has no empty tag value). A sample without any
  field left produces no line.
- Anything else that would make an invalid line (an empty measurement, tag key or field key, a
  measurement starting with ``#``, a string or out-of-range integer in a field) raises ``ValueError``:
  VictoriaMetrics answers 204 to a bad line and drops it silently, so the encoder must never emit one.

The ingest hot path: an ``Encoder`` builds strings directly (no point objects) and remembers the encoded
``measurement,tags`` prefix of each series it has seen. ``Encoder.encode_rows`` goes further for the
collector's preparer: it checks, admits (series limit) and encodes the rows of a parsed payload in one pass,
without making ``wire.Sample``s, and leaves any row it is not sure of to the full decoder.

Owner labels (``collector.ownership``): an encoder given an owner lookup (``set_owners``) adds each series'
``own_<plmn>="1"`` labels to its prefix, once per series; every encoder drops a tag named like an owner label
that a sample brings (only the collector says who owns what).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from collector.cardinality import describe
from zonewatch import wire
from zonewatch.measurements import OWNER_LABEL_PREFIX

__all__ = ["Encoder", "Encoded", "encode_batches", "encode_sample", "escape_measurement", "escape_key"]

INT64_MAX: Final = 2**63 - 1
INT64_MIN: Final = -(2**63)
UINT64_MAX: Final = 2**64 - 1
_INF: Final = float("inf")

_CONTROL: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_MEASUREMENT_TABLE: Final = str.maketrans({"\\": "\\\\", ",": "\\,", " ": "\\ ", **_CONTROL})
_KEY_TABLE: Final = str.maketrans({"\\": "\\\\", ",": "\\,", " ": "\\ ", "=": "\\=", **_CONTROL})
_KEY_SPECIALS: Final = frozenset("\\, =\n\r\t")


def escape_measurement(name: str) -> str:
    """Return ``name`` escaped for the measurement position of a line."""
    if not name:
        raise ValueError("empty measurement name")
    if name[0] == "#":
        raise ValueError(f"measurement {name!r} starts with '#', which makes the line a comment")
    return name.translate(_MEASUREMENT_TABLE)


def escape_key(text: str) -> str:
    """Return ``text`` escaped for a tag key, tag value or field key."""
    if _KEY_SPECIALS.isdisjoint(text):
        return text
    return text.translate(_KEY_TABLE)


def _format_value(key: str, value: object) -> str | None:
    """Return the line-protocol text of one field value, or None for NaN and infinities."""
    if isinstance(value, bool):
        return "1i" if value else "0i"
    if isinstance(value, int):
        number = int(value)
        if INT64_MIN <= number <= INT64_MAX:
            return f"{number}i"
        if INT64_MAX < number <= UINT64_MAX:
            return f"{number}u"
        raise ValueError(f"field {key!r}: integer {number} does not fit in 64 bits")
    if isinstance(value, float):
        number_f = float(value)
        return repr(number_f) if -_INF < number_f < _INF else None
    raise ValueError(f"field {key!r}: {type(value).__name__} {value!r} is not a number or a boolean")


# (measurement, tags, probe) -> the series' owner labels (collector.ownership.Ownership.labels)
OwnerLookup = Callable[[str, Mapping[str, str], str], tuple[str, ...]]


def _series_prefix(measurement: str, tags: Mapping[str, str], zone: str, probe: str,
                   owners: OwnerLookup | None = None) -> str:
    """Return ``measurement,k=v,...`` with the batch's zone and probe tags and the owner labels ``owners`` gives
    (a sample's own tag named like an owner label is dropped), keys sorted."""
    merged = {k: v for k, v in tags.items() if not k.startswith(OWNER_LABEL_PREFIX)}
    merged["zone"] = zone
    merged["probe"] = probe
    if owners is not None:
        for label in owners(measurement, tags, probe):
            merged[label] = "1"
    out = [escape_measurement(measurement)]
    for key in sorted(merged):
        value = merged[key]
        if not key:
            raise ValueError(f"measurement {measurement!r}: empty tag key")
        if value:
            out.append(f"{escape_key(key)}={escape_key(value)}")
    prefix = ",".join(out)
    _check_unicode(prefix)
    return prefix


def _check_unicode(text: str) -> None:
    """Raise ValueError if ``text`` cannot be sent as UTF-8 (a lone surrogate from a JSON escape)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{text!r} is not valid Unicode") from None


def encode_sample(sample: wire.Sample, zone: str, probe: str) -> str | None:
    """Return the line for ``sample`` as sent by ``probe`` in ``zone``, or None if it has no field."""
    lines: list[str] = []
    Encoder()._add_lines(wire.Batch(zone, probe, 0, 0, (sample,)), lines)
    return lines[0] if lines else None


@dataclass(slots=True)
class Encoded:
    """One message's samples already encoded (by ``Encoder.encode_rows``): what a batch is to a line writer."""

    zone: str
    probe: str
    seq: int
    lines: list[str]
    samples: int  # samples the message stored (a sample without fields stores nothing, but counts)


class _NotPlain(Exception):
    """A row ``encode_rows`` leaves to the full decoder."""


_NOT_PLAIN: Final = _NotPlain()
_SAMPLE_KEYS: Final = frozenset({"m", "ts", "tags", "fields"})


class Encoder:
    """Encode batches to lines, remembering the encoded prefix of up to ``max_series`` series.

    Not thread-safe: each writer owns one and calls it from its writer thread.
    """

    def __init__(self, max_series: int = 200_000) -> None:
        self._max_series = max_series
        # (zone, probe) -> series key (as collector.cardinality keys it) -> encoded prefix; _cached counts them
        self._prefixes: dict[tuple[str, str], dict[tuple[str, ...], str]] = {}
        # The same for encode_rows, apart: a series in it passed the plain check (its measurement and tags are
        # plain), and maps to its prefix, or to "" until a line needs one. Counted in _cached too.
        self._plain: dict[tuple[str, str], dict[tuple[str, ...], str]] = {}
        self._cached = 0
        self._field_keys: dict[str, str] = {}
        self._plain_keys: dict[str, str] = {}  # field keys known to follow the wire's name rule, escaped
        self._owners: OwnerLookup | None = None

    def set_owners(self, owners: OwnerLookup | None) -> None:
        """Label every series from now on with the owner labels ``owners`` gives (None: none). Forgets every
        prefix made before. Called before the encoder is first used, or from the thread that uses it."""
        self._owners = owners
        self._prefixes.clear()
        self._plain.clear()
        self._cached = 0

    def encode(self, batches: Iterable[wire.Batch | Encoded]) -> list[str]:
        """Return one line per sample (that has a field) of every batch, in order."""
        lines: list[str] = []
        if len(self._field_keys) >= self._max_series:
            self._field_keys.clear()
        batch = None
        try:
            for batch in batches:
                if isinstance(batch, Encoded):
                    lines += batch.lines
                else:
                    self._add_lines(batch, lines)
        except ValueError as exc:
            where = f"zone {batch.zone} probe {batch.probe} seq {batch.seq}" if batch is not None else "batch"
            raise ValueError(f"{where}: {exc}") from None
        return lines

    def _series(self, zone: str, probe: str, plain: bool = False) -> dict[tuple[str, ...], str]:
        """Return the prefix cache of one probe's series (``encode_rows``' own if ``plain``), emptying every
        cache first if they are full."""
        if self._cached >= self._max_series:
            self._prefixes.clear()
            self._plain.clear()
            self._cached = 0
        caches = self._plain if plain else self._prefixes
        prefixes = caches.get((zone, probe))
        if prefixes is None:
            prefixes = caches[(zone, probe)] = {}
        return prefixes

    def _prefix(self, prefixes: dict[tuple[str, ...], str], key: tuple[str, ...], measurement: str,
                tags: Mapping[str, str], zone: str, probe: str) -> str:
        prefix = prefixes[key] = _series_prefix(measurement, tags, zone, probe, self._owners)
        self._cached += 1
        return prefix

    def _add_lines(self, batch: wire.Batch, lines: list[str]) -> None:
        """Append the line of every sample of ``batch`` that has a field; raise ValueError for one that
        cannot be a valid line. The per-sample work is written out in one loop: on the collector's hot path
        a function call per sample costs as much as the encoding."""
        append = lines.append
        zone = batch.zone
        probe = batch.probe
        prefixes = self._series(zone, probe)
        field_keys = self._field_keys
        inf, low, high = _INF, INT64_MIN, INT64_MAX
        for sample in batch.samples:
            parts: list[str] = []  # the field section
            for key, value in sample.fields.items():
                ekey = field_keys.get(key)
                if ekey is None:
                    if not key:
                        raise ValueError("empty field key")
                    _check_unicode(key)
                    ekey = field_keys[key] = escape_key(key)
                kind = type(value)
                # Fast paths for the exact built-in types; anything else goes through _format_value.
                if kind is float:
                    if -inf < value < inf:  # false for NaN too
                        parts.append(f"{ekey}={value!r}")
                elif kind is int and low <= value <= high:
                    parts.append(f"{ekey}={value}i")
                elif kind is bool:
                    parts.append(f"{ekey}=1i" if value else f"{ekey}=0i")
                else:
                    text = _format_value(key, value)
                    if text is not None:
                        parts.append(f"{ekey}={text}")
            if not parts:
                continue
            tags = sample.tags
            series = (sample.measurement, *tags, *tags.values())
            prefix = prefixes.get(series)
            if prefix is None:
                prefix = self._prefix(prefixes, series, sample.measurement, tags, zone, probe)
            append(f"{prefix} {','.join(parts)} {sample.time_ns}")

    def encode_rows(self, zone: str, probe: str, rows: list[Any], now_ns: int, limits: wire.Limits,
                    series: dict[tuple[str, ...], int],
                    room: Callable[[], bool]) -> tuple[Encoded, int, str] | None:
        """Check, admit and encode the ``samples`` rows of a parsed payload in one pass: the ingest fast path.

        The rows are the JSON objects as parsed, not ``wire.Sample``s. A row is *plain* if it passes the
        checks of ``wire.decode`` and ``wire.check_limits`` (``now_ns`` is the arrival time) by their fast
        forms: names already in ``wire.CHECKED_NAMES``, ASCII tag values (a series' measurement and tags only
        the first time: the encoder remembers each series it found plain). Each plain row is admitted as
        ``SeriesLimit.admit`` would (``series`` and ``room`` are from ``SeriesLimit.table``). If every row is
        plain, return the message's lines (``seq`` is left 0 for the caller), how many samples were refused as
        new series over the limit, and one of them as an example; otherwise return None, with the series this
        call added taken out again, and the caller decodes the message in full (which finds what is wrong,
        or accepts what is merely unusual). For every payload the two paths store the same lines.
        """
        if len(rows) > limits.max_rows:
            return None
        if len(self._plain_keys) >= self._max_series:
            self._plain_keys.clear()
        good = wire.CHECKED_NAMES
        allowed = _SAMPLE_KEYS
        max_tag, max_tags, max_fields = wire.MAX_TAG_VALUE, limits.max_tags, limits.max_fields
        oldest, newest = max(0, now_ns - limits.max_past_ns), now_ns + limits.max_future_ns
        low, high, top = INT64_MIN, INT64_MAX, UINT64_MAX
        plain = self._series(zone, probe, plain=True)
        field_keys = self._plain_keys
        lines: list[str] = []
        append = lines.append
        added: list[tuple[str, ...]] = []  # series this call admitted for the first time
        kept = refused = 0
        example = ""
        try:
            for row in rows:
                if type(row) is not dict:
                    raise _NOT_PLAIN
                name, ts, tags, fields = row.get("m"), row.get("ts"), row.get("tags"), row.get("fields")
                if tags is None or fields is None or len(row) != 4:  # else its four keys are the four read
                    if not row.keys() <= allowed:
                        raise _NOT_PLAIN
                    if tags is None:
                        tags = {}
                    if fields is None:
                        fields = {}
                if type(ts) is not int or not oldest <= ts <= newest or type(tags) is not dict \
                        or type(fields) is not dict or len(tags) > max_tags or len(fields) > max_fields:
                    raise _NOT_PLAIN
                parts: list[str] = []
                for k, v in fields.items():
                    ekey = field_keys.get(k)
                    if ekey is None:
                        if k not in good:
                            raise _NOT_PLAIN
                        ekey = field_keys[k] = escape_key(k)
                    kind = type(v)
                    if kind is int:
                        if low <= v <= high:
                            parts.append(f"{ekey}={v}i")
                        elif high < v <= top:
                            parts.append(f"{ekey}={v}u")
                        else:
                            raise _NOT_PLAIN
                    elif kind is float:
                        if v - v != 0:  # NaN or an infinity
                            raise _NOT_PLAIN
                        parts.append(f"{ekey}={v!r}")
                    elif kind is bool:
                        parts.append(f"{ekey}=1i" if v else f"{ekey}=0i")
                    else:
                        raise _NOT_PLAIN
                key = (name, *tags, *tags.values())  # TypeError if a tag value is a list or an object
                prefix = plain.get(key)
                if prefix is None:  # a series not checked yet: its measurement and tags
                    if type(name) is not str or name not in good:
                        raise _NOT_PLAIN
                    for k, v in tags.items():
                        if k not in good or type(v) is not str or not v or len(v) > max_tag or not v.isascii():
                            raise _NOT_PLAIN
                    prefix = plain[key] = ""
                    self._cached += 1
                if key not in series:
                    if not room():
                        if not refused:
                            example = describe(key[0], tags)   # key[0]: the name, a str (checked with its series)
                        refused += 1
                        continue
                    added.append(key)
                series[key] = now_ns
                kept += 1
                if parts:
                    if not prefix:
                        prefix = plain[key] = _series_prefix(key[0], tags, zone, probe, self._owners)
                    append(f"{prefix} {','.join(parts)} {ts}")
        except (_NotPlain, ValueError, TypeError):  # a prefix that cannot be encoded, a tag value that is no
            for key in added:                        # string: the full path says why
                series.pop(key, None)
            return None
        return Encoded(zone, probe, 0, lines, kept), refused, example


def encode_batches(batches: Iterable[wire.Batch]) -> list[str]:
    """Return the lines of every sample of every batch (a fresh ``Encoder``; keep one to reuse its cache)."""
    return Encoder().encode(batches)
