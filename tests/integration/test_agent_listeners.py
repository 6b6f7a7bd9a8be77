"""Listeners inside the running agent: a real trap from net-snmp travels agent -> mosquitto -> collector
and is stored as an event; the trap counters show on the agent's /metrics."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

import pytest

from agent.sim.modem import SimModem
from collector.storage import SqliteStorage
from collector.storage.sqlite import SqliteWriter
from tests import services

pytestmark = pytest.mark.integration


def test_a_trap_reaches_the_store_as_an_event(tmp_path: Path, mosquitto: services.Service) -> None:
    trap_port, metrics_port, db = services.free_udp_port(), services.free_port(), tmp_path / "zw.db"
    (tmp_path / "collector.yaml").write_text(
        f"mqtt: {{port: {mosquitto.port}, client_id: zw-listen}}\nstorage: {{type: sqlite, path: '{db}'}}\n"
        f"queue: {{path: '{tmp_path / 'intake.db'}'}}\nhttp: {{enabled: false}}\n")
    with SimModem() as modem:
        (tmp_path / "agent.yaml").write_text(f"""
probe: {{id: p1, zone: z1}}
mqtt: {{port: {mosquitto.port}}}
spool: {{path: '{tmp_path / 'spool.db'}'}}
metrics: {{listen: '127.0.0.1:{metrics_port}'}}
sources:
  - {{type: cellular, name: viettel, port: {modem.port}, interval: 1s}}
  - type: traps
    listen: 127.0.0.1:{trap_port}
    communities: [zone-traps]
    devices: {{127.0.0.1: bts-01}}
""")
        log = tmp_path / "collector" / "collector.log"
        collector = services.start_zonewatch("collector", ["-c", str(tmp_path / "collector.yaml"), "run"],
                                             tmp_path / "collector",
                                             ready=lambda: "collector subscribed" in log.read_text())
        agent = services.start_zonewatch("agent", ["-c", str(tmp_path / "agent.yaml"), "run"], tmp_path / "agent",
                                         ready=lambda: "listener traps (traps) started" in
                                         (tmp_path / "agent" / "agent.log").read_text())
        try:
            subprocess.run(["snmptrap", "-v2c", "-c", "zone-traps", f"127.0.0.1:{trap_port}", "", "1.3.6.1.6.3.1.1.5.3",
                            "1.3.6.1.2.1.2.2.1.1.2", "i", "2", "1.3.6.1.2.1.2.2.1.7.2", "i", "1",
                            "1.3.6.1.2.1.2.2.1.8.2", "i", "2"], check=True, timeout=10)
            subprocess.run(["snmptrap", "-v2c", "-c", "wrong", f"127.0.0.1:{trap_port}", "", "1.3.6.1.6.3.1.1.5.1"],
                           check=True, timeout=10)
            store = SqliteWriter(SqliteStorage(type="sqlite", path=str(db)))
            try:
                services.wait_for(lambda: bool(store.latest("event", "occurred")), 20, "the trap in the store")
                (point,) = store.latest("event", "if_index")
                assert point.value == 2
                assert {k: point.tags[k] for k in ("event", "device", "zone", "probe")} == {
                    "event": "link_down", "device": "bts-01", "zone": "z1", "probe": "p1"}
                assert [p.value for p in store.latest("event", "oper_up")] == [0]
            finally:
                store.close()

            def metrics() -> str:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
                    return str(r.read().decode())

            services.wait_for(lambda: 'result="bad_community",source="traps",type="traps"} 1.0' in metrics(), 10,
                              "the refused trap counted on /metrics")
            assert 'result="accepted",source="traps",type="traps"} 1.0' in metrics()
            assert "zone-traps" not in metrics() and "zone-traps" not in agent.log.read_text()  # no secret leaks
        finally:
            agent.stop()
            collector.stop()
    assert agent.proc.returncode == 0, agent.log_tail()
