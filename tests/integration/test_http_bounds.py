"""No caller of /metrics can stall a program: the bounded server on real sockets, and a real collector flooded.

- The server alone (``zonewatch.httpd``) on loopback, with short limits: a connection over the cap is closed at
  once and counted ``refused``; a half-open one is closed at its deadline and counted ``timeout``; a caller
  that never reads its answer is cut off at the write timeout; ``stop()`` ends every connection and thread at
  once and leaves no descriptor open.
- A real collector process (real mosquitto, SQLite store) whose open-files limit is 512, soft and hard, and
  1,000 half-open connections to its /metrics (connect, send part of a request line, never finish: what any
  local user can do). The collector holds no more than the server's cap of them, so it keeps storing what
  the probes send, /metrics answers a plain GET once the half-open ones' deadline has passed, and the server
  closes all 1,000 within that deadline. Run against ``prometheus_client.start_http_server`` (a thread and a
  descriptor per connection, no timeout), the same test fails: the collector's descriptors run out, /metrics
  never answers, and the half-open connections stay open.
"""

from __future__ import annotations

import gc
import os
import re
import resource
import selectors
import socket
import sqlite3
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests import services
from zonewatch import wire
from zonewatch.httpd import BoundedHttpServer, HttpLimits

pytestmark = pytest.mark.integration

PARTIAL = b"GET /metrics HT"      # a request line, never finished
FLOOD = 1000
PACE = 0.005                      # 200 connections a second (all at once, an unbounded server's listen backlog of 5
                                  # would let them in over minutes, not seconds)
COLLECTOR_OPEN_FILES = 512        # fewer than the flood: with a thread and a descriptor per connection it runs out
READ_TIMEOUT = HttpLimits().read_timeout
MARGIN = 5.0                      # seconds a busy test machine may add to a bound


def _fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _half_open(port: int, count: int, within: float, pace: float = 0.0) -> list[socket.socket]:
    """Open ``count`` connections without blocking, ``pace`` s apart, and send PARTIAL on each that connects
    within ``within`` s of the last; return them all (connected or not: the caller closes them)."""
    socks: list[socket.socket] = []
    with selectors.DefaultSelector() as sel:
        try:
            for _ in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                sel.register(s, selectors.EVENT_WRITE)
                time.sleep(pace)
            deadline = time.monotonic() + within
            while sel.get_map() and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=0.2):
                    sock: Any = key.fileobj
                    sel.unregister(sock)
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        try:
                            sock.send(PARTIAL)
                        except OSError:   # already closed by the server
                            pass
        except BaseException:
            for s in socks:
                s.close()
            raise
    return socks


def _closed_by_peer(socks: list[socket.socket], within: float) -> int:
    """Wait up to ``within`` s for the peer to close each socket; return how many it closed."""
    closed = 0
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + within
        while sel.get_map() and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.2):
                sock: Any = key.fileobj
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:   # reset
                    data = b""
                if not data:
                    sel.unregister(sock)
                    closed += 1
    return closed


@pytest.fixture
def open_files() -> Iterator[None]:
    """Let this test process hold the flood's sockets (its soft limit up to the hard one, put back after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = FLOOD + 500
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.fail(f"this test needs {need} open files and the hard limit is {hard} (ulimit -Hn)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need) if hard == resource.RLIM_INFINITY else hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# ---------------------------------------------------------------------------------------------- the server


class Server:
    """A BoundedHttpServer on a free loopback port answering ``body``, recording what it drops."""

    def __init__(self, limits: HttpLimits, body: bytes = b"ok\n") -> None:
        self.drops: list[str] = []
        self.lock = threading.Lock()

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]

        def dropped(reason: str) -> None:
            with self.lock:
                self.drops.append(reason)

        self.server = BoundedHttpServer("127.0.0.1:0", app, limits, on_drop=dropped)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}/metrics"

    def count(self, reason: str) -> int:
        with self.lock:
            return self.drops.count(reason)


@pytest.fixture
def baseline() -> Iterator[tuple[int, int]]:
    """This process's open descriptors and threads before the test (the server must give them all back). Earlier
    tests' garbage is collected first: their sockets and files, closed by the collector, would make it less."""
    gc.collect()
    yield _fds(), threading.active_count()


def test_over_the_cap_a_connection_is_closed_at_once_and_a_half_open_one_at_its_deadline() -> None:
    deadline = 3.0
    srv = Server(HttpLimits(max_connections=4, read_timeout=deadline))
    socks: list[socket.socket] = []
    try:
        for _ in range(4):
            socks.append(socket.create_connection(("127.0.0.1", srv.server.port), timeout=5))
            socks[-1].sendall(PARTIAL)
        services.wait_for(lambda: srv.server.connections() == 4, 5, "4 connections held")
        extra = socket.create_connection(("127.0.0.1", srv.server.port), timeout=5)
        socks.append(extra)
        started = time.monotonic()
        assert extra.recv(1) == b""   # closed unanswered, long before any deadline
        assert time.monotonic() - started < deadline / 3
        assert srv.count("refused") == 1
        with pytest.raises(OSError):   # over the cap, a plain GET is refused too...
            urllib.request.urlopen(srv.url, timeout=5)
        assert _closed_by_peer(socks[:4], deadline + MARGIN) == 4   # ...until the half-open ones reach their deadline
        services.wait_for(lambda: srv.count("timeout") == 4, MARGIN, "4 timeouts counted")
        with urllib.request.urlopen(srv.url, timeout=5) as answer:
            assert answer.read() == b"ok\n"
        assert srv.count("refused") == 2
        # the answer is read once sent; the server's thread for it ends a moment later
        services.wait_for(lambda: srv.server.connections() == 0, MARGIN, "the answered connection ended")
    finally:
        for s in socks:
            s.close()
        srv.server.stop()


def test_a_caller_that_never_reads_its_answer_is_cut_off_at_the_write_timeout() -> None:
    srv = Server(HttpLimits(max_connections=2, write_timeout=0.5), body=b"x" * 64 * 2**20)
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.settimeout(5)
        slow.connect(("127.0.0.1", srv.server.port))
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        services.wait_for(lambda: srv.count("timeout") == 1, 0.5 + MARGIN, "the stalled answer given up")
        services.wait_for(lambda: srv.server.connections() == 0, MARGIN, "the connection closed")
        # a caller that reads gets the whole answer meanwhile
        with urllib.request.urlopen(srv.url, timeout=30) as answer:
            assert len(answer.read()) == 64 * 2**20
    finally:
        slow.close()
        srv.server.stop()


def test_stop_ends_every_connection_and_thread_at_once_and_leaves_no_descriptor(baseline: tuple[int, int]) -> None:
    fds, threads = baseline
    srv = Server(HttpLimits(max_connections=8, read_timeout=60.0))
    socks = [socket.create_connection(("127.0.0.1", srv.server.port), timeout=5) for _ in range(6)]
    try:
        for s in socks[:3]:
            s.sendall(PARTIAL)
        services.wait_for(lambda: srv.server.connections() == 6, 5, "6 connections held")
        started = time.monotonic()
        srv.server.stop()
        assert time.monotonic() - started < 2.0     # not the 60 s the half-open ones were allowed
        assert _closed_by_peer(socks, 1.0) == 6
    finally:
        for s in socks:
            s.close()
        srv.server.stop()
    assert threading.active_count() == threads
    gc.collect()
    assert _fds() <= fds
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", srv.server.port), timeout=5).close()
    assert srv.drops == []   # connections ended by stop() are not the callers' doing


# ---------------------------------------------------------------------------------------------- the collector


ZONE, PROBE = "flood", "p1"


class Centre:
    """Mosquitto and a collector whose open-files limit is COLLECTOR_OPEN_FILES; ``close()`` stops both."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.metrics_port = services.free_port()
        self.url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.started: list[services.Service] = []
        try:
            self.broker = services.start_mosquitto(tmp / "mosquitto")
            self.started.append(self.broker)
            (tmp / "collector.yaml").write_text(
                f"mqtt: {{host: 127.0.0.1, port: {self.broker.port}, client_id: zw-flood}}\n"
                f"storage: {{type: sqlite, path: '{tmp / 'store.db'}'}}\n"
                f"queue: {{path: '{tmp / 'intake.db'}'}}\nhttp: {{listen: '127.0.0.1:{self.metrics_port}'}}\n")
            self.collector = services.start_collector(tmp / "collector.yaml", tmp / "collector",
                                                      open_files=COLLECTOR_OPEN_FILES)
            self.started.append(self.collector)
            # Connected before the flood: paho waits with select(), which cannot watch a descriptor numbered
            # 1,024 or more, and the flood's sockets (with what earlier tests left open) take those numbers.
            self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=PROBE, protocol=mqtt.MQTTv5)
            self.client.connect("127.0.0.1", self.broker.port)
            self.client.loop_start()
        except BaseException:
            self.close()
            raise

    def publish(self, seq: int) -> None:
        """Publish one batch (the probe's self-report) as the agent does, QoS 1."""
        t = time.time_ns()
        sample = wire.Sample("probe", {}, {"up": True, "spool_depth": 0, "rss_mb": 40.0 + seq}, t)
        info = self.client.publish(wire.topic(ZONE, PROBE, "data"),
                                   wire.encode(wire.Batch(ZONE, PROBE, seq, t, (sample,))), qos=1)
        info.wait_for_publish(10)
        assert info.is_published(), f"batch {seq} not acknowledged by the broker"

    def stored(self) -> int:
        """Self-reports of the probe in the store."""
        try:
            with sqlite3.connect(f"file:{self.tmp / 'store.db'}?mode=ro", uri=True) as db:
                return int(db.execute("SELECT count(*) FROM points JOIN series ON series.id = series_id "
                                      "WHERE measurement = 'probe' AND field = 'rss_mb'").fetchone()[0])
        except sqlite3.Error:
            return -1

    def page(self) -> str:
        with urllib.request.urlopen(self.url, timeout=5) as answer:
            return str(answer.read().decode())

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.disconnect()
            client.loop_stop()
        for service in reversed(self.started):
            service.stop()


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[Centre]:
    c = Centre(tmp_path)
    try:
        yield c
    finally:
        c.close()


def _value(page: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", page, re.M)
    assert match, f"{series} not in /metrics"
    return float(match.group(1))


def test_a_thousand_half_open_connections_neither_stall_the_collector_nor_use_up_its_descriptors(
        centre: Centre, open_files: None) -> None:
    pid = centre.collector.pid
    centre.publish(1)
    services.wait_for(lambda: centre.stored() == 1, 15, "the first batch stored")
    before = _fds(pid)
    peak = [before]
    flooding = threading.Event()

    def watch() -> None:   # the collector's open descriptors, sampled through the flood
        while not flooding.wait(0.05):
            peak.append(_fds(pid))

    watcher = threading.Thread(target=watch)
    watcher.start()
    socks: list[socket.socket] = []
    try:
        socks = _half_open(centre.metrics_port, FLOOD, within=10, pace=PACE)
        opened = time.monotonic()
        # data still flows: a batch published in the flood is stored
        centre.publish(2)
        services.wait_for(lambda: centre.stored() == 2, 15, "the batch published in the flood stored")
        # a plain GET is answered once the half-open ones' deadline has passed
        pages: list[str] = []

        def get() -> bool:
            pages.append(centre.page())
            return True

        services.wait_for(get, READ_TIMEOUT + MARGIN, "/metrics to answer a plain GET", interval=0.25)
        answered = time.monotonic() - opened
        # the server closed every half-open connection, within its deadline
        closed = _closed_by_peer(socks, max(0.0, opened + READ_TIMEOUT + MARGIN - time.monotonic()))
        assert closed == FLOOD, f"{FLOOD - closed} of {FLOOD} half-open connections still open"
    finally:
        flooding.set()
        watcher.join()
        for s in socks:
            s.close()
    held = max(peak) - before
    assert held <= HttpLimits().max_connections + 8, f"the collector held {held} more descriptors in the flood"
    page = pages[-1]
    assert _value(page, "process_max_fds") == COLLECTOR_OPEN_FILES
    refused = _value(page, 'zonewatch_http_dropped_connections_total{reason="refused"}')
    timeouts = _value(page, 'zonewatch_http_dropped_connections_total{reason="timeout"}')
    assert refused + timeouts >= FLOOD and timeouts >= 1, (refused, timeouts)
    log = (centre.tmp / "collector" / "collector.log").read_text()
    assert f"open files: at most {COLLECTOR_OPEN_FILES}" in log
    assert "Too many open files" not in log
    print(f"\nflood of {FLOOD} half-open connections: the collector held at most {held} more descriptors; "
          f"/metrics answered {answered:.1f} s after the flood; {refused:.0f} refused, {timeouts:.0f} timed out")
    centre.collector.stop()
    assert centre.collector.proc.returncode == 0, centre.collector.log_tail()
