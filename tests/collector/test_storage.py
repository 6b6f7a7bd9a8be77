"""The storage registry: every type the configuration accepts is registered, its writer is what it declares, and
a type that is not registered, or not fit for the collector, is a clear error. No I/O: writers connect on use."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from collector.config import CollectorConfig
from collector.storage import STORAGES, SqliteStorage, StorageConfig, make_writer, takes_lines
from tests.plugins import accepted_types

# One valid configuration per registered type (the meta-test below keeps this in step with STORAGES).
SETTINGS: dict[str, dict[str, str]] = {
    "victoriametrics": {"url": "http://127.0.0.1:8428"},
    "influxdb": {"url": "http://127.0.0.1:8086", "org": "zone", "bucket": "zonewatch", "token": "t0ken-0123456789"},
    "sqlite": {"path": "{tmp}/zonewatch.db"},
}


def storage(kind: str, tmp_path: Path) -> Any:
    settings = {key: value.replace("{tmp}", str(tmp_path)) for key, value in SETTINGS[kind].items()}
    return TypeAdapter(StorageConfig).validate_python({"type": kind, **settings})


def test_every_storage_type_the_configuration_accepts_is_registered() -> None:
    accepted = accepted_types(CollectorConfig, "storage")
    assert "sqlite" in accepted   # the union was found
    assert set(STORAGES) == accepted
    assert set(SETTINGS) == accepted


@pytest.mark.parametrize("kind", sorted(STORAGES))
def test_each_writer_is_what_its_type_declares(kind: str, tmp_path: Path) -> None:
    writer = make_writer(storage(kind, tmp_path))
    try:
        assert takes_lines(writer) == STORAGES[kind].lines   # the ingest's fast path asks takes_lines
        assert STORAGES[kind].same_point
    finally:
        writer.close()
    assert not (tmp_path / "zonewatch.db").exists()   # nothing is opened before the first write


def test_line_protocol_stores_take_the_fast_path_and_sqlite_does_not() -> None:
    assert {kind for kind, backend in STORAGES.items() if backend.lines} == {"victoriametrics", "influxdb"}


def test_a_type_that_is_not_registered_is_a_clear_error(tmp_path: Path) -> None:
    others = {kind: backend for kind, backend in STORAGES.items() if kind != "sqlite"}
    with pytest.raises(ValueError) as exc:
        make_writer(SqliteStorage(type="sqlite", path=str(tmp_path / "x.db")), others)
    assert str(exc.value) == ("storage type 'sqlite' is not registered: add its Backend to STORAGES in "
                              "collector/storage/__init__.py (registered: influxdb, victoriametrics)")


def test_a_declaration_the_writer_does_not_keep_is_refused(tmp_path: Path) -> None:
    config = SqliteStorage(type="sqlite", path=str(tmp_path / "x.db"))
    wrong = {"sqlite": dataclasses.replace(STORAGES["sqlite"], lines=True)}
    with pytest.raises(ValueError, match=r"declares lines=True but its writer \(SqliteWriter\) is not a LineWriter"):
        make_writer(config, wrong)


def test_a_store_that_keeps_a_rewritten_point_twice_is_refused(tmp_path: Path) -> None:
    config = SqliteStorage(type="sqlite", path=str(tmp_path / "x.db"))
    twice = {"sqlite": dataclasses.replace(STORAGES["sqlite"], same_point=False)}
    with pytest.raises(ValueError, match="does not replace a point written again: the collector writes batches "
                                         "again after a failure or a crash"):
        make_writer(config, twice)
