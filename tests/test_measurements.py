"""The measurement catalogue (zonewatch.measurements) is the one list: the README's tables, the measurements a
probe may not write, and what the agent's parsers and the alert engine produce are all checked against it
(the dashboards' series in tests/dashboards, real device walks in tests/integration/test_snmp_devices.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent.transcript import parse_transcript
from zonewatch import wire
from zonewatch.measurements import CATALOGUE, COLLECTOR_WRITTEN, problems, series

ROOT = Path(__file__).resolve().parents[1]
CELLULAR_CASES = sorted(p for p in (ROOT / "tests/agent/sources/testdata/cellular").iterdir()
                        if (p / "transcript.txt").exists())
IDENT = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")   # snake_case with an underscore: a field name


def readme_tables() -> dict[str, tuple[str, str]]:
    """Return measurement -> (tags column, fields column) from the README's measurement tables (a measurement
    on two rows gets both rows' columns)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Measurements"):text.index("## How it fits together")]
    out: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not re.fullmatch(r"[a-z_]+", cells[0]) or cells[0] == "measurement":
            continue
        tags, fields = out.get(cells[0], ("", ""))
        out[cells[0]] = (f"{tags}, {cells[1]}", f"{fields}, {cells[2]}")
    return out


def top_level_words(column: str) -> set[str]:
    """The first word of each comma-separated item outside parentheses: ``carrier (PLMN, e.g. 452-04)``."""
    depth, item, words = 0, "", set()
    for ch in column + ",":
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            word = re.match(r"\s*([a-z_]+)", item)
            if word:
                words.add(word.group(1))
            item = ""
        else:
            item += ch
    return words


def test_the_readme_lists_every_measurement_tag_and_field_of_the_catalogue() -> None:
    tables = readme_tables()
    assert set(tables) == set(CATALOGUE)
    for name, (tags, fields) in tables.items():
        m = CATALOGUE[name]
        assert top_level_words(tags) == set(m.tags), f"{name}: the README's tags differ from the catalogue's"
        words = set(re.findall(r"[a-z][a-z0-9_]*", fields))
        assert set(m.fields) <= words, f"{name}: the README does not list {sorted(set(m.fields) - words)}"
        assert set(IDENT.findall(fields)) <= set(m.fields), \
            f"{name}: the README lists {sorted(set(IDENT.findall(fields)) - set(m.fields))}, not in the catalogue"


def test_what_only_the_collector_writes_is_what_the_wire_refuses_from_a_probe() -> None:
    assert wire.COLLECTOR_MEASUREMENTS == COLLECTOR_WRITTEN


@pytest.mark.parametrize("case", CELLULAR_CASES, ids=lambda p: p.name)
def test_every_modem_transcript_reads_within_the_catalogue(case: Path) -> None:
    result = parse_transcript((case / "transcript.txt").read_text(), "auto", None)
    assert result.samples, f"{case.name}: no reading"
    for sample in result.samples:
        assert problems(sample.measurement, sample.tags, sample.fields) == []


def test_the_golden_payloads_are_within_the_catalogue() -> None:
    for path in sorted((ROOT / "tests/golden").glob("*.json")):
        batch = wire.decode(path.read_bytes())
        for sample in batch.samples:
            assert problems(sample.measurement, sample.tags, sample.fields) == [], path.name


@pytest.mark.parametrize(("measurement", "fields", "wrong"), [
    ("cellular", {"rsrp_dbm": -200}, "outside what is physically possible"),      # a sentinel taken for dBm
    ("cellular", {"rsrp_dbm": 0}, "outside what is physically possible"),
    ("optical", {"rx_dbm": -400.0}, "outside what is physically possible"),     # hundredths taken for units
    ("power", {"battery_pct": 255}, "outside what is physically possible"),
    ("reach", {"loss_pct": -1.0}, "outside what is physically possible"),
    ("cellular", {"pci": 3.5}, "expected a whole number"),
    ("cellular", {"registered": 1}, "expected a boolean"),
    ("interface", {"in_octets": float("inf")}, "expected a finite number"),
    ("interface", {"in_octet": 5}, "field 'in_octet' is not in the catalogue"),
    ("celular", {"rsrp_dbm": -90}, "measurement 'celular' is not in the catalogue"),
])
def test_an_impossible_or_unknown_value_is_named(measurement: str, fields: dict[str, object], wrong: str) -> None:
    found = problems(measurement, {}, fields)
    assert len(found) == 1 and wrong in found[0], found


def test_usual_readings_pass_and_series_are_named_as_victoriametrics_names_them() -> None:
    assert problems("cellular", {"carrier": "452-04", "modem": "vt"},
                    {"rsrp_dbm": -95, "rsrq_db": -10.5, "sinr_db": 12.0, "registered": True, "pci": 188}) == []
    assert {"cellular_rsrp_dbm", "coverage_level", "alert_firing", "probe_seq_gaps"} <= series()


def test_the_catalogue_is_plain_data_in_the_shared_core() -> None:
    """zonewatch/ imports neither side: both the probe and the collector read it."""
    for path in (ROOT / "zonewatch").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) (agent|collector)\b", text, re.M), path.name
    assert json.loads(json.dumps(sorted(CATALOGUE)))   # names only: nothing to build at import
