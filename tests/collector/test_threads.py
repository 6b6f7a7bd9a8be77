"""Supervision: a collector thread that dies stops the collector loudly, and the next start pages the NOC."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import pytest

from collector import threads
from collector.app import Collector
from collector.config import CollectorConfig
from collector.ingest import Ingest
from collector.inventory import Inventory
from zonewatch.strict import load


def test_a_thread_that_dies_is_logged_and_reported_to_every_handler(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, str]] = []
    remove = threads.on_death(lambda name, exc: seen.append((name, repr(exc))))
    try:
        def boom() -> None:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")

        with caplog.at_level(logging.CRITICAL, logger="collector.threads"):
            t = threads.named(boom, "zw-test")
            t.start()
            t.join(5)
        done = threads.named(lambda: None, "zw-fine")   # a thread that ends normally is no news
        done.start()
        done.join(5)
    finally:
        remove()
    assert seen == [("zw-test", "OverflowError('Python int too large to convert to SQLite INTEGER')")]
    assert "collector thread zw-test died: OverflowError" in caplog.text


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(tmp: Path) -> CollectorConfig:
    return load(CollectorConfig, f"""\
mqtt: {{host: 127.0.0.1, port: {dead_port()}}}
storage: {{type: sqlite, path: '{tmp / "store.db"}'}}
queue: {{path: '{tmp / "intake.db"}'}}
http: {{enabled: false}}
alerting: {{delivery: direct, noc: [{{type: webhook, url: 'http://127.0.0.1:{dead_port()}/noc'}}]}}
""")


INVENTORY = "zones: {z: {name: Z}}\nprobes: {p1: {zone: z}}\n"


def test_the_collector_stops_when_one_of_its_threads_dies_and_says_so_at_the_next_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, inventory = config(tmp_path), load(Inventory, INVENTORY)
    broken = threading.Event()

    def commit_loop(self: Ingest) -> None:
        broken.set()
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    with monkeypatch.context() as m:
        m.setattr(Ingest, "_commit_loop", commit_loop)
        first = Collector(cfg, inventory)
        stop = threading.Event()   # never set: only the thread's death ends the run
        with pytest.raises(RuntimeError, match="collector thread zw-commit: OverflowError"):
            first.run_until(stop)
    assert broken.is_set() and first.fault_path.exists()
    second = Collector(cfg, inventory)
    second.start()
    try:
        assert second.engine.facts.fault[:2] == ("zw-commit", "OverflowError: Python int too large to convert to "
                                                 "SQLite INTEGER")
        assert not second.fault_path.exists()   # told once
        second.engine.evaluated.wait(10)
        assert [a.labels["alertname"] for a in second.engine.tracker.firing()] == ["CollectorFault"]
    finally:
        second.stop()
