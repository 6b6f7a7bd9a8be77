"""Probe and modem health end to end, with real parts: mosquitto behind TLS with the ACL and password file
``render-mosquitto`` writes, a real collector process (alerting with a NOC webhook and one for Viettel), a real
agent process reading a simulated modem on a pty (``agent.sim.modem``).

1. The modem stops answering: ModemDown pages the NOC (not Viettel); the agent runs its recovery steps in order,
   reopen, AT+CFUN, then the USB power cycle (a stand-in for uhubctl that records its call), each in the agent's
   log and ``/metrics``; the stand-in's call brings the modem back, and ModemDown resolves. Then its SIM asks for
   its PIN: SimProblem pages the NOC and resolves once the SIM is ready again.
2. The agent runs with its clock ten minutes ahead (libfaketime, as ``faketime -f +10m`` does), storing into
   VictoriaMetrics: ProbeClockSkew pages the NOC, and every sample the agent committed is stored once, at the
   real time it was measured (none refused as from the future: before, the collector refused them all).
"""

from __future__ import annotations

import glob
import json
import sqlite3
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.sim.modem import SimModem
from tests import services
from tests.services import WebhookServer
from tests.tlsbroker import PASSWORDS, start_tls_broker, write_server_pki

pytestmark = pytest.mark.integration

ZONE = "hz"
WAIT = 20.0
AHEAD_S = 600
INVENTORY = f"""\
zones:
  {ZONE}: {{name: Health Park, areas: [a]}}
carriers:
  viettel: {{plmn: 452-04, name: Viettel, notify: [{{type: webhook, url: "HOOKS/viettel"}}]}}
probes:
  p1: {{zone: {ZONE}, area: a, modems: [{{name: vt, carrier: viettel}}]}}
"""


def libfaketime() -> str:
    """Return Debian's libfaketime (package faketime), or fail saying how to install it."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        raise services.ServiceError(f"libfaketime is not installed: {services.SETUP_HINT}")
    return found[0]


class Zone:
    """Broker, collector (and VictoriaMetrics), webhooks, a simulated modem and an agent; all stopped on close."""

    def __init__(self, tmp: Path, victoria: bool = False, agent_env: dict[str, str] | None = None) -> None:
        self.tmp, self.started = tmp, []
        try:
            self._start(victoria, agent_env or {})
        except BaseException:
            self.close()
            raise

    def _start(self, victoria: bool, agent_env: dict[str, str]) -> None:
        tmp = self.tmp
        self.modem = SimModem()
        self.modem.set_registered(True)
        self.modem.start()
        self.started.append(self.modem)
        self.hooks = WebhookServer().start()
        self.started.append(self.hooks)
        pki = write_server_pki(tmp / "pki", "health test CA")
        inventory = INVENTORY.replace("HOOKS", self.hooks.url)
        (tmp / "inventory.yaml").write_text(inventory)
        self.broker = start_tls_broker(tmp / "mosquitto", inventory, PASSWORDS, pki)
        self.started.append(self.broker)
        self.vm = services.start_victoriametrics(tmp / "vm") if victoria else None
        if self.vm is not None:
            self.started.append(self.vm)
        storage = (f"{{type: victoriametrics, url: '{self.vm.url}'}}" if self.vm is not None else
                   f"{{type: sqlite, path: '{tmp / 'store.db'}'}}")
        self.http = services.free_port()
        (tmp / "collector.yaml").write_text(
            f"mqtt: {{host: 127.0.0.1, port: {self.broker.port}, username: collector, password: collector-pw,\n"
            f"       client_id: collector, tls: {{ca_file: '{pki.ca}'}}}}\n"
            f"storage: {storage}\nqueue: {{path: '{tmp / 'centre' / 'intake.db'}'}}\n"
            f"http: {{listen: '127.0.0.1:{self.http}'}}\ninventory: inventory.yaml\n"
            "alerting:\n  interval: 500ms\n  settings: {probe_timeout: 1h}\n  rules: {SimProblem: {for: 0s}}\n"
            f"  delivery: direct\n  noc: [{{type: webhook, url: '{self.hooks.url}/noc'}}]\n")
        self.collector = services.start_collector(tmp / "collector.yaml", tmp / "collector")
        self.started.append(self.collector)
        self.usb_calls = tmp / "usb-calls"
        stand_in = tmp / "uhubctl-stand-in.py"   # records its arguments; the test brings the modem back on it
        stand_in.write_text(f"import sys\nopen({str(self.usb_calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
                            "print('Sent power cycle request')\n")
        self.agent_http = services.free_port()
        folder = tmp / "agent"
        folder.mkdir()
        self.spool = folder / "spool.db"
        (folder / "agent.yaml").write_text(
            f"probe: {{id: p1, zone: {ZONE}}}\n"
            f"mqtt: {{host: 127.0.0.1, port: {self.broker.port}, username: p1, password: {{env: ZW_MQTT_PASSWORD}},"
            f" keepalive: 5s, tls: {{ca_file: '{pki.ca}'}}}}\n"
            f"spool: {{path: '{self.spool}'}}\nmetrics: {{listen: '127.0.0.1:{self.agent_http}'}}\n"
            "remote_config: {enabled: false}\nself_interval: 1s\nsources:\n"
            f"  - {{type: cellular, name: vt, port: '{self.modem.port}', carrier: '452-04', interval: 1s,"
            " timeout: 200ms,\n     recovery: {wait: 1s, max_wait: 2s,"
            " usb: {hub: '1-1', port: 2, min_interval: 1m, timeout: 800ms,\n"
            f"     command: ['{sys.executable}', '{stand_in}', '{{hub}}',"
            " '{port}']}}}\n")
        log = folder / "agent.log"
        self.agent = services.start_zonewatch(
            "agent", ["-c", str(folder / "agent.yaml"), "run"], folder,
            env={"ZW_MQTT_PASSWORD": PASSWORDS["p1"], **agent_env},
            ready=lambda: log.exists() and "running" in log.read_text())
        self.started.append(self.agent)

    def close(self) -> None:
        for part in reversed(self.started):
            try:
                part.stop()
            except Exception:  # noqa: BLE001 - stop everything else all the same
                pass

    # ------------------------------------------------------------------------------------------------ reading

    def noc(self, alertname: str, status: str = "firing") -> list[dict[str, Any]]:
        return [a for h in self.hooks.at("/noc") for a in h.body["alerts"]
                if a["labels"]["alertname"] == alertname and a["status"] == status]

    def carrier_alerts(self) -> list[str]:
        return [a["labels"]["alertname"] for h in self.hooks.at("/viettel") for a in h.body["alerts"]]

    def agent_metric(self, name: str, **labels: str) -> float:
        return _metric(self.agent_http, name, labels)

    def collector_metric(self, name: str, **labels: str) -> float:
        return _metric(self.http, name, labels)

    def stored(self, measurement: str, field: str) -> list[tuple[int, Any]]:
        """Return (time, value) of every point of ``field`` of p1's ``measurement`` in the SQLite store."""
        try:
            with sqlite3.connect(f"file:{self.tmp / 'store.db'}?mode=ro", uri=True) as db:
                rows = db.execute("SELECT time_ns, value FROM points JOIN series ON series.id = series_id WHERE "
                                  "measurement = ? AND field = ? AND tags LIKE '%\"probe\":\"p1\"%' ORDER BY time_ns",
                                  (measurement, field)).fetchall()
            return [(int(t), v) for t, v in rows]
        except sqlite3.Error:
            return []

    def spool_meta(self, key: str) -> int:
        db = sqlite3.connect(f"file:{self.spool}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return int(row[0]) if row else 0
        finally:
            db.close()


def _metric(port: int, name: str, labels: dict[str, str]) -> float:
    """Return the sum of the samples of ``name`` with these labels on a /metrics page (0 if none)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith(name + ("{" if labels else "")) and all(w in line for w in want))


@pytest.fixture
def zone_factory(tmp_path: Path) -> Iterator[Callable[..., Zone]]:
    made: list[Zone] = []

    def make(**options: Any) -> Zone:
        made.append(Zone(tmp_path, **options))
        return made[-1]

    yield make
    for z in made:
        z.close()


def test_a_modem_that_stops_answering_pages_is_recovered_in_steps_and_resolves(
        zone_factory: Callable[..., Zone]) -> None:
    zone = zone_factory()
    services.wait_for(lambda: len(zone.stored("cellular", "registered")) >= 2, WAIT, "the modem's first readings")

    zone.modem.hang, hung = True, time.monotonic()
    services.wait_for(lambda: zone.noc("ModemDown"), WAIT, "ModemDown at the NOC")
    paged = time.monotonic() - hung
    (down,) = zone.noc("ModemDown")
    assert down["labels"]["probe"] == "p1" and down["labels"]["modem"] == "vt" and "carrier" not in down["labels"]
    services.wait_for(zone.usb_calls.exists, WAIT, "the USB power cycle (the uhubctl stand-in's call)")
    assert zone.usb_calls.read_text() == "1-1 2\n"
    zone.modem.hang, cycled = False, time.monotonic()   # the power cycle brought it back
    services.wait_for(lambda: zone.noc("ModemDown", "resolved"), WAIT, "ModemDown resolved at the NOC")
    print(f"\nModemDown at the NOC {paged:.1f} s after the modem stopped (polls every 1 s, 2 missed), the USB cycle "
          f"{cycled - hung:.1f} s after, resolved {time.monotonic() - cycled:.1f} s after the modem came back")

    log = zone.agent.log.read_text()
    steps = [line.split("recovery step ", 1)[1].split(": ")[0:2] for line in log.splitlines()
             if "recovery step " in line]
    assert steps[:3] == [["1 of 3, reopen", "failed"], ["2 of 3, cfun", "failed"], ["3 of 3, usb_power", "ok"]], log
    assert "modem vt answers again" in log and "recovery steps: reopen failed, cfun failed, usb_power ok" in log
    for step, result in (("reopen", "failed"), ("cfun", "failed"), ("usb_power", "ok")):
        assert zone.agent_metric("zonewatch_modem_recovery_steps_total", modem="vt", step=step, result=result) >= 1
    assert zone.agent_metric("zonewatch_modem_recovery_steps_total", step="usb_power") == 1
    # the store has what the agent said at each unanswered poll: the steps in order, then the modem back
    services.wait_for(lambda: any(v == 1 for _, v in zone.stored("modem", "answering")), WAIT, "the end stored")
    ran = [v for _, v in zone.stored("modem", "recovery_step") if v]
    assert ran[:3] == [1, 2, 3], ran

    zone.modem.sim = "SIM PIN"   # someone swapped the SIM for one with its PIN on
    services.wait_for(lambda: zone.noc("SimProblem"), WAIT, "SimProblem at the NOC")
    assert "asks for its PIN" in zone.noc("SimProblem")[0]["annotations"]["description"]
    zone.modem.sim = "READY"
    services.wait_for(lambda: zone.noc("SimProblem", "resolved"), WAIT, "SimProblem resolved at the NOC")
    assert "ModemDown" not in zone.carrier_alerts() and "SimProblem" not in zone.carrier_alerts()


def test_a_probe_clock_ten_minutes_ahead_pages_and_its_samples_are_stored_at_the_right_time(
        zone_factory: Callable[..., Zone]) -> None:
    began = time.time_ns()
    zone = zone_factory(victoria=True, agent_env={"LD_PRELOAD": libfaketime(), "FAKETIME": f"+{AHEAD_S}s",
                                                  "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    assert zone.vm is not None
    started = time.monotonic()
    services.wait_for(lambda: zone.noc("ProbeClockSkew"), WAIT, "ProbeClockSkew at the NOC")
    print(f"\nProbeClockSkew at the NOC {time.monotonic() - started:.2f} s after the agent was ready")
    (skew,) = zone.noc("ProbeClockSkew")
    assert skew["labels"]["probe"] == "p1" and "ahead of the collector's" in skew["annotations"]["summary"]
    assert "stored at corrected times" in skew["annotations"]["description"]
    offset = zone.collector_metric("zonewatch_probe_clock_offset_seconds", probe=f"{ZONE}/p1")
    assert AHEAD_S - 5 < offset <= AHEAD_S, offset

    services.wait_for(lambda: zone.spool_meta("appended_samples") >= 12, WAIT, "a few seconds of readings")
    zone.agent.stop()
    assert zone.agent.proc.returncode == 0, zone.agent.log_tail(30)
    assert zone.spool_meta("appended_samples") > 0
    db = sqlite3.connect(f"file:{zone.spool}?mode=ro", uri=True)
    left = db.execute("SELECT count(*) FROM entries").fetchone()[0]
    db.close()
    assert left == 0   # a clean stop hands the broker what was still spooled
    expected = zone.spool_meta("appended_samples")

    def stored() -> list[int]:
        """Return the time (ms) of every agent sample stored: each has exactly one of these fields."""
        urllib.request.urlopen(urllib.request.Request(f"{zone.vm.url}/internal/force_flush"), timeout=5).close()
        match = '{__name__=~"cellular_registered|probe_spool_depth|probe_info",probe="p1"}'
        with urllib.request.urlopen(f"{zone.vm.url}/api/v1/export?match[]={urllib.request.quote(match)}",
                                    timeout=5) as r:
            return [t for line in r.read().decode().splitlines() for t in json.loads(line)["timestamps"]]

    services.wait_for(lambda: len(stored()) == expected, WAIT, f"{expected} samples stored (has {len(stored())})")
    ended = time.time_ns()
    times = stored()
    assert all(began // 10**6 - 1000 <= t <= ended // 10**6 + 1000 for t in times), \
        f"stored between {min(times)} and {max(times)}, the test ran from {began // 10**6} to {ended // 10**6}"
    assert zone.collector_metric("zonewatch_ingest_rejected_messages_total", reason="time_future") == 0
    assert zone.collector_metric("zonewatch_probe_seq_gaps", probe=f"{ZONE}/p1") == 0
    corrected = zone.collector_metric("zonewatch_probe_corrected_messages_total", probe=f"{ZONE}/p1")
    assert corrected >= zone.spool_meta("seq") // 2   # most of the probe's batches (each a message)
    print(f"{expected} samples stored at corrected times ({corrected:.0f} messages), offset measured {offset:.3f} s")
