"""Commands from the centre on the probe: a diagnostic round reaches the qos source of the carrier's modem; bad
input is refused, counted and logged once, never a crash (no broker: payloads are handed in)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from agent.fleet.commands import Commands
from agent.metrics import AgentMetrics
from agent.sources.qos import QosConfig, QosSource
from agent.sources.qosbearer import FakeBearer
from zonewatch import strict, wire

S = 10**9
NOW = 1_764_290_000 * S


def qos(tmp_path: Path, name: str, modem: str, carrier: str) -> tuple[QosConfig, QosSource]:
    doc = {"type": "qos", "name": name, "modem": modem, "carrier": carrier, "interface": "wwan0",
           "dns": ["10.1.0.53"], "interval": "60s", "timeout": "2s", "short_every": "1h", "long_every": "1d",
           "long_windows": ["01:00-02:00"], "budget": {"monthly": "1GB"}, "state_path": str(tmp_path / f"{name}.json"),
           "tests": [{"test": "tcp", "host": "10.9.0.10", "port": 443},
                     {"test": "download", "url": "http://10.9.0.10/1MB.bin", "bytes": "1MB"}]}
    config = strict.load(QosConfig, json.dumps(doc), "agent.yaml")
    return config, QosSource(config, FakeBearer())


def command(id_: str = "c1", modem: str = "vt", carrier: str = "452-04", transfers: bool = False,
            expires_ns: int = NOW + 600 * S, probe: str = "p1") -> bytes:
    action = wire.DiagnosticRound(carrier, modem, transfers, "DataAccessFailure")
    return wire.encode_command(wire.Command(id_, "z", probe, expires_ns - 600 * S, expires_ns, action))


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, tuple[Any, Any]]:
    return {"qos-vt": qos(tmp_path, "qos-vt", "vt", "452-04"), "qos-vn": qos(tmp_path, "qos-vn", "vn", "452-02")}


def samples(source: QosSource, at_ns: int) -> dict[str, dict[str, Any]]:
    got = asyncio.run(source.collect(at_ns))
    return {f"{s.tags['test']}:{s.tags['target']}": s.fields for s in got}


def test_a_round_runs_on_the_carriers_modem_and_its_samples_say_diagnostic(sources: dict[str, Any]) -> None:
    metrics = AgentMetrics()
    commands = Commands("z", "p1", metrics.commands)
    vt = sources["qos-vt"][1]
    noon = NOW   # outside the transfer window: a scheduled tick runs the short test only
    assert "diagnostic" not in samples(vt, noon)["tcp:10.9.0.10:443"]
    assert samples(vt, noon + 60 * S).keys() == {"budget:sim"}   # nothing due for an hour
    assert commands.handle(command(), sources, noon + 61 * S) == ["qos-vt"]
    got = samples(vt, noon + 62 * S)
    assert got["tcp:10.9.0.10:443"] == {"success": True, "time_ms": 20.0, "diagnostic": True}
    assert "diagnostic" not in got["budget:sim"] and "download:10.9.0.10" not in got   # no transfers asked
    assert samples(vt, noon + 120 * S).keys() == {"budget:sim"}   # one round, not a new schedule
    assert metrics.registry.get_sample_value("zonewatch_commands_total",
                                             {"kind": "diagnostic_round", "result": "accepted"}) == 1


def test_a_throughput_round_with_transfers_runs_them_outside_their_window(sources: dict[str, Any]) -> None:
    commands = Commands("z", "p1")
    vt = sources["qos-vt"][1]
    samples(vt, NOW)
    commands.handle(command(transfers=True), sources, NOW + S)
    assert samples(vt, NOW + 60 * S)["tcp:10.9.0.10:443"]["diagnostic"] is True
    assert samples(vt, NOW + 120 * S)["download:10.9.0.10"]["diagnostic"] is True


def test_a_modem_name_the_probe_does_not_know_falls_back_to_the_carriers_sources(sources: dict[str, Any]) -> None:
    commands = Commands("z", "p1")
    assert commands.handle(command(modem="other-name", carrier="452-02"), sources, NOW) == ["qos-vn"]
    assert commands.handle(command(id_="c2", modem="", carrier="452-02"), sources, NOW) == ["qos-vn"]


def test_bad_commands_are_refused_counted_and_logged_once(sources: dict[str, Any],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    metrics = AgentMetrics()
    commands = Commands("z", "p1", metrics.commands)
    bad = json.loads(command())
    bad["kind"] = "reboot"
    with caplog.at_level(logging.WARNING, "agent.fleet.commands"):
        for i in range(3):
            assert commands.handle(json.dumps(bad).encode(), sources, NOW) == []
            assert commands.handle(b"\xff not json", sources, NOW) == []
            assert commands.handle(b'{"v": 1}', sources, NOW) == []
            assert commands.handle(command(expires_ns=NOW - S), sources, NOW) == []   # a probe back from an outage
            assert commands.handle(command(probe="p2"), sources, NOW) == []
            assert commands.handle(command(id_=f"x{i}", carrier="452-01"), sources, NOW) == []
        assert commands.handle(command(id_="once"), sources, NOW) == ["qos-vt"]
        assert commands.handle(command(id_="once"), sources, NOW) == []   # QoS 1 brought it twice
    value = metrics.registry.get_sample_value
    for kind, result in (("other", "unknown_kind"), ("other", "not_json"), ("other", "bad_schema"),
                         ("diagnostic_round", "expired"), ("diagnostic_round", "not_this_probe"),
                         ("diagnostic_round", "no_source")):
        assert value("zonewatch_commands_total", {"kind": kind, "result": result}) == 3, result
    assert value("zonewatch_commands_total", {"kind": "diagnostic_round", "result": "duplicate"}) == 1
    refusals = [r for r in caplog.records if "refused a command" in r.getMessage()]
    assert len(refusals) == 6   # one per kind of refusal, not one per message
    assert any("expired" in r.getMessage() for r in refusals)
