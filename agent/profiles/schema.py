"""The profile language's schema: the models a profile file is checked against, each with the rules it enforces.

What the keys mean is documented with the file format in ``agent.profiles``; loading, the shipped profiles and
the site folders are there too. The short forms of the file (a bare column name, one spec for a list of one, a
bare OID) become one shape before validation, so that errors name plain key paths. ``Profile``'s check of the
names it refers to uses the validation context (``KNOWN``, ``SITE``) that the loaders pass.

It stays over 400 lines because the models are one language: a condition, a field spec and a tag source are
parts of both scalars and tables, and a table's check of the names it uses reads all of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, model_validator

from zonewatch import strict

KNOWN: Final = "agent.profiles.known"   # context: every profile name -> "shipped" or "site"
SITE: Final = "agent.profiles.site"     # context: the file is a site profile (profile_dirs)

_NUMERIC_OID = re.compile(r"^[0-9]+(\.[0-9]+)+$")
_IDENT = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,62}$")


def _oid(value: str) -> str:
    if not _NUMERIC_OID.match(value):
        raise ValueError(f"expected a numeric OID like '1.3.6.1.2.1.1.3.0' (no leading dot), got {value!r}")
    return value


def _ident(value: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(f"expected a name of letters, digits and '_' (not starting with a digit), got {value!r}")
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc}): {value!r}") from None
    return value


Oid = Annotated[str, AfterValidator(_oid)]
Ident = Annotated[str, AfterValidator(_ident)]
Regex = Annotated[str, AfterValidator(_regex)]
Unit = Literal["dbm", "watt_to_dbm", "milliwatt_to_dbm", "microwatt_to_dbm", "optical_unit"]


class Condition(strict.Strict):
    """One test on a row: a column (or any of several) passes ``one_of``, ``above``, ``matches`` or ``bit``."""

    column: str | None = None
    columns: list[str] | None = Field(default=None, min_length=1)
    one_of: list[int] | None = Field(default=None, min_length=1)
    above: float | None = None
    above_column: str | None = None
    matches: Regex | None = None
    bit: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_each(self) -> Condition:
        """Check that one column key and one test are given."""
        if (self.column is None) == (self.columns is None):
            raise ValueError("a condition names either 'column' or 'columns'")
        tests = [k for k in ("one_of", "above", "above_column", "matches", "bit") if getattr(self, k) is not None]
        if len(tests) != 1:
            raise ValueError("a condition has exactly one test: 'one_of', 'above', 'above_column', 'matches' or "
                             "'bit'")
        return self

    def names(self) -> list[str]:
        """Return the columns this condition reads."""
        out = [self.column] if self.column is not None else list(self.columns or [])
        return out + ([self.above_column] if self.above_column is not None else [])


class FieldSpec(strict.Strict):
    """How one field is computed from one column of a row (see the module docstring)."""

    column: str | None = None
    any: list[FieldSpec] | None = Field(default=None, min_length=1)
    when: list[Condition] = Field(default_factory=list)
    unless: list[Condition] = Field(default_factory=list)
    missing: list[int] = Field(default_factory=list)
    decode: Literal["entity_sensor"] | None = None
    scale: float | None = None
    unit: Unit | None = None
    round: int | None = Field(default=None, ge=0, le=9)
    valid: list[float] | None = Field(default=None, min_length=2, max_length=2)
    one_of: list[int] | None = Field(default=None, min_length=1)
    above: float | None = None
    value: bool | None = None
    detect: Literal["uptime_went_backwards"] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        """Check that the keys given make one meaning."""
        if self.any is not None:
            others = [k for k in type(self).model_fields if k != "any" and k in self.model_fields_set]
            if others:
                raise ValueError(f"'any' combines other specs and takes no other key (got '{others[0]}')")
            return self
        if self.column is None:
            raise ValueError("a field spec needs 'column' (or 'any')")
        results = [k for k in ("one_of", "above", "value", "detect") if getattr(self, k) is not None]
        if len(results) > 1:
            raise ValueError(f"'{results[0]}' and '{results[1]}' cannot be combined")
        if results and any(getattr(self, k) is not None for k in ("decode", "scale", "unit", "round", "valid")):
            raise ValueError(f"'{results[0]}' gives a boolean: it takes no 'decode', 'scale', 'unit', 'round' or "
                             "'valid'")
        if self.unit == "optical_unit" and (self.scale is not None or self.decode is not None):
            raise ValueError("unit 'optical_unit' takes no 'scale' or 'decode': the device's setting decides")
        if self.scale == 0:
            raise ValueError("scale 0 makes every value 0")
        if self.valid is not None and self.valid[0] > self.valid[1]:
            raise ValueError(f"valid: the low end {self.valid[0]:g} is above the high end {self.valid[1]:g}")
        return self

    def names(self) -> list[str]:
        """Return the columns this spec reads, its conditions included."""
        if self.any is not None:
            return [n for spec in self.any for n in spec.names()]
        out = [self.column] if self.column is not None else []
        for condition in (*self.when, *self.unless):
            out += condition.names()
        return out

    def specs(self) -> list[FieldSpec]:
        """Return this spec and every spec inside it."""
        return [self, *(s for spec in self.any or [] for s in spec.specs())]


class TagSource(strict.Strict):
    """One way to get a tag value: a column, a template, the device's config or its links map."""

    column: str | None = None
    text: str | None = Field(default=None, min_length=1)
    config: Literal["site", "name"] | None = None
    links_of: str | None = None
    when: list[Condition] = Field(default_factory=list)
    extract: Regex | None = None     # with 'column': the first group of this regex, searched in the value

    @model_validator(mode="after")
    def _one(self) -> TagSource:
        """Check that exactly one kind of source is given."""
        kinds = [k for k in ("column", "text", "config", "links_of") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a tag source is one of 'column', 'text', 'config' or 'links_of'")
        if self.when and self.column is None:
            raise ValueError("'when' goes with 'column' only")
        if self.extract is not None and (self.column is None or re.compile(self.extract).groups < 1):
            raise ValueError("'extract' goes with 'column' and needs a regex with a group: '(...)'")
        if self.text is not None:
            try:
                self.text.format(index="1.2", index_parent="1", index_last="2")
            except (KeyError, IndexError, ValueError):
                raise ValueError("text: the placeholders are {index}, {index_parent} and {index_last}, got "
                                 f"{self.text!r}") from None
        return self


def _each_value(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Return a before-validator that applies ``convert`` to every value of a mapping."""

    def apply(value: Any) -> Any:
        return {k: convert(v) for k, v in value.items()} if isinstance(value, dict) else value

    return apply


def _tag_list(value: Any) -> Any:
    """Accept a bare column name for ``{column: NAME}`` in a list of tag sources."""
    return [{"column": v} if isinstance(v, str) else v for v in value] if isinstance(value, list) else value


def _spec_list(value: Any) -> Any:
    """Accept one spec for a list of one."""
    return [value] if isinstance(value, dict) else value


def _column(value: Any) -> Any:
    """Accept a bare OID for ``{oid: OID}``."""
    return {"oid": value} if isinstance(value, str) else value


# The short forms of the file become one shape before validation, so that errors name plain key paths.
TagSources = Annotated[dict[Ident, list[TagSource]], BeforeValidator(_each_value(_tag_list))]
Fields = Annotated[dict[Ident, list[FieldSpec]], BeforeValidator(_each_value(_spec_list))]


class Column(strict.Strict):
    """A walked column with options."""

    oid: Oid
    only_if_empty: str | None = None


class Join(strict.Strict):
    """A column read at the row's index, at its parent index, or at the index another column's value names."""

    oid: Oid
    by: str = "index"
    index_prefix: bool = False    # the joined column's index extends the key: the lowest such index is read
    pointer: Oid | None = None    # ``by`` holds an OID under this column: its index is the rest of that OID

    @model_validator(mode="after")
    def _pointer(self) -> Join:
        """Check that a pointer follows a column's value."""
        if self.pointer is not None and self.by in ("index", "parent_index"):
            raise ValueError("'pointer' reads the OID that a column holds: name that column in 'by'")
        return self


JOIN_AT_INDEX: Final = ("index", "parent_index")  # the values of ``by`` that are not column names


class RowTest(strict.Strict):
    """A test on a field a row computed: its value is below or above a number."""

    field: str
    below: float | None = None
    above: float | None = None

    @model_validator(mode="after")
    def _one(self) -> RowTest:
        """Check that exactly one of 'below' and 'above' is given."""
        if (self.below is None) == (self.above is None):
            raise ValueError("a row test has exactly one of 'below' and 'above'")
        return self


FUNCTIONS: Final = ("count", "count_true", "count_false", "min", "max", "median")  # aggregate functions


class AggregateField(strict.Strict):
    """One field of an aggregate: a count, or the min, max or median of a field over a group's rows."""

    count: str | None = None
    count_true: str | None = None
    count_false: str | None = None
    min: str | None = None
    max: str | None = None
    median: str | None = None
    below: float | None = None
    above: float | None = None

    @model_validator(mode="after")
    def _one(self) -> AggregateField:
        """Check that one function is given, and 'below'/'above' only with 'count'."""
        given = [k for k in FUNCTIONS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"an aggregate field has exactly one of: {', '.join(FUNCTIONS)}")
        if (self.below is not None or self.above is not None) and self.count is None:
            raise ValueError("'below' and 'above' go with 'count' only")
        if self.count == "rows" and (self.below is not None or self.above is not None):
            raise ValueError("'count: rows' counts every row: 'below' and 'above' need a field")
        return self

    def function(self) -> tuple[str, str]:
        """Return (function, the field it reads; 'rows' for a count of rows)."""
        name = next(k for k in FUNCTIONS if getattr(self, k) is not None)
        return name, str(getattr(self, name))



class Aggregate(strict.Strict):
    """A sample per distinct value of some of a table's tags, from all its rows' fields."""

    measurement: Ident
    by: list[str] = Field(min_length=1)
    fields: dict[Ident, AggregateField] = Field(min_length=1)


def _tag_sources(tags: dict[str, list[TagSource]]) -> list[TagSource]:
    return [source for sources in tags.values() for source in sources]


def _check_names(known: list[str], used: list[tuple[str, str]]) -> None:
    """Raise ValueError naming the first use of a name that is not defined."""
    for where, name in used:
        if name not in known:
            raise ValueError(f"{where} uses {name!r}, which is not one of: {', '.join(known)}")


def _check_specs(fields: dict[str, list[FieldSpec]], tables: bool, columns: dict[str, Column] | None = None) -> None:
    for name, specs in fields.items():
        for spec in specs:
            for inner in spec.specs():
                if inner.decode == "entity_sensor" and not (columns and {"scale", "precision"} <= set(columns)):
                    raise ValueError(f"field {name!r}: decode 'entity_sensor' needs columns named 'scale' and "
                                     "'precision'")
                if inner.detect is not None and tables:
                    raise ValueError(f"field {name!r}: 'detect' works on scalars only (one value per device)")


def _check_tags(tags: dict[str, list[TagSource]]) -> None:
    for name in tags:
        if name == "device":
            raise ValueError("tag 'device' is set to the device's configured name: do not declare it")
    seen: list[str] = []
    for name, sources in tags.items():
        for source in sources:
            if source.links_of is not None and source.links_of not in seen:
                raise ValueError(f"tag {name!r}: links_of {source.links_of!r} must name an earlier tag")
        seen.append(name)


class Scalars(strict.Strict):
    """Instances read with one GET; they give at most one sample."""

    measurement: Ident
    get: dict[Ident, Oid] = Field(min_length=1)
    tags: TagSources = Field(default_factory=dict)
    fields: Fields = Field(min_length=1)
    keep_empty: bool = False

    @model_validator(mode="after")
    def _refs(self) -> Scalars:
        """Check that every name used is one of the values read."""
        _check_tags(self.tags)
        if self.measurement == "device" and self.tags:
            raise ValueError("measurement 'device' has fixed tags (device, site): declare none")
        for source in _tag_sources(self.tags):
            if source.column is not None or source.text is not None:
                raise ValueError("scalar tags come from 'config' or 'links_of' only")
        used = [(f"field {name!r}", n) for name, specs in self.fields.items() for spec in specs for n in spec.names()]
        _check_names(list(self.get), used)
        _check_specs(self.fields, tables=False)
        return self


class Table(strict.Strict):
    """Columns walked together; each row (index) gives one sample."""

    measurement: Ident
    columns: Annotated[dict[Ident, Column], BeforeValidator(_each_value(_column))] = Field(min_length=1)
    joins: dict[Ident, Join] = Field(default_factory=dict)
    skip_row_when: list[Condition] = Field(default_factory=list)
    merge_rows: bool = False
    keep_empty: bool = False
    tags: TagSources = Field(default_factory=dict)
    fields: Fields = Field(min_length=1)
    keep_rows_when: list[RowTest] = Field(default_factory=list)
    aggregate: Aggregate | None = None

    @model_validator(mode="after")
    def _refs(self) -> Table:
        """Check that every name used is a column or join defined before its use."""
        if self.measurement == "device":
            raise ValueError("measurement 'device' comes from scalars (one sample per device), not from a table")
        _check_tags(self.tags)
        columns = list(self.columns)
        for name, column in self.columns.items():
            if column.only_if_empty is not None:
                _check_names(columns[: columns.index(name)], [(f"column {name!r}", column.only_if_empty)])
        known = list(columns)
        for name, join in self.joins.items():
            if join.by not in JOIN_AT_INDEX:
                _check_names(known, [(f"join {name!r}", join.by)])
            known.append(name)
        for name in known:
            if name in JOIN_AT_INDEX:
                raise ValueError(f"{name!r} is a value of a join's 'by': name the column otherwise")
        used = [("skip_row_when", n) for c in self.skip_row_when for n in c.names()]
        used += [(f"field {name!r}", n) for name, specs in self.fields.items() for spec in specs for n in spec.names()]
        for source in _tag_sources(self.tags):
            if source.column is not None:
                used.append(("tags", source.column))
            used += [("tags", n) for c in source.when for n in c.names()]
        _check_names(known, used)
        _check_specs(self.fields, tables=True, columns=self.columns)
        fields = list(self.fields)
        _check_names(fields, [("keep_rows_when", test.field) for test in self.keep_rows_when])
        if self.aggregate is not None:
            if self.merge_rows:
                raise ValueError("'aggregate' and 'merge_rows' cannot be combined")
            _check_names(list(self.tags), [("aggregate 'by'", tag) for tag in self.aggregate.by])
            for name, spec in self.aggregate.fields.items():
                function, field = spec.function()
                if not (function == "count" and field == "rows"):
                    _check_names(fields, [(f"aggregate field {name!r}", field)])
        elif any(name.startswith("_") for name in fields) and not self.keep_rows_when:
            raise ValueError("a field whose name starts with '_' is never sent: it is for 'aggregate' or "
                             "'keep_rows_when'")
        return self


class AppliesTo(strict.Strict):
    """What a profile applies to, for auto-detection: any one test that passes selects the profile."""

    sys_object_id: list[Oid] = Field(default_factory=list)      # sysObjectID is one of these or under it
    sys_descr: list[Regex] = Field(default_factory=list)        # regexes searched in sysDescr
    has_table: list[Oid] = Field(default_factory=list)          # a column OID whose walk gives a row

    @model_validator(mode="after")
    def _some(self) -> AppliesTo:
        """Check that at least one test is declared."""
        if not (self.sys_object_id or self.sys_descr or self.has_table):
            raise ValueError("applies_to needs sys_object_id, sys_descr or has_table")
        return self


class Profile(strict.Strict):
    """One poll profile: scalar groups and tables."""

    name: Ident
    description: str = Field(min_length=1)
    applies_to: AppliesTo | None = None       # None: never picked by auto-detection, only by name
    supersedes: list[Ident] = Field(default_factory=list)   # dropped when detection picks this one and them
    replaces_shipped: bool = False            # a site profile that takes the place of the shipped one of its name
    scalars: list[Scalars] = Field(default_factory=list)
    tables: list[Table] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self, info: ValidationInfo) -> Profile:
        """Check that the profile reads something, and its names against the others (``KNOWN`` in the context)."""
        if not self.scalars and not self.tables:
            raise ValueError("a profile needs 'scalars' or 'tables'")
        if self.name in self.supersedes:
            raise strict.SubkeyError(("supersedes", self.supersedes.index(self.name)), "a profile cannot supersede "
                                     "itself")
        context = info.context or {}
        known: Mapping[str, str] | None = context.get(KNOWN)   # name -> "shipped" or "site"
        if known is None:
            return self
        for i, name in enumerate(self.supersedes):
            if name not in known:
                raise strict.SubkeyError(("supersedes", i), f"no profile is called {name!r}; known profiles: "
                                         f"{', '.join(sorted(known))}")
        if context.get(SITE):
            shipped_name = known.get(self.name) == "shipped"
            if shipped_name and not self.replaces_shipped:
                raise strict.SubkeyError(("name",), f"{self.name!r} is the name of a shipped profile: give the file "
                                         "another name, or say 'replaces_shipped: true' to use it in the shipped "
                                         "one's place")
            if self.replaces_shipped and not shipped_name:
                raise strict.SubkeyError(("replaces_shipped",), f"there is no shipped profile {self.name!r} to "
                                         "replace")
        return self
