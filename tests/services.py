"""Real services for integration tests, started from Debian's packages on free loopback ports.

Each ``start_*`` function starts one process in a folder of its own, waits (bounded, by polling) until it
answers, and returns a ``Service`` that stops it by PID. A binary that is missing is a failure with the
command that installs it, never a skip: the integration tests exist to run against the real thing.

    mosquitto         start_mosquitto(dir, conf_extra="")          -> Service(port)
    snmpd (net-snmp)  start_snmpd(dir, community, v3 user)         -> Service(port)
    VictoriaMetrics   start_victoriametrics(dir)                   -> Service(port, url)
    vmauth            start_vmauth(dir, vmauth.env)                -> Service(port, url)
    Alertmanager      start_alertmanager(dir, config_yaml)         -> Service(port, url)
                      start_alertmanager_peer(dir, config_yaml, port, cluster_port, peers) -> one of a cluster
    snmpsim           start_snmpsim(dir, data_dir)                 -> Service(port)
    the collector     start_collector(config, dir, open_files=None) -> Service (ready once subscribed)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from collector.mosquitto.limits import QueueSizing, render_limits

SETUP_HINT = "run scripts/setup.sh (it installs the Debian packages the tests need)"


class ServiceError(RuntimeError):
    """A service could not be started; the message says which, why, and its log tail."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """Return a port on 127.0.0.1 that is free for ``kind`` (TCP by default) right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


def require(binary: str) -> str:
    """Return the path of ``binary`` or fail with how to install it."""
    path = shutil.which(binary) or next(
        (str(p) for p in (Path("/usr/sbin") / binary, Path("/usr/bin") / binary) if p.exists()), None
    )
    if path is None:
        raise ServiceError(f"{binary} is not installed: {SETUP_HINT}")
    return path


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition`` until it is true; raise TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except Exception:  # noqa: BLE001 - a probe that fails means "not yet"
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Service:
    """A process we started; ``stop()`` ends it by PID and waits until it is gone."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log: Path
    url: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def _spawn(name: str, argv: list[str], workdir: Path, port: int, ready: Callable[[], bool], timeout: float = 20.0,
           env: dict[str, str] | None = None, url: str = "") -> Service:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=workdir, env={**os.environ, **(env or {})})
    svc = Service(name, proc, port, workdir, log, url)

    def up() -> bool:
        if proc.poll() is not None:
            raise ServiceError(f"{name} exited with code {proc.returncode}:\n{svc.log_tail()}")
        try:
            return ready()
        except Exception:  # noqa: BLE001 - a readiness probe that fails means "not yet"
            return False

    try:
        deadline = time.monotonic() + timeout
        while not up():
            if time.monotonic() > deadline:
                raise ServiceError(f"{name} did not become ready in {timeout:g}s:\n{svc.log_tail()}")
            time.sleep(0.05)
    except BaseException:
        svc.stop()
        raise
    return svc


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as r:
            return 200 <= r.status < 300
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- mosquitto


def start_mosquitto(workdir: Path, conf_extra: str = "", port: int | None = None,
                    listener_options: str = "allow_anonymous true", limits: QueueSizing | None = None,
                    autosave_s: int = 1) -> Service:
    """Start mosquitto with persistence on 127.0.0.1:<port>; reuse ``port`` to restart on the same one.

    Its queue limits are what ``render-mosquitto`` writes, for ``limits`` (default: 20 probes, 30 minutes of
    collector outage), never mosquitto's silent default of 1,000 messages. It saves its persistence file every
    ``autosave_s`` (1 s: a test restarts it and expects what it acknowledged; a benchmark passes production's
    30 minutes, since mosquitto stands still while it writes the whole queue out)."""
    binary = require("mosquitto")
    port = port or free_port()
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    # As root, mosquitto would drop to user "mosquitto", who cannot reach pytest's private temp folders
    # to save its persistence file: keep the test broker as the user who started it.
    conf.write_text(
        ("user root\n" if os.geteuid() == 0 else "")
        + "per_listener_settings true\n"
        f"persistence true\npersistence_location {data}/\nautosave_interval {autosave_s}\n"
        "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
        "connection_messages true\n"
        + render_limits(limits or QueueSizing(probes=20))
        + f"{conf_extra}\n"
        f"listener {port} 127.0.0.1\n{listener_options}\n"
    )
    return _spawn("mosquitto", [binary, "-c", str(conf)], workdir, port, lambda: _tcp_open(port))


# ---------------------------------------------------------------------------------------------- snmpd


def start_snmpd(workdir: Path, community: str = "public", v3_user: tuple[str, str, str] | None = None,
                extra_conf: str = "") -> Service:
    """Start net-snmp's snmpd on a free UDP port; ``v3_user`` = (name, SHA auth key, AES priv key)."""
    binary = require("snmpd")
    require("snmpget")
    port = free_udp_port()
    persist = workdir / "persist"
    persist.mkdir(parents=True, exist_ok=True)
    conf = workdir / "snmpd.conf"
    lines = ["[snmp] mibs :", f"agentAddress udp:127.0.0.1:{port}", f"rocommunity {community} 127.0.0.1",
             "sysLocation zonewatch-test", "sysContact noc@example.invalid", "sysName zw-test-snmpd",
             "master no"]
    if v3_user:
        user, auth, priv = v3_user
        lines += [f'createUser {user} SHA "{auth}" AES "{priv}"', f"rouser {user} priv"]
    conf.write_text("\n".join(lines) + "\n" + extra_conf + "\n")

    def ready() -> bool:
        r = subprocess.run(["snmpget", "-v2c", "-c", community, "-t", "0.3", "-r", "0", f"127.0.0.1:{port}",
                            "1.3.6.1.2.1.1.5.0"], capture_output=True)
        return r.returncode == 0

    return _spawn("snmpd", [binary, "-f", "-Lo", "-C", "-c", str(conf), "-I", "-smux"], workdir, port, ready,
                  env={"SNMP_PERSISTENT_DIR": str(persist)})


# ---------------------------------------------------------------------------------------------- snmpsim


def start_snmpsim(workdir: Path, data_dir: Path, port: int | None = None, variation: Path | None = None) -> Service:
    """Start snmpsim serving every ``<community>.snmprec`` in ``data_dir`` on a free UDP port; with
    ``variation``, the variation modules in that folder instead of snmpsim's own."""
    responder = Path(sys.executable).with_name("snmpsim-command-responder")
    if not responder.exists():
        raise ServiceError(f"snmpsim is not installed in this environment: {SETUP_HINT}")
    port = port or free_udp_port()
    cache = workdir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir.resolve()
    community = sorted(p.name.split(".")[0] for p in data_dir.glob("*.snmprec"))[0]

    def ready() -> bool:
        r = subprocess.run(["snmpget", "-v2c", "-c", community, "-t", "0.3", "-r", "0", f"127.0.0.1:{port}",
                            "1.3.6.1.2.1.1.3.0"], capture_output=True)
        return r.returncode == 0 and b"No Such" not in r.stdout

    modules = [f"--variation-modules-dir={variation.resolve()}"] if variation is not None else []
    return _spawn("snmpsim", [str(responder), f"--data-dir={data_dir}", f"--cache-dir={cache}", *modules,
                              f"--agent-udpv4-endpoint=127.0.0.1:{port}"], workdir, port, ready, timeout=30,
                  env={"SNMPSIM_ALLOW_ROOT": "true"})


# ---------------------------------------------------------------------------------------------- VictoriaMetrics


def start_victoriametrics(workdir: Path, port: int | None = None, cache: bool = False) -> Service:
    """Start VictoriaMetrics as ZoneWatch needs it: new points visible to queries at once
    (-search.latencyOffset=0s), and a point written twice (a batch replayed after a crash) kept once
    (-dedup.minScrapeInterval=1ms, which production should set too). ``cache``: keep its query result cache on,
    as production does (off by default: tests that write and read the same minutes again)."""
    binary = require("victoria-metrics")
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    return _spawn("victoria-metrics", [
        binary, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={workdir / 'data'}",
        "-retentionPeriod=100y", "-loggerLevel=WARN", "-search.latencyOffset=0s",
        *([] if cache else ["-search.disableCache"]),
        "-search.maxStalenessInterval=24h", "-dedup.minScrapeInterval=1ms",
    ], workdir, port, lambda: _http_ok(f"{url}/health"), url=url)


def start_vmauth(workdir: Path, env_file: Path) -> Service:
    """Start vmauth with the flags of ``env_file`` (render-vmauth's vmauth.env, read as ``vmauth -envflag.enable``
    reads its environment), its listen address replaced by a free loopback port."""
    binary = require("vmauth")
    port = free_port()
    env = {}
    for line in env_file.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            env[key] = value
    env["httpListenAddr"] = f"127.0.0.1:{port}"
    url = f"http://127.0.0.1:{port}"
    return _spawn("vmauth", [binary, "-envflag.enable", "-loggerLevel=WARN"], workdir, port,
                  lambda: _tcp_open(port), env=env, url=url)


# ---------------------------------------------------------------------------------------------- Alertmanager


def start_alertmanager(workdir: Path, config_yaml: str) -> Service:
    """Start Alertmanager without clustering on a free port, with ``config_yaml`` as its configuration."""
    binary = require("prometheus-alertmanager")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    conf = workdir / "alertmanager.yml"
    workdir.mkdir(parents=True, exist_ok=True)
    conf.write_text(config_yaml)
    return _spawn("alertmanager", [
        binary, f"--config.file={conf}", f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn",
    ], workdir, port, lambda: _http_ok(f"{url}/-/ready"), url=url)


def start_alertmanager_peer(workdir: Path, config_yaml: str, port: int, cluster_port: int, peers: list[int],
                            peer_timeout: str = "1s") -> Service:
    """Start one Alertmanager of a cluster on loopback: web ``port``, gossip ``cluster_port``, joining the other
    peers' gossip ports (``--cluster.peer``); the same ``workdir`` and ports restart it. Ready once its cluster
    status is ``ready`` (settled: it notifies only from then on). Gossip every 50 ms, so it settles in about three
    seconds; ``peer_timeout`` is how long each peer waits per position before sending what the first did not (keep
    the configuration's group_interval above it: a later peer dedups a flush against the log as it is after its
    wait, so a group resolved and notified by the first peer within that wait is notified firing again)."""
    binary = require("prometheus-alertmanager")
    url = f"http://127.0.0.1:{port}"
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "alertmanager.yml"
    conf.write_text(config_yaml)

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/api/v2/status", timeout=0.5) as r:
            return bool(json.load(r)["cluster"]["status"] == "ready")

    return _spawn("alertmanager", [
        binary, f"--config.file={conf}", f"--storage.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
        f"--cluster.listen-address=127.0.0.1:{cluster_port}", f"--cluster.advertise-address=127.0.0.1:{cluster_port}",
        *(f"--cluster.peer=127.0.0.1:{p}" for p in peers), f"--cluster.peer-timeout={peer_timeout}",
        "--cluster.gossip-interval=50ms", "--cluster.probe-interval=500ms", "--log.level=warn",
    ], workdir, port, ready, timeout=30, url=url)


def vm_query(url: str, promql: str) -> list[dict[str, object]]:
    """Run an instant PromQL query against VictoriaMetrics; return the result vector."""
    import json
    from urllib.parse import urlencode

    with urllib.request.urlopen(f"{url}/api/v1/query?{urlencode({'query': promql})}", timeout=5) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"query {promql!r} failed: {body}")
    return list(body["data"]["result"])


def start_zonewatch(name: str, args: list[str], workdir: Path, env: dict[str, str] | None = None,
                    ready: Callable[[], bool] = lambda: True, open_files: int | None = None,
                    timeout: float = 20.0) -> Service:
    """Start ``python -m <name> <args>`` (agent or collector) as a child process, logging to a file;
    ``open_files`` sets its soft and hard limits on open files (util-linux prlimit execs it: same PID)."""
    limit = [require("prlimit"), f"--nofile={open_files}:{open_files}"] if open_files is not None else []
    return _spawn(name, [*limit, sys.executable, "-m", name, *args], workdir, 0, ready, env=env, timeout=timeout)


def start_collector(config: Path, workdir: Path, open_files: int | None = None, timeout: float = 20.0) -> Service:
    """Start ``python -m collector -c <config> run`` in ``workdir``; ready once this start has logged
    "collector subscribed" (both its broker sessions exist: from then on the broker keeps what arrives)."""
    log = workdir / "collector.log"
    seen = log.read_text().count("collector subscribed") if log.exists() else 0
    return start_zonewatch("collector", ["-c", str(config), "run"], workdir,
                           ready=lambda: log.read_text().count("collector subscribed") > seen, open_files=open_files,
                           timeout=timeout)


# ---------------------------------------------------------------------------------------------- webhook


@dataclass
class Hook:
    """One POST received: its path, headers, JSON body, and when it arrived (time.monotonic())."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received: float = 0.0


class WebhookServer:
    """A webhook receiver on 127.0.0.1 that records every POST (Alertmanager's webhook JSON); ``status``
    decides the answer per alert name (200 unless told)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hooks: list[Hook] = []
        self.status: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> WebhookServer:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                names = {a["labels"].get("alertname") for a in body.get("alerts", [])}
                code = next((sink.status[n] for n in names if n in sink.status), 200)
                if code == 200:
                    with sink._lock:
                        sink.hooks.append(Hook(self.path, dict(self.headers), body, time.monotonic()))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def at(self, path: str) -> list[Hook]:
        with self._lock:
            return [h for h in self.hooks if h.path == path]

    def alerts(self, path: str) -> list[tuple[str, str]]:
        """Return (status, alertname) of every alert received at ``path``, in arrival order."""
        return [(a["status"], a["labels"]["alertname"]) for h in self.at(path) for a in h.body["alerts"]]

    def wait(self, path: str, count: int, what: str, timeout: float = 20.0) -> None:
        wait_for(lambda: len(self.alerts(path)) >= count, timeout, f"{count} alerts at {path} ({what})")
