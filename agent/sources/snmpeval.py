"""How a profile turns the values read from a device into samples: the semantics of agent.profiles' language.

Pure (no I/O, no clock): ``SnmpSource`` (agent.sources.snmp) reads the columns, scalars and joins a profile
names and hands them here with a ``Context`` (the device's settings, the poll's time, what the previous poll
saw). ``scalar_sample`` makes a scalar group's sample, ``table_samples`` a table's (rows, merged rows,
aggregates), ``field_value`` one field spec's value for one row. Every rule of a spec (when/unless, missing,
decode, scale, unit, round, valid, one_of, above, detect) is applied in the order the profile format documents.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from agent import profiles
from agent.profiles import Condition, FieldSpec, Scalars, Table, TagSource
from agent.snmpclient import SnmpValue
from zonewatch.wire import FieldValue, Sample

if TYPE_CHECKING:
    from agent.sources.snmp import SnmpConfig

__all__ = ["Context", "Row", "TICKS_WRAP", "scalar_sample", "table_samples", "field_value", "went_backwards",
           "as_int", "as_text", "index_key", "INDEX", "MAX_TAG"]

TICKS_WRAP: Final = 2**32  # TimeTicks is 32-bit: sysUpTime wraps after about 497 days
MAX_TAG: Final = 256
INDEX: Final = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # an OID suffix: a row index
_FIELD_MIN, _FIELD_MAX = -(2**63), 2**64 - 1  # what a field may hold (wire contract): signed 64-bit to Counter64

Row = dict[str, SnmpValue]


def index_key(index: str) -> tuple[int, ...]:
    return tuple(int(part) for part in index.split("."))


@dataclass
class Context:
    """What a profile's evaluation may use besides the values read."""

    config: SnmpConfig
    now_ns: int
    previous: dict[str, tuple[int, int]]
    profile: str = ""
    optical_unit: str = "dbm_hundredths"


def scalar_sample(group: Scalars, row: Row, context: Context) -> tuple[dict[str, str], dict[str, FieldValue]]:
    context.optical_unit = _resolve_optical_unit(group.fields, [row], context.config.optical_unit)
    return _tags(group.tags, row, "", context), _fields(group.fields, row, context)


def table_samples(table: Table, columns: dict[str, dict[str, SnmpValue]],
                   joins: dict[str, dict[str, SnmpValue]], context: Context) -> list[Sample]:
    """Return the samples of one table: one per row, or one per distinct tags with ``merge_rows``."""
    indexes = sorted({i for column in columns.values() for i in column}, key=index_key)
    rows: list[tuple[str, Row]] = []
    under = {name: _first_under(joins.get(name, {})) for name, join in table.joins.items() if join.index_prefix}
    for index in indexes:
        row: Row = {name: column[index] for name, column in columns.items() if index in column}
        for name, join in table.joins.items():
            at = index if join.by == "index" else _parent(index) if join.by == "parent_index" else \
                _join_index(row.get(join.by), join.pointer)
            found = under[name] if join.index_prefix else joins.get(name, {})
            if at is not None and at in found:
                row[name] = found[at]
        if table.skip_row_when and all(_holds(c, row) for c in table.skip_row_when):
            continue
        rows.append((index, row))
    context.optical_unit = _resolve_optical_unit(table.fields, [r for _, r in rows], context.config.optical_unit)

    merged: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], dict[str, FieldValue]]] = {}
    samples: list[Sample] = []
    computed: list[tuple[dict[str, str], dict[str, FieldValue]]] = []  # every row, for the aggregate
    for index, row in rows:
        tags = _tags(table.tags, row, index, context)
        fields = _fields(table.fields, row, context)
        computed.append((tags, fields))
        if table.keep_rows_when and not any(_passes(test, fields) for test in table.keep_rows_when):
            continue
        fields = {k: v for k, v in fields.items() if not k.startswith("_")}  # '_' fields are never sent
        if not table.merge_rows:
            if fields or table.keep_empty:
                samples.append(Sample(table.measurement, tags, fields, context.now_ns))
            continue
        _, into = merged.setdefault(tuple(sorted(tags.items())), (tags, {}))
        into.update((k, v) for k, v in fields.items() if k not in into)  # the first row's value wins
    samples += [Sample(table.measurement, tags, fields, context.now_ns) for tags, fields in merged.values()
                if fields or table.keep_empty]
    if table.aggregate is not None:
        samples += _aggregate(table.aggregate, computed, context.now_ns)
    return samples


def _passes(test: profiles.RowTest, fields: Mapping[str, FieldValue]) -> bool:
    """Return True if the row's field is below or above the test's number (a field it lacks fails)."""
    value = fields.get(test.field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return value < test.below if test.below is not None else value > (test.above or 0.0)


def _aggregate(spec: profiles.Aggregate, rows: list[tuple[dict[str, str], dict[str, FieldValue]]],
               now_ns: int) -> list[Sample]:
    """Return one sample per distinct value of the ``by`` tags, computed over every row of that group."""
    groups: dict[tuple[str, ...], tuple[dict[str, str], list[dict[str, FieldValue]]]] = {}
    for tags, fields in rows:
        key = tuple(tags.get(tag, "") for tag in spec.by)
        group_tags = {"device": tags["device"], **{tag: tags[tag] for tag in spec.by if tag in tags}}
        groups.setdefault(key, (group_tags, []))[1].append(fields)
    samples = []
    for tags, members in groups.values():
        out: dict[str, FieldValue] = {}
        for name, field in spec.fields.items():
            value = _reduce(field, members)
            if value is not None:
                out[name] = value
        samples.append(Sample(spec.measurement, tags, out, now_ns))
    return samples


def _reduce(spec: profiles.AggregateField, members: list[dict[str, FieldValue]]) -> FieldValue | None:
    """Return one aggregate field over a group's rows; None for a min, max or median of no value."""
    function, name = spec.function()
    if function == "count" and name == "rows":
        return len(members)
    if function in ("count_true", "count_false"):
        return sum(1 for fields in members if fields.get(name) is (function == "count_true"))
    values = [v for fields in members if not isinstance(v := fields.get(name), bool) and isinstance(v, int | float)]
    if function == "count":
        return sum(1 for v in values
                   if (spec.below is None or v < spec.below) and (spec.above is None or v > spec.above))
    if not values:
        return None
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    ordered, middle = sorted(values), len(values) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return round(float(median), 3) + 0.0


def _parent(index: str) -> str | None:
    """Return the index without its last sub-identifier (None for a one-part index)."""
    head, _, _ = index.rpartition(".")
    return head or None


def _join_index(value: SnmpValue, pointer: str | None = None) -> str | None:
    """Return the index a value names: a non-negative integer, or the index part of an OID under ``pointer``."""
    if pointer is not None:
        suffix = value[len(pointer) + 1 :] if isinstance(value, str) and value.startswith(pointer + ".") else ""
        return suffix if INDEX.match(suffix) else None
    number = as_int(value)
    return str(number) if number is not None and number >= 0 else None


def _first_under(column: dict[str, SnmpValue]) -> dict[str, SnmpValue]:
    """Map every proper prefix of a column's indexes to the value at the lowest index under it."""
    out: dict[str, SnmpValue] = {}
    for index in sorted(column, key=index_key):
        parts = index.split(".")
        for end in range(1, len(parts)):
            out.setdefault(".".join(parts[:end]), column[index])
    return out


def _tags(specs: dict[str, list[TagSource]], row: Row, index: str,
          context: Context) -> dict[str, str]:
    tags = {"device": context.config.name}
    for name, sources in specs.items():
        for source in sources:
            value = _tag_value(source, row, index, tags, context)
            if value:
                tags[name] = value
                break
    return tags


def _tag_value(source: TagSource, row: Row, index: str, tags: dict[str, str], context: Context) -> str:
    config = context.config
    if source.column is not None:
        if not all(_holds(c, row) for c in source.when):
            return ""
        text = as_text(row.get(source.column))
        if source.extract is not None:
            found = re.search(source.extract, text)
            return (found.group(1) or "").strip() if found else ""
        return text
    if source.text is not None:
        parent, _, last = index.rpartition(".")
        return source.text.format(index=index, index_parent=parent or index, index_last=last)[:MAX_TAG]
    if source.config is not None:
        return (config.site or "") if source.config == "site" else config.name
    key = tags.get(source.links_of or "")
    return config.links.get(key, "") if key is not None else ""


def _fields(specs: dict[str, list[FieldSpec]], row: Row, context: Context) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {}
    for name, alternatives in specs.items():
        for alternative in alternatives:
            value = field_value(alternative, row, context, f"{context.profile}.{name}")
            if value is not None:
                fields[name] = value
                break
    return fields


def field_value(spec: FieldSpec, row: Row, context: Context, key: str) -> FieldValue | None:
    """Return one field's value from a row, or None when it is missing."""
    if spec.any is not None:
        results = [field_value(s, row, context, key) for s in spec.any]
        if True in results:
            return True
        return False if False in results else None
    if not all(_holds(c, row) for c in spec.when) or any(_holds(c, row) for c in spec.unless):
        return None
    raw = as_int(row.get(spec.column or ""))
    if raw is None or raw in spec.missing:
        return None
    if spec.one_of is not None:
        return raw in spec.one_of
    if spec.above is not None:
        return raw > spec.above
    if spec.value is not None:
        return spec.value
    if spec.detect is not None:
        previous, context.previous[key] = context.previous.get(key), (raw, context.now_ns)
        return True if previous is not None and went_backwards(previous, raw, context.now_ns) else None
    value: int | float | None = raw
    if spec.decode == "entity_sensor":
        value = _entity_sensor(raw, row)
    if value is not None and spec.scale is not None:
        value = _scaled(value, spec.scale)
    if value is not None and spec.unit is not None:
        value = _dbm(value, context.optical_unit if spec.unit == "optical_unit" else spec.unit)
    if value is None:
        return None
    if spec.decode is not None or spec.scale is not None or spec.unit is not None:
        value = float(value)  # a field keeps one type: a converted value is always a float
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if spec.round is not None:
        value = round(value, spec.round) if spec.round else round(value)
    if isinstance(value, float):
        value += 0.0  # no -0.0
    elif not _FIELD_MIN <= value <= _FIELD_MAX:  # "round: 0" of a scaled Counter64 may go beyond 64 bits
        return None
    if spec.valid is not None and not spec.valid[0] <= value <= spec.valid[1]:
        return None
    return value


def _holds(condition: Condition, row: Row) -> bool:
    """Return True if the condition holds for any of its columns the row has."""
    limit = as_int(row.get(condition.above_column)) if condition.above_column is not None else None
    for name in [condition.column] if condition.column is not None else condition.columns or []:
        if name not in row:
            continue
        value = row[name]
        if condition.matches is not None:
            if re.search(condition.matches, as_text(value)):
                return True
        elif condition.bit is not None:
            if isinstance(value, bytes) and condition.bit // 8 < len(value):
                if value[condition.bit // 8] & (0x80 >> condition.bit % 8):
                    return True
        else:
            number = as_int(value)
            if number is None:
                continue
            if condition.one_of is not None and number in condition.one_of:
                return True
            if condition.above is not None and number > condition.above:
                return True
            if limit is not None and number > limit:
                return True
    return False


def went_backwards(previous: tuple[int, int], ticks: int, now_ns: int) -> bool:
    """Return True if sysUpTime ``ticks`` went back since ``previous`` (ticks, time) for another reason than a wrap."""
    before, then_ns = previous
    if ticks >= before:
        return False
    elapsed = max(now_ns - then_ns, 0) // 10_000_000  # in ticks (1/100 s)
    slack = elapsed // 10 + 100  # polls are not exactly on time
    return before + elapsed + slack < TICKS_WRAP  # otherwise the counter was due to wrap


def _entity_sensor(raw: int, row: Row) -> int | float | None:
    """Decode an ENTITY-SENSOR value: raw x 10^(3 x (scale - 9)) x 10^(-precision); None if they are bogus."""
    scale, precision = as_int(row.get("scale")), as_int(row.get("precision"))
    if scale is None or precision is None or not 1 <= scale <= 17 or not -8 <= precision <= 9:
        return None
    exponent = 3 * (scale - 9) - precision
    power = int(10**abs(exponent))
    return raw * power if exponent >= 0 else raw / power


def _scaled(value: int | float, scale: float) -> int | float:
    """Multiply by ``scale``; divide by its inverse when that is an integer (exact for 0.01, 0.1 ...)."""
    inverse = 1 / scale
    if abs(scale) < 1 and abs(inverse - round(inverse)) < 1e-9 * abs(inverse):
        return value / round(inverse)
    return value * scale


_MILLIWATTS: Final[dict[str, float]] = {"watt_to_dbm": 1e3, "milliwatt_to_dbm": 1.0, "microwatt_to_dbm": 1e-3}


def _dbm(value: int | float, unit: str) -> int | float | None:
    """Convert a power reading to dBm (10 log10 of milliwatts); None for zero or less."""
    if unit == "dbm":
        return value
    if unit == "dbm_hundredths":
        return value / 100
    if unit == "microwatt":
        unit = "microwatt_to_dbm"
    milliwatts = value * _MILLIWATTS[unit]
    return 10 * math.log10(milliwatts) if milliwatts > 0 else None


def _resolve_optical_unit(specs: dict[str, list[FieldSpec]], rows: list[Row], setting: str) -> str:
    """Return the unit for ``unit: optical_unit`` fields: the setting, or for "auto" the one the readings show."""
    if setting != "auto":
        return setting
    for spec in (s for alternatives in specs.values() for top in alternatives for s in top.specs()):
        if spec.unit != "optical_unit":
            continue
        for row in rows:
            raw = as_int(row.get(spec.column or ""))
            if raw is not None and raw not in spec.missing and raw < 0:
                return "dbm_hundredths"
    return "microwatt"


def as_int(value: SnmpValue) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_text(value: SnmpValue) -> str:
    """Return a value as a tag text: decoded, without padding, at most 256 characters."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    elif isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return ""
    return value.strip().strip("\x00").strip()[:MAX_TAG]
