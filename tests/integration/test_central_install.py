"""The central install, ``deploy/central.sh``, into a scratch root (``--root``), as the first host of an HA pair,
then again after an inventory change.

It installs the collector through ``deploy/install.sh collector`` (offline: the wheel built from a copy of this
checkout, the test environment's dependencies, as ``test_install.py`` does), and writes mosquitto's, Victoria-
Metrics', Alertmanager's and Grafana's files. What it wrote is checked where it can be run: the broker's
rendered configuration in a real mosquitto (its paths moved beneath the root), with TLS against the CA the
script made, the users' passwords and the ACL; Alertmanager's with ``amtool check-config``; the collector's unit
and its drop-in with ``systemd-analyze verify``. The second run keeps every password, the certificates and the
collector's configuration, and renders the new probe and a park bridge's user.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector import mosquitto
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
probes:
  p1: {zone: dinh-vu}
  p2: {zone: park}
"""
HA = ["--name", "collector-a", "--role", "primary", "--peer", "10.0.0.2", "--peer-name", "collector-b",
      "--advertise", "10.0.0.1"]


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


def test_central_install_of_an_ha_primary_then_again_after_an_inventory_change(kit: Kit, tmp_path: Path) -> None:
    root = tmp_path / "root"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    central(kit, root, "--inventory", inventory, *HA)
    etc = root / "etc"
    collector_yaml = (etc / "zonewatch/collector.yaml").read_text()
    for line in ("  username: collector-a", "ha: {role: primary}", 'peers: ["http://10.0.0.2:9093"]',
                 "  mqtt_delivery: alertmanager", "  tls: {ca_file: /etc/zonewatch/pki/ca.crt}"):
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
    assert "-dedup.minScrapeInterval=1ms" in vm_args and "-httpListenAddr=127.0.0.1:8428" in vm_args
    am_args = (etc / "default/prometheus-alertmanager").read_text()
    assert "--cluster.peer=10.0.0.2:9094" in am_args and "--cluster.advertise-address=10.0.0.1:9094" in am_args
    am_yml = etc / "prometheus/alertmanager.yml"
    assert "http://127.0.0.1:9109/relay/mqtt/carrier.viettel.mqtt.1" in am_yml.read_text()
    check = subprocess.run([services.require("amtool"), "check-config", str(am_yml)], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    datasource = (etc / "grafana/provisioning/datasources/zonewatch.yaml").read_text()
    assert "url: http://127.0.0.1:8428" in datasource
    assert "path: /opt/zonewatch/dashboards" in (etc / "grafana/provisioning/dashboards/zonewatch.yaml").read_text()
    assert len(list((root / "opt/zonewatch/dashboards").glob("*.json"))) == 6
    dropin = (etc / "systemd/system/zonewatch-collector.service.d/central.conf").read_text()
    assert "After=prometheus-alertmanager.service mosquitto.service victoria-metrics.service" in dropin
    verify_unit(root, "zonewatch-collector.service")
    # the broker as rendered: TLS with the CA the script made, each user with its own password
    ca = etc / "zonewatch/pki/ca.crt"
    server_cert = etc / "mosquitto/certs/zonewatch.crt"
    verified = subprocess.run([services.require("openssl"), "verify", "-CAfile", str(ca), str(server_cert)],
                              capture_output=True, text=True, timeout=30)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    broker = start_rendered_broker(root, tmp_path / "mosquitto")
    try:
        passwords = {user: mosquitto.read_password(secrets, user) for user in ("collector-a", "collector-b", "p1")}
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

    # again, after an inventory change (a new probe) and with a park broker bridging in
    kept = {path: path.read_bytes() for path in (etc / "zonewatch/collector.yaml", etc / "zonewatch/collector.env",
                                                 secrets / "p1", secrets / "collector-a", ca,
                                                 etc / "mosquitto/certs/zonewatch.key")}
    inventory.write_text(INVENTORY + "  p3: {zone: dinh-vu}\n")
    printed = central(kit, root, "--inventory", inventory, *HA, "--bridge", "park")
    assert "is installed already" in printed, "the collector was installed again"
    for path, content in kept.items():
        assert path.read_bytes() == content, f"{path} changed on a second run"
    acl = (etc / "mosquitto/zonewatch/acl").read_text()
    assert "user p3\n" in acl and "user bridge-park\n" in acl and "topic write zw/v1/park/+/data" in acl
    assert (secrets / "p3").is_file() and (secrets / "bridge-park").is_file()
    assert "wrote /etc/zonewatch/inventory.yaml" in printed
