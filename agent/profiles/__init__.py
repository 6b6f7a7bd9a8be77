"""SNMP poll profiles: what to read from a device and how it becomes samples, as data (YAML).

A profile is one YAML file in this folder, named after the profile (``juniper_dom.yaml`` is profile
``juniper_dom``). A device's ``profiles`` list (SnmpConfig) picks the ones it is polled with; a new device
type needs a new file, not new code. OIDs are numeric (no MIB is compiled on the probe); the values below
are a small fixed vocabulary that ``agent/sources/snmpeval.py`` evaluates.

File format::

    name: juniper_dom                   # = the file name
    description: one line for people
    supersedes: [entity_sensor]         # when auto-detection picks this profile and these too, these are
                                        # dropped (they read the same things less well); by name, all are polled
    replaces_shipped: false             # a site profile (profile_dirs) may take a shipped profile's name only
                                        # with true: it is then used in its place, by name and by detection
    applies_to:                         # auto-detection (optional): the profile applies when any test passes
      sys_object_id: [1.3.6.1.4.1.2636]     # sysObjectID is one of these or under it
      sys_descr: ['(?i)junos']              # a regex found in sysDescr
      has_table: [1.3.6.1.4.1.2636.3.60.1.1.1.1.5]  # walking this column gives at least one row
    scalars:                            # GETs of single instances; each group gives at most one sample
      - measurement: power              # "device" adds its fields to the device sample (tags are fixed there)
        get: {status: 1.3.6.1.2.1.33.1.2.1.0, ...}    # name -> instance OID
        tags: {...}                     # as for tables, from config and links_of only
        fields: {...}
        keep_empty: false               # true: a sample without fields is still emitted
    tables:                             # walks; each row (index) gives one sample
      - measurement: optical
        columns:                        # name -> column OID, walked in this order; the rows are the union
          rx: 1.3.6.1.4.1.2636.3.60.1.1.1.1.5       # of the indexes (OID suffixes) seen in any column
          speed: {oid: 1.3.6.1.2.1.2.2.1.5, only_if_empty: high_speed}   # a fallback: walked only when
                                        # that earlier column gave no rows and no read of the poll failed
        joins:                          # more columns, walked only when the table has rows, read at
          ifname: {oid: 1.3.6.1.2.1.31.1.1.1.1}        # the row's index (by: index, the default), at
          parent_name: {oid: ..., by: parent}          # the integer value of a column or earlier join, or
          port_name: {oid: ..., by: parent_index}      # at the row's index without its last sub-identifier
                                        # (a table indexed by port and ONU: the ONU's port)
          alias: {oid: 1.3.6.1.2.1.47.1.3.2.1.2, by: parent, index_prefix: true}   # index_prefix: the
                                        # joined column's index extends the key (entAliasMappingTable:
                                        # entPhysicalIndex.logical); the lowest such index is read
          alias_ifname: {oid: 1.3.6.1.2.1.31.1.1.1.1, by: alias, pointer: 1.3.6.1.2.1.2.2.1.1}   # pointer:
                                        # ``by`` holds an OID under this column (a RowPointer such as
                                        # entAliasMappingIdentifier); its index is the part after the column
        skip_row_when: [<condition>, ...]  # every condition holds -> the row gives nothing
        merge_rows: false               # true: rows with equal tags merge into one sample; a field two rows
                                        # give takes the first row's value (the lowest index)
        keep_empty: false               # true: a row without fields still gives a sample
        tags:                           # tag -> sources, the first one that gives a non-empty text wins
          port: [ifname, {text: "ifIndex.{index}"}]
        fields:                         # field -> one spec, or a list of specs: the first that gives a value
          rx_dbm: {column: rx, scale: 0.01}
          _online: {column: status, one_of: [1]}   # a name starting with '_' is computed, never sent
        keep_rows_when:                 # given: a row gives its own sample only if one of these holds
          - {field: rx_dbm, below: -25}            # (a field the row lacks fails); aggregates see every row
        aggregate:                      # one more sample per distinct value of the ``by`` tags, over all rows
          measurement: pon
          by: [port]                    # tags of the rows (``device`` is always kept)
          fields:                       # field -> one function of the rows' fields (after conversion):
            onus: {count: rows}         # count: the rows (rows), or the rows that have that field
            onus_online: {count_true: _online}     # count_true / count_false: rows whose boolean is so
            rx_min_dbm: {min: rx_dbm}   # min, max, median (the mean of the middle two for an even count)
            rx_weak: {count: rx_dbm, below: -27}   # count with below/above: rows whose value is beyond

Every sample gets the tag ``device`` (the configured name). Tag sources: a column or join name (its
value as text), ``{column: NAME, when: [<condition>, ...]}``, ``{text: "template with {index}"}`` (also
``{index_parent}``, the index without its last sub-identifier, and ``{index_last}``, that sub-identifier),
``{column: NAME, extract: REGEX}`` (the regex's first group, searched in the value; no match gives nothing),
``{config: site}`` (the device's configured site) and ``{links_of: TAG}`` (the device's ``links`` entry for
the value of an earlier tag). An aggregate with no rows to count gives no sample; a min, max or median over
no value is left out, and a count over no row of a group is 0.

A field spec reads one column and applies, in this order (every key is optional but ``column``)::

    when: [<condition>, ...]        every condition must hold, else this spec gives nothing for the row
    unless: [<condition>, ...]      any condition holds -> missing (a sensor's "unavailable" status)
    missing: [-1, 2147483647]       raw values that mean "no reading" (sentinels) -> missing
    decode: entity_sensor           RFC 3433: value x 10^(3 x (scale - 9)) x 10^(-precision), with the
                                    table's columns named ``scale`` and ``precision``
    scale: 0.01                     multiply (a scale whose inverse is an integer divides, exactly)
    unit: dbm | watt_to_dbm | milliwatt_to_dbm | microwatt_to_dbm | optical_unit
                                    power in W/mW/uW -> dBm = 10 log10(mW) (zero or less -> missing);
                                    optical_unit: the device's ``optical_unit`` setting, dbm_hundredths
                                    (/100) or microwatt; auto decides per table and poll: one negative
                                    reading (sentinels aside) means 0.01 dBm, none means uW
    round: 2                        round to that many decimals (0 gives an integer); a value that went
                                    through decode, scale or unit is a float, so a field keeps one type
    valid: [-60, 30]                a result outside the range -> missing
    one_of: [5]                     the result is a boolean: raw value in the list
    above: 0                        the result is a boolean: raw value greater than this
    value: false                    the result is this boolean whenever the spec applies (its conditions
                                    hold and the column has a value that is not a sentinel)
    detect: uptime_went_backwards   TimeTicks lower than at the previous poll of this device (wrap at
                                    2^32 allowed for) -> true, else the field is left out

or combines others: ``{any: [<spec>, ...]}`` is true if any gives true, false if any gives false and
none true, missing when none gives a value. Values of the wrong type (text where a number is expected)
are missing. A condition tests one column (``column``) or several (``columns``: true if any passes) with
one of ``one_of: [ints]``, ``above: number``, ``above_column: NAME`` (greater than the value of that
column of the same row), ``matches: regex`` (searched in the value as text) or ``bit: n`` (bit n of a BITS
octet string, bit 0 = the high bit of the first octet); a column the row does not have fails every test.

``load(text, source)`` is pure and ``load_file(path)`` reads a file; ``shipped()`` returns the profiles in
this folder by name, checked once. ``catalogue(dirs)`` adds the site profiles of the folders ``dirs`` (the agent's
``profile_dirs``): every ``*.yaml`` file there is one profile, loaded as strictly as these, after the shipped ones
(a replacement takes the shipped one's place); a name given twice, or a shipped name without
``replaces_shipped: true``, is an error naming the file, line and key. The folders are read again only when a file
in them changed.

Layout: this module is the language's documentation, its public names (``__all__``) and the loaders (one file,
the shipped folder, the site folders); ``schema.py`` holds the models a file is checked against.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from agent.profiles.schema import (
    KNOWN,
    SITE,
    Aggregate,
    AggregateField,
    AppliesTo,
    Column,
    Condition,
    FieldSpec,
    Join,
    Profile,
    RowTest,
    Scalars,
    Table,
    TagSource,
)
from zonewatch import strict

__all__ = [
    "Condition",
    "FieldSpec",
    "TagSource",
    "Column",
    "Join",
    "Scalars",
    "Table",
    "RowTest",
    "AggregateField",
    "Aggregate",
    "AppliesTo",
    "Profile",
    "load",
    "load_file",
    "shipped",
    "catalogue",
]


def load(text: str, source: str = "<profile>") -> Profile:
    """Parse and check one profile; raise strict.ConfigError naming the file, line and key."""
    return strict.load(Profile, text, source)


def load_file(path: str | Path, *, context: Mapping[str, Any] | None = None) -> Profile:
    """Read and check one profile file; its ``name`` must be the file's name."""
    path = Path(path)
    profile = strict.load_file(Profile, path, context=context)
    if profile.name != path.stem:
        raise strict.ConfigError(str(path), None, ("name",), f"{profile.name!r} must be the file's name, "
                                 f"{path.stem!r}")
    return profile


@functools.cache
def shipped() -> dict[str, Profile]:
    """Return the profiles shipped in this package, by name."""
    folder = resources.files(__name__)
    entries = sorted((e for e in folder.iterdir() if e.name.endswith(".yaml")), key=lambda e: e.name)
    known = {e.name.removesuffix(".yaml"): "shipped" for e in entries}
    out: dict[str, Profile] = {}
    for entry in entries:
        with resources.as_file(entry) as path:
            profile = load_file(path, context={KNOWN: known})
        out[profile.name] = profile
    _check_cycles(out, {name: f"{name}.yaml" for name in out})
    return out


def catalogue(dirs: Sequence[str | Path] = ()) -> dict[str, Profile]:
    """Return the shipped profiles and the site profiles of the folders ``dirs``, by name (see the docstring).

    Raise ValueError when a folder cannot be listed, strict.ConfigError when a file is not a usable profile."""
    base = shipped()
    if not dirs:
        return base
    files: list[Path] = []
    for folder in map(Path, dirs):
        if not folder.is_dir():
            raise ValueError(f"{str(folder)!r} is not a folder of profile files")
        try:
            files += sorted(p for p in folder.iterdir() if p.suffix == ".yaml" and p.is_file())
        except OSError as exc:
            raise ValueError(f"cannot list {str(folder)!r}: {exc.strerror}") from None
    stamp = []
    for path in files:
        try:
            info = path.stat()
        except OSError as exc:
            raise strict.ConfigError(str(path), None, (), f"cannot read: {exc.strerror}") from None
        stamp.append((str(path), info.st_mtime_ns, info.st_size))
    site = _site(tuple(stamp), tuple(sorted(base)))
    out = {name: site.get(name, profile) for name, profile in base.items()}
    out.update((name, profile) for name, profile in site.items() if name not in base)
    return out


@functools.lru_cache(maxsize=8)
def _site(files: tuple[tuple[str, int, int], ...], base: tuple[str, ...]) -> dict[str, Profile]:
    """Load the site profile files (path, mtime, size); ``base``: the shipped names. Cached while no file changes."""
    known = {name: "shipped" for name in base}
    where: dict[str, str] = {}
    for path, _, _ in files:
        name = Path(path).stem
        if name in where:
            raise strict.ConfigError(path, None, (), f"profile {name!r} is also defined by {where[name]}: one "
                                     "folder of profile_dirs or the other")
        where[name] = path
        known.setdefault(name, "site")
    out = {}
    for path, _, _ in files:
        profile = load_file(path, context={KNOWN: known, SITE: True})
        out[profile.name] = profile
    _check_cycles({**{n: p for n, p in shipped().items() if n not in out}, **out}, where)
    return out


def _check_cycles(known: Mapping[str, Profile], files: Mapping[str, str]) -> None:
    """Raise ConfigError when profiles supersede one another in a circle (both would be dropped)."""
    for start in known:
        todo, seen = list(known[start].supersedes), set()
        while todo:
            name = todo.pop()
            if name == start:
                raise strict.ConfigError(files.get(start, start), None, ("supersedes",),
                                         f"{start!r} is superseded in turn by a profile it supersedes: profiles "
                                         "may not supersede one another in a circle")
            if name not in seen and name in known:
                seen.add(name)
                todo += known[name].supersedes
