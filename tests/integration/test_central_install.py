"""The central install, ``deploy/central.sh``, into a scratch root (``--root``), as the first host of an HA pair,
then again after an inventory change.

It installs the collector through ``deploy/install.sh collector`` (offline: the wheel built from a copy of this
checkout, the test environment's dependencies, as ``test_install.py`` does), and writes mosquitto's, Victoria-
Metrics', Alertmanager's and Grafana's files. What it wrote is checked where it can be run: the broker's
rendered configuration in a real mosquitto (its paths moved beneath the root), with TLS against the CA the
script made, the users' passwords and the ACL; Alertmanager's with ``amtool check-config``; the collector's unit
and its drop-in, and vmauth's unit, with ``systemd-analyze verify``. VictoriaMetrics is started with the arguments
the script wrote and vmauth from its installed unit (ExecStart, EnvironmentFile, their paths moved beneath the
root): each carrier's password reads that carrier's series only, a wrong one is refused. The second run keeps every
password, the certificates and the collector's configuration, renders the new probe, a park bridge's user and a
new carrier, which the running vmauth serves once the unit's ExecReload has been sent.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import socket
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml

from collector.mosquitto.bundle import read_password
from tests import services
from tests.integration.test_install import BASE_PYTHON, _build_wheel, _copy_source, _dependencies_view, verify_unit
from tests.tlsbroker import connect

pytestmark = pytest.mark.integration

CENTRAL = Path(__file__).resolve().parents[2] / "deploy" / "central.sh"
INVENTORY = """\
zones:
  dinh-vu: {name: Dinh Vu}
  park: {name: A park with a broker of its own}
carriers:
  viettel:
    plmn: 452-04
    name: Viettel
    notify: [{type: webhook, url: "http://alerts.viettel.example/hook"}, {type: mqtt, topic: carriers/viettel}]
  vinaphone: {plmn: 452-02, name: VinaPhone}
probes:
  p1: {zone: dinh-vu}
  p2: {zone: park}
"""
HA = ["--name", "collector-a", "--role", "primary", "--peer", "10.0.0.2", "--peer-name", "collector-b",
      "--advertise", "10.0.0.1"]
NEW_CARRIER = "  mobifone: {plmn: 452-01, name: MobiFone}\n"
# What VictoriaMetrics holds for the vmauth checks: a BTS of each carrier (its owner label) and the zone's own switch.
SERIES = {"bts-vt": {"own_452_04": "1"}, "bts-vn": {"own_452_02": "1"}, "sw-zone": {}}


@dataclass
class Kit:
    wheel: Path
    wheels: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    base = tmp_path_factory.mktemp("central-kit")
    wheels = base / "wheels"
    wheel = _build_wheel(_copy_source(base / "source"), wheels)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    env.update(PYTHONPATH=str(_dependencies_view(base / "dependencies")), PIP_NO_BUILD_ISOLATION="0")
    yield Kit(wheel, wheels, env)


def central(kit: Kit, root: Path, *args: str | Path) -> str:
    proc = subprocess.run(["bash", str(CENTRAL), "--root", str(root), "--from", str(kit.wheel), "--wheels",
                           str(kit.wheels), "--python", BASE_PYTHON, *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=kit.env, cwd=kit.wheels, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"central.sh exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def start_rendered_broker(root: Path, workdir: Path) -> services.Service:
    """Start mosquitto on a free port with the listener section central.sh wrote, its paths beneath ``root``."""
    conf = (root / "etc/mosquitto/conf.d/zonewatch.conf").read_text().replace("/etc/", f"{root}/etc/")
    lines = conf.splitlines()
    listener = next(i for i, line in enumerate(lines) if line.startswith("listener "))
    assert lines[listener] == "listener 8883", lines[listener]
    assert "per_listener_settings true" in lines[:listener]
    return services.start_mosquitto(workdir, listener_options="\n".join(lines[listener + 1:]) + "\n")


def unit_service(path: Path) -> dict[str, str]:
    """Return the ``[Service]`` settings of an installed unit file (each key once)."""
    out: dict[str, str] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def read_env(path: Path) -> dict[str, str]:
    """Read an environment file as systemd's EnvironmentFile= does (comments skipped, quotes removed)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            out[key.strip()] = shlex.split(value)[0] if value.startswith(('"', "'")) else value
    return out


def tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def spawn(name: str, argv: list[str], workdir: Path, port: int, env: dict[str, str]) -> services.Service:
    """Start ``argv`` and wait (bounded) until it accepts connections on 127.0.0.1:``port``."""
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
                                env={**os.environ, **env})
    service = services.Service(name, proc, port, workdir, log, f"http://127.0.0.1:{port}")
    try:
        services.wait_for(lambda: proc.poll() is None and tcp_open(port), 20, f"{name} on port {port}")
    except BaseException as exc:
        service.stop()
        raise AssertionError(f"{name} did not start ({exc}):\n{service.log_tail()}") from exc
    return service


def start_installed_victoriametrics(root: Path, workdir: Path) -> services.Service:
    """Start VictoriaMetrics with the arguments central.sh wrote for Debian's unit, its data beneath ``workdir``;
    plus -search.latencyOffset=0s so that points written a moment ago are visible (what tests need)."""
    args = shlex.split(read_env(root / "etc/default/victoria-metrics")["ARGS"])
    args = [f"-storageDataPath={workdir / 'data'}" if a.startswith("-storageDataPath=") else a for a in args]
    listen = next(a.partition("=")[2] for a in args if a.startswith("-httpListenAddr="))
    return spawn("victoria-metrics", [services.require("victoria-metrics"), *args, "-search.latencyOffset=0s",
                                      "-loggerLevel=WARN"], workdir, int(listen.rpartition(":")[2]), {})


def start_installed_vmauth(root: Path, workdir: Path) -> services.Service:
    """Start vmauth as its installed unit does: the unit's ExecStart with its EnvironmentFile, the file paths in
    it moved beneath ``root``."""
    unit = unit_service(root / "etc/systemd/system/zonewatch-vmauth.service")
    env = read_env(Path(f"{root}{unit['EnvironmentFile'].lstrip('-')}"))
    env["auth_config"] = f"{root}{env['auth_config']}"
    argv = shlex.split(unit["ExecStart"])
    assert argv[0] == "/usr/bin/vmauth", argv   # Debian's victoria-metrics package
    return spawn("vmauth", argv, workdir, int(env["httpListenAddr"].rpartition(":")[2]), env)


def reload_installed_vmauth(root: Path, vmauth: services.Service) -> None:
    """Run the installed unit's ExecReload as systemd would for ``systemctl reload`` (``$MAINPID`` replaced)."""
    unit = unit_service(root / "etc/systemd/system/zonewatch-vmauth.service")
    subprocess.run(shlex.split(unit["ExecReload"].replace("$MAINPID", str(vmauth.pid))), check=True, timeout=10)


def fill(vm_url: str) -> None:
    """Write ``SERIES`` into VictoriaMetrics a minute ago and wait (bounded) until it answers with all of them."""
    ms = int(time.time() * 1000) - 60_000
    lines = "\n".join(json.dumps({"metric": {"__name__": "device_up", "zone": "dinh-vu", "device": device, **owner},
                                  "values": [1], "timestamps": [ms]}) for device, owner in SERIES.items())
    with urllib.request.urlopen(urllib.request.Request(f"{vm_url}/api/v1/import", data=lines.encode(),
                                                       method="POST"), timeout=10) as r:
        assert r.status == 204
    services.wait_for(lambda: len(query(vm_url, None, "", "device_up")[1]) == len(SERIES), 30,
                      "VictoriaMetrics to answer with the series written")


def call(url: str, user: str | None, password: str, path: str, params: dict[str, str]) -> tuple[int, bytes]:
    """GET ``path`` from ``url`` with basic auth as ``user`` (none for None); return the status and the body."""
    request = urllib.request.Request(f"{url}{path}?{urlencode(params)}")
    if user is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def query(url: str, user: str | None, password: str, promql: str) -> tuple[int, set[str]]:
    """Run an instant query as ``user``; return the status and the devices of the series it answered with."""
    status, body = call(url, user, password, "/api/v1/query", {"query": promql})
    if status != 200:
        return status, set()
    return status, {item["metric"].get("device", "") for item in json.loads(body)["data"]["result"]}


def exported(url: str, user: str, password: str) -> set[str]:
    """Export every series ``user`` may read; return their devices."""
    status, body = call(url, user, password, "/api/v1/export", {"match[]": '{__name__=~".+"}'})
    assert status == 200, (user, status, body[:300])
    return {json.loads(line)["metric"]["device"] for line in body.splitlines() if line.strip()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def verify_vmauth_unit(root: Path) -> None:
    """``systemd-analyze verify`` vmauth's installed unit against this machine's binaries (/usr/bin/vmauth from
    Debian's package, /bin/kill), which a scratch root does not hold."""
    unit = root / "etc/systemd/system/zonewatch-vmauth.service"
    proc = subprocess.run([services.require("systemd-analyze"), "verify", "--recursive-errors=no", str(unit)],
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, ""), proc.stdout + proc.stderr


def grafana_files(root: Path) -> tuple[list[dict[str, object]], list[dict[str, object]], dict[str, str]]:
    """Return the carriers' provisioned datasources and dashboard providers and Grafana's environment file."""
    prov = root / "etc/grafana/provisioning"
    datasources = yaml.safe_load((prov / "datasources/zonewatch-carriers.yaml").read_text())["datasources"]
    providers = yaml.safe_load((prov / "dashboards/zonewatch-carriers.yaml").read_text())["providers"]
    return datasources, providers, read_env(root / "etc/zonewatch/grafana/grafana.env")


def test_central_install_of_an_ha_primary_then_again_after_an_inventory_change(kit: Kit, tmp_path: Path) -> None:
    root = tmp_path / "root"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    vm_port = services.free_port()
    vmauth_port = next(p for p in iter(services.free_port, None) if p != vm_port)
    args = [*HA, "--vm-listen", f"127.0.0.1:{vm_port}", "--vmauth-listen", f"127.0.0.1:{vmauth_port}"]
    printed = central(kit, root, "--inventory", inventory, *args)
    etc = root / "etc"
    collector_yaml = (etc / "zonewatch/collector.yaml").read_text()
    for line in ("  username: collector-a", "ha: {role: primary}", 'peers: ["http://10.0.0.2:9093"]',
                 "  mqtt_delivery: alertmanager", "  tls: {ca_file: /etc/zonewatch/pki/ca.crt}",
                 f"storage: {{type: victoriametrics, url: http://127.0.0.1:{vm_port}}}"):
        assert line in collector_yaml, f"{line!r} not in collector.yaml:\n{collector_yaml}"
    secrets = etc / "mosquitto/zonewatch/secrets"
    password = (secrets / "collector-a").read_text().strip()
    token = (etc / "zonewatch/secrets/relay-token").read_text().strip()
    assert (etc / "zonewatch/collector.env").read_text() == (f"ZW_COLLECTOR_MQTT_PASSWORD={password}\n"
                                                             f"ZW_RELAY_TOKEN={token}\n")
    assert (etc / "prometheus/zonewatch-secrets/relay-token").read_text() == token
    assert "credentials_file: /etc/prometheus/zonewatch-secrets/relay-token" in (
        etc / "prometheus/alertmanager.yml").read_text()
    assert sorted(p.name for p in secrets.iterdir()) == ["collector-a", "collector-b", "p1", "p2"]
    vm_args = (etc / "default/victoria-metrics").read_text()
    assert "-dedup.minScrapeInterval=1ms" in vm_args and f"-httpListenAddr=127.0.0.1:{vm_port}" in vm_args
    am_args = (etc / "default/prometheus-alertmanager").read_text()
    assert "--cluster.peer=10.0.0.2:9094" in am_args and "--cluster.advertise-address=10.0.0.1:9094" in am_args
    am_yml = etc / "prometheus/alertmanager.yml"
    assert "http://127.0.0.1:9109/relay/mqtt/carrier.viettel.mqtt.1" in am_yml.read_text()
    check = subprocess.run([services.require("amtool"), "check-config", str(am_yml)], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    datasource = (etc / "grafana/provisioning/datasources/zonewatch.yaml").read_text()
    assert f"url: http://127.0.0.1:{vm_port}" in datasource
    assert "path: /opt/zonewatch/dashboards" in (etc / "grafana/provisioning/dashboards/zonewatch.yaml").read_text()
    assert len(list((root / "opt/zonewatch/dashboards").glob("*.json"))) == 6
    dropin = (etc / "systemd/system/zonewatch-collector.service.d/central.conf").read_text()
    assert "After=prometheus-alertmanager.service mosquitto.service victoria-metrics.service" in dropin
    verify_unit(root, "zonewatch-collector.service")

    # vmauth: its unit, its files readable by its own user only, and what the run says
    verify_vmauth_unit(root)
    vma = etc / "zonewatch-vmauth"
    assert {p.name: mode(p) for p in [vma, *vma.iterdir()]} == {
        "zonewatch-vmauth": 0o750, "auth.yml": 0o640, "vmauth.env": 0o600, "secrets": 0o700}
    assert sorted(p.name for p in (vma / "secrets").iterdir()) == ["viettel", "vinaphone", "vmauth-admin-key",
                                                                    "zone-authority"]
    assert {mode(p) for p in (vma / "secrets").iterdir()} == {0o600}
    vmauth_env = read_env(vma / "vmauth.env")
    assert vmauth_env["auth_config"] == "/etc/zonewatch-vmauth/auth.yml"
    assert vmauth_env["httpListenAddr"] == f"127.0.0.1:{vmauth_port}"
    carrier_passwords = {u: (vma / "secrets" / u).read_text().strip() for u in ("viettel", "vinaphone",
                                                                                 "zone-authority")}
    assert f"carriers read through vmauth at http://127.0.0.1:{vmauth_port}" in printed
    assert "/etc/zonewatch/grafana/orgs.txt: 2 Viettel (452-04); 3 VinaPhone (452-02)\n" in printed

    # Grafana: an organisation per carrier, its one datasource vmauth as that carrier, the dashboards in each
    datasources, providers, grafana_env = grafana_files(root)
    assert [(d["orgId"], d["basicAuthUser"], d["url"]) for d in datasources] == [
        (2, "viettel", f"http://127.0.0.1:{vmauth_port}"), (3, "vinaphone", f"http://127.0.0.1:{vmauth_port}")]
    assert [(p["orgId"], p["options"]) for p in providers] == [
        (org, {"path": "/opt/zonewatch/dashboards", "foldersFromFilesStructure": False}) for org in (2, 3)]
    assert grafana_env == {"ZONEWATCH_VMAUTH_PASSWORD_VIETTEL": carrier_passwords["viettel"],
                           "ZONEWATCH_VMAUTH_PASSWORD_VINAPHONE": carrier_passwords["vinaphone"]}
    assert mode(etc / "zonewatch/grafana/grafana.env") == 0o600
    assert "EnvironmentFile=-/etc/zonewatch/grafana/grafana.env" in (
        etc / "systemd/system/grafana-server.service.d/zonewatch.conf").read_text()

    # the broker as rendered: TLS with the CA the script made, each user with its own password
    ca = etc / "zonewatch/pki/ca.crt"
    server_cert = etc / "mosquitto/certs/zonewatch.crt"
    verified = subprocess.run([services.require("openssl"), "verify", "-CAfile", str(ca), str(server_cert)],
                              capture_output=True, text=True, timeout=30)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    broker = start_rendered_broker(root, tmp_path / "mosquitto")
    try:
        passwords = {user: read_password(secrets, user) for user in ("collector-a", "collector-b", "p1")}
        passwords["collector-a-urgent"] = passwords["collector-a"]
        for user in ("collector-a", "collector-a-urgent", "collector-b", "p1"):
            peer = connect(broker.port, ca, user, user, passwords)
            try:
                assert not peer.connack.is_failure, f"{user}: {peer.connack}"
            finally:
                peer.close()
        wrong = connect(broker.port, ca, "p1", "p1", {"p1": "not-its-password"})
        try:
            assert wrong.connack.is_failure
        finally:
            wrong.close()
    finally:
        broker.stop()

    started: list[services.Service] = []
    try:
        # VictoriaMetrics and vmauth as installed: each carrier reads its own series, the authority all of them
        started.append(vm := start_installed_victoriametrics(root, tmp_path / "vm"))
        fill(vm.url)
        started.append(proxy := start_installed_vmauth(root, tmp_path / "vmauth"))
        url = proxy.url
        assert exported(url, "viettel", carrier_passwords["viettel"]) == {"bts-vt"}
        assert query(url, "viettel", carrier_passwords["viettel"], '{__name__=~".+"}') == (200, {"bts-vt"})
        assert query(url, "vinaphone", carrier_passwords["vinaphone"], "device_up") == (200, {"bts-vn"})
        assert query(url, "zone-authority", carrier_passwords["zone-authority"], "device_up") == (200, set(SERIES))
        refused: list[tuple[str | None, str]] = [("viettel", carrier_passwords["vinaphone"]), ("viettel", "guess"),
                                                 (None, "")]
        for who, secret in refused:
            status, body = call(url, who, secret, "/api/v1/export", {"match[]": '{__name__=~".+"}'})
            assert status in (400, 401) and b"bts-" not in body, (who, status, body[:300])
        assert call(url, None, "", "/metrics", {})[0] == 401   # its own endpoints need the admin key

        # again, after an inventory change (a new probe and a new carrier) and with a park broker bridging in
        kept = {path: path.read_bytes() for path in (
            etc / "zonewatch/collector.yaml", etc / "zonewatch/collector.env", secrets / "p1", secrets / "collector-a",
            ca, etc / "mosquitto/certs/zonewatch.key", vma / "vmauth.env", *(vma / "secrets").iterdir())}
        inventory.write_text(INVENTORY.replace("probes:\n", NEW_CARRIER + "probes:\n") + "  p3: {zone: dinh-vu}\n")
        printed = central(kit, root, "--inventory", inventory, *args, "--bridge", "park")
        assert "is installed already" in printed, "the collector was installed again"
        for path, content in kept.items():
            assert path.read_bytes() == content, f"{path} changed on a second run"
        acl = (etc / "mosquitto/zonewatch/acl").read_text()
        assert "user p3\n" in acl and "user bridge-park\n" in acl and "topic write zw/v1/park/+/data" in acl
        assert (secrets / "p3").is_file() and (secrets / "bridge-park").is_file()
        assert "wrote /etc/zonewatch/inventory.yaml" in printed
        assert "wrote /etc/zonewatch-vmauth/auth.yml" in printed and "vmauth.env" not in printed
        assert mode(vma / "auth.yml") == 0o640
        mobifone = (vma / "secrets/mobifone").read_text().strip()

        # the running vmauth learns the new carrier from the unit's reload, and nobody's password changed
        assert call(url, "mobifone", mobifone, "/api/v1/query", {"query": "1"})[0] in (400, 401)
        reload_installed_vmauth(root, proxy)
        services.wait_for(lambda: query(url, "mobifone", mobifone, "device_up") == (200, set()), 10,
                          "vmauth to accept the new carrier after its reload")
        assert proxy.alive(), proxy.log_tail()
        assert exported(url, "viettel", carrier_passwords["viettel"]) == {"bts-vt"}
        assert exported(url, "zone-authority", carrier_passwords["zone-authority"]) == set(SERIES)

        datasources, providers, grafana_env = grafana_files(root)
        # the new carrier gets a new organisation; the others keep theirs (its key sorts first)
        assert [(d["orgId"], d["basicAuthUser"]) for d in datasources] == [(4, "mobifone"), (2, "viettel"),
                                                                           (3, "vinaphone")]
        assert len(providers) == 3
        assert grafana_env == {"ZONEWATCH_VMAUTH_PASSWORD_MOBIFONE": mobifone,
                               "ZONEWATCH_VMAUTH_PASSWORD_VIETTEL": carrier_passwords["viettel"],
                               "ZONEWATCH_VMAUTH_PASSWORD_VINAPHONE": carrier_passwords["vinaphone"]}
    finally:
        for service in reversed(started):
            service.stop()
