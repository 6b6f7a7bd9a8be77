"""A probe with one veth "modem" per carrier, each carrier shaped and delayed, a zone test server, a park LAN.

Used by ``test_qos_netns.py`` and ``tests/benchmarks/bench_qos.py``. Topology (names unique to the run; only
10.251.x addresses inside these namespaces; nothing leaves the machine)::

    probe m<i> 10.251.<i>.2 --- 10.251.<i>.1 carrier<i> [dnsmasq; tbf both ways; delay line] 10.251.<i+100>.1
                                                                                              |
    probe e0 10.251.99.2 ---- 10.251.99.1 park (forwards, no shaping) 10.251.199.1 ------- server [lo 10.251.9.1]
                                                                                 HTTP :80, UDP echo :7

The probe's default route is the park (metric 10); each modem also has a default route (metric 100 + i), as
ModemManager sets them up. A socket that is not bound to a modem therefore reaches the server through the park,
so a test that leaked would succeed there and show on e0's counters.

Each carrier: ``tbf`` at its rate on its probe-facing interface (download) and on its server-facing one
(upload). This kernel has no netem, so the delay is a delay line in user space: policy routing sends what the
carrier forwards between probe and server through a TUN device, and a small program (``delay`` below) holds each
packet ``delay_ms`` before it writes it back; the kernel then forwards it on. Traffic to the carrier's own address
(its DNS server, the "core") is not delayed. A round trip to the server gets 2 x ``delay_ms``.

Run as a program inside a namespace: ``python -m tests.integration.qoslab delay NAME MS`` (the delay line; stops
when its standard input closes) and ``python -m tests.integration.qoslab serve ADDRESS`` (the zone test server:
Python's HTTP server, ``GET /bytes/<n>`` and ``POST /upload``, and a UDP echo service).
"""

from __future__ import annotations

import collections
import fcntl
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.netns import NsProcess, ip, namespaces, require_root, run_in, run_tag, veth

SERVER = "10.251.9.1"
ZONE_NAME = "qos.zone.test"
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000


@dataclass(frozen=True)
class Carrier:
    """One carrier of the lab: its shaping and the delay each way."""

    name: str
    rate_mbit: float
    delay_ms: float


@dataclass
class Lab:
    tag: str
    probe: str
    park: str
    server: str
    carriers: dict[str, str]          # carrier name -> its namespace
    modems: dict[str, str]            # carrier name -> the probe's interface towards it
    gateways: dict[str, str]          # carrier name -> its address (DNS server, core)
    uplinks: dict[str, str]           # carrier name -> its probe-facing interface (cut it to cut the link)
    park_if: str = ""
    procs: list[NsProcess] = field(default_factory=list)

    def cut(self, carrier: str) -> None:
        ip("-n", self.carriers[carrier], "link", "set", self.uplinks[carrier], "down")

    def mend(self, carrier: str) -> None:
        ip("-n", self.carriers[carrier], "link", "set", self.uplinks[carrier], "up")


def require_tools() -> None:
    """Fail (never skip) when a part of the lab is missing."""
    require_root(("tc", "iproute2"), ("dnsmasq", "dnsmasq-base"))
    if not os.path.exists("/dev/net/tun"):
        raise AssertionError("/dev/net/tun is missing: the delay line needs TUN devices")


@contextmanager
def lab(carriers: list[Carrier], tmp: Path) -> Iterator[Lab]:
    """Build the topology, start the delay lines, the carriers' DNS servers and the zone server; tear all down
    (processes by PID, then the namespaces) on every exit."""
    require_tools()
    tag = run_tag("zq")
    t = Lab(tag, f"{tag}-probe", f"{tag}-park", f"{tag}-srv", {}, {}, {}, {}, park_if=f"{tag}e0")
    with namespaces() as make:
        try:
            yield from _build(t, carriers, tmp, make)
        finally:
            for proc in reversed(t.procs):
                proc.stop()


def _build(t: Lab, carriers: list[Carrier], tmp: Path, make: Callable[..., str]) -> Iterator[Lab]:
    """Make the lab's namespaces, links and processes, then yield it."""
    tag = t.tag
    for ns in (t.probe, t.park, t.server):
        make(ns, quiet=True)
    _veth(t.park_if, t.probe, "10.251.99.2/24", f"{tag}kp", t.park, "10.251.99.1/24")
    _veth(f"{tag}ks", t.park, "10.251.199.1/24", f"{tag}sk", t.server, "10.251.199.2/24")
    ip("-n", t.server, "addr", "add", f"{SERVER}/32", "dev", "lo")
    run_in(t.park, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    ip("-n", t.park, "route", "add", f"{SERVER}/32", "via", "10.251.199.2")
    ip("-n", t.server, "route", "add", "10.251.99.0/24", "via", "10.251.199.1")
    ip("-n", t.probe, "route", "add", "default", "via", "10.251.99.1", "metric", "10")
    for i, c in enumerate(carriers, start=1):
        ns = make(f"{tag}-c{i}", quiet=True)
        t.carriers[c.name], t.modems[c.name], t.gateways[c.name] = ns, f"{tag}m{i}", f"10.251.{i}.1"
        t.uplinks[c.name] = f"{tag}p{i}"
        run_in(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
               "net.ipv4.conf.default.rp_filter=0")
        _veth(f"{tag}m{i}", t.probe, f"10.251.{i}.2/24", f"{tag}p{i}", ns, f"10.251.{i}.1/24")
        _veth(f"{tag}s{i}", ns, f"10.251.{100 + i}.1/24", f"{tag}c{i}", t.server, f"10.251.{100 + i}.2/24")
        ip("-n", ns, "route", "add", f"{SERVER}/32", "via", f"10.251.{100 + i}.2")
        ip("-n", t.server, "route", "add", f"10.251.{i}.0/24", "via", f"10.251.{100 + i}.1")
        ip("-n", t.probe, "route", "add", "default", "via", f"10.251.{i}.1", "metric", str(100 + i))
        for dev in (f"{tag}p{i}", f"{tag}s{i}"):   # download towards the probe, upload towards the server
            run_in(ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{c.rate_mbit}mbit",
                   "burst", "16kb", "latency", "200ms")
        if c.delay_ms > 0:
            tun = f"{tag}d{i}"
            line = NsProcess(ns, [sys.executable, "-m", "tests.integration.qoslab", "delay", tun, str(c.delay_ms)],
                        tmp / f"delay-{c.name}.log")
            t.procs.append(line)
            assert line.read(10).strip() == "ready"
            ip("-n", ns, "link", "set", tun, "up")
            for table, dev in ((100, f"{tag}p{i}"), (101, f"{tag}s{i}")):
                ip("-n", ns, "route", "add", "default", "dev", tun, "table", str(table))
                ip("-n", ns, "rule", "add", "iif", dev, "lookup", str(table), "pref", str(table))
        dns = NsProcess(ns, ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                        "--bind-interfaces", f"--listen-address=10.251.{i}.1", f"--address=/{ZONE_NAME}/{SERVER}",
                        "--log-facility=-", "--pid-file=", "--user=root"], tmp / f"dnsmasq-{c.name}.log")
        t.procs.append(dns)
    server = NsProcess(t.server, [sys.executable, "-m", "tests.integration.qoslab", "serve", SERVER],
                  tmp / "server.log")
    t.procs.append(server)
    assert server.read(15).strip() == "ready"
    _wait_dns(t, tmp)
    yield t


def _veth(a: str, a_ns: str, a_addr: str, b: str, b_ns: str, b_addr: str) -> None:
    """A veth pair without ARP: the interfaces' counters move only with the tests' IP traffic."""
    veth(a, a_ns, a_addr, b, b_ns, b_addr, static_neighbours=True)


def _wait_dns(t: Lab, tmp: Path) -> None:
    """Wait (bounded) until every carrier's dnsmasq answers on its address."""
    deadline = time.monotonic() + 10
    for carrier, ns in t.carriers.items():
        while True:
            done = subprocess.run(["ip", "netns", "exec", ns, "ss", "-uln"], capture_output=True, text=True)
            if f"{t.gateways[carrier]}:53" in done.stdout:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"dnsmasq of {carrier} not listening:\n"
                                     f"{(tmp / f'dnsmasq-{carrier}.log').read_text()[-2000:]}")
            time.sleep(0.05)


# ---------------------------------------------------------------------------------------------- programs


def delay(name: str, delay_ms: float) -> None:
    """Create TUN ``name``; write back every packet read from it ``delay_ms`` later, in order, until stdin closes."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    print("ready", flush=True)
    held: collections.deque[tuple[float, bytes]] = collections.deque()
    hold = delay_ms / 1000
    while True:
        wait = max(0.0, held[0][0] - time.monotonic()) if held else None
        readable, _, _ = select.select([fd, sys.stdin], [], [], wait)
        if sys.stdin in readable and not sys.stdin.readline():
            return
        if fd in readable:
            arrived = time.monotonic()
            for _ in range(256):
                try:
                    held.append((arrived + hold, os.read(fd, 65536)))
                except BlockingIOError:
                    break
        now = time.monotonic()
        while held and held[0][0] <= now:
            try:
                os.write(fd, held.popleft()[1])
            except OSError:
                pass   # the kernel refused one packet (a queue full): it is lost, as on a real link


_BLOCK = os.urandom(1 << 16)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "bytes" or not parts[1].isdigit():
            self.send_error(404)
            return
        left = int(parts[1])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(left))
        self.send_header("Connection", "close")
        self.end_headers()
        while left:
            piece = _BLOCK[: min(left, len(_BLOCK))]
            self.wfile.write(piece)
            left -= len(piece)

    def do_POST(self) -> None:  # noqa: N802
        left = int(self.headers.get("Content-Length", "0"))
        while left:
            got = self.rfile.read(min(left, 1 << 16))
            if not got:
                return
            left -= len(got)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(address: str) -> None:
    """Serve HTTP on ``address``:80 and UDP echo on ``address``:7 until stdin closes."""
    http = ThreadingHTTPServer((address, 80), _Handler)
    http.daemon_threads = True
    threading.Thread(target=http.serve_forever, daemon=True).start()
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind((address, 7))

    def answer() -> None:
        while True:
            data, peer = echo.recvfrom(2048)
            echo.sendto(data, peer)

    threading.Thread(target=answer, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
    http.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "delay":
        delay(sys.argv[2], float(sys.argv[3]))
    elif sys.argv[1] == "serve":
        serve(sys.argv[2])
