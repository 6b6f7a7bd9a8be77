"""``zonewatch-collector demo``: a whole simulated zone on this machine, with readings shown live.

What runs (every port is a free one on 127.0.0.1, every file in one work folder):

    collector        in this process: embedded MQTT 3.1.1 broker (amqtt) and the SQLite store
    agent            ``python -m agent run`` in a child process, polling everything below
    modems           three ``python -m agent.sim.modem`` children on pseudo-terminals (Viettel, VinaPhone,
                     MobiFone), their RSRP drifting
    service tests    a ``qos`` source per modem, bound to loopback, against a zone test server in this
                     process; MobiFone's tests go to a closed port: registered, good signal, no traffic
                     (``collector.demo_qos``)
    SNMP devices     one snmpsim child serving ``bts-01``, ``sw-core`` and the BTS site's UPS ``ups-01``
                     (communities = device names; interface and UPS states writable, as a fault would set them;
                     each device's state its own, traffic at steady rates while an interface is up and none
                     while it is down: ``python -m agent.sim.device``, snmpsim with a variation of its own)
    alerting         the inventory below, and a NOC webhook receiver in this process

The scripted scenario (``--no-scenario`` turns it off) breaks the zone and mends it, while the tables show
the alerts and the notifications the receiver got:

    +30 s   Viettel's primary fibre into the park is cut (sw-core xe-0/1/0)   LinkDown, RedundancyLost
    +50 s   mains power fails at the shared BTS site (ups-01 on battery)        PowerOnBattery (both owners)
    +70 s   VinaPhone's signal at gate A drops into a coverage hole             CoverageHole (sustained 5 s)
    from the start  MobiFone's modem is registered with a good signal, and
            its service tests fail                                              DataAccessFailure (MobiFone)
    +100 s  the fibre is spliced; +120 s mains are back; +140 s the signal recovers: everything resolves

The live table reads what the collector stored, so what it shows has travelled the whole way: modem or
device, agent, spool, broker, collector, store. Without a terminal (output piped or redirected) the demo
prints plain lines instead. Its log goes to ``collector.log`` in the work folder; the screen shows warnings.

Stopping: Ctrl-C, SIGTERM, SIGHUP (the terminal closed) and ``--seconds`` all stop the agent first (it says
``stopping``: a planned stop, so ProbeDown is muted and pages nobody), then the simulated modems and devices,
every child by PID, then the collector; the demo then writes the zone's report for the run
(``report/report.html`` and CSV files, as ``zonewatch-collector report`` makes them) and says where the files
are. Ctrl-C works even when the demo was started with SIGINT ignored (``cmd &`` from a script). An exception
stops every child too, then shows its traceback. Children run in process groups of their own, so a Ctrl-C at
the terminal reaches the demo alone and the demo stops them in that order; on Linux each child also asks the
kernel to kill it when the demo dies (``PR_SET_PDEATHSIG``), so not even ``kill -9`` of the demo leaves one
behind. Output to a pipe or terminal that went away (``| tee`` and Ctrl-C) is dropped, not fatal.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from collector.alerting.config import AlertingConfig
from collector.app import Collector
from collector.config import CollectorConfig, EmbeddedBroker, HttpConfig, IntakeQueueConfig
from collector.demo_qos import ALERTING_SETTINGS, ZoneTestServer
from collector.inventory import Inventory
from collector.storage import SqliteStorage
from collector.storage.sqlite import SqliteWriter
from zonewatch import strict

DATA = Path(__file__).parent / "demo_data"
MODEMS = [  # name, PLMN as the modem prints it, PLMN tag, base RSRP, cell; with --wander 6 Viettel stays good
    ("viettel", "45204", "452-04", -84.0, "5F1EA15"),   # (>= -90 dBm) and VinaPhone fair (-100 to -90): no
    ("vinaphone", "45202", "452-02", -93.0, "2B0C40A"),  # WeakSignal or CoverageHole the scenario did not make
    ("mobifone", "45201", "452-01", -82.0, "3C0A11B"),   # good signal, and no traffic: demo_qos.BROKEN
]
DEVICES = ["bts-01", "sw-core", "ups-01"]
SITES = {"bts-01": "bts-dv-01", "sw-core": "pop-dv", "ups-01": "bts-dv-01"}

INVENTORY = """\
zones:
  demo-park: {name: Demo Industrial Park, areas: [gate-a, logistics]}
carriers:
  viettel: {plmn: 452-04, name: Viettel}
  vinaphone: {plmn: 452-02, name: VinaPhone}
  mobifone: {plmn: 452-01, name: MobiFone}
sites:
  bts-dv-01: {zone: demo-park, area: gate-a, kind: bts, owners: [viettel, vinaphone]}   # shared BTS
  pop-dv: {zone: demo-park, area: logistics, kind: fibre_pop, owners: [viettel]}
devices:
  sw-core: {site: pop-dv, kind: switch, owners: [viettel], probe: p1}
  bts-01: {site: bts-dv-01, kind: bts, owners: [viettel, vinaphone], parent: sw-core, probe: p1}
  ups-01: {site: bts-dv-01, kind: ups, owners: [viettel, vinaphone], probe: p1}
links:
  vt-primary: {device: sw-core, ifname: xe-0/1/0, carriers: [viettel]}
  vt-backup: {device: sw-core, ifname: xe-0/1/1, carriers: [viettel]}
redundancy_groups:
  vt-fibre:
    zone: demo-park
    carriers: [viettel]
    description: Viettel's two fibre routes into the park
    members: [{link: vt-primary}, {link: vt-backup}]
probes:
  p1:
    zone: demo-park
    area: gate-a
    modems: [{name: viettel, carrier: viettel}, {name: vinaphone, carrier: vinaphone},
             {name: mobifone, carrier: mobifone}]
"""

IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8"
UPS_BATTERY_STATUS, UPS_SECONDS_ON_BATTERY = "1.3.6.1.2.1.33.1.2.1.0", "1.3.6.1.2.1.33.1.2.2.0"
UPS_MINUTES_REMAINING, UPS_OUTPUT_SOURCE = "1.3.6.1.2.1.33.1.2.3.0", "1.3.6.1.2.1.33.1.4.1.0"


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

# Run before a child's own program (Linux): ask the kernel to SIGKILL this process when the thread that started
# it ends (the demo's main thread, which lives as long as the demo), then check that the demo did not die
# before that request was in place, then become the child's program (the request survives exec).
_ORPHAN_GUARD = """\
import ctypes, os, signal, sys
if ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
    sys.exit(f"cannot tie this process to the demo: prctl failed with errno {ctypes.get_errno()}")
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
os.execv(sys.argv[2], sys.argv[2:])
"""


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def snmpsim_command(data: Path, cache: Path, port: int, verbose: bool = False) -> list[str]:
    """Return the command line of the simulated devices: snmpsim serving every walk in ``data`` (community =
    file name) on 127.0.0.1:``port``, each device with a state of its own (``python -m agent.sim.device``)."""
    return [sys.executable, "-m", "agent.sim.device", "--data-dir", str(data), "--cache-dir", str(cache),
            "--port", str(port), *(["--verbose"] if verbose else [])]


def _tied(argv: list[str]) -> list[str]:
    """Return ``argv`` run so that it dies with this process (``_ORPHAN_GUARD``); unchanged where that is not
    Linux."""
    if not sys.platform.startswith("linux"):
        return argv
    return [sys.executable, "-I", "-S", "-c", _ORPHAN_GUARD, str(os.getpid()), *argv]


def _end(children: list[tuple[str, subprocess.Popen[bytes]]], wait_s: float = 10.0) -> None:
    """SIGTERM every child still running, wait for each (SIGKILL after ``wait_s``) and reap it."""
    for _name, proc in children:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + wait_s
    for _name, proc in children:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


class Demo:
    """The simulated zone; ``start()``, then ``rows()`` as often as wanted, then ``stop()``."""

    def __init__(self, workdir: Path, verbose: bool = False) -> None:
        self.workdir = workdir
        self.verbose = verbose  # the simulated devices log every answer too
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.collector: Collector | None = None
        self.store: SqliteWriter | None = None
        self.db = workdir / "zonewatch.db"
        self.snmp_port = 0
        self.modem_procs: dict[str, subprocess.Popen[bytes]] = {}
        self.hooks: Any = None
        self.test_server: ZoneTestServer | None = None

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a child in a process group of its own (a Ctrl-C at the terminal reaches the demo, which stops
        the children in order), tied to this process (it dies with it), logging to ``<name>.log``."""
        with open(self.workdir / f"{name}.log", "ab") as log:   # the child has its own copy
            proc = subprocess.Popen(_tied(argv), stdout=subprocess.PIPE if name.startswith("modem") else log,
                                    stderr=log, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                    process_group=0)
        self.children.append((name, proc))
        return proc

    def start(self) -> None:
        """Start the collector, the simulated devices and modems, and the agent."""
        if sorted(path.stem for path in DATA.glob("*.snmprec")) != sorted(DEVICES):  # package data of the wheel
            raise RuntimeError(f"the simulated devices' walks ({DATA}/*.snmprec) are missing from this installation: "
                               "reinstall zonewatch from a wheel that carries them")
        self.workdir.mkdir(parents=True, exist_ok=True)
        broker_port, snmp_port = _free_port(), _free_port(socket.SOCK_DGRAM)
        self.snmp_port = snmp_port
        self.hooks = NocReceiver().start()
        (self.workdir / "inventory.yaml").write_text(INVENTORY)
        inventory = strict.load(Inventory, INVENTORY, str(self.workdir / "inventory.yaml"))
        alerting = strict.load(AlertingConfig, (
            f"interval: 2s\nrestart_grace: 0s\nsettings: {{coverage_window: 15s, {ALERTING_SETTINGS}}}\n"
            "rules: {CoverageHole: {for: 5s, keep_firing_for: 5s}}\n"
            f"noc: [{{type: webhook, url: '{self.hooks.url}/noc'}}]\n"), "demo alerting")
        cfg = CollectorConfig(embedded_broker=EmbeddedBroker(listen=f"127.0.0.1:{broker_port}"),
                              storage=SqliteStorage(type="sqlite", path=str(self.db)),
                              queue=IntakeQueueConfig(path=str(self.workdir / "intake.db")),
                              http=HttpConfig(listen=f"127.0.0.1:{_free_port()}"), alerting=alerting)
        self.collector = Collector(cfg, inventory)
        self.collector.start()

        py = sys.executable
        env = {"SNMPSIM_ALLOW_ROOT": "true"} if os.geteuid() == 0 else {}
        self._spawn("snmpsim", snmpsim_command(DATA, self.workdir / "snmpsim-cache", snmp_port, self.verbose), env)
        ports = {}
        for name, plmn, _, rsrp, cell in MODEMS:
            proc = self._spawn(f"modem-{name}", [py, "-m", "agent.sim.modem", "--plmn", plmn, "--rsrp", str(rsrp),
                                                 "--cell", cell, "--wander", "6"])
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()  # "simulated modem on /dev/pts/N (Ctrl-C to stop)"
            if " on " not in line:
                raise RuntimeError(f"simulated modem {name} did not start: see {self.workdir}/modem-{name}.log")
            ports[name] = line.split(" on ", 1)[1].split()[0]
            self.modem_procs[name] = proc

        agent_cfg = self.workdir / "agent.yaml"
        sources = "".join(
            f"  - {{type: cellular, name: {name}, port: {ports[name]}, carrier: '{tag}', interval: 5s}}\n"
            for name, _, tag, _, _ in MODEMS)
        extra = {"sw-core": ", links: {xe-0/1/0: vt-primary, xe-0/1/1: vt-backup}",
                 "ups-01": ", profiles: [system, ups_mib]"}
        sources += "".join(
            f"  - {{type: snmp, name: {dev}, host: 127.0.0.1, port: {snmp_port}, version: v2c, community: {dev},"
            f" interval: 5s, site: {SITES[dev]}{extra.get(dev, '')}}}\n" for dev in DEVICES)
        self.test_server = ZoneTestServer().start()
        sources += self.test_server.sources([(name, tag) for name, _, tag, _, _ in MODEMS], self.workdir)
        agent_cfg.write_text(
            "probe: {id: p1, zone: demo-park, area: gate-a}\n"
            f"mqtt: {{host: 127.0.0.1, port: {broker_port}, protocol: '3.1.1'}}\n"
            f"spool: {{path: {self.workdir / 'spool.db'}}}\n"
            f"metrics: {{listen: '127.0.0.1:{_free_port()}'}}\n"
            "self_interval: 5s\n"
            f"sources:\n{sources}")
        self._spawn("agent", [py, "-m", "agent", "-c", str(agent_cfg), "run"])
        (self.workdir / "children.pid").write_text("".join(f"{p.pid} {n}\n" for n, p in self.children))
        self.store = SqliteWriter(SqliteStorage(type="sqlite", path=str(self.db)))

    def stop(self) -> None:
        """Stop the agent first, while its broker and the modems and devices it reads are still there (it says
        ``stopping``: a planned stop, muted, no page), then the simulated modems and devices, then the
        collector; every child by PID and reaped. May be called again."""
        try:
            _end([(n, p) for n, p in self.children if n == "agent"])
        finally:
            try:
                _end([(n, p) for n, p in self.children if n != "agent"])
            finally:
                collector, self.collector = self.collector, None
                try:
                    if collector is not None:
                        collector.stop()
                finally:
                    if self.store is not None:
                        self.store.close()
                        self.store = None
                    if self.hooks is not None:
                        self.hooks.stop()
                    if self.test_server is not None:
                        self.test_server.stop()
                        self.test_server = None

    # the scripted faults -----------------------------------------------------------------------------

    def snmp_set(self, device: str, oid: str, value: int) -> None:
        """Set an integer on a simulated device (what the fault would do to the real one's MIB)."""
        import asyncio

        from pysnmp.hlapi.v3arch.asyncio import (
            CommunityData,
            ContextData,
            ObjectIdentity,
            ObjectType,
            SnmpEngine,
            UdpTransportTarget,
            set_cmd,
        )
        from pysnmp.proto.rfc1902 import Integer32

        async def go() -> None:
            engine = SnmpEngine()
            try:
                target = await UdpTransportTarget.create(("127.0.0.1", self.snmp_port), timeout=2, retries=2)
                error, status, _index, _binds = await set_cmd(engine, CommunityData(device), target, ContextData(),
                                                              ObjectType(ObjectIdentity(oid), Integer32(value)))
                if error or status:
                    raise RuntimeError(f"SNMP set {device} {oid}={value} failed: {error or status}")
            finally:
                engine.close_dispatcher()

        asyncio.run(go())

    def fibre(self, up: bool) -> None:
        """Cut or splice Viettel's primary fibre (sw-core xe-0/1/0, ifIndex 1)."""
        self.snmp_set("sw-core", f"{IF_OPER_STATUS}.1", 1 if up else 2)

    def mains(self, on: bool) -> None:
        """Mains power at the BTS site fails (the UPS goes on battery) or comes back."""
        self.snmp_set("ups-01", UPS_OUTPUT_SOURCE, 3 if on else 5)
        self.snmp_set("ups-01", UPS_SECONDS_ON_BATTERY, 0 if on else 42)
        self.snmp_set("ups-01", UPS_MINUTES_REMAINING, 95 if on else 38)

    def coverage(self, carrier: str, hole: bool) -> None:
        """Move a carrier's modem into a coverage hole, or out of it."""
        self.modem_procs[carrier].send_signal(signal.SIGUSR1 if hole else signal.SIGUSR2)

    def alerts(self) -> list[dict[str, Any]]:
        """Return the alerts the collector tracks now (pending, firing, muted)."""
        engine = self.collector.engine if self.collector is not None else None
        if engine is None:
            return []
        return [{**a.labels, "_state": a.state, "_muted": a.muted, "_since": a.starts_ns,
                 "_summary": a.annotations.get("summary", "")} for a in engine.tracker.alerts()]

    def failed_child(self) -> str | None:
        """Return the name of a child that exited by itself, if any."""
        return next((name for name, proc in self.children if proc.poll() is not None), None)

    def counters(self) -> dict[str, float]:
        """Return the collector's own counters."""
        assert self.collector is not None
        reg = self.collector.metrics.registry
        names = {"received": "zonewatch_ingest_messages_total", "written": "zonewatch_storage_written_samples_total",
                 "duplicates": "zonewatch_ingest_duplicate_batches_total"}
        return {k: reg.get_sample_value(v) or 0.0 for k, v in names.items()}

    def rows(self, now_ns: int) -> dict[str, list[dict[str, Any]]]:
        """Return the newest stored readings, by table."""
        assert self.store is not None
        st = self.store

        def latest(measurement: str, fields: list[str]) -> list[dict[str, Any]]:
            by_series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
            for field in fields:
                for p in st.latest(measurement, field):
                    row = by_series.setdefault(tuple(sorted(p.tags.items())), {**p.tags, "_age": 0.0})
                    row[field] = p.value
                    row["_age"] = max(row["_age"], (now_ns - p.time_ns) / 1e9) if field == fields[0] else row["_age"]
            return list(by_series.values())

        interfaces = latest("interface", ["oper_up", "in_octets", "out_octets", "speed_mbps"])
        for row in interfaces:   # the rate between the last two polls, as a NOC graph shows it
            tags = {k: v for k, v in row.items() if not k.startswith("_") and k in ("device", "ifname")}
            for field, key in (("in_octets", "in_mbps"), ("out_octets", "out_mbps")):
                pts = st.query("interface", field, tags, since_ns=now_ns - 60 * 10**9)
                if len(pts) >= 2 and pts[-1].time_ns > pts[-2].time_ns and pts[-1].value >= pts[-2].value:
                    seconds = (pts[-1].time_ns - pts[-2].time_ns) / 1e9
                    row[key] = (pts[-1].value - pts[-2].value) * 8 / seconds / 1e6
        return {
            "cellular": latest("cellular", ["rsrp_dbm", "rsrq_db", "rssi_dbm", "registered"]),
            "device": latest("device", ["up", "uptime_s"]),
            "interface": interfaces,
            "probe": latest("probe", ["up", "spool_depth", "rss_mb"]),
        }


SCENARIO: list[tuple[float, str, str]] = [   # seconds after the start, what, Demo method call
    (30, "Viettel's primary fibre into the park is cut (sw-core xe-0/1/0)", "fibre:down"),
    (50, "mains power fails at the shared BTS site bts-dv-01 (ups-01 on battery)", "mains:off"),
    (70, "VinaPhone's signal at gate A drops into a coverage hole", "coverage:vinaphone:hole"),
    (100, "the fibre is spliced", "fibre:up"),
    (120, "mains power is back at bts-dv-01", "mains:on"),
    (140, "VinaPhone's signal at gate A recovers", "coverage:vinaphone:ok"),
]


def _act(demo: Demo, action: str) -> None:
    kind, *rest = action.split(":")
    if kind == "fibre":
        demo.fibre(rest[0] == "up")
    elif kind == "mains":
        demo.mains(rest[0] == "on")
    elif kind == "coverage":
        demo.coverage(rest[0], rest[1] == "hole")


class NocReceiver:
    """The NOC's webhook receiver, in this process: keeps what it got, newest last."""

    def __init__(self) -> None:
        self.got: list[tuple[float, dict[str, Any]]] = []
        self.url = ""
        self._server: Any = None
        self._lock = threading.Lock()

    def start(self) -> NocReceiver:
        import json
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                with receiver._lock:
                    receiver.got.extend((time.time(), a) for a in body.get("alerts", []))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="demo-noc", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def recent(self, count: int = 8) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return list(self.got[-count:])


def _who(labels: dict[str, Any]) -> str:
    return " ".join(f"{k}={labels[k]}" for k in ("carrier", "area", "site", "device", "link", "group", "probe")
                    if labels.get(k))


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def _tables(data: dict[str, list[dict[str, Any]]], counters: dict[str, float], elapsed: float,
            alerts: list[dict[str, Any]], notes: list[tuple[float, dict[str, Any]]], step: str) -> Any:
    from rich.console import Group
    from rich.table import Table

    cell = Table(title="Coverage by carrier (cellular)", expand=True)
    for col in ("carrier", "modem", "rat", "cell", "RSRP dBm", "RSRQ dB", "RSSI dBm", "registered", "age s"):
        cell.add_column(col)
    for r in data["cellular"]:
        rsrp = r.get("rsrp_dbm")
        colour = "red" if rsrp is None or rsrp < -110 else "yellow" if rsrp < -95 else "green"
        cell.add_row(r.get("carrier"), r.get("modem"), r.get("rat"), r.get("cell"), f"[{colour}]{_fmt(rsrp)}[/]",
                     _fmt(r.get("rsrq_db")), _fmt(r.get("rssi_dbm")), "yes" if r.get("registered") else "[red]no[/]",
                     _fmt(r["_age"], ".0f"))
    iface = Table(title="Equipment interfaces (SNMP)", expand=True)
    for col in ("device", "ifname", "oper", "in Mbit/s", "out Mbit/s", "speed Mbit/s"):
        iface.add_column(col)
    for r in data["interface"]:
        iface.add_row(r.get("device"), r.get("ifname"), "[green]up[/]" if r.get("oper_up") else "[red]down[/]",
                      _fmt(r.get("in_mbps"), ".1f"), _fmt(r.get("out_mbps"), ".1f"), _fmt(r.get("speed_mbps")))
    devs = ", ".join(f"{r.get('device')} {'up' if r.get('up') else 'DOWN'} (uptime {_fmt(r.get('uptime_s'), '.0f')} s)"
                     for r in data["device"])
    probes = ", ".join(f"{r.get('probe')} {'online' if r.get('up') else 'OFFLINE'}, spool {_fmt(r.get('spool_depth'))}"
                       for r in data["probe"])
    summary = (f"[b]ZoneWatch demo[/b] {elapsed:.0f} s | collector: {counters['received']:.0f} messages, "
               f"{counters['written']:.0f} samples stored | devices: {devs or '-'} | probes: {probes or '-'}")
    active = Table(title="Alerts (what the collector tracks now)", expand=True)
    for col in ("alert", "severity", "state", "who", "summary"):
        active.add_column(col)
    for a in sorted(alerts, key=lambda a: a["_since"]):
        state = "muted" if a["_muted"] else a["_state"]
        colour = {"firing": "red", "pending": "yellow"}.get(state, "dim")
        active.add_row(a["alertname"], a["severity"], f"[{colour}]{state}[/]", _who(a), a["_summary"])
    sent = Table(title="Notifications the NOC's webhook received (newest last)", expand=True)
    for col in ("time", "status", "alert", "who"):
        sent.add_column(col)
    for at, a in notes:
        colour = "red" if a["status"] == "firing" else "green"
        sent.add_row(time.strftime("%H:%M:%S", time.localtime(at)), f"[{colour}]{a['status']}[/]",
                     a["labels"].get("alertname", ""), _who(a["labels"]))
    return Group(summary, f"scenario: {step}", cell, iface, active, sent, "Ctrl-C stops the demo.")


def _plain(data: dict[str, list[dict[str, Any]]], counters: dict[str, float], elapsed: float) -> str:
    parts = [f"t={elapsed:.0f}s messages={counters['received']:.0f} samples={counters['written']:.0f}"]
    parts += [f"cellular {r.get('carrier')} {r.get('modem')} rsrp={_fmt(r.get('rsrp_dbm'))} dBm "
              f"registered={bool(r.get('registered'))}" for r in data["cellular"]]
    parts += [f"interface {r.get('device')} {r.get('ifname')} oper_up={bool(r.get('oper_up'))} "
              f"in_octets={_fmt(r.get('in_octets'))} in_mbps={_fmt(r.get('in_mbps'), '.1f')} "
              f"out_mbps={_fmt(r.get('out_mbps'), '.1f')}" for r in data["interface"]]
    parts += [f"device {r.get('device')} up={bool(r.get('up'))}" for r in data["device"]]
    return "\n".join(parts)


class _Say:
    """Print to the user, and go on without them once the output is gone (a pipe whose reader died, as ``| tee``
    does on Ctrl-C, or a terminal that hung up): stopping the zone and writing the report never depend on it."""

    def __init__(self) -> None:
        self.gone: set[int] = set()

    def __call__(self, text: str, err: bool = False) -> None:
        stream = sys.stderr if err else sys.stdout
        fd = 2 if err else 1
        if fd in self.gone:
            return
        try:
            print(text, file=stream, flush=True)
        except OSError:   # BrokenPipeError, EIO
            self.lost(fd)

    def lost(self, fd: int) -> None:
        """Point ``fd`` at /dev/null, so that nothing later (the interpreter's last flush) fails on it."""
        self.gone.add(fd)
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
        except OSError:
            pass


class _StderrNow(logging.Handler):
    """Write each record to ``sys.stderr`` as it is at that moment: while the live view runs that is rich's
    proxy, which prints the line above the view instead of through it (a handler holding the real stderr
    writes into the view and leaves old copies of it behind)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except OSError:
            pass


def _quietly_stop(live: Any) -> bool:
    """Stop rich's live view (it puts stdout and stderr back); False if the terminal was gone."""
    try:
        live.stop()
    except OSError:
        return False
    return True


def _logging(folder: Path, level: str | None) -> None:
    """Log everything at ``level`` (info by default) to ``collector.log`` in the demo's folder, and to the
    screen only warnings (or ``level`` when one is given): the live view is the demo's screen. Third-party
    chatter (amqtt and its ``transitions`` state machine, APScheduler) stays at warning unless ``debug``."""
    wanted = logging.getLevelName((level or "info").upper())
    shown = logging.getLevelName(level.upper()) if level else logging.WARNING
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    to_file = logging.FileHandler(folder / "collector.log")
    to_file.setLevel(wanted)
    to_screen = _StderrNow(shown)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in (to_file, to_screen):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel(min(wanted, shown))
    for name in ("amqtt", "transitions", "apscheduler"):
        logging.getLogger(name).setLevel(logging.DEBUG if wanted == logging.DEBUG else logging.WARNING)


def run_demo(workdir: str | None = None, seconds: float = 0, plain: bool = False, scenario: bool = True,
             pace: float = 1.0, log_level: str | None = None) -> int:
    """Run the demo until Ctrl-C, SIGTERM or SIGHUP (or ``seconds``); return the exit code.

    ``pace`` scales the scenario's timeline (0.5: twice as fast). The signals only ask the demo to stop (they
    are caught whatever this process inherited, also an ignored SIGINT), so no signal cuts the stop short.
    """
    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="zonewatch-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    before = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    try:
        _logging(folder, log_level)
        return _run(Demo(folder, verbose=log_level == "debug"), stop, _Say(), seconds, plain, scenario, pace)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _run(demo: Demo, stop: threading.Event, say: _Say, seconds: float, plain: bool, scenario: bool,
         pace: float) -> int:
    folder = demo.workdir
    started, started_ns = time.monotonic(), time.time_ns()
    code = 0
    say(f"ZoneWatch demo: starting a simulated zone in {folder} (log: {folder / 'collector.log'}) ...")
    if not plain and not sys.stdout.isatty():
        plain = True
        say("demo: the output is not a terminal: plain lines instead of the live table")
    shown = 0
    try:
        demo.start()
        live: Any = None
        if not plain:
            from rich.live import Live

            live = Live(auto_refresh=False)
            live.start()
        timeline = list(SCENARIO) if scenario else []
        step = "running (no scripted faults)" if not scenario else "the zone settles; the first fault comes at +30 s"
        last_plain, shown_readings = -5.0, False
        try:
            while not stop.wait(1.0 if live else 0.5):
                elapsed = time.monotonic() - started
                while timeline and elapsed >= timeline[0][0] * pace:
                    _at, step, action = timeline.pop(0)
                    _act(demo, action)
                    if not live:
                        say(f"scenario: {step}")
                for _at, a in demo.hooks.got[shown:]:
                    shown += 1
                    if not live:
                        say(f"notification: {a['status']} {a['labels'].get('alertname')} {_who(a['labels'])}")
                failed = demo.failed_child()
                if failed:
                    say(f"demo: {failed} stopped unexpectedly; its log is {folder}/{failed}.log", err=True)
                    code = 1
                    break
                data, counters = demo.rows(time.time_ns()), demo.counters()
                if live:
                    try:
                        live.update(_tables(data, counters, elapsed, demo.alerts(), demo.hooks.recent(), step),
                                    refresh=True)
                    except OSError:   # the terminal went away (its SIGHUP stops the demo): show nothing more
                        say.lost(1)
                        _quietly_stop(live)
                        live = None
                elif elapsed - last_plain >= 5.0 or (not shown_readings and data["device"]):   # the first at once
                    last_plain, shown_readings = elapsed, bool(data["device"])
                    say(_plain(data, counters, elapsed))
                if seconds and elapsed >= seconds:
                    break
        finally:
            if live and not _quietly_stop(live):
                say.lost(1)
    except RuntimeError as exc:   # a part of the zone did not start
        say(f"demo: {exc}", err=True)
        code = 1
    finally:   # every path, an unexpected exception too (its traceback follows)
        say("demo: stopping ...")
        demo.stop()
    if demo.hooks is not None:   # a page while stopping would be noise: show it if there was one
        for _at, a in demo.hooks.got[shown:]:
            say(f"notification: {a['status']} {a['labels'].get('alertname')} {_who(a['labels'])} (while stopping)")
    say(f"demo: stopped. Store: {demo.db}; logs and configs: {folder}")
    if demo.hooks is not None and demo.db.exists():   # it started: the zone authority's report of what the run saw
        from collector.report import ReportError, write_demo_report

        try:
            inventory = strict.load(Inventory, INVENTORY, "demo inventory")
            page = write_demo_report(demo.db, folder / "report", "demo-park", started_ns, time.time_ns(), inventory)
            say(f"demo: the zone's report (HTML with plots, and CSV): {page}")
        except ReportError as exc:
            say(f"demo: no report: {exc}")
    return code
