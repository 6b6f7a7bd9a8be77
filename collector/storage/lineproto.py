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

``encode_batches`` is on the ingest hot path: it builds strings directly (no point objects) and an
``Encoder`` remembers the encoded ``measurement,tags`` prefix of each series it has seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from agent import wire

__all__ = ["Encoder", "encode_batches", "encode_sample", "escape_measurement", "escape_key"]

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


def _series_prefix(measurement: str, tags: Mapping[str, str], zone: str, probe: str) -> str:
    """Return ``measurement,k=v,...`` with the batch's zone and probe tags, keys sorted."""
    merged = dict(tags)
    merged["zone"] = zone
    merged["probe"] = probe
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


class Encoder:
    """Encode batches to lines, remembering the encoded prefix of up to ``max_series`` series.

    Not thread-safe: each writer owns one and calls it from its writer thread.
    """

    def __init__(self, max_series: int = 200_000) -> None:
        self._max_series = max_series
        self._prefixes: dict[tuple[str, ...], str] = {}
        self._field_keys: dict[str, str] = {}

    def encode(self, batches: Iterable[wire.Batch]) -> list[str]:
        """Return one line per sample (that has a field) of every batch, in order."""
        lines: list[str] = []
        if len(self._field_keys) >= self._max_series:
            self._field_keys.clear()
        batch = None
        try:
            for batch in batches:
                self._add_lines(batch, lines)
        except ValueError as exc:
            where = f"zone {batch.zone} probe {batch.probe} seq {batch.seq}" if batch is not None else "batch"
            raise ValueError(f"{where}: {exc}") from None
        return lines

    def _add_lines(self, batch: wire.Batch, lines: list[str]) -> None:
        """Append the line of every sample of ``batch`` that has a field; raise ValueError for one that
        cannot be a valid line. The per-sample work is written out in one loop: on the collector's hot path
        a function call per sample costs as much as the encoding."""
        append = lines.append
        prefixes = self._prefixes
        field_keys = self._field_keys
        inf, low, high = _INF, INT64_MIN, INT64_MAX
        zone = batch.zone
        probe = batch.probe
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
            # Keys then values, flat: cheaper to build and hash than a tuple of pairs, and as exact.
            series = (zone, probe, sample.measurement, *tags, *tags.values())
            prefix = prefixes.get(series)
            if prefix is None:
                if len(prefixes) >= self._max_series:
                    prefixes.clear()
                prefix = prefixes[series] = _series_prefix(sample.measurement, tags, zone, probe)
            append(f"{prefix} {','.join(parts)} {sample.time_ns}")


def encode_batches(batches: Iterable[wire.Batch]) -> list[str]:
    """Return the lines of every sample of every batch (a fresh ``Encoder``; keep one to reuse its cache)."""
    return Encoder().encode(batches)
