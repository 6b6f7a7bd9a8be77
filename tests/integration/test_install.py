"""Installing ZoneWatch as a field engineer does, with ``deploy/install.sh``, and what the wheel carries.

Each install goes into a scratch root (``--root``): the releases, the unit, the configuration and the state
land beneath it, the unit names the paths as the system will see them, and ``systemd-analyze verify --root``
checks it there. The installed programs then run from the release's own virtual environment: check-config,
``once`` against a simulated modem, and ``run`` with a stand-in for systemd's notification socket (what
``Type=notify`` and ``WatchdogSec=`` rely on), publishing to a real mosquitto.

Offline and quick, honestly: the project's wheels are built from copies of this checkout with the test
environment's own setuptools (``--no-build-isolation``), and no dependency is downloaded. Every program these
tests start sees the test environment's installed dependencies on PYTHONPATH (a folder of links to each entry
of its site-packages, less pip and ZoneWatch itself), and pip runs with ``--no-index`` (the installer's
``--wheels``): pip resolves every requirement the wheel declares against them, and installs only ZoneWatch
into each new environment. So the ZoneWatch code and data that run are the installed wheel's, from outside
the checkout; the dependencies are the ones the whole suite runs with.

``systemd-analyze verify`` here (systemd 252): a unit whose ExecStart program is missing fails; with
``--root``, units the scratch root lacks (sysinit.target, ...) fail too unless ``--recursive-errors=no``;
an unknown key or a bad value prints a line and exits 1. So the tests require exit 0 and no output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.sim.modem import SimModem
from tests import services

pytestmark = pytest.mark.integration

CHECKOUT = Path(__file__).resolve().parents[2]
INSTALL = CHECKOUT / "deploy" / "install.sh"
BASE_PYTHON = str(Path(sys.base_prefix) / "bin" / "python3")   # the interpreter the test environment was made from
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", ".*cache", ".hypothesis", "__pycache__", "build", "dist",
                                    "*.egg-info", "tests")
# The example configurations read their secrets from these variables.
EXAMPLE_SECRETS = {"ZW_MQTT_PASSWORD": "probe-pass", "ZW_SNMP_AUTH": "auth-pass-123", "ZW_SNMP_PRIV": "priv-pass-456",
                   "ZW_SNMP_COMMUNITY": "public", "ZW_TRAP_COMMUNITY": "traps", "ZW_COLLECTOR_MQTT_PASSWORD": "c-pass",
                   "ZW_SMTP_PASSWORD": "smtp-pass", "ZW_SECRET_VIETTEL_TOKEN": "token"}


@dataclass
class Kit:
    """What every test here installs from: two versions of the project, as a source folder, wheels and an index."""

    source: Path            # a copy of this checkout (version ``v1``)
    v1: str
    wheel1: Path            # built from ``source``
    v2: str
    wheel2: Path            # the same code as version ``v2``
    index_url: str          # a package index (PEP 503, file://) holding ``wheel2``
    wheels: Path            # the folder given to --wheels (offline: no index)
    env: dict[str, str]     # the environment every program here runs in


def _copy_source(dest: Path, version: str | None = None) -> Path:
    shutil.copytree(CHECKOUT, dest, ignore=NOT_COPIED, symlinks=True)
    if version is not None:
        pyproject = dest / "pyproject.toml"
        text, count = re.subn(r'(?m)^version = "[^"]+"$', f'version = "{version}"', pyproject.read_text())
        assert count == 1, "pyproject.toml has no static version line"
        pyproject.write_text(text)
    return dest


def _build_wheel(source: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(out), str(source)],
                   check=True, capture_output=True, timeout=120)
    (wheel,) = out.glob("zonewatch-*.whl")
    return wheel


def _dependencies_view(dest: Path) -> Path:
    """A folder of links to the test environment's installed packages, less pip and ZoneWatch's own entries."""
    dest.mkdir()
    site = Path(sysconfig.get_path("purelib"))
    own = {"pip", "__pycache__", "_distutils_hack", "agent", "collector", "zonewatch.strict", "zonewatch"}
    for entry in site.iterdir():
        name = entry.name
        if name in own or name.startswith(("pip-", "zonewatch", "__editable__")) or name.endswith(".pth"):
            continue
        (dest / name).symlink_to(entry)
    return dest


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    base = tmp_path_factory.mktemp("kit")
    source = _copy_source(base / "source")
    found = re.search(r'(?m)^version = "([^"]+)"$', (source / "pyproject.toml").read_text())
    assert found is not None, "pyproject.toml has no static version line"
    v1 = found.group(1)
    v2 = f"{v1}+upgrade"
    wheels = base / "wheels"
    wheel1 = _build_wheel(source, wheels)
    wheel2 = _build_wheel(_copy_source(base / "source2", v2), base / "wheels2")
    project = base / "index" / "zonewatch"
    project.mkdir(parents=True)
    shutil.copy(wheel2, project)
    (project / "index.html").write_text(f'<!DOCTYPE html>\n<a href="{wheel2.name}">{wheel2.name}</a>\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env.update(PYTHONPATH=str(_dependencies_view(base / "dependencies")),
               PIP_NO_BUILD_ISOLATION="0")   # = --no-build-isolation (pip reads its negative options so)
    return Kit(source, v1, wheel1, v2, wheel2, (base / "index").as_uri(), wheels, env)


def run(argv: list[str | Path], kit: Kit, ok: bool = True, env: dict[str, str] | None = None,
        cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run a command as the field engineer would (from a folder outside the checkout); with ``ok``, require exit 0."""
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          env={**kit.env, **(env or {})}, cwd=cwd or Path(kit.wheels).parent, stdin=subprocess.DEVNULL)
    if ok:
        assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def install(kit: Kit, root: Path, *args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """``deploy/install.sh ARGS`` into the scratch ``root``, offline, with the test environment's interpreter."""
    return run(["bash", INSTALL, *args, "--root", root, "--python", BASE_PYTHON, "--wheels", kit.wheels], kit, ok=ok)


def verify_unit(root: Path, name: str) -> None:
    """``systemd-analyze verify`` the unit as the installer wrote it, against the scratch root."""
    proc = subprocess.run([services.require("systemd-analyze"), "verify", f"--root={root}", "--recursive-errors=no",
                           f"/etc/systemd/system/{name}"], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, ""), proc.stdout + proc.stderr


def resolved(pip_output: str) -> set[str]:
    """The distributions the installed extras ask for themselves, as pip names them (each is on PYTHONPATH here:
    "Requirement already satisfied: NAME... (from zonewatch==V)"; what they need in turn says "from X->zonewatch")."""
    return {m.lower() for m in re.findall(r"(?m)^Requirement already satisfied: ([A-Za-z0-9._-]+?)[^A-Za-z0-9._-]"
                                          r".* \(from zonewatch==[^)]*\)", pip_output)}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def installed_version(release: Path, kit: Kit) -> str:
    return run([release / "bin" / "python", "-c", "import importlib.metadata as m; print(m.version('zonewatch'))"],
               kit).stdout.strip()


class NotifySocket:
    """Stands in for systemd's notification socket: a unix datagram socket that keeps what it is sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.got: list[str] = []

    def messages(self) -> list[str]:
        while True:
            try:
                self.got.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return list(self.got)

    def env(self, watchdog_s: float) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path), "WATCHDOG_USEC": str(int(watchdog_s * 1e6))}

    def close(self) -> None:
        self.sock.close()


class Subscriber:
    """A paho client on the test broker keeping every message under ``topic``."""

    def __init__(self, port: int, topic: str) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="install-test")

        def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            with self.lock:
                self.received.append((msg.topic, bytes(msg.payload)))

        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def samples(self) -> list[dict[str, Any]]:
        with self.lock:
            batches = [json.loads(p) for t, p in self.received if t.endswith("/data")]
        return [s for b in batches for s in b.get("samples", [])]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def run_under_notify(program: Path, config: Path, kit: Kit, workdir: Path, until: Any = None) -> list[str]:
    """Start ``program -c config run`` as a ``Type=notify`` service with ``WatchdogSec=1s`` would be started; wait
    for READY=1, two watchdog pings and ``until()``; stop it with SIGTERM; return what it told the socket."""
    notify = NotifySocket(workdir / "notify")
    log = workdir / f"{program.name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(program), "-c", str(config), "run"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=workdir, env={**kit.env, **notify.env(1.0)})
    try:
        def wait(condition: Any, timeout: float, what: str) -> None:
            try:
                services.wait_for(lambda: proc.poll() is not None or condition(), timeout, what)
            except TimeoutError as exc:
                told = notify.messages()
                raise AssertionError(f"{exc}; it said {told}; its log:\n{log.read_text()[-3000:]}") from None
            assert proc.poll() is None, f"{program.name} exited {proc.returncode}:\n{log.read_text()[-3000:]}"

        def says(prefix: str, count: int = 1) -> bool:
            return sum(m.startswith(prefix) for m in notify.messages()) >= count

        wait(lambda: says("READY=1"), 30, f"{program.name} to say READY=1")
        wait(lambda: says("WATCHDOG=1", 2), 10, f"{program.name} to ping the watchdog twice")
        if until is not None:
            wait(until, 30, f"{program.name} to do its work")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
        return notify.messages()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        notify.close()


def test_a_probe_installs_runs_upgrades_rolls_back_and_uninstalls(kit: Kit, tmp_path: Path,
                                                                  mosquitto: services.Service) -> None:
    root = tmp_path / "root"
    home = root / "opt/zonewatch/agent"
    conf = root / "etc/zonewatch/agent.yaml"
    agent = home / "current/bin/zonewatch-agent"

    # The one command, from the checkout: builds the wheel, makes the release, writes unit, config, folders.
    out = install(kit, root, "agent", "--from", kit.source).stdout
    assert f"agent: current is zonewatch {kit.v1}" in out and "next: edit /etc/zonewatch/agent.yaml" in out, out
    assert "pysnmp" in resolved(out) and not resolved(out) & {"influxdb-client", "amqtt", "matplotlib", "snmpsim",
                                                              "rich"}, out
    assert os.readlink(home / "current") == f"releases/{kit.v1}" and not (home / "previous").exists()
    unit = (root / "etc/systemd/system/zonewatch-agent.service").read_text()
    assert "\nExecStart=/opt/zonewatch/agent/current/bin/zonewatch-agent -c /etc/zonewatch/agent.yaml run\n" in unit
    assert "\nType=notify\n" in unit and "\nWatchdogSec=60s\n" in unit and "\nSupplementaryGroups=dialout\n" in unit
    verify_unit(root, "zonewatch-agent.service")
    for updater_unit in ("zonewatch-agent-update.service", "zonewatch-agent-update.path"):   # agent.fleet.updater
        verify_unit(root, updater_unit)
    assert (home / "deploy/install.sh").exists() and mode(root / "var/lib/zonewatch/update") == 0o750
    assert os.readlink(root / "usr/local/bin/zonewatch-agent") == "/opt/zonewatch/agent/current/bin/zonewatch-agent"
    assert conf.read_bytes() == (CHECKOUT / "config/agent.example.yaml").read_bytes()
    assert (mode(root / "etc/zonewatch"), mode(root / "etc/zonewatch/secrets"), mode(conf),
            mode(root / "var/lib/zonewatch")) == (0o750, 0o750, 0o640, 0o750)
    checked = run([agent, "-c", conf, "check-config"], kit, env=EXAMPLE_SECRETS)
    assert re.search(r"agent\.yaml: ok \(\d+ sources, probe dinh-vu/p1\)", checked.stdout), checked.stdout

    # The engineer's configuration: a modem (simulated), the spool in the state folder, the test broker.
    subscriber = Subscriber(mosquitto.port, "zw/v1/lab/p9/#")
    try:
        with SimModem() as modem:
            conf.write_text(f"probe: {{id: p9, zone: lab}}\nmqtt: {{host: 127.0.0.1, port: {mosquitto.port}}}\n"
                            f"spool: {{path: {root / 'var/lib/zonewatch/spool.db'}}}\nmetrics: {{enabled: false}}\n"
                            f"self_interval: 1s\nsources:\n  - {{type: cellular, name: viettel, port: {modem.port}, "
                            "carrier: 452-04, interval: 1s}\n")
            once = run([agent, "-c", conf, "once"], kit)
            assert "# viettel (cellular): 1 samples" in once.stdout and "cellular,carrier=452-04," in once.stdout

            def reported_version() -> bool:
                return any(s["m"] == "probe" and s.get("tags", {}).get("version") == kit.v1
                           for s in subscriber.samples())

            told = run_under_notify(agent, conf, kit, tmp_path, until=reported_version)
    finally:
        subscriber.close()
    assert told[0] == "READY=1\nSTATUS=probe lab/p9: 1 polled sources, 0 listeners", told
    assert told[-1] == "STOPPING=1" and told.count("WATCHDOG=1") >= 2, told
    assert any(s["m"] == "cellular" for s in subscriber.samples())
    lab = conf.read_text()

    # Upgrade from a package index: the new release becomes current, the old one stays, the configuration too.
    out = install(kit, root, "agent", "--from", kit.index_url).stdout
    assert f"current is zonewatch {kit.v2} (/opt/zonewatch/agent/current); previous: {kit.v1}" in out, out
    assert os.readlink(home / "current") == f"releases/{kit.v2}"
    assert os.readlink(home / "previous") == f"releases/{kit.v1}"
    assert installed_version(home / "current", kit) == kit.v2
    assert installed_version(home / f"releases/{kit.v1}", kit) == kit.v1
    assert conf.read_text() == lab and "keeping /etc/zonewatch/agent.yaml" in out
    verify_unit(root, "zonewatch-agent.service")

    # The same wheel again changes nothing: the previous release is still the one to go back to.
    out = install(kit, root, "agent", "--from", kit.wheel2).stdout
    assert f"zonewatch {kit.v2} (agent) is installed already" in out and f"previous: {kit.v1} " in out, out
    assert out.rstrip().endswith("nothing changed"), out
    assert (os.readlink(home / "current"), os.readlink(home / "previous")) == (f"releases/{kit.v2}",
                                                                                f"releases/{kit.v1}")

    # Rollback, and the rolled-back agent still reads the engineer's configuration.
    out = install(kit, root, "agent", "--rollback").stdout
    assert f"agent: current is now zonewatch {kit.v1} (was {kit.v2}" in out, out
    assert (os.readlink(home / "current"), os.readlink(home / "previous")) == (f"releases/{kit.v1}",
                                                                                f"releases/{kit.v2}")
    assert installed_version(home / "current", kit) == kit.v1
    assert "agent.yaml: ok (1 sources, probe lab/p9)" in run([agent, "-c", conf, "check-config"], kit).stdout

    # Uninstall: the program, the unit and the link go; the configuration and the spool stay.
    install(kit, root, "agent", "--uninstall")
    assert not home.exists() and not (root / "etc/systemd/system/zonewatch-agent.service").exists()
    assert not list((root / "etc/systemd/system").glob("zonewatch-agent-update.*"))
    assert not os.path.lexists(root / "usr/local/bin/zonewatch-agent")
    assert conf.read_text() == lab and (root / "var/lib/zonewatch/spool.db").exists()
    refused = install(kit, root, "agent", "--rollback", ok=False)
    assert refused.returncode == 1 and "agent is not installed in /opt/zonewatch/agent" in refused.stderr
    install(kit, root, "agent", "--uninstall", "--purge")
    assert not (root / "etc/zonewatch").exists() and not (root / "var/lib/zonewatch").exists()


def test_the_collector_installs_under_another_prefix_and_runs_as_its_unit_says(kit: Kit, tmp_path: Path) -> None:
    root = tmp_path / "root"
    out = install(kit, root, "collector", "--from", kit.wheel1, "--prefix", "/srv/zonewatch").stdout
    assert f"collector: current is zonewatch {kit.v1} (/srv/zonewatch/collector/current)" in out, out
    # The centre writes the monthly report (matplotlib); the demo's packages and the probe's stay out.
    assert {"amqtt", "matplotlib"} <= resolved(out) and not resolved(out) & {"snmpsim", "pysmi", "rich", "pysnmp"}, out
    unit = (root / "etc/systemd/system/zonewatch-collector.service").read_text()
    assert ("\nExecStart=/srv/zonewatch/collector/current/bin/zonewatch-collector -c /etc/zonewatch/collector.yaml "
            "run\n") in unit
    verify_unit(root, "zonewatch-collector.service")
    etc = root / "etc/zonewatch"
    assert (etc / "inventory.yaml").read_bytes() == (CHECKOUT / "config/inventory.example.yaml").read_bytes()
    assert "\ninventory: inventory.yaml " in (etc / "collector.yaml").read_text()
    collector = root / "srv/zonewatch/collector/current/bin/zonewatch-collector"
    checked = run([collector, "-c", etc / "collector.yaml", "check-config"], kit, env=EXAMPLE_SECRETS)
    assert f"ok (storage victoriametrics, inventory {etc / 'inventory.yaml'}: " in checked.stdout, checked.stdout

    state = root / "var/lib/zonewatch"
    lab = tmp_path / "collector.yaml"
    lab.write_text(f"embedded_broker: {{listen: '127.0.0.1:{services.free_port()}'}}\n"
                   f"storage: {{type: sqlite, path: {state / 'zonewatch.db'}}}\n"
                   f"queue: {{path: {state / 'intake.db'}}}\nhttp: {{enabled: false}}\n")
    told = run_under_notify(collector, lab, kit, tmp_path)
    assert told[0] == "READY=1\nSTATUS=storage sqlite, alerting off", told
    assert told[-1] == "STOPPING=1" and told.count("WATCHDOG=1") >= 2, told
    assert (state / "intake.db").exists()


def test_the_wheel_carries_every_file_its_commands_read(kit: Kit, tmp_path: Path, snmpd: services.Service) -> None:
    """A fresh environment with only the wheel installed (dependencies as the module docstring says) runs the
    demo, whose devices are the wheel's ``collector/demo_data``, and ``once`` polling snmpd with the wheel's SNMP
    profiles. snmpsim's program is linked beside the environment's Python, where its own install would put it."""
    venv = tmp_path / "venv"
    run([BASE_PYTHON, "-m", "venv", venv], kit)
    run([venv / "bin/python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
         f"{kit.wheel1}[agent,collector,demo]"], kit)
    (venv / "bin/snmpsim-command-responder").symlink_to(Path(sys.executable).with_name("snmpsim-command-responder"))
    show = "import collector.demo as d, agent.profiles as p; print(d.DATA, p.__file__)"
    where = run([venv / "bin/python", "-c", show], kit, cwd=tmp_path).stdout.split()
    assert all(Path(w).is_relative_to(venv) for w in where), where   # not the checkout's

    demo = run([venv / "bin/zonewatch-collector", "--log-level", "warning", "demo", "--seconds", "20", "--plain",
                "--workdir", tmp_path / "demo"], kit, cwd=tmp_path, timeout=120)
    for line in ("cellular 452-04 viettel rsrp=-", "interface sw-core xe-0/1/0 oper_up=True", "device bts-01 up=True",
                 "device ups-01 up=True", "demo: stopped.", "demo: the zone's report (HTML with plots, and CSV): "):
        assert line in demo.stdout, demo.stdout[-3000:] + demo.stderr[-3000:]

    config = tmp_path / "agent.yaml"
    config.write_text(f"probe: {{id: p9, zone: lab}}\nspool: {{path: {tmp_path / 'never.db'}}}\nsources:\n"
                      f"  - {{type: snmp, name: bts-01, host: 127.0.0.1, port: {snmpd.port}, version: v2c, "
                      "community: public, profiles: [system, if_mib]}\n")
    once = run([venv / "bin/zonewatch-agent", "-c", config, "once"], kit, cwd=tmp_path)
    assert "device,device=bts-01 " in once.stdout and "interface,device=bts-01,ifname=lo " in once.stdout, once.stdout
