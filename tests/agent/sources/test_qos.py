"""QosSource with a fake bearer: what each test reports, what a cut link and a small budget give (no network)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.config import AgentConfig
from agent.sources import SourceError
from agent.sources.qos import QosConfig, QosSource
from agent.sources.qosbearer import FakeBearer, parse_bearer_dns
from agent.sources.qostests import parse_bytes
from zonewatch import strict
from zonewatch.wire import Sample

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
MB = 10**6
SERVER = "10.9.0.10"
PORTAL = "10.9.0.20"


def ns(local: str) -> int:
    """Return the epoch ns of a local Ho Chi Minh City time ``YYYY-MM-DD HH:MM``."""
    return int(dt.datetime.strptime(local, "%Y-%m-%d %H:%M").replace(tzinfo=HCM).timestamp()) * 10**9


DAY, NIGHT = ns("2025-11-28 14:00"), ns("2025-11-28 02:00")


def config(tmp_path: Path, **extra: Any) -> QosConfig:
    doc: dict[str, Any] = {
        "type": "qos", "name": "qos-vt", "modem": "viettel", "carrier": "452-04", "interface": "wwan0",
        "dns": ["10.1.0.53", "10.1.0.54"], "core": "10.1.0.1", "interval": "60s", "timeout": "2s",
        "budget": {"monthly": "2GB"}, "state_path": str(tmp_path / "qos.json"),
        "tests": [
            {"test": "dns", "name": "qos.zone"},
            {"test": "tcp", "host": "qos.zone", "port": 443},
            {"test": "http", "url": "https://portal.zone/"},
            {"test": "icmp", "host": "core", "count": 3},
            {"test": "udp", "host": "qos.zone", "count": 3},
            {"test": "download", "url": "http://qos.zone/10MB.bin", "bytes": "10MB"},
            {"test": "upload", "url": "http://qos.zone/up", "bytes": "5MB"},
        ],
    }
    doc.update(extra)
    return strict.load(QosConfig, json.dumps(doc), "agent.yaml")


def bearer() -> FakeBearer:
    fake = FakeBearer()
    fake.names = {"qos.zone": (SERVER,), "portal.zone": (PORTAL,)}
    return fake


def poll(source: QosSource, at_ns: int) -> dict[str, Sample]:
    samples = asyncio.run(source.collect(at_ns))
    return {f"{s.tags['test']}:{s.tags['target']}": s for s in samples}


def test_a_day_tick_runs_every_short_test_through_the_bearer_dns(tmp_path: Path) -> None:
    fake = bearer()
    got = poll(QosSource(config(tmp_path), fake), DAY)
    assert sorted(got) == ["budget:sim", "dns:qos.zone", "http:portal.zone", "icmp:core", "tcp:qos.zone:443",
                           "udp:qos.zone:7"]
    for s in got.values():
        assert s.measurement == "qos" and s.time_ns == DAY
        assert {k: s.tags[k] for k in ("carrier", "modem")} == {"carrier": "452-04", "modem": "viettel"}
    assert got["dns:qos.zone"].fields == {"success": True, "time_ms": 8.0}
    assert got["tcp:qos.zone:443"].fields == {"success": True, "time_ms": 28.0}   # lookup + connect
    assert got["http:portal.zone"].fields == {"success": True, "time_ms": 53.0, "connect_ms": 20.0, "status": 200,
                                              "bytes": 5000}
    assert got["icmp:core"].fields == {"success": True, "loss_pct": 0.0, "rtt_ms": 11.0, "jitter_ms": 1.5}
    assert got["udp:qos.zone:7"].fields["rtt_ms"] == 11.0
    # names go to the bearer's servers, once a tick; the tests then go to the addresses they gave
    resolved = [c for c in fake.calls if c[0] == "resolve"]
    assert resolved == [("resolve", "qos.zone", ("10.1.0.53", "10.1.0.54")),
                        ("resolve", "portal.zone", ("10.1.0.53", "10.1.0.54"))]
    assert ("tcp", SERVER, 443) in fake.calls and ("http", "https://portal.zone/", PORTAL) in fake.calls
    assert ("ping", "10.1.0.1", 3) in fake.calls and ("udp", SERVER, 7, 3) in fake.calls
    assert not [c for c in fake.calls if c[0] in ("download", "upload")]   # transfers wait for the night
    budget = got["budget:sim"].fields
    assert budget["refused"] == 0 and budget["budget_used_bytes"] == fake.total
    assert budget["budget_left_bytes"] == 2000 * MB - fake.total


def test_a_cut_link_is_failed_access_and_no_made_up_echo_figures(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    fake = bearer()
    fake.down = True
    with caplog.at_level(logging.WARNING, "agent.sources.qos"):
        got = poll(QosSource(config(tmp_path), fake), DAY)
    assert got["dns:qos.zone"].fields == {"success": False}
    assert got["tcp:qos.zone:443"].fields == {"success": False}
    assert got["http:portal.zone"].fields == {"success": False}
    # the core has an address: its echo test ran and lost everything
    assert got["icmp:core"].fields == {"success": False, "loss_pct": 100.0}
    # the zone server's name did not resolve: the UDP test could not run, so it gives no number
    assert "udp:qos.zone:7" not in got
    assert any("udp:qos.zone:7" in r.getMessage() and "did not resolve" in r.getMessage() for r in caplog.records)


def test_a_failure_is_logged_when_it_starts_and_when_it_ends_not_at_every_run(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fake = bearer()
    source = QosSource(config(tmp_path, short_every="1m"), fake)
    fake.down = True
    with caplog.at_level(logging.INFO, "agent.sources.qos"):
        poll(source, DAY)
        first = len(caplog.records)
        poll(source, DAY + 60 * 10**9)
        assert len(caplog.records) == first
        fake.down = False
        poll(source, DAY + 120 * 10**9)
    assert any("dns:qos.zone recovered" in r.getMessage() for r in caplog.records[first:])


def test_night_transfers_give_speed_and_a_dropped_one_gives_none(tmp_path: Path) -> None:
    fake = bearer()
    source = QosSource(config(tmp_path), fake)
    poll(source, NIGHT)                                  # the short tests come first
    down = poll(source, NIGHT + 60 * 10**9)["download:qos.zone"].fields
    assert down == {"success": True, "bytes": 10 * MB, "dropped": False, "time_ms": 48.0, "down_mbps": 20.0}
    fake.stop_after = 3 * MB
    up = poll(source, NIGHT + 120 * 10**9)["upload:qos.zone"].fields
    assert up == {"success": False, "bytes": 3 * MB, "dropped": True, "time_ms": 48.0}
    fake.down = True
    source.request_round(transfers=True)
    polls = [poll(source, NIGHT + (180 + 60 * i) * 10**9) for i in range(3)]
    failed = polls[1]["download:qos.zone"].fields
    # the name did not resolve: a failed access, not a dropped transfer; asked for by a round, so marked diagnostic
    assert failed == {"success": False, "diagnostic": True}


def test_a_25_mb_budget_refuses_the_third_10_mb_download(tmp_path: Path) -> None:
    fake = bearer()
    cfg = config(tmp_path, budget={"monthly": "25MB"}, long_windows=["00:00-24:00"],
                 tests=[{"test": "download", "url": "http://qos.zone/10MB.bin", "bytes": "10MB", "every": "1m"}])
    source = QosSource(cfg, fake)
    ran = []
    for i in range(3):
        got = poll(source, DAY + i * 60 * 10**9)
        ran.append("download:qos.zone" in got)
        budget = got["budget:sim"].fields
    assert ran == [True, True, False]
    assert budget == {"budget_left_bytes": 25 * MB - 2 * 10_600_200, "budget_used_bytes": 2 * 10_600_200,
                      "refused": 1}
    assert len([c for c in fake.calls if c[0] == "download"]) == 2


def test_the_budget_used_survives_a_restart(tmp_path: Path) -> None:
    cfg = config(tmp_path, budget={"monthly": "25MB"}, long_windows=["00:00-24:00"],
                 tests=[{"test": "download", "url": "http://qos.zone/10MB.bin", "bytes": "10MB", "every": "1m"}])
    poll(QosSource(cfg, bearer()), DAY)
    poll(QosSource(cfg, bearer()), DAY + 60 * 10**9)
    again = poll(QosSource(cfg, bearer()), DAY + 120 * 10**9)
    assert "download:qos.zone" not in again and again["budget:sim"].fields["refused"] == 1


def test_no_interface_no_test_and_no_number(tmp_path: Path) -> None:
    fake = bearer()
    fake.exists = False
    with pytest.raises(SourceError, match="interface wwan0 does not exist"):
        asyncio.run(QosSource(config(tmp_path), fake).collect(DAY))
    assert fake.calls == []


def test_an_unwritable_state_file_does_not_stop_the_tests(tmp_path: Path) -> None:
    got = poll(QosSource(config(tmp_path, state_path=str(tmp_path / "missing" / "qos.json")), bearer()), DAY)
    assert got["dns:qos.zone"].fields["success"] is True


@pytest.mark.parametrize(("change", "message"), [
    ({"interval": "20s"}, "'interval' 20s is too short"),
    ({"dns": "mmcli"}, "dns: mmcli needs modem_index"),
    ({"dns": []}, "give the bearer's DNS servers"),
    ({"carrier": "viettel"}, "expected a PLMN"),
    ({"long_windows": ["night"]}, "expected a window"),
    ({"timezone": "Mars/Olympus"}, "unknown time zone"),
    ({"budget": {"monthly": "lots"}}, "expected a size"),
    ({"tests": [{"test": "dns", "name": "a.zone"}, {"test": "dns", "name": "a.zone"}]}, "two dns tests"),
    ({"tests": [{"test": "download", "url": "ftp://x/y", "bytes": 10}]}, "http:// or https:// URL"),
])
def test_config_mistakes_are_named(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(strict.ConfigError, match=message):
        config(tmp_path, **change)


def test_sizes_read_as_carriers_bill_them() -> None:
    assert [parse_bytes(v) for v in ("10MB", "2GB", "512kB", "1MiB", "1.5GB", 7)] == [
        10**7, 2 * 10**9, 512_000, 2**20, 1_500_000_000, 7]


def test_the_agent_configuration_takes_a_qos_source(tmp_path: Path) -> None:
    cfg = strict.load(AgentConfig, json.dumps({"probe": {"id": "p1", "zone": "dv"},
                                               "sources": [config(tmp_path).model_dump(mode="json")]}))
    assert cfg.sources[0].type == "qos"


def test_bearer_dns_servers_from_modemmanager() -> None:
    modem = {"modem": {"generic": {"bearers": ["/org/freedesktop/ModemManager1/Bearer/0"]}}}
    bearer_doc: dict[str, Any] = {"bearer": {"status": {"connected": "yes", "interface": "wwan0"},
                             "ipv4-config": {"method": "static", "address": "10.64.1.9", "prefix": "30",
                                             "dns": ["203.113.131.1", "203.113.131.2"]}}}
    assert parse_bearer_dns(modem, [bearer_doc], "wwan0") == ["203.113.131.1", "203.113.131.2"]
    bearer_doc["bearer"]["status"]["connected"] = "no"
    with pytest.raises(ValueError, match="no connected bearer on wwan0"):
        parse_bearer_dns(modem, [bearer_doc], "wwan0")
    with pytest.raises(ValueError, match="modem.generic.bearers"):
        parse_bearer_dns({"modem": {}}, [], "wwan0")
