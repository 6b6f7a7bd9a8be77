"""Each data message is decoded once: the ingest's preparer decodes it for storage and hands the alert engine the
batch (``Ingest.on_prepared``, ``AlertEngine.prepared``); the engine decodes data itself only while the preparer
gives it nothing. What that must keep, with a real collector process behind real mosquitto (TLS, the rendered ACL):

1. with storage up, a cut link pages, and every data message the engine judged came from the preparer;
2. with storage down (VictoriaMetrics' URL answers nothing: the preparer waits for it), alerting goes on: the cut
   link still pages, from the engine's own decoding, while nothing is stored and the intake queue holds it all;
3. with storage slow (VictoriaMetrics behind a proxy that holds each request 0.7 s) and another probe's flood
   ahead, the preparer's sender's queue is full (``Ingest.on_store_behind``): the engine decodes what waited for the
   preparer more than MAX_WAIT itself, and the cut link pages at once while most of the flood is still unwritten.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests import services
from tests.centre import Centre
from tests.tlsbroker import WAIT
from zonewatch import wire
from zonewatch.queue import LARGE_PAGES

pytestmark = pytest.mark.integration

ZONE = "ef"
INVENTORY = f"""\
zones:
  {ZONE}: {{name: Engine Fed Park}}
carriers:
  viettel: {{plmn: 452-04, name: Viettel}}
sites:
  pop: {{zone: {ZONE}, kind: fibre_pop, owners: [viettel]}}
devices:
  sw: {{site: pop, kind: switch, owners: [viettel], probe: p1}}
  sw2: {{site: pop, kind: switch, owners: [viettel], probe: p2}}
links:
  vt-1: {{device: sw, ifname: xe-1, carriers: [viettel]}}
probes:
  p1: {{zone: {ZONE}}}
  p2: {{zone: {ZONE}}}
"""
ALERTING = {"interval": "500ms", "restart_grace": "0s"}


def poll(seq: int, up: bool) -> bytes:
    now = time.time_ns()
    return wire.encode(wire.Batch(ZONE, "p1", seq, now, (
        wire.Sample("device", {"device": "sw"}, {"up": True, "uptime_s": 1000.0 + seq}, now),
        wire.Sample("interface", {"device": "sw", "ifname": "xe-1", "link": "vt-1"},
                    {"oper_up": up, "admin_up": True, "in_octets": 10**9 + seq}, now))))


def cut_the_link(centre: Centre) -> float:
    """Publish polls of p1 with the link up, then down; return when the first down poll was published."""
    p1 = centre.connect("p1")
    topic = wire.topic(ZONE, "p1", "data")
    for seq in (1, 2):
        assert p1.publish(topic, poll(seq, True)).value < 128
    cut = time.monotonic()
    for seq in (3, 4):
        assert p1.publish(topic, poll(seq, False)).value < 128
    return cut


def paged(centre: Centre) -> list[tuple[str, str]]:
    return [a for a in centre.hooks.alerts("/noc") if a[1] == "LinkDown"]


def test_with_storage_up_the_engine_judges_what_the_preparer_decoded(tmp_path: Path) -> None:
    with Centre(tmp_path, INVENTORY) as centre:
        centre.write_config(alerting=ALERTING)
        centre.start_collector()
        cut_the_link(centre)
        services.wait_for(lambda: paged(centre) == [("firing", "LinkDown")], WAIT, "LinkDown at the NOC")
        services.wait_for(lambda: centre.metric('zonewatch_alert_decoded_messages_total{by="ingest"}') >= 4, WAIT,
                          "the engine to have taken the four polls from the preparer")
        assert centre.metric('zonewatch_alert_decoded_messages_total{by="engine"}') == 0
        assert centre.metric("zonewatch_alert_rejected_messages_total") == 0
        intake = sqlite3.connect(centre.data / "intake.db")   # the collector's intake queue: large pages
        try:
            assert intake.execute("PRAGMA page_size").fetchone()[0] == LARGE_PAGES
        finally:
            intake.close()


def bulk(seq: int, probe: str = "p1", device: str = "sw") -> bytes:
    """A poll of 500 of a switch's ports: a hundred of them fill every part the preparer may hold for storage."""
    now = time.time_ns()
    return wire.encode(wire.Batch(ZONE, probe, seq, now, tuple(
        wire.Sample("interface", {"device": device, "ifname": f"ge-{port}"}, {"oper_up": True, "admin_up": True}, now)
        for port in range(500))))


def test_with_storage_down_alerting_goes_on_from_the_engine_s_own_decoding(tmp_path: Path) -> None:
    with Centre(tmp_path, INVENTORY) as centre:
        dead = services.free_port()   # nothing listens there: every write fails and is retried
        centre.write_config(alerting=ALERTING, storage={"type": "victoriametrics", "url": f"http://127.0.0.1:{dead}"})
        centre.start_collector()
        p1 = centre.connect("p1")
        for seq in range(100, 200):   # more than the preparer holds while the store is away: then it waits
            assert p1.publish(wire.topic(ZONE, "p1", "data"), bulk(seq)).value < 128
        services.wait_for(lambda: centre.metric("zonewatch_ingest_queue_depth") >= 100, WAIT, "the bulk taken in")
        cut = cut_the_link(centre)
        services.wait_for(lambda: paged(centre) == [("firing", "LinkDown")], WAIT + 10, "LinkDown at the NOC")
        took = centre.hooks.at("/noc")[0].received - cut
        print(f"LinkDown {took:.1f} s after the cut, with storage down")
        assert centre.metric('zonewatch_alert_decoded_messages_total{by="engine"}') >= 2   # the polls at least
        assert centre.metric("zonewatch_storage_written_samples_total") == 0
        assert centre.metric("zonewatch_ingest_queue_depth") >= 104


class SlowProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``target`` that holds every request ``delay`` seconds (a store slowed
    by a flood), then passes it on and its answer back."""

    def __init__(self, target: str, delay: float) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                time.sleep(delay)
                request = urllib.request.Request(target + self.path, data=body, method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        code, data = answer.status, answer.read()
                except urllib.error.HTTPError as refused:
                    code, data = refused.code, refused.read()
                proxy.requests += self.command == "POST"
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):   # the collector stopped meanwhile
                    pass

            do_GET = do_POST = _forward   # noqa: N815 - http.server's names

            def log_message(self, *args: object) -> None:
                pass

        self.requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", services.free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def test_with_storage_slow_behind_a_flood_the_engine_takes_over_what_waits(tmp_path: Path) -> None:
    with Centre(tmp_path, INVENTORY) as centre:
        vm = centre.keep(services.start_victoriametrics(tmp_path / "vm"))
        proxy = centre.keep(SlowProxy(vm.url, 0.7))
        centre.write_config(alerting=ALERTING, storage={"type": "victoriametrics", "url": proxy.url})
        centre.start_collector()
        p2 = centre.connect("p2")
        for seq in range(1, 301):   # 150,000 samples, written at a few thousand a second through the proxy
            assert p2.publish(wire.topic(ZONE, "p2", "data"), bulk(seq, "p2", "sw2")).value < 128
        services.wait_for(lambda: centre.metric("zonewatch_ingest_queue_depth") >= 100, WAIT, "the flood taken in")
        cut = cut_the_link(centre)
        services.wait_for(lambda: paged(centre) == [("firing", "LinkDown")], WAIT, "LinkDown at the NOC")
        took = centre.hooks.at("/noc")[0].received - cut
        written = centre.metric("zonewatch_storage_written_samples_total")
        print(f"LinkDown {took:.1f} s after the cut, storage slow: {written:.0f} of the flood's 150,000 samples "
              f"written by then, in {proxy.requests} requests")
        assert written < 120_000, "the flood was mostly written before the cut: the test proves nothing"
        assert took < 4.0
        # The engine took over what waited for the preparer while storage held it up (none without on_store_behind).
        assert centre.metric('zonewatch_alert_decoded_messages_total{by="engine"}') >= 2
