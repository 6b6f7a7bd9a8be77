"""The runner's handling of one poll: what is counted, what is logged, and when (no sleeping, fake sources)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.runner import Agent, first_offset, jitter
from agent.sources import SourceError
from zonewatch import wire
from zonewatch.strict import load


class FlakySource:
    """A fake source: answers, fails or recovers as the test says."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.error: str | None = None
        self.closed = False

    async def collect(self, now_ns: int) -> list[wire.Sample]:
        if self.error:
            raise SourceError(self.error)
        return [wire.Sample("cellular", {"modem": self.name}, {"registered": True}, now_ns)]

    async def close(self) -> None:
        self.closed = True


def make_agent(tmp_path: Path) -> tuple[Agent, FlakySource]:
    cfg = load(AgentConfig, f"probe: {{id: p1, zone: z1}}\nspool: {{path: '{tmp_path / 's.db'}'}}\n"
                            "sources:\n  - {type: cellular, name: m1, port: /dev/null, interval: 30s}\n")
    agent = Agent(cfg, clock=lambda: 5_000)
    fake = FlakySource("m1")
    agent.sources["m1"] = (agent.sources["m1"][0], fake)
    return agent, fake


def sample_value(agent: Agent, name: str, **labels: str) -> float | None:
    return agent.metrics.registry.get_sample_value(name, labels)


def test_a_failing_source_is_logged_once_and_recovery_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    agent, fake = make_agent(tmp_path)
    caplog.set_level(logging.INFO, logger="agent.runner")

    async def polls() -> list[str | None]:
        out = []
        for error in (None, "no answer to AT+CSQ", "no answer to AT+CSQ", "no answer to AT+CSQ", None, None):
            fake.error = error
            out.append((await agent.poll_once("m1")).error)
        return out

    errors = asyncio.run(polls())
    assert errors == [None, "no answer to AT+CSQ", "no answer to AT+CSQ", "no answer to AT+CSQ", None, None]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("failed" in m for m in messages) == 1  # once, not at every poll
    assert sum("recovered" in m for m in messages) == 1
    labels = {"source": "m1", "type": "cellular"}
    assert sample_value(agent, "zonewatch_source_errors_total", **labels) == 3
    assert sample_value(agent, "zonewatch_source_samples_total", **labels) == 3
    assert sample_value(agent, "zonewatch_source_last_success_timestamp_seconds", **labels) == 5_000 / 1e9
    assert sample_value(agent, "zonewatch_source_duration_seconds_count", **labels) == 3


def test_once_polls_every_source_and_closes_them(tmp_path: Path) -> None:
    agent, fake = make_agent(tmp_path)
    (result,) = asyncio.run(agent.once())
    assert result.samples == [wire.Sample("cellular", {"modem": "m1"}, {"registered": True}, 5_000)]
    assert fake.closed


def test_offsets_spread_sources_and_stay_put() -> None:
    offsets = {first_offset(f"bts-{i:02d}", 60) for i in range(50)}
    assert len(offsets) > 40  # fifty devices do not all start in the same instant
    assert all(0 <= o < 10 for o in offsets)
    assert first_offset("bts-01", 60) == first_offset("bts-01", 60)  # the same slot after every restart
    assert jitter(30) == 1.5 and jitter(600) == 2.0


class SlowDevice(FlakySource):
    """A fake SNMP-like source whose poll runs past its interval (the runner's wait_for gives up)."""

    async def collect(self, now_ns: int) -> list[wire.Sample]:
        raise TimeoutError  # what asyncio.wait_for raises when the interval is over

    def unanswered(self, now_ns: int) -> list[wire.Sample]:
        return [wire.Sample("device", {"device": self.name}, {"up": False}, now_ns)]


def test_a_poll_that_runs_past_its_interval_reports_the_device_down(tmp_path: Path) -> None:
    agent, _ = make_agent(tmp_path)
    agent.sources["m1"] = (agent.sources["m1"][0], SlowDevice("m1"))
    result = asyncio.run(agent.poll_once("m1"))
    assert result.error == "no answer within 30s"
    assert result.samples == [wire.Sample("device", {"device": "m1"}, {"up": False}, 5_000)]


def test_a_source_error_is_not_taken_for_a_slow_device(tmp_path: Path) -> None:
    agent, _ = make_agent(tmp_path)
    slow = SlowDevice("m1")
    slow.collect = FlakySource.collect.__get__(slow)  # type: ignore[method-assign]
    slow.error = "bad answer"
    agent.sources["m1"] = (agent.sources["m1"][0], slow)
    assert asyncio.run(agent.poll_once("m1")).samples == []


def test_the_probe_reports_its_version_as_a_series_of_its_own(tmp_path: Path) -> None:
    from agent.runner import VERSION
    from agent.spool import Spool

    agent, _ = make_agent(tmp_path)
    agent.spool = Spool(tmp_path / "spool.db", "z1", "p1")
    asyncio.run(agent.poll_self())
    samples = [s for entry in agent.spool.queue.pending(10) for s in wire.decode(entry.payload).samples]
    assert [(s.tags, sorted(s.fields)) for s in samples] == [
        ({}, ["cpu_s", "disk_free_mb", "disk_free_pct", "rss_mb", "spool_depth", "spool_dropped", "spool_fill_pct",
              "up"]), ({"version": VERSION}, ["info"])]
    assert VERSION != "unknown"  # the tests run from an installed tree
