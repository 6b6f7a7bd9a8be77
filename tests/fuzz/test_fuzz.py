"""Fuzzing of every reader of outside input: the wire decoder, the AT and vendor parsers, modem transcripts, the
mmcli JSON parser, the SNMP value conversion, the trap handler and the configuration loader.

What "no crash" means, per target:

    wire        decode raises WireError only, with a known reason and a detail; a row error names its row
                (``samples[3]``); an accepted payload encodes again and decodes to the same batch
    at          the line parsers raise ATParseError only, quoting the line (or one of the lines) and saying what
                was expected; the numbers they return are finite
    transcript  parse_transcript never raises; every sample it gives passes the wire contract
    mmcli       parse_status/parse_signal raise MmcliParseError only, naming the key; what they return becomes a
                sample that passes the wire contract; the text path raises SourceError only
    snmp        the shipped profiles turn any row into samples that pass the wire contract; one field spec's
                conversion (decode, scale, unit, round, valid) gives None, a bool, a 64-bit int or a finite float
    traps       trap_event raises TrapError("malformed") only and its events pass the wire contract;
                TrapsSource.process never raises, counts each datagram under exactly one reason, and never
                under internal_error
    config      strict.load raises ConfigError only, as one line starting with the file name (alias bombs
                among the inputs: refused quickly by the loader's bound)
    fastpath    the collector's ingest fast path stores and refuses exactly what its full path does, and
                takes every plain message; with and without an inventory's scope (rows about devices and
                carriers assigned to the probe or not, measurements only the collector writes): it never
                takes a row the scope refuses; and the batch it gives the alert engine of the rows it took
                (``checked_batch``, no check made again) is exactly the one ``read_entry`` gives
    fastdecode  the alert engine's fast decode (``plain_batch``) gives exactly the batch ``read_entry`` gives
                (same samples in the same order, values of the same types) or None, never takes a message
                ``read_entry`` rejects or refuses part of, and takes every plain message; with and without a
                scope, on data, events and derived topics

Inputs are generated from the real formats and mutated (fields replaced by odd values, keys renamed or
removed, bytes flipped), besides random ones. ``ZW_FUZZ_EXAMPLES`` sets the examples per target (default 200);
``tests/fuzz/run_long.py`` runs every target with many more and prints the figures.

A known bug is counted (``Known``), not raised, so that the suite stays green; each has an xfail(strict) test at
the end of this file with its minimal input, which starts to fail once the bug is fixed.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import profiles
from agent.config import AgentConfig
from agent.sources import SourceError, at, mmcli, snmp, snmpeval, trapmap, traps, vendors
from agent.transcript import VENDOR_CHOICES, parse_transcript
from collector import ingest
from collector.cardinality import SeriesLimit
from collector.config import CollectorConfig
from collector.inventory import Inventory
from collector.scope import Scope
from collector.secrets import context as secret_context
from collector.storage.lineproto import Encoder
from zonewatch import strict, wire
from zonewatch.queue import Entry

ROOT = Path(__file__).resolve().parent.parent.parent
TESTDATA = ROOT / "tests" / "agent" / "sources" / "testdata" / "cellular"
NOW = 1_764_290_000_000_000_000

EXAMPLES = int(os.environ.get("ZW_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)


# ---------------------------------------------------------------------------------------------- bookkeeping


class Known(Exception):
    """A failure that is a known bug, pinned by an xfail test below: counted, never raised out of ``check``."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass
class Tally:
    """What one target saw: inputs tried, crashes, known bugs hit, and the shortest input of each kind."""

    tried: int = 0
    crashes: int = 0
    known: Counter[str] = field(default_factory=Counter)
    smallest: dict[str, str] = field(default_factory=dict)


TALLY: dict[str, Tally] = {}
COLLECT = False  # set by run_long.py: a crash is recorded and the run goes on instead of failing at once


def check(target: str, data: Any, body: Callable[[], None]) -> None:
    """Run ``body`` on one input of ``target``; count it, and its failure if any."""
    tally = TALLY.setdefault(target, Tally())
    tally.tried += 1
    try:
        body()
    except Known as known:
        tally.known[known.key] += 1
        _keep(tally, f"known {known.key}", data)
    except Exception as exc:
        tally.crashes += 1
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        _keep(tally, f"{type(exc).__name__} at {where}: {str(exc).splitlines()[0][:160] if str(exc) else ''}", data)
        if not COLLECT:
            raise


def _keep(tally: Tally, signature: str, data: Any) -> None:
    shown = repr(data)
    if signature not in tally.smallest or len(shown) < len(tally.smallest[signature]):
        tally.smallest[signature] = shown


def round_trip(samples: Sequence[wire.Sample] = (), events: Sequence[wire.Event] = ()) -> None:
    """Assert that samples and events pass the wire contract unchanged (what the collector would accept)."""
    batch = wire.Batch(zone="dinh-vu", probe="p1", seq=1, sent_ns=NOW, samples=tuple(samples), events=tuple(events))
    try:
        again = wire.decode(wire.encode(batch))
    except wire.WireError as exc:
        raise AssertionError(f"produced a row the wire contract refuses: {exc}") from exc
    assert again == batch, "a row changed on its way through the wire"


# ---------------------------------------------------------------------------------------------- generic mutation

ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 99, 255, 65535, -32768, 2**31, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400,
    1.5, -0.0, 1e308, -1e308, 5e-324, float("nan"), float("inf"), float("-inf"),
    "", " ", "--", "-", "x" * 300, "é", "日本", "\x00", "\t\n", "a b", "452-04", "-67,00", "1e5", "9" * 400 + ".0",
    "0x1F", "NaN", "true", "null", [], {}, [1], {"a": 1}, [[[]]], {"m": "x"}, [None, {}],
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ODD = st.one_of(st.sampled_from(ODD_VALUES), JSON_VALUES, st.integers(), st.text(max_size=40))


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, prefix + (index,))
    return out


def fresh(value: Any) -> Any:
    """Return a copy of a drawn value: the lists and dicts of ODD_VALUES must not change as documents are mutated."""
    return copy.deepcopy(value)


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[Any], keys: Sequence[str], odd: st.SearchStrategy[Any] = ODD) -> Any:
    """Return a copy of one seed document with 1 to 4 values replaced, keys removed, renamed or added."""
    doc = copy.deepcopy(draw(st.sampled_from(seeds)))
    key_names = st.sampled_from(keys) | st.text(max_size=12)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(doc)))
        op = draw(st.sampled_from(["replace", "replace", "delete", "rename", "add", "wrap"]))
        if not path:
            if op in ("replace", "wrap"):
                doc = fresh(draw(odd)) if op == "replace" else [doc]
            continue
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        if op == "replace":
            parent[last] = fresh(draw(odd))
        elif op == "delete":
            del parent[last]
        elif op == "wrap":
            parent[last] = draw(st.sampled_from([[parent[last]], {"x": parent[last]}]))
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(key_names)] = parent.pop(last)
        elif op == "add":
            node = parent[last]
            if isinstance(node, dict):
                node[draw(key_names)] = fresh(draw(odd))
            elif isinstance(node, list):
                node.append(fresh(draw(odd)))
    return doc


@st.composite
def mutated_bytes(draw: st.DrawFn, seeds: st.SearchStrategy[bytes]) -> bytes:
    """Return a seed with bytes flipped, inserted, deleted, cut or spliced."""
    data = bytearray(draw(seeds))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0x81, 0xFF, 0x30, 0x02, 0x04, 0x06]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
        elif op == "splice":
            other = draw(seeds)
            data[pos:] = other[draw(st.integers(0, len(other))) :]
    return bytes(data)


# ---------------------------------------------------------------------------------------------- wire

WIRE_REASONS = {"not_json", "bad_schema", "unsupported_version", "bad_name", "bad_time", "bad_tag", "bad_field"}
ROW_REASONS = {"bad_name", "bad_time", "bad_tag", "bad_field"}
NAMES = st.from_regex(r"\A[a-z0-9][a-z0-9_.-]{0,12}\Z")
IDENTS = st.sampled_from(["rsrp_dbm", "carrier", "up", "rtt_ms", "device", "m", "name", "ts"]) | st.from_regex(
    r"\A[a-zA-Z_][a-zA-Z0-9_]{0,12}\Z")
FIELD_VALUES = st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False)
TAGS = st.dictionaries(IDENTS, st.text(min_size=1, max_size=20), max_size=3)
FIELDS = st.dictionaries(IDENTS, FIELD_VALUES, max_size=3)
TIMES = st.integers(0, 2**63)
BATCHES = st.builds(
    wire.Batch,
    zone=NAMES,
    probe=NAMES,
    seq=TIMES,
    sent_ns=TIMES,
    samples=st.lists(st.builds(wire.Sample, IDENTS, TAGS, FIELDS, TIMES), max_size=3).map(tuple),
    events=st.lists(st.builds(wire.Event, IDENTS, TAGS, FIELDS, TIMES), max_size=2).map(tuple),
    origin=st.integers(0, 2**63 - 1),
)
WIRE_SEEDS = [json.loads(p.read_text()) for p in sorted((ROOT / "tests" / "golden").glob("*.json"))]
WIRE_KEYS = ["v", "zone", "probe", "seq", "origin", "sent_ns", "samples", "events", "m", "name", "ts", "tags",
             "fields"]
WIRE_ODD = ODD | st.sampled_from(["\ud800", "a\udfffb"])


@st.composite
def wire_payloads(draw: st.DrawFn) -> bytes | str:
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "mutated", "bytes", "json"]))
    if kind == "valid":
        return wire.encode(draw(BATCHES))
    if kind == "bytes":
        return draw(st.binary(max_size=64) | mutated_bytes(BATCHES.map(wire.encode)))
    if kind == "json":
        doc = draw(JSON_VALUES)
    else:
        seeds = WIRE_SEEDS + [json.loads(wire.encode(draw(BATCHES)))]
        doc = draw(mutated(seeds, WIRE_KEYS, WIRE_ODD))
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    return text if draw(st.booleans()) else text.encode("utf-8", errors="surrogatepass")


def wire_body(payload: bytes | str, loads: Callable[[Any], Any]) -> None:
    try:
        batch = wire.decode(payload, loads)
    except wire.WireError as exc:
        assert exc.reason in WIRE_REASONS, f"unknown reason {exc.reason!r}"
        assert exc.detail and str(exc) == f"{exc.reason}: {exc.detail}"
        if exc.reason in ROW_REASONS:
            assert re.search(r"(samples|events)\[\d+\]", exc.detail), f"the row is not named: {exc.detail}"
        return
    try:
        again = wire.encode(batch)
    except wire.WireError as exc:
        raise AssertionError(f"decode accepted what encode refuses: {exc}") from exc
    assert wire.decode(again) == batch


LOADERS: list[Callable[[Any], Any]] = [json.loads]
try:
    import orjson

    LOADERS.append(orjson.loads)
except ImportError:  # the collector extra is not installed
    pass


@FUZZ
@given(payload=wire_payloads(), loads=st.sampled_from(LOADERS))
def test_wire_decode(payload: bytes | str, loads: Callable[[Any], Any]) -> None:
    check("wire", payload, lambda: wire_body(payload, loads))


# ---------------------------------------------------------------------------------------------- ingest fast path
# The collector's preparer takes the common message by a fast path (collector.ingest.plain_message and
# Encoder.encode_rows: rows checked, admitted and encoded from the parsed JSON in one pass). It must store
# exactly what the full path stores (parse_entry, SeriesLimit.admit, Encoder.encode), refuse exactly what it
# refuses, and take every plain message (all names known, ASCII tag values, no events).

FAST_TOPIC = "zw/v1/z1/p1/data"
FAST_TIMES = st.one_of(st.integers(NOW - 86400 * 10**9, NOW), st.integers(NOW - 36 * 86400 * 10**9, NOW + 400 * 10**9),
                       TIMES)
FAST_VALUES = FIELD_VALUES | st.integers(2**63 - 2, 2**64 + 1) | st.integers(-(2**63) - 1, -(2**63) + 1)
FAST_TEXT = st.text(st.characters(max_codepoint=0x7E), min_size=1, max_size=12) | st.text(max_size=6)
# tag values the scope below knows (assigned to p1 or not), and measurements only the collector writes
FAST_TAGS = st.dictionaries(IDENTS, st.sampled_from(["sw-1", "olt-2", "452-04", "452-02"]) | FAST_TEXT, max_size=4)
FAST_MEASUREMENTS = st.sampled_from(sorted(wire.COLLECTOR_MEASUREMENTS)) | IDENTS
FAST_SAMPLES = st.lists(st.builds(wire.Sample, FAST_MEASUREMENTS, FAST_TAGS,
                                  st.dictionaries(IDENTS, FAST_VALUES, max_size=4), FAST_TIMES), max_size=6).map(tuple)
FAST_BATCHES = st.builds(
    wire.Batch, zone=st.sampled_from(["z1"] * 9 + ["z2"]), probe=st.sampled_from(["p1"] * 9 + ["p2"]), seq=TIMES,
    sent_ns=TIMES, samples=FAST_SAMPLES,
    events=st.sampled_from([()] * 4 + [None]).flatmap(
        lambda none: st.just(()) if none == () else st.builds(wire.Event, IDENTS, TAGS, FIELDS, FAST_TIMES).map(
            lambda e: (e,))),
    origin=st.integers(0, 2**63 - 1))


def fast_doc(batch: wire.Batch) -> dict[str, Any]:
    """Return the payload of ``batch`` as a JSON document, whatever its values (beyond 64 bits too)."""
    try:
        doc: dict[str, Any] = json.loads(wire.encode(batch))
    except wire.WireError:  # a value wire.encode refuses (beyond 64 bits): write it anyway, for the receiver
        doc = json.loads(wire.encode(dataclasses.replace(batch, samples=())))
        doc["samples"] = [{"m": x.measurement, "ts": x.time_ns, "tags": x.tags, "fields": x.fields}
                          for x in batch.samples]
    return doc


@st.composite
def fast_payloads(draw: st.DrawFn) -> bytes:
    """Return a message of ``FAST_BATCHES``; half of them with their rows mutated (where the fast paths look),
    some of the others mutated anywhere."""
    doc = fast_doc(draw(FAST_BATCHES))
    if doc.get("samples") and draw(st.booleans()):
        doc["samples"] = draw(mutated([doc["samples"]], WIRE_KEYS, WIRE_ODD))
    elif draw(st.integers(0, 3)) == 0:
        doc = draw(mutated([doc], WIRE_KEYS, WIRE_ODD))
    return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode("utf-8", errors="surrogatepass")


FAST_SCOPE = Scope(strict.load(Inventory, """
zones: {z1: {name: One}}
carriers: {viettel: {plmn: 452-04, name: Viettel}}
sites: {pop: {zone: z1}}
devices: {sw-1: {site: pop, probe: p1}, olt-2: {site: pop, probe: p2}}
probes: {p1: {zone: z1, modems: [{name: vt, carrier: viettel}]}, p2: {zone: z1}}
"""))


SEEN_ENCODER = Encoder()  # kept across the fastpath inputs, so that its caches of known series are tried too


def fastpath_body(payload: bytes, max_series: int, scope: Scope = ingest.OPEN) -> None:
    entry = Entry(1, FAST_TOPIC, NOW, payload)
    day = 86400 * 10**9
    try:
        batch: wire.Batch | None
        batch, outside = ingest.read_entry(entry, scope)
    except wire.WireError:
        batch = None
    lines: list[str] | None = None
    if batch is not None:
        kept, refused = SeriesLimit(max_series, day).admit("z1/p1", batch.samples, NOW)
        try:
            lines = Encoder().encode([dataclasses.replace(batch, samples=tuple(kept))])
        except ValueError:  # the full path drops such a batch, counted
            pass
    fast_series = SeriesLimit(max_series, day)
    plain = ingest.plain_message(entry)
    got = None
    if plain is not None and scope.plain(plain[0].zone, plain[0].probe, plain[1]):   # as the ingest does
        head, rows = plain
        got = Encoder().encode_rows(head.zone, head.probe, rows, NOW, ingest.DEFAULT_LIMITS,
                                    *fast_series.table("z1/p1", NOW))
        # An encoder that has seen the earlier inputs (and remembers their series) comes to the same outcome.
        again = SEEN_ENCODER.encode_rows(head.zone, head.probe, rows, NOW, ingest.DEFAULT_LIMITS,
                                         *SeriesLimit(max_series, day).table("z1/p1", NOW))
        assert (again and (again[0].lines, again[0].samples, again[1:])) == \
            (got and (got[0].lines, got[0].samples, got[1:])), "an encoder that knew the series encoded other lines"
    if got is None:
        assert fast_series.count("z1/p1") == 0, "the fast path gave up but kept series it had admitted"
        if batch is not None and lines is not None and not batch.events:
            names = {n for x in batch.samples for n in (x.measurement, *x.tags, *x.fields)}
            ascii_tags = all(v.isascii() for x in batch.samples for v in x.tags.values())
            if not outside:
                assert not (ascii_tags and names <= wire.CHECKED_NAMES), "the fast path left a plain message"
        return
    assert batch is not None and lines is not None, "the fast path took a message the full path refuses"
    assert not outside, f"the fast path took rows the scope refuses: {outside.describe()}"
    encoded, refused_samples, example = got
    assert encoded.lines == lines, "the fast path encoded other lines than the full path"
    # What the alert engine is given of the rows the fast path took (Ingest.on_prepared): read_entry's batch, to the
    # last type.
    assert exact(ingest.checked_batch(head, rows)) == exact(batch), "the engine was given another batch"
    assert encoded.samples == len(kept)
    assert (refused_samples, example) == ((refused.samples, refused.example) if refused else (0, ""))


@FUZZ
@given(payload=fast_payloads(), max_series=st.sampled_from([1, 2, 20_000]),
       scope=st.sampled_from([ingest.OPEN, FAST_SCOPE]))
def test_ingest_fast_path(payload: bytes, max_series: int, scope: Scope) -> None:
    check("fastpath", payload, lambda: fastpath_body(payload, max_series, scope))


def test_the_fast_path_takes_the_common_message() -> None:
    """Not a vacuous comparison above: a usual data message goes the fast way once its names are known."""
    batch = wire.Batch("z1", "p1", 7, NOW, (wire.Sample("interface", {"device": "sw1", "ifname": "ge-0/0/1"},
                                                        {"oper_up": True, "in_octets": 2**64 - 1, "util": 0.5},
                                                        NOW),))
    entry = Entry(1, FAST_TOPIC, NOW, wire.encode(batch))
    ingest.parse_entry(entry)  # learns the names
    plain = ingest.plain_message(entry)
    assert plain is not None
    got = Encoder().encode_rows("z1", "p1", plain[1], NOW, ingest.DEFAULT_LIMITS,
                                *SeriesLimit(10, 10**9).table("z1/p1", NOW))
    assert got is not None
    assert got[0].lines == [f"interface,device=sw1,ifname=ge-0/0/1,probe=p1,zone=z1 oper_up=1i,"
                            f"in_octets=18446744073709551615u,util=0.5 {NOW}"]


# ---------------------------------------------------------------------------------------------- engine fast decode
# The alert engine decodes the common message in one pass (collector.ingest.plain_batch: plain_message,
# Scope.plain and wire.plain_samples on the parsed JSON). Its batch must be read_entry's to the last type (a
# batch compares equal with True for 1 and 1.0 for 1, and with its dicts in another order: ``exact`` does not),
# with nothing refused; and every message read_entry takes whole must go the fast way once its names are known.

DECODE_TOPICS = [FAST_TOPIC] * 8 + ["zw/v1/z1/p1/events", ingest.DERIVED + FAST_TOPIC]


def exact(batch: wire.Batch) -> Any:
    """Return ``batch`` as nested tuples that tell 1 from True and 1.0, and keep the order of every dict."""
    def items(d: dict[str, Any]) -> tuple[Any, ...]:
        return tuple((k, type(v).__name__, repr(v)) for k, v in d.items())

    rows = tuple((type(s).__name__, s.measurement, items(s.tags), items(s.fields), type(s.time_ns).__name__,
                  s.time_ns) for s in (*batch.samples, *batch.events))
    head = tuple((f.name, type(getattr(batch, f.name)).__name__, getattr(batch, f.name)) for f in fields(batch)
                 if f.name not in ("samples", "events"))
    return head, len(batch.samples), rows


def fastdecode_body(payload: bytes, topic: str, scope: Scope) -> None:
    entry = Entry(1, topic, NOW, payload)
    got = ingest.plain_batch(entry, scope)   # before read_entry, which teaches the decoder the names it checks
    try:
        want: wire.Batch | None
        want, outside = ingest.read_entry(entry, scope)
    except wire.WireError:
        want = None
    if got is not None:
        assert want is not None, "the fast decode took a message read_entry rejects"
        assert not outside, f"the fast decode took rows the scope refuses: {outside.describe()}"
        assert exact(got) == exact(want), "the fast decode made another batch than read_entry"
    if want is not None and topic.endswith("/data") and not want.events and not outside:
        again = ingest.plain_batch(entry, scope)   # every name is known now
        assert again is not None, "the fast decode left a plain message"
        assert exact(again) == exact(want), "the fast decode made another batch than read_entry"


@FUZZ
@given(payload=fast_payloads(), topic=st.sampled_from(DECODE_TOPICS),
       scope=st.sampled_from([ingest.OPEN, FAST_SCOPE]))
def test_engine_fast_decode(payload: bytes, topic: str, scope: Scope) -> None:
    check("fastdecode", payload, lambda: fastdecode_body(payload, topic, scope))


def test_the_fast_decode_takes_the_common_message() -> None:
    """Not a vacuous comparison above: a usual data message goes the fast way, with its types as sent."""
    sample = wire.Sample("interface", {"device": "sw-1", "ifname": "ge-0/0/1"},
                         {"oper_up": True, "in_octets": 2**64 - 1, "errors": 0, "util": 1.0}, NOW)
    entry = Entry(1, FAST_TOPIC, NOW, wire.encode(wire.Batch("z1", "p1", 7, NOW, (sample,), origin=3)))
    want, _ = ingest.read_entry(entry, FAST_SCOPE)  # learns the names
    got = ingest.plain_batch(entry, FAST_SCOPE)
    assert got is not None and exact(got) == exact(want)
    assert [type(v) for v in got.samples[0].fields.values()] == [bool, int, int, float]


# ---------------------------------------------------------------------------------------------- AT answers

SINGLE: dict[str, Callable[[str], Any]] = {
    "+CSQ": at.parse_csq,
    "+CESQ": at.parse_cesq,
    "+COPS": at.parse_cops,
    "+CREG": at.parse_creg,
    "+QCSQ": vendors.parse_qcsq,
    "+QNWINFO": vendors.parse_qnwinfo,
}
MULTI: dict[str, Callable[[Sequence[str]], Any]] = {
    "+QENG": vendors.parse_qeng,
    "+CPSI": vendors.parse_cpsi,
    "!GSTATUS": vendors.parse_gstatus,
}
_HAND_LINES = [
    "+CSQ: 18,99", "+CESQ: 99,99,255,255,20,45", '+COPS: 0,2,"45204",7', '+COPS: 0,0,"Viettel",7', "+COPS: 0",
    "+CREG: 0,1", '+CEREG: 2,1,"1F00","79D9003",7', '+C5GREG: 2,1,"00A1B2","123456789",11', "+CGREG: 2,1,1F00,79D9,7",
    '+CEREG: 1,"1F00","79D903",7', "+CEREG: 2,1, 1F00, 20 ,79D903 ,7",
    '+QENG: "servingcell","NOCONN","LTE","FDD",452,04,79D9003,123,1850,3,5,5,1F00,-95,-10,-65,15,20',
    '+QENG: "servingcell","NOCONN","NR5G-SA","TDD",452,04,12345678A,500,1F00A,627264,78,12,-90,-11,12,0,20',
    '+QENG: "servingcell","NOCONN","WCDMA",452,04,1F00,79D9,10700,100,1,-80,-5,0,0',
    '+QENG: "servingcell","NOCONN","GSM",452,04,1F00,79D9,20,60,0,-62,255,255',
    '+QCSQ: "LTE",-65,-95,150,-10', '+QCSQ: "NR5G",-90,12,-11', '+QCSQ: "WCDMA",-70,-80,-5', '+QCSQ: "GSM",-70',
    '+QCSQ: "NOSERVICE"', '+QNWINFO: "FDD LTE","45204","LTE BAND 3",1850', "+QNWINFO: No Service",
    "+CPSI: LTE,Online,452-04,0x1F00,127113475,123,EUTRAN-BAND3,1850,5,5,-100,-950,-650,15",
    "+CPSI: NR5G_SA,Online,452-04,0x1F00A,12345678,500,NR5G_BAND78,627264,-900,-110,120",
    "+CPSI: NR5G_NSA,500,NR5G_BAND78,627264,-900,-110,120", "+CPSI: WCDMA,Online,452-04,0x1F00,31234,10700",
    "+CPSI: GSM,Online,452-04,0x1F00,1234,30,-64,0", "+CPSI: NO SERVICE,Online",
    "!GSTATUS: ", "System mode:   LTE\t\tPS state:  Attached", "LTE band:   B3\t\tLTE bw:  20 MHz",
    "EMM state:  Registered\t\tNormal Service", "PCC RxM RSSI:  -65\t\tRSRP (dBm):  -95",
    "RSRQ (dB):  -10\t\tSINR (dB):  15.2", "TAC:  1F00 (7936)\t\tCell ID:  079D9003 (127766531)",
    "NR5G RSRP (dBm): -90\t\tNR5G SINR (dB): 12",
]
TRANSCRIPTS = [p.read_text() for p in sorted(TESTDATA.glob("*/transcript.txt"))]
SEED_LINES = sorted({line.strip() for text in TRANSCRIPTS for line in text.splitlines() if line.strip()}
                    | set(_HAND_LINES))
TOKENS = st.one_of(
    st.sampled_from(["", "-", "--", "---", "99", "255", "65535", "-32768", "32768", "0", '"', '""', " ", "0x",
                     "0xFFFFFFFFFFFFFFFF", "1.0e999", "-1.0e999", "9" * 5000, "f" * 400, "\u0663", "\u00b2", '"LTE"',
                     '"NR5G-NSA"', '"servingcell"', "NaN", "inf", "1.5", "-0.0", "\t", "B3", "n78", "LTE BAND 3",
                     "EUTRAN-BAND3", "NR5G_BAND78", "Registered", "LTE"]),
    st.integers().map(str),
    st.text(max_size=12),
    st.from_regex(r"\A[0-9A-F]{1,12}\Z"),
)


@st.composite
def at_lines(draw: st.DrawFn) -> str:
    """Return a real answer line with fields replaced, removed or added, or now and then a random line."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=40))
    head, sep, rest = draw(st.sampled_from(SEED_LINES)).partition(":")
    parts = rest.split(",")
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "head"]))
        pos = draw(st.integers(0, len(parts) - 1))
        if op == "replace":
            parts[pos] = draw(TOKENS)
        elif op == "delete" and len(parts) > 1:
            del parts[pos]
        elif op == "add":
            parts.insert(pos, draw(TOKENS))
        elif op == "head":
            head = draw(st.sampled_from([head.lower(), f" {head} ", head.lstrip("+!"), head + head, "+" + head]))
    return head + sep + ",".join(parts)


def _finite(result: Any) -> None:
    """Assert that a parsed answer holds no number that is not finite."""
    for f in fields(result) if is_dataclass(result) else ():
        value = getattr(result, f.name)
        if is_dataclass(value):
            _finite(value)
        elif isinstance(value, float):
            assert math.isfinite(value), f"{f.name} is {value}"


def _at_call(parse: Callable[[Any], Any], arg: Any, lines: Sequence[str]) -> None:
    try:
        result = parse(arg)
    except at.ATParseError as exc:
        assert exc.expected, "no expectation given"
        assert str(exc) == f"cannot parse {exc.line!r}: expected {exc.expected}"
        assert exc.line in lines or exc.line == "\n".join(lines) or (parse is vendors.parse_gstatus
                                                                     and ": " in exc.line), "the line is not quoted"
        return
    _finite(result)


def at_body(lines: list[str]) -> None:
    for line in lines:
        for parse in SINGLE.values():
            _at_call(parse, line, [line])
    for parse_many in MULTI.values():
        _at_call(parse_many, lines, lines)


@FUZZ
@given(lines=st.lists(at_lines(), min_size=1, max_size=3))
def test_at_parsers(lines: list[str]) -> None:
    check("at", lines, lambda: at_body(lines))


# ---------------------------------------------------------------------------------------------- transcripts


@st.composite
def transcripts(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(TRANSCRIPTS)).splitlines()
    extra = at_lines() | st.sampled_from(["OK", "ERROR", "+CME ERROR: 10", "AT+CSQ", "AT+QENG=\"servingcell\"",
                                          "AT!GSTATUS?", "ATI", "AT+CPSI?", "Quectel", "SIMCOM", ""])
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["replace", "replace", "insert", "delete", "duplicate"]))
        pos = draw(st.integers(0, max(len(lines) - 1, 0)))
        if op == "replace" and lines:
            lines[pos] = draw(extra)
        elif op == "insert":
            lines.insert(pos, draw(extra))
        elif op == "delete" and lines:
            del lines[pos]
        elif op == "duplicate" and lines:
            lines[pos:pos] = lines[pos : pos + draw(st.integers(1, 6))]
    return "\n".join(lines)


def transcript_body(text: str, vendor: Any) -> None:
    result = parse_transcript(text, vendor)
    json.dumps(result.to_json())
    assert all(p.reason for p in result.unparsed)
    round_trip(result.samples)


@FUZZ
@given(text=transcripts(), vendor=st.sampled_from(VENDOR_CHOICES))
def test_transcript(text: str, vendor: Any) -> None:
    check("transcript", text, lambda: transcript_body(text, vendor))


# ---------------------------------------------------------------------------------------------- mmcli

MMCLI_SEEDS = [json.loads(p.read_text()) for p in sorted((TESTDATA / "mmcli").glob("*/*.json"))]
MMCLI_KEYS = sorted({str(k) for doc in MMCLI_SEEDS for path in _paths(doc) for k in path if isinstance(k, str)})
MMCLI_ODD = ODD | st.from_regex(r"\A[+-]?[0-9]{1,400}([.,][0-9]{1,5})?\Z")
MODEM = mmcli.MmcliModem(name="m1", index=0)


def mmcli_body(doc: Any, text: str) -> None:
    status: mmcli.ModemStatus | None = None
    signal: mmcli.SignalReport | None = None
    try:
        status = mmcli.parse_status(doc)
    except mmcli.MmcliParseError as exc:
        assert "modem" in str(exc), f"the key is not named: {exc}"
    try:
        signal = mmcli.parse_signal(doc)
    except mmcli.MmcliParseError as exc:
        assert "modem" in str(exc), f"the key is not named: {exc}"
    if status is not None and signal is not None:
        assert all(v is None or math.isfinite(v) for block in signal.values.values() for v in block.values()), \
            f"a value that is not finite: {signal.values}"
        reading = mmcli.reading(status, signal)
        round_trip([vendors.to_sample(reading, now_ns=NOW, modem="m1")])
    for parse in (mmcli.parse_status, mmcli.parse_signal):
        try:
            MODEM._parse(text, parse, "-J")
        except SourceError as exc:
            assert str(exc).startswith("modem m1: mmcli -m 0 -J")


@st.composite
def mmcli_inputs(draw: st.DrawFn) -> tuple[Any, str]:
    doc = draw(mutated(MMCLI_SEEDS, MMCLI_KEYS, MMCLI_ODD) | JSON_VALUES)
    text = json.dumps(doc)
    if draw(st.integers(0, 4)) == 0:
        text = draw(mutated_bytes(st.just(text.encode()))).decode("utf-8", errors="replace")
    return doc, text


@FUZZ
@given(data=mmcli_inputs())
def test_mmcli(data: tuple[Any, str]) -> None:
    check("mmcli", data, lambda: mmcli_body(*data))


# ---------------------------------------------------------------------------------------------- SNMP conversion

SNMP_VALUES = st.one_of(
    st.none(),
    st.integers(-(2**31), 2**64 - 1),
    st.sampled_from([-1, 0, 1, 2, 3, 6, 7, 8, 9, 10, 17, -8, 2147483647, -(2**31), 2**32 - 1, 2**64 - 1, 65535]),
    st.binary(max_size=8),
    st.text(max_size=16),
    st.sampled_from(["dBm", " dbm ", "Rx Power", "Tx Power", "receive", "transmit", "eth0", "\x00", b"\x00\x00"]),
)
INDEXES = st.sampled_from(["1", "2", "3", "10.1", "4294967295", "0"])
SNMP_CONFIG_TEXT = "type: snmp\nname: dev1\nhost: 192.0.2.1\nversion: v2c\ncommunity: c\nsite: s1\n" \
                   "links: {eth0: uplink}\noptical_unit: "


def snmp_config(unit: str) -> snmp.SnmpConfig:
    return strict.load(snmp.SnmpConfig, SNMP_CONFIG_TEXT + unit, "snmp.yaml")


SNMP_CONFIGS = {unit: snmp_config(unit) for unit in ("auto", "dbm_hundredths", "microwatt")}


@st.composite
def snmp_polls(draw: st.DrawFn) -> tuple[str, str, list[Any]]:
    """Return a profile, the device's optical unit, and two polls of random rows for each of its groups."""
    name = draw(st.sampled_from(sorted(profiles.shipped())))
    profile = profiles.shipped()[name]
    polls: list[Any] = []
    for _ in range(2):
        scalars = [{k: draw(SNMP_VALUES) for k in group.get if draw(st.integers(0, 5))} for group in profile.scalars]
        tables = []
        for table in profile.tables:
            indexes = draw(st.lists(INDEXES, max_size=3, unique=True))
            columns = {k: {i: draw(SNMP_VALUES) for i in indexes if draw(st.integers(0, 5))} for k in table.columns}
            joins = {k: {i: draw(SNMP_VALUES) for i in draw(st.lists(INDEXES, max_size=3, unique=True))}
                     for k in table.joins}
            tables.append((columns, joins))
        polls.append((scalars, tables))
    return name, draw(st.sampled_from(sorted(SNMP_CONFIGS))), polls


def snmp_body(name: str, unit: str, polls: list[Any]) -> None:
    profile = profiles.shipped()[name]
    previous: dict[str, tuple[int, int]] = {}
    for poll, (scalars, tables) in enumerate(polls):
        context = snmpeval.Context(SNMP_CONFIGS[unit], NOW + poll * 60 * 10**9, previous, profile=name)
        samples = []
        for group, row in zip(profile.scalars, scalars, strict=True):
            tags, values = snmpeval.scalar_sample(group, row, context)
            samples.append(wire.Sample(group.measurement, tags, values, NOW))
        for table, (columns, joins) in zip(profile.tables, tables, strict=True):
            samples += snmpeval.table_samples(table, columns, joins, context)
        round_trip(samples)


@FUZZ
@given(poll=snmp_polls())
def test_snmp_profiles(poll: tuple[str, str, list[Any]]) -> None:
    check("snmp", poll, lambda: snmp_body(*poll))


SCALES = st.floats(1e-12, 1e12) | st.floats(-1e12, -1e-12) | st.sampled_from([0.1, 0.01, 0.001, 10, 1e-6, 1 / 3])
SPECS = st.fixed_dictionaries({"column": st.just("v")}, optional={
    "decode": st.just("entity_sensor"),
    "scale": SCALES,
    "unit": st.sampled_from(["dbm", "watt_to_dbm", "milliwatt_to_dbm", "microwatt_to_dbm", "optical_unit"]),
    "round": st.integers(0, 9),
    "valid": st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=2).map(sorted),
    "missing": st.lists(st.integers(-2, 2**31), max_size=2),
})


def spec_body(spec_data: dict[str, Any], row: dict[str, Any], unit: str) -> None:
    try:
        spec = profiles.FieldSpec.model_validate(spec_data)
    except ValueError:  # a combination a profile may not write (pydantic's ValidationError is a ValueError)
        return
    context = snmpeval.Context(SNMP_CONFIGS["auto"], NOW, {}, profile="fuzz", optical_unit=unit)
    value = snmpeval.field_value(spec, row, context, "fuzz.v")
    if isinstance(value, float):
        assert math.isfinite(value), f"converted to {value}"
    elif isinstance(value, int) and not isinstance(value, bool):
        assert -(2**63) <= value <= 2**64 - 1, f"converted to {value}, beyond 64 bits"
    else:
        assert value is None or isinstance(value, bool)


@FUZZ
@given(spec=SPECS, row=st.fixed_dictionaries({"v": SNMP_VALUES, "scale": SNMP_VALUES, "precision": SNMP_VALUES}),
       unit=st.sampled_from(["dbm_hundredths", "microwatt"]))
def test_snmp_value_conversion(spec: dict[str, Any], row: dict[str, Any], unit: str) -> None:
    check("snmp_value", (spec, row, unit), lambda: spec_body(spec, row, unit))


# ---------------------------------------------------------------------------------------------- traps

TRAP_OIDS = [trapmap.LINK_DOWN, trapmap.LINK_UP, trapmap.COLD_START, trapmap.WARM_START, trapmap.UPS_TRAP_ON_BATTERY,
             trapmap.UPS_TRAP_ALARM_ADDED, trapmap.UPS_TRAP_ALARM_REMOVED, "1.3.6.1.6.3.1.1.5.5", "1.3.6.1.4.1.9.0.1"]
COLUMNS = [trapmap.IF_INDEX, trapmap.IF_DESCR, trapmap.IF_ADMIN_STATUS, trapmap.IF_OPER_STATUS, trapmap.IF_NAME,
           trapmap.UPS_SECONDS_ON_BATTERY, trapmap.UPS_MINUTES_REMAINING, trapmap.UPS_ALARM_DESCR, "1.3.6.1.4.1.9.9",
           trapmap.SNMP_TRAP_ADDRESS, trapmap.SNMP_TRAP_COMMUNITY]
ARCS = st.integers(0, 64) | st.integers(0, 2**128) | st.sampled_from([2**32, 2**63, 2**64, 2**70])
OIDS = st.builds(lambda column, arcs: column + "".join(f".{a}" for a in arcs), st.sampled_from(COLUMNS),
                 st.lists(ARCS, max_size=2))
ALARMS = st.sampled_from([trapmap.UPS_ALARM_ON_BATTERY, trapmap.UPS_ALARM_LOW_BATTERY,
                          trapmap.UPS_ALARM_DEPLETED_BATTERY, "1.3.6.1.2.1.33.1.6.3.9"])
TRAP_VALUES = st.one_of(st.none(), st.integers(-(2**63), 2**64 - 1), st.sampled_from([-1, 0, 1, 2, 3]),
                        st.binary(max_size=20), st.text(max_size=20), OIDS, ALARMS,
                        st.sampled_from(["x" * 300, b"\xff\xfe", "\x1b[31m", "eth0\x00"]))


@st.composite
def var_binds(draw: st.DrawFn) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if draw(st.booleans()):
        out.append((trapmap.SYS_UPTIME, draw(st.integers(0, 2**32 - 1))))
    if draw(st.integers(0, 9)):
        trap_oid = draw(st.sampled_from(TRAP_OIDS) | OIDS | TRAP_VALUES)
        out.append((trapmap.SNMP_TRAP_OID, trap_oid))
    out += draw(st.lists(st.tuples(OIDS, TRAP_VALUES), max_size=5))
    return draw(st.permutations(out)) if draw(st.booleans()) else out


def trap_event_body(binds: list[tuple[str, Any]]) -> None:
    try:
        event = trapmap.trap_event(binds, "sw-core", NOW)
    except trapmap.TrapError as exc:
        assert exc.reason == "malformed" and exc.detail
        return
    round_trip(events=[event])


@FUZZ
@given(binds=var_binds())
def test_trap_event(binds: list[tuple[str, Any]]) -> None:
    check("trap_event", binds, lambda: trap_event_body(binds))


COMMUNITY = "fuzz-community"
TRAPS_CONFIG = f"type: traps\nlisten: 127.0.0.1:1162\ncommunities: [{COMMUNITY}]\ndevices: {{192.0.2.7: sw-core}}\n"
_SOURCE: list[traps.TrapsSource] = []


def trap_source() -> traps.TrapsSource:
    """Return the one receiver every datagram goes to (its SNMP engine is costly to make)."""
    if not _SOURCE:
        _SOURCE.append(traps.TrapsSource(strict.load(traps.TrapsConfig, TRAPS_CONFIG, "agent.yaml"),
                                         clock=lambda: NOW))
    return _SOURCE[0]


# A datagram is drawn as plain data (a recipe) and built with pysnmp in the test: pysnmp objects inside a strategy
# make hypothesis's replay unreliable.
PDU_KINDS = ["Integer", "OctetString", "ObjectIdentifier", "Counter32", "Counter64", "TimeTicks", "Gauge32",
             "IpAddress", "Null"]
OID_TUPLES = st.builds(lambda column, arcs: tuple(int(a) for a in column.split(".")) + tuple(arcs),
                       st.sampled_from(COLUMNS + TRAP_OIDS), st.lists(ARCS, max_size=2))
PDU_VALUES = st.one_of(
    st.tuples(st.just("Integer"), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just("OctetString"), st.binary(max_size=40) | st.text(max_size=20).map(str.encode)),
    st.tuples(st.just("ObjectIdentifier"), OID_TUPLES),
    st.tuples(st.sampled_from(["Counter32", "TimeTicks", "Gauge32"]), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("Counter64"), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("IpAddress"), st.tuples(*[st.integers(0, 255)] * 4).map(lambda b: ".".join(map(str, b)))),
    st.tuples(st.just("Null"), st.just("")),
)
BYTE_OPS = st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]), st.integers(0, 10**6),
                              st.binary(min_size=1, max_size=8)), min_size=1, max_size=4)


@st.composite
def trap_datagrams(draw: st.DrawFn) -> dict[str, Any]:
    """Return the recipe of an SNMPv1 or v2c trap (random objects, the right community mostly), byte mutations to
    apply to it, or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return {"raw": draw(st.binary(max_size=80))}
    recipe: dict[str, Any] = {
        "objects": draw(st.lists(st.tuples(OID_TUPLES, PDU_VALUES), max_size=4)),
        "community": draw(st.sampled_from([COMMUNITY, COMMUNITY, COMMUNITY, "public", ""])),
        "v2c": draw(st.booleans()),
        "pdu": draw(st.sampled_from(["SNMPv2TrapPDU", "SNMPv2TrapPDU", "InformRequestPDU", "GetRequestPDU"])),
        "request_id": draw(st.integers(0, 2**31 - 1)),
        "uptime": draw(st.integers(0, 2**32 - 1)),
        "trap_oid": draw(st.none() | st.sampled_from([tuple(int(a) for a in o.split(".")) for o in TRAP_OIDS])
                         | OID_TUPLES),
        "enterprise": draw(OID_TUPLES),
        "generic": draw(st.integers(0, 6)),
        "specific": draw(st.integers(0, 2**31 - 1)),
    }
    if draw(st.integers(0, 2)) == 0:
        recipe["mutations"] = draw(BYTE_OPS)
    return recipe


def build_datagram(recipe: dict[str, Any]) -> bytes:
    """Return the datagram a recipe from ``trap_datagrams`` describes."""
    from pyasn1.codec.ber import encoder
    from pysnmp.proto.api import v1, v2c

    if "raw" in recipe:
        return bytes(recipe["raw"])
    objects = [(oid, getattr(v2c, kind)(value)) for oid, (kind, value) in recipe["objects"]]
    if recipe["v2c"]:
        api: Any = v2c
        pdu = getattr(v2c, recipe["pdu"])()
        v2c.apiPDU.set_defaults(pdu)
        v2c.apiPDU.set_request_id(pdu, recipe["request_id"])
        head: list[tuple[tuple[int, ...], Any]] = [((1, 3, 6, 1, 2, 1, 1, 3, 0), v2c.TimeTicks(recipe["uptime"]))]
        if recipe["trap_oid"] is not None:
            head.append(((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0), v2c.ObjectIdentifier(recipe["trap_oid"])))
        v2c.apiPDU.set_varbinds(pdu, head + objects)
    else:
        api = v1
        pdu = v1.TrapPDU()
        v1.apiTrapPDU.set_defaults(pdu)
        v1.apiTrapPDU.set_timestamp(pdu, recipe["uptime"])
        v1.apiTrapPDU.set_enterprise(pdu, recipe["enterprise"])
        v1.apiTrapPDU.set_generic_trap(pdu, recipe["generic"])
        v1.apiTrapPDU.set_specific_trap(pdu, recipe["specific"])
        v1.apiTrapPDU.set_varbinds(pdu, [(o, v) for o, v in objects if not isinstance(v, v2c.Counter64)])
    msg = api.Message()
    api.apiMessage.set_defaults(msg)
    api.apiMessage.set_community(msg, recipe["community"])
    api.apiMessage.set_pdu(msg, pdu)
    data = bytearray(encoder.encode(msg))
    for op, where, chunk in recipe.get("mutations", []):
        pos = where % max(len(data), 1)
        if op == "flip" and data:
            data[pos] ^= 1 << (chunk[0] % 8)
        elif op == "set" and data:
            data[pos] = chunk[0]
        elif op == "insert":
            data[pos:pos] = chunk
        elif op == "delete":
            del data[pos : pos + len(chunk)]
        else:
            del data[pos:]
    return bytes(data)


def process_body(address: tuple[Any, ...], recipe: dict[str, Any]) -> None:
    datagram = build_datagram(recipe)
    source = trap_source()
    before = dict(source.stats)
    event = source.process(address, datagram)
    moved = {k: source.stats[k] - before[k] for k in source.stats if source.stats[k] != before[k]}
    moved.pop("unknown_sender", None)
    if "internal_error" in moved:
        raise AssertionError(f"the receiver failed on it (internal_error): {moved}")
    assert list(moved.values()) == [1], f"counted as {moved}"
    assert (event is not None) == ("accepted" in moved)
    if event is not None:
        round_trip(events=[event])


@FUZZ
@given(recipe=trap_datagrams(), address=st.sampled_from([("192.0.2.7", 40000), ("::ffff:192.0.2.9", 1, 0, 0)]))
def test_trap_datagrams(recipe: dict[str, Any], address: tuple[Any, ...]) -> None:
    check("traps", recipe, lambda: process_body(address, recipe))


# ---------------------------------------------------------------------------------------------- configuration


def _literal_secrets(text: str) -> str:
    return re.sub(r"\{(env|file|secret): [^}]*\}", "lab-secret-123", text)


def _profile_load(model: Any, text: str, source: str) -> Any:
    return profiles.load(text, source)


# The example collector configuration declares a receiver secret read from this variable; the inventory seed
# with secrets is loaded with the secrets that configuration declares (read once, here).
SECRET_ENV = {"ZW_SECRET_VIETTEL_TOKEN": "lab-secret-123"}
with mock.patch.dict(os.environ, SECRET_ENV):
    _DECLARED = strict.load(CollectorConfig, _literal_secrets((ROOT / "config" / "collector.example.yaml").read_text()),
                            "collector.yaml").secrets


def _load_with_secrets(model: Any, text: str, source: str) -> Any:
    return strict.load(model, text, source, context=secret_context(_DECLARED))


_PROFILE_TEXTS = [p.read_text() for p in sorted((ROOT / "agent" / "profiles").glob("*.yaml"))]
CONFIG_SEEDS: list[tuple[str, Any, Callable[[Any, str, str], Any], str]] = [
    ("agent", AgentConfig, strict.load, _literal_secrets((ROOT / "config" / "agent.example.yaml").read_text())),
    ("collector", CollectorConfig, strict.load,
     _literal_secrets((ROOT / "config" / "collector.example.yaml").read_text())),
    ("inventory", Inventory, strict.load, _literal_secrets((ROOT / "config" / "inventory.example.yaml").read_text())),
    ("inventory", Inventory, _load_with_secrets, (ROOT / "config" / "inventory.example.yaml").read_text()),
    ("traps", traps.TrapsConfig, strict.load, TRAPS_CONFIG),
    *[("profile", profiles.Profile, _profile_load, text) for text in _PROFILE_TEXTS],
]
CONFIG_DOCS = {i: yaml.safe_load(seed[3]) for i, seed in enumerate(CONFIG_SEEDS)}
CONFIG_KEYS = sorted({str(k) for doc in CONFIG_DOCS.values() for path in _paths(doc) for k in path
                      if isinstance(k, str)})
YAML_ODD = st.one_of(st.sampled_from([v for v in ODD_VALUES if not isinstance(v, str) or v.isprintable()]),
                     JSON_VALUES.filter(lambda v: "\\ud" not in json.dumps(v)),
                     st.sampled_from(["30s", "1m30s", "0ms", "-5s", "10.5.1", "[::]:162", "0.0.0.0:99999", "v2c",
                                      "v3", "AES256", "452-4", "1.3.6.1", "1.3.6.1.", "(?P<", "{index}", "{0}",
                                      "*alias", "&a", "!!python/object:os.system", "~", "yes", "0o17", "1_000"]))


@st.composite
def alias_bombs(draw: st.DrawFn) -> str:
    """Return a "billion laughs": levels of lists of aliases to the level before (up to 12**12 values from under
    a kilobyte), used once at the end, under a key of the seed's or one of its own."""
    width, levels = draw(st.integers(2, 12)), draw(st.integers(2, 12))
    lines = [f"l0: &l0 [{', '.join([draw(st.sampled_from(['lol', '1', '{a: b}', '[x]']))] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    key = draw(st.sampled_from(CONFIG_KEYS) | st.just("bomb"))
    return "\n".join([*lines, f"{key}: *l{levels - 1}"]) + "\n"


@st.composite
def config_texts(draw: st.DrawFn) -> tuple[int, str]:
    seed = draw(st.integers(0, len(CONFIG_SEEDS) - 1))
    kind = draw(st.sampled_from(["structure", "structure", "text", "random", "bomb"]))
    if kind == "random":
        return seed, draw(st.text(max_size=60))
    if kind == "bomb":
        bomb = draw(alias_bombs())
        return seed, draw(st.sampled_from([bomb, bomb + CONFIG_SEEDS[seed][3], CONFIG_SEEDS[seed][3] + "\n" + bomb]))
    if kind == "structure":
        doc = draw(mutated([CONFIG_DOCS[seed]], CONFIG_KEYS, YAML_ODD))
        return seed, yaml.safe_dump(doc, allow_unicode=draw(st.booleans()), default_flow_style=draw(st.booleans()))
    lines = CONFIG_SEEDS[seed][3].splitlines()
    pieces = st.sampled_from(["  ", "- ", ": ", "{", "}", "[", "]", "&a", "*a", "*b", "'", '"', "#", "\t", "?", "|",
                              "!!binary", "%YAML 1.1", "---", "...", "key: value", "<<: *a"]) | st.text(max_size=6)
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "insert", "indent", "edit"]))
        if op == "delete":
            del lines[pos]
        elif op == "duplicate":
            lines.insert(pos, lines[pos])
        elif op == "insert":
            lines.insert(pos, draw(pieces))
        elif op == "indent":
            lines[pos] = draw(st.sampled_from(["", " ", "  ", "    ", "\t"])) + lines[pos].lstrip()
        else:
            at_char = draw(st.integers(0, len(lines[pos])))
            lines[pos] = lines[pos][:at_char] + draw(pieces) + lines[pos][at_char + draw(st.integers(0, 4)) :]
        if not lines:
            break
    return seed, "\n".join(lines)


def config_body(seed: int, text: str) -> None:
    _, model, load, _ = CONFIG_SEEDS[seed]
    try:
        with mock.patch.dict(os.environ, SECRET_ENV):
            load(model, text, "fuzz.yaml")
    except strict.ConfigError as exc:
        message = str(exc)
        assert message.startswith("fuzz.yaml") and exc.message, message
        assert len(message.splitlines()) == 1 and exc.message.isprintable(), f"not one line: {message!r}"
        if exc.line is not None:
            # counted as an editor counts (\n only), at most one past the last line (the end of the text)
            assert 1 <= exc.line <= text.count("\n") + 1, f"line {exc.line} is outside the text"


@FUZZ
@given(data=config_texts())
def test_config_loader(data: tuple[int, str]) -> None:
    check("config", data, lambda: config_body(*data))


# ---------------------------------------------------------------------------------------------- known bugs
# Each was found by the fuzzing above; the test states the behaviour the contract asks for, with the minimal
# input. A bug not fixed yet gets an xfail(strict) test here and a ``Known`` in its target above (counted, not
# raised); once it is fixed the test passes, fails as XPASS, and both are to be removed. All below are fixed.


def test_wire_row_name_that_is_an_array() -> None:
    payload = b'{"v":1,"zone":"z","probe":"p","seq":0,"sent_ns":0,"samples":[{"m":[]}]}'
    with pytest.raises(wire.WireError, match=r"samples\[0\]"):
        wire.decode(payload)


def test_known_wire_lone_surrogate_in_a_tag() -> None:
    """Was: decode accepted a tag value with a lone surrogate (JSON \\ud800), which encode then refused."""
    payload = b'{"v":1,"zone":"z","probe":"p","seq":0,"sent_ns":0,"samples":[{"m":"x","ts":0,"tags":{"a":"\\ud800"}}]}'
    with pytest.raises(wire.WireError, match=r"samples\[0\]\.tags\.a"):
        wire.decode(payload)


def test_known_at_field_with_too_many_digits() -> None:
    """Was: a field of more than 4300 digits raised a plain ValueError from int() (Python's digit limit)."""
    line = "+CSQ: " + "1" * 4301 + ",99"
    with pytest.raises(at.ATParseError) as raised:
        at.parse_csq(line)
    assert raised.value.line == line


def test_known_infinite_value_in_a_vendor_answer() -> None:
    """Was: '1.0e999' was read as an infinite dBm value; to_sample then raised OverflowError (round(inf))."""
    result = parse_transcript('AT+QCSQ\n+QCSQ: "GSM",1.0e999\nOK')
    round_trip(result.samples)


def test_known_mmcli_value_beyond_64_bits() -> None:
    """Was: an RSRP of 2e19 from mmcli became an int field beyond 64 bits, which the collector refuses."""
    status = mmcli.parse_status({"modem": {"generic": {"access-technologies": ["lte"]}}})
    signal = mmcli.parse_signal({"modem": {"signal": {"lte": {"rsrp": "20000000000000000000"}}}})
    round_trip([vendors.to_sample(mmcli.reading(status, signal), now_ns=NOW)])


def test_known_cell_tag_too_long() -> None:
    """Was: a cell id of hundreds of hex digits gave a 'cell' tag longer than the 256 characters allowed."""
    result = parse_transcript('+CEREG: 2,1,"1F00","' + "F" * 300 + '",7')
    round_trip(result.samples)


def test_known_infinite_sinr_in_a_sample() -> None:
    """Was: an infinite SINR ('-1.0e999' in +QENG) went into the sample, which encode then refused."""
    line = '+QENG: "servingcell","NOCONN","LTE","FDD",214,01,7676A09,188,6300,20,3,3,603,-104,-9,-78,-1.0e999,23'
    round_trip(parse_transcript(line).samples)


def test_known_snmp_round_beyond_64_bits() -> None:
    """Was: 'round: 0' gave an int without a bound, so a Counter64 times a scale above 1 went beyond 64 bits."""
    spec = profiles.FieldSpec.model_validate({"column": "v", "scale": 10.0, "round": 0})
    context = snmpeval.Context(SNMP_CONFIGS["auto"], NOW, {}, profile="fuzz")
    value = snmpeval.field_value(spec, {"v": 2**64 - 1}, context, "fuzz.v")
    assert value is None or -(2**63) <= value <= 2**64 - 1


def test_known_trap_if_index_beyond_64_bits() -> None:
    """Was: the ifIndex taken from an OID instance beyond 64 bits gave an if_index field the collector refuses."""
    event = trapmap.trap_event([(trapmap.SNMP_TRAP_OID, trapmap.LINK_DOWN), (f"{trapmap.IF_INDEX}.{2**64}", None)],
                               "sw", NOW)
    round_trip(events=[event])


def test_known_mmcli_deeply_nested_json() -> None:
    """Was: JSON nested deeper than the recursion limit raised RecursionError from json.loads, not SourceError."""
    with pytest.raises(SourceError):
        MODEM._parse("[" * 100_000, mmcli.parse_status, "-J")


def test_known_config_recursive_alias() -> None:
    """Was: a recursive YAML alias raised RecursionError, not ConfigError."""
    with pytest.raises(strict.ConfigError):
        strict.load(Inventory, "zones: &x [*x]", "inventory.yaml")


def test_known_config_control_character() -> None:
    """Was: a control character (YAML ReaderError, which has no 'problem') gave a two-line message, no line."""
    with pytest.raises(strict.ConfigError) as raised:
        strict.load(Inventory, "\x08", "inventory.yaml")
    assert "\n" not in str(raised.value)
    assert raised.value.line == 1


def test_known_config_unknown_tag() -> None:
    """Was: an unknown YAML tag gave 'bad value: ' and PyYAML's whole error, marks and caret on further lines."""
    with pytest.raises(strict.ConfigError) as raised:
        strict.load(Inventory, "zones: !!foo x", "inventory.yaml")
    assert "\n" not in str(raised.value)


def test_known_config_key_with_a_line_break() -> None:
    """Was: a key with a line break was shown raw in the key path, so the message was not one line."""
    with pytest.raises(strict.ConfigError) as raised:
        strict.load(Inventory, 'zones: {"a\\nb": 1}', "inventory.yaml")
    assert "\n" not in str(raised.value)


def test_known_fast_path_took_events_null() -> None:
    """Was: the fast path took ``"events": null`` as no events; the contract (and the full path) refuse it."""
    payload = b'{"v": 1, "zone": "z1", "probe": "p1", "seq": 66, "sent_ns": 175637, "events": null}'
    with pytest.raises(wire.WireError, match="'events' must be a list"):
        ingest.parse_entry(Entry(1, FAST_TOPIC, NOW, payload))
    assert ingest.plain_message(Entry(1, FAST_TOPIC, NOW, payload)) is None
