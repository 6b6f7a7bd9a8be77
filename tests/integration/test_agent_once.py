"""``zonewatch-agent once``: what a field engineer runs on a fresh probe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.sim.modem import SimModem
from tests import services

pytestmark = pytest.mark.integration


def test_once_prints_what_would_be_sent_and_flags_the_dead_source(tmp_path: Path, snmpd: services.Service) -> None:
    dead_port = services.free_udp_port()
    with SimModem() as modem:
        modem.cesq = (99, 99, 255, 255, 20, 80)  # RSRQ -10 dB, RSRP -61 dBm
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(f"""
probe: {{id: p9, zone: test-zone}}
spool: {{path: {tmp_path / 'never.db'}}}
sources:
  - {{type: cellular, name: viettel, port: {modem.port}}}
  - {{type: snmp, name: bts-01, host: 127.0.0.1, port: {snmpd.port}, version: v2c, community: public}}
  - {{type: snmp, name: dead-01, host: 127.0.0.1, port: {dead_port}, version: v2c, community: public,
      timeout: 500ms, retries: 0}}
  - {{type: cellular, name: unplugged, port: {tmp_path / 'no-such-tty'}, timeout: 500ms}}
""")
        proc = subprocess.run([sys.executable, "-m", "agent", "-c", str(cfg), "once"], capture_output=True,
                              text=True, timeout=60)
        as_json = subprocess.run([sys.executable, "-m", "agent", "-c", str(cfg), "once", "--json"],
                                 capture_output=True, text=True, timeout=60)
    out = proc.stdout
    assert proc.returncode == 1  # a source failed
    assert "# viettel (cellular): 1 samples" in out
    assert "cellular,carrier=452-04,cell=5F1EA15,modem=viettel,rat=lte " in out
    assert " rsrp_dbm=-61 " in out and " rsrq_db=-10.0 " in out and " registered=true " in out
    assert "interface,device=bts-01,ifname=lo " in out
    assert "device,device=dead-01 up=false" in out  # a dead device is a reading: DeviceDown needs it
    assert "# unplugged (cellular): FAILED" in out and "no-such-tty" in out
    assert not (tmp_path / "never.db").exists()  # once sends and spools nothing
    payloads = [json.loads(chunk) for chunk in _json_chunks(as_json.stdout)]
    assert {p["probe"] for p in payloads} == {"p9"}
    assert any(s["m"] == "cellular" and s["fields"]["rsrp_dbm"] == -61 for p in payloads for s in p["samples"])


def _json_chunks(text: str) -> list[str]:
    chunks, current = [], []
    for line in text.splitlines():
        if line.startswith("#"):
            if current:
                chunks.append("\n".join(current))
            current = []
        else:
            current.append(line)
    if current:
        chunks.append("\n".join(current))
    return chunks
