"""Diagnostic rounds end to end with real parts.

Real mosquitto behind TLS with the ACL and password file ``render-mosquitto`` writes:

- the ACL: the collector may publish a command to any probe; a probe reads only its own command topic and may
  publish none (not even its own);
- the whole path: a real collector process (SQLite store, alerting with a NOC webhook) and a real agent process
  whose modem is simulated on a pty (registered on Viettel) and whose ``qos`` source tests through the loopback
  interface: an HTTP server that answers and a TCP port nobody listens on. Half its access tests fail, so
  DataAccessFailure fires for Viettel in the probe's area; the collector sends the probe a ``diagnostic_round``
  command, the agent runs its tests at once (their interval is an hour), and the samples marked ``diagnostic``
  reach the collector's store.

It prints the time from the NOC's notification to the diagnostic samples stored.
"""

from __future__ import annotations

import functools
import http.server
import sqlite3
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sim.modem import SimModem
from tests import services
from tests.centre import Centre
from tests.tlsbroker import PASSWORDS, WAIT
from zonewatch import wire

pytestmark = pytest.mark.integration

NOT_AUTHORIZED = 135
ZONE = "dz"
INVENTORY = f"""\
zones:
  {ZONE}: {{name: Diagnostic Park, areas: [gate]}}
carriers:
  viettel: {{plmn: 452-04, name: Viettel}}
probes:
  p1: {{zone: {ZONE}, area: gate, modems: [{{name: vt, carrier: viettel}}]}}
  p2: {{zone: {ZONE}, area: gate}}
"""
ROUND = wire.DiagnosticRound("452-04", "vt", False, "DataAccessFailure")


def command(probe: str, ident: str) -> bytes:
    now = time.time_ns()
    return wire.encode_command(wire.Command(ident, ZONE, probe, now, now + 600 * 10**9, ROUND))


def test_the_collector_may_command_any_probe_and_a_probe_only_reads_its_own(tmp_path: Path) -> None:
    with Centre(tmp_path, INVENTORY) as centre:
        collector, p1, p2 = (centre.connect(user) for user in ("collector", "p1", "p2"))
        p1.client.subscribe([(wire.topic(ZONE, "p1", "command"), 1), (wire.topic(ZONE, "p2", "command"), 1)])
        services.wait_for(p1.subscribed.is_set, WAIT, "p1's subscription")
        p2.client.subscribe(wire.topic(ZONE, "p2", "command"), 1)
        services.wait_for(p2.subscribed.is_set, WAIT, "p2's subscription")
        # a probe publishes no command: not to itself, not to another probe
        assert p1.publish(wire.topic(ZONE, "p1", "command"), command("p1", "forged1")).value == NOT_AUTHORIZED
        assert p1.publish(wire.topic(ZONE, "p2", "command"), command("p2", "forged2")).value == NOT_AUTHORIZED
        # the collector commands both; each probe gets its own and never the other's
        assert collector.publish(wire.topic(ZONE, "p2", "command"), command("p2", "for-p2")).value < 128
        services.wait_for(lambda: len(p2.messages()) == 1, WAIT, "p2's command")
        assert collector.publish(wire.topic(ZONE, "p1", "command"), command("p1", "for-p1")).value < 128
        services.wait_for(lambda: len(p1.messages()) == 1, WAIT, "p1's command")
        # (from one publisher, the broker delivers in order: p2's command would have reached p1 first)
        assert [wire.decode_command(payload).id for _, payload in p1.messages()] == ["for-p1"]
        assert [wire.decode_command(payload).id for _, payload in p2.messages()] == ["for-p2"]


# ---------------------------------------------------------------------------------------------- end to end


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"zone portal\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _quick_name(interval: float) -> str:
    """Return a qos source name whose first poll comes within a second of the agent's start (runner.first_offset)."""
    return next(f"qos-vt{i}" for i in range(200)
                if (zlib.crc32(f"qos-vt{i}".encode()) % 1000) / 1000 * min(interval, 10.0) < 1.0)


class World:
    """The centre (broker, collector with a NOC webhook), a web server, the modem and the agent; all of it stopped
    with the centre."""

    def __init__(self, centre: Centre) -> None:
        self.centre = centre
        self.tmp = tmp = centre.tmp
        self.hooks = centre.hooks
        self.web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
        centre.stack.callback(self.web.server_close)
        threading.Thread(target=self.web.serve_forever, daemon=True).start()
        centre.stack.callback(self.web.shutdown)
        self.modem = centre.keep(SimModem())
        self.modem.set_registered(True, plmn="45204")
        self.modem.start()
        self.collector_metrics = centre.metrics_port
        centre.write_config(alerting={"interval": "500ms",
                                      "settings": {"probe_timeout": "1h", "qos": {"access_min_tests": 2}}},
                            diagnostics={"min_interval": "30m", "expires_after": "2m"})
        centre.start_collector()
        closed = services.free_port()   # nobody listens there: the access test that fails
        self.qos = _quick_name(30.0)
        self.agent_metrics = services.free_port()
        folder = tmp / "p1"
        folder.mkdir()
        (folder / "agent.yaml").write_text(
            f"probe: {{id: p1, zone: {ZONE}}}\n"
            f"mqtt: {{host: 127.0.0.1, port: {centre.broker.port}, username: p1, "
            f"password: {{env: ZW_MQTT_PASSWORD}}, keepalive: 5s, tls: {{ca_file: '{centre.ca}'}}}}\n"
            f"spool: {{path: '{folder / 'spool.db'}'}}\nmetrics: {{listen: '127.0.0.1:{self.agent_metrics}'}}\n"
            "remote_config: {enabled: false}\nself_interval: 5s\n"
            "sources:\n"
            f"  - {{type: cellular, name: vt, port: {self.modem.port}, interval: 1s, timeout: 1s}}\n"
            f"  - type: qos\n    name: {self.qos}\n    modem: vt\n    carrier: 452-04\n    interface: lo\n"
            f"    dns: [127.0.0.1]\n    interval: 30s\n    timeout: 2s\n    short_every: 1h\n"
            f"    budget: {{monthly: 100MB}}\n    state_path: '{folder / 'qos.json'}'\n"
            "    tests:\n"
            f"      - {{test: http, url: 'http://127.0.0.1:{self.web.server_address[1]}/'}}\n"
            f"      - {{test: tcp, host: 127.0.0.1, port: {closed}}}\n")
        self.agent = centre.keep(services.start_zonewatch(
            "agent", ["-c", str(folder / "agent.yaml"), "run"], folder, env={"ZW_MQTT_PASSWORD": PASSWORDS["p1"]},
            ready=functools.partial(_logged, folder / "agent.log", "running")))

    def qos_points(self, diagnostic: bool) -> list[tuple[str, int]]:
        """Return (test, time) of the access tests stored for p1, those of diagnostic rounds or the others."""
        query = ("SELECT DISTINCT json_extract(tags, '$.test'), time_ns FROM points JOIN series ON series.id = "
                 "series_id WHERE measurement = 'qos' AND json_extract(tags, '$.probe') = 'p1' AND field = 'success' "
                 "AND (SELECT count(*) FROM points d WHERE d.series_id = points.series_id AND d.field = 'diagnostic' "
                 "AND d.time_ns = points.time_ns) = ? ORDER BY time_ns")
        try:
            with sqlite3.connect(f"file:{self.centre.store}?mode=ro", uri=True) as db:
                return [(str(t), int(at)) for t, at in db.execute(query, (1 if diagnostic else 0,))]
        except sqlite3.Error:
            return []

    @staticmethod
    def metric(port: int, name: str, labels: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            lines = r.read().decode().splitlines()
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name) and labels in line)


def _logged(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with Centre(tmp_path, INVENTORY, ca_name="diagnostics test CA") as centre:
        yield World(centre)


def test_a_data_access_failure_brings_a_diagnostic_round_whose_samples_say_so(world: World) -> None:
    # the scheduled round: one access test of two fails, the modem is registered: DataAccessFailure for Viettel
    services.wait_for(lambda: len(world.qos_points(diagnostic=False)) == 2, 30, "p1's first qos round stored")
    world.hooks.wait("/noc", 1, "DataAccessFailure at the NOC", timeout=30)
    paged = time.monotonic()
    fired = [a for h in world.hooks.at("/noc") for a in h.body["alerts"]]
    assert [(a["labels"]["alertname"], a["labels"]["carrier"], a["labels"]["area"]) for a in fired] == [
        ("DataAccessFailure", "452-04", "gate")]
    # the collector asks p1 for a round on its Viettel modem; the agent runs it now, not in an hour
    services.wait_for(lambda: len(world.qos_points(diagnostic=True)) == 2, 20, "the diagnostic round stored")
    took = time.monotonic() - paged
    first = world.qos_points(diagnostic=False)
    again = world.qos_points(diagnostic=True)
    assert sorted(t for t, _ in again) == ["http", "tcp"] and min(a for _, a in again) > max(a for _, a in first)
    assert world.metric(world.collector_metrics, "zonewatch_diagnostic_rounds_total", 'result="sent"') == 1
    assert world.metric(world.agent_metrics, "zonewatch_commands_total",
                        'kind="diagnostic_round",result="accepted"') == 1
    # once per firing: later evaluations of the same alert ask for nothing more
    done = world.metric(world.collector_metrics, "zonewatch_alert_evaluations_total", "")
    services.wait_for(lambda: world.metric(world.collector_metrics, "zonewatch_alert_evaluations_total", "")
                      >= done + 4, 20, "four more evaluations")
    assert world.metric(world.collector_metrics, "zonewatch_diagnostic_rounds_total", 'result="sent"') == 1
    assert len(world.qos_points(diagnostic=True)) == 2
    gap = (min(a for _, a in again) - max(a for _, a in first)) / 1e9
    print(f"\nscheduled round measured to diagnostic round measured: {gap:.2f} s (data, evaluation, command, "
          f"round); NOC notification seen to diagnostic samples stored: {took:.2f} s")
