"""InfluxWriter against a real VictoriaMetrics: exact values, labels and timestamps back through PromQL.

VictoriaMetrics names each series ``<measurement>_<field>``, turns tags into labels and keeps timestamps in
milliseconds. New series become searchable about ten seconds after the write; the tests ask it to flush
(``/internal/force_flush``) and then poll with a bound.
"""

from __future__ import annotations

import http.server
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from collector.storage import InfluxDBStorage, StorageError, VictoriaMetricsStorage, make_writer
from collector.storage.influx import CHUNK_LINES, InfluxWriter
from tests import services
from zonewatch import wire

pytestmark = pytest.mark.integration

MS = 1_000_000
S = 1_000_000_000


def base_time() -> int:
    """Return a whole second five minutes ago: inside every window the queries below look at."""
    return (time.time_ns() // S - 300) * S


@pytest.fixture
def writer(victoriametrics: services.Service) -> Iterator[InfluxWriter]:
    w = InfluxWriter(VictoriaMetricsStorage(type="victoriametrics", url=victoriametrics.url))
    yield w
    w.close()


def flush(vm: services.Service) -> None:
    with urllib.request.urlopen(f"{vm.url}/internal/force_flush", timeout=5) as r:
        assert r.status == 200


def query_until(vm: services.Service, promql: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Poll ``promql`` until it returns ``count`` series; fail after ``timeout`` seconds."""
    flush(vm)
    deadline = time.monotonic() + timeout
    while True:
        result: list[dict[str, Any]] = services.vm_query(vm.url, promql)
        if len(result) >= count or time.monotonic() > deadline:
            assert len(result) == count, f"{promql}: {len(result)} series after {timeout:g}s, expected {count}"
            return result
        time.sleep(0.1)


def samples_of(series: dict[str, Any]) -> list[tuple[int, float]]:
    """Return (time in ms, value) of every raw sample in one series of a range query."""
    return [(round(float(t) * 1000), float(v)) for t, v in series["values"]]


def vm_metric(vm: services.Service, name: str) -> float:
    """Return one of VictoriaMetrics' own metrics (they lag the requests by up to a second)."""
    with urllib.request.urlopen(f"{vm.url}/metrics", timeout=5) as r:
        text = r.read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


LINES_READ = 'vm_protoparser_rows_read_total{type="influx"}'
LINES_INVALID = 'vm_rows_invalid_total{type="influx"}'
WRITE_REQUESTS = 'vm_http_requests_total{path="/influx/write", protocol="influx"}'


def wait_metric(vm: services.Service, name: str, value: float, timeout: float = 10.0) -> None:
    services.wait_for(lambda: vm_metric(vm, name) == value, timeout, f"{name} == {value:g}")


def assert_every_line_accepted(vm: services.Service, lines: int) -> None:
    """Wait until VictoriaMetrics has read ``lines`` lines, then check that it rejected none."""
    wait_metric(vm, LINES_READ, lines)
    assert vm_metric(vm, LINES_INVALID) == 0


def test_points_come_back_with_exact_values_labels_and_times(
        victoriametrics: services.Service, writer: InfluxWriter) -> None:
    t0 = base_time()
    iface = {"device": "sw 1,core=a\\", "ifname": "ge-0/0/1", "link": "primary"}  # escaping, end to end
    writer.write([
        wire.Batch(zone="dinh-vu", probe="p1", seq=1, sent_ns=t0, samples=(
            wire.Sample("interface", iface, {"in_octets": 9_007_199_254_740_992, "oper_up": True}, t0 + 123_456_789),
            wire.Sample("interface", iface, {"in_octets": 9_007_199_254_741_000, "oper_up": False}, t0 + S),
            wire.Sample("cellular", {"carrier": "452-04", "zone": "wrong"}, {"rsrp_dbm": -95, "sinr_db": -7.25},
                        t0 + 2 * S + 999_999),
        )),
        wire.Batch(zone="dinh-vu", probe="p2", seq=5, sent_ns=t0, samples=(
            wire.Sample("cellular", {"carrier": "452-04"}, {"rsrp_dbm": -101, "sinr_db": 12.5}, t0),
        )),
    ])
    iface_labels = {**iface, "zone": "dinh-vu", "probe": "p1"}
    (octets,) = query_until(victoriametrics, "interface_in_octets[1h]", 1)
    assert octets["metric"] == {"__name__": "interface_in_octets", **iface_labels}
    # Nanoseconds become milliseconds (truncated); integers up to 2**53 stay exact.
    assert samples_of(octets) == [(t0 // MS + 123, 9_007_199_254_740_992.0), (t0 // MS + 1000, 9_007_199_254_741_000.0)]
    (up,) = query_until(victoriametrics, "interface_oper_up[1h]", 1)
    assert up["metric"] == {"__name__": "interface_oper_up", **iface_labels}
    assert samples_of(up) == [(t0 // MS + 123, 1.0), (t0 // MS + 1000, 0.0)]
    rsrp = query_until(victoriametrics, 'cellular_rsrp_dbm{carrier="452-04"}[1h]', 2)
    by_probe = {s["metric"]["probe"]: s for s in rsrp}
    assert by_probe["p1"]["metric"] == {"__name__": "cellular_rsrp_dbm", "carrier": "452-04", "zone": "dinh-vu",
                                        "probe": "p1"}
    assert samples_of(by_probe["p1"]) == [(t0 // MS + 2000, -95.0)]
    assert samples_of(by_probe["p2"]) == [(t0 // MS, -101.0)]
    sinr = {s["metric"]["probe"]: samples_of(s) for s in query_until(victoriametrics, "cellular_sinr_db[1h]", 2)}
    assert sinr == {"p1": [(t0 // MS + 2000, -7.25)], "p2": [(t0 // MS, 12.5)]}
    assert_every_line_accepted(victoriametrics, 4)


def test_a_counter64_above_the_signed_range_is_not_corrupted(
        victoriametrics: services.Service, writer: InfluxWriter) -> None:
    t0 = base_time()
    top = 2**64 - 1
    writer.write([wire.Batch(zone="z1", probe="p1", seq=1, sent_ns=t0, samples=(
        wire.Sample("interface", {"device": "olt1", "ifname": "pon1"}, {"in_octets": top, "out_octets": 2**63}, t0),
    ))])
    (series,) = query_until(victoriametrics, "interface_in_octets[1h]", 1)
    ((t, value),) = samples_of(series)
    assert t == t0 // MS
    # VictoriaMetrics keeps float64 values (about 16 significant digits): the counter arrives near 2**64,
    # neither wrapped to a negative number nor dropped as an invalid line.
    assert value == pytest.approx(float(top), rel=1e-15)
    ((_, value),) = samples_of(query_until(victoriametrics, "interface_out_octets[1h]", 1)[0])
    assert value == pytest.approx(float(2**63), rel=1e-15)
    assert_every_line_accepted(victoriametrics, 1)


def test_large_writes_go_in_chunks(victoriametrics: services.Service, writer: InfluxWriter) -> None:
    t0 = base_time()
    n = 2 * CHUNK_LINES + 1
    samples = tuple(wire.Sample("probe", {}, {"spool_depth": i}, t0 + i * MS) for i in range(n))
    writer.write([wire.Batch(zone="z1", probe="p1", seq=1, sent_ns=t0, samples=samples)])
    assert_every_line_accepted(victoriametrics, n)
    wait_metric(victoriametrics, WRITE_REQUESTS, 3)  # a fresh server: these are the only requests
    (series,) = query_until(victoriametrics, "probe_spool_depth[1h]", 1)
    got = samples_of(series)
    assert len(got) == n
    assert got[0] == (t0 // MS, 0.0) and got[-1] == (t0 // MS + n - 1, float(n - 1))


def test_ping_and_a_stopped_server_is_a_prompt_retryable_error(
        victoriametrics: services.Service, writer: InfluxWriter) -> None:
    assert writer.ping() is True
    victoriametrics.stop()
    assert writer.ping() is False
    started = time.monotonic()
    with pytest.raises(StorageError) as info:
        writer.write([wire.Batch(zone="z1", probe="p1", seq=1, sent_ns=0,
                                 samples=(wire.Sample("probe", {}, {"up": True}, base_time()),))])
    assert time.monotonic() - started < 2.0
    assert info.value.retryable is True
    assert victoriametrics.url in str(info.value)


def test_a_wrong_path_is_not_retryable(victoriametrics: services.Service) -> None:
    url = f"{victoriametrics.url}/no-such-prefix"
    w = make_writer(VictoriaMetricsStorage(type="victoriametrics", url=url))
    try:
        with pytest.raises(StorageError) as info:
            w.write([wire.Batch(zone="z1", probe="p1", seq=1, sent_ns=0,
                                samples=(wire.Sample("probe", {}, {"up": True}, base_time()),))])
    finally:
        w.close()
    assert info.value.retryable is False
    assert re.match(rf"write to {re.escape(url)} failed: HTTP 4\d\d: ", str(info.value))


def test_a_server_that_does_not_answer_times_out_retryably() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        w = InfluxWriter(VictoriaMetricsStorage.model_validate({"type": "victoriametrics", "url": url,
                                                                "timeout": "300ms"}))
        started = time.monotonic()
        try:
            with pytest.raises(StorageError) as info:
                w.write([wire.Batch(zone="z1", probe="p1", seq=1, sent_ns=0,
                                    samples=(wire.Sample("probe", {}, {"up": True}, 1),))])
        finally:
            w.close()
    assert time.monotonic() - started < 3.0
    assert info.value.retryable is True
    assert "Timeout" in str(info.value)


class _Replies(http.server.BaseHTTPRequestHandler):
    """Answer every POST with the next status of ``statuses``, echoing the credentials in the body."""

    statuses: list[int] = []

    def do_POST(self) -> None:  # noqa: N802 - name fixed by http.server
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = f'{{"message": "refused; you sent Authorization: {self.headers["Authorization"]}"}}'.encode()
        self.send_response(self.statuses.pop(0))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature fixed by http.server
        pass


def test_http_status_decides_retryable_and_the_token_never_shows() -> None:
    _Replies.statuses = [503, 429, 401, 422]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Replies)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token = "s3cret-token-value"
    config = InfluxDBStorage(type="influxdb", url=f"http://127.0.0.1:{server.server_address[1]}", org="zone",
                             bucket="zonewatch", token=token)  # type: ignore[arg-type]
    w = InfluxWriter(config)
    errors = []
    try:
        for _ in range(4):
            with pytest.raises(StorageError) as info:
                w.write([wire.Batch(zone="z1", probe="p1", seq=1, sent_ns=0,
                                    samples=(wire.Sample("probe", {}, {"up": True}, 1),))])
            errors.append(info.value)
    finally:
        w.close()
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert [(e.retryable, re.search(r"HTTP (\d+)", str(e)).group(1)) for e in errors] == [  # type: ignore[union-attr]
        (True, "503"), (True, "429"), (True, "401"), (False, "422")]  # a bad token keeps the data
    for e in errors:
        assert "Token" in str(e)  # the echoed header is in the message ...
        assert token not in str(e)  # ... with the token itself masked
        assert config.url in str(e)


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Keep the body of every POST and answer 204, as VictoriaMetrics does."""

    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - name fixed by http.server
        self.bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature fixed by http.server
        pass


def test_each_request_holds_the_next_lines_in_order_at_most_chunk_lines() -> None:
    _Recorder.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    w = InfluxWriter(VictoriaMetricsStorage(type="victoriametrics", url=f"http://127.0.0.1:{server.server_address[1]}"))
    n = 2 * CHUNK_LINES + 300   # lines of different lengths, over two chunks and a part of one
    samples = tuple(wire.Sample("interface", {"device": f"sw-{i}", "ifname": "ge-0/0/" + "1" * (i % 97)},
                                {"in_octets": i}, S + i) for i in range(n))
    batch = wire.Batch(zone="z1", probe="p1", seq=1, sent_ns=0, samples=samples)
    try:
        w.prepare([batch])()
        w.write([batch])
    finally:
        w.close()
        server.shutdown()
        server.server_close()
        thread.join(5)
    lines = [f"interface,device=sw-{i},ifname=ge-0/0/{'1' * (i % 97)},probe=p1,zone=z1 in_octets={i}i {S + i}"
             for i in range(n)]
    chunks = [lines[:CHUNK_LINES], lines[CHUNK_LINES:2 * CHUNK_LINES], lines[2 * CHUNK_LINES:]]
    assert _Recorder.bodies == ["\n".join(chunk).encode() for chunk in chunks] * 2   # prepare's, then write's
