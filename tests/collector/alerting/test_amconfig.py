"""The Alertmanager configuration rendered from the inventory: its shape, its secrets, and what Alertmanager's
own tool says of it (``amtool check-config`` and ``amtool config routes test``)."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector import cli
from collector.alerting import amconfig
from collector.alerting.config import AlertingConfig
from collector.alerting.notify.base import Delivery
from collector.alerting.notify.registry import NOTIFIERS, NotifierType
from collector.inventory import Inventory
from tests import services
from tests.plugins import PagerReceiver
from zonewatch import strict

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_FILE = ROOT / "config" / "alertmanager.example.yml"
TOKEN = "viettel-hook-token-0123456789"
SMTP_PASSWORD = "smtp-pass-9876543210"

# The example inventory's carriers, with receivers (config/alertmanager.example.yml is rendered from these).
INVENTORY = f"""\
zones:
  dinh-vu: {{name: Dinh Vu Industrial Zone}}
carriers:
  viettel:
    plmn: 452-04
    name: Viettel
    notify:
      - {{type: webhook, url: "https://alerts.viettel.example/zonewatch", bearer_token: {TOKEN}}}
      - {{type: email, to: [noc@viettel.example, fibre@viettel.example]}}
      - {{type: mqtt, topic: carriers/viettel/alerts}}
  vinaphone:
    plmn: 452-02
    name: VinaPhone
    notify:
      - {{type: email, to: [noc@vnpt.example]}}
  mobifone: {{plmn: 452-01, name: MobiFone}}
"""

ALERTING = f"""\
smtp: {{host: smtp.zone.example, port: 587, from: zonewatch@zone.example, username: zonewatch,
        password: {SMTP_PASSWORD}, starttls: true}}
noc:
  - {{type: webhook, url: "http://127.0.0.1:9095/noc"}}
  - {{type: email, to: [noc@zone.example]}}
"""


def inventory(text: str = INVENTORY) -> Inventory:
    return strict.load(Inventory, text, "inventory.yaml")


def alerting(text: str = ALERTING) -> AlertingConfig:
    return strict.load(AlertingConfig, text, "collector.yaml")


def rendered(secrets_dir: str = "/etc/alertmanager/zonewatch-secrets") -> amconfig.Rendered:
    return amconfig.render(inventory(), alerting(), secrets_dir=secrets_dir)


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([services.require("amtool"), *args], capture_output=True, text=True, timeout=60)


def test_each_carrier_with_receivers_gets_a_route_that_continues_to_the_noc() -> None:
    config = yaml.safe_load(rendered().text)
    route = config["route"]
    assert route["receiver"] == "noc"
    assert route["group_by"] == ["alertname", "zone", "carrier", "group", "device"]
    assert route["routes"] == [
        {"receiver": "viettel", "matchers": ['carrier="452-04"'], "continue": True},
        {"receiver": "vinaphone", "matchers": ['carrier="452-02"'], "continue": True},
        {"receiver": "noc"},
    ]
    assert config["inhibit_rules"] == [{"source_matchers": ['alertname="ServiceOutage"'],
                                        "target_matchers": ['alertname="RedundancyLost"'],
                                        "equal": ["zone", "group", "carrier"]}]


def test_receivers_are_translated_and_secrets_stay_out_of_the_file() -> None:
    out = rendered("/run/am-secrets")
    config = yaml.safe_load(out.text)
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["viettel"] == {
        "name": "viettel",
        "webhook_configs": [{"url": "https://alerts.viettel.example/zonewatch", "send_resolved": True,
                             "http_config": {"authorization": {
                                 "type": "Bearer", "credentials_file": "/run/am-secrets/viettel-webhook-0-token"}}}],
        "email_configs": [{"to": "noc@viettel.example, fibre@viettel.example", "send_resolved": True}],
    }
    assert receivers["noc"]["webhook_configs"] == [{"url": "http://127.0.0.1:9095/noc", "send_resolved": True}]
    assert "mobifone" not in receivers
    assert config["global"] == {"smtp_smarthost": "smtp.zone.example:587", "smtp_from": "zonewatch@zone.example",
                                "smtp_require_tls": True, "smtp_auth_username": "zonewatch",
                                "smtp_auth_password_file": "/run/am-secrets/smtp-password"}
    assert out.secrets == {"viettel-webhook-0-token": TOKEN, "smtp-password": SMTP_PASSWORD}
    assert TOKEN not in out.text and SMTP_PASSWORD not in out.text
    assert "# mobifone (452-01): no webhook or email receiver: its alerts go to the NOC only" in out.text
    assert "# viettel: its mqtt receivers are served by the collector, not by Alertmanager" in out.text


def test_email_receivers_need_the_relay_and_noc_is_a_reserved_name() -> None:
    with pytest.raises(ValueError, match="alerting.smtp: email receivers need the SMTP relay"):
        amconfig.render(inventory(), alerting("noc: []\n"))
    inv = inventory("zones: {}\ncarriers:\n  noc: {plmn: 452-09, name: N}\n")
    with pytest.raises(ValueError, match="carriers.noc: the key 'noc' is the NOC receiver's name"):
        amconfig.render(inv, alerting("noc: []\n"))


def pager_config(cfg: PagerReceiver, ref: str, secret: Callable[[str, str], str]) -> tuple[str, dict[str, Any]]:
    return "pagerduty_configs", {"routing_key_file": secret(f"{ref}-key", cfg.number)}


def with_pager(inv: Inventory, carrier: str) -> Inventory:
    """Return ``inv`` with a ``pager`` receiver (a type the configuration does not ship) added to ``carrier``'s."""
    own = inv.carriers[carrier]
    pager = PagerReceiver(type="pager", number="pager-key-0123456789")
    return inv.model_copy(update={"carriers": {**inv.carriers,
                                               carrier: own.model_copy(update={"notify": [*own.notify, pager]})}})


def test_the_rendering_follows_what_each_receiver_type_declares() -> None:
    inv = with_pager(inventory(), "mobifone")
    native = {**NOTIFIERS, "pager": NotifierType(Delivery(collector=False, alertmanager=pager_config), None)}
    out = amconfig.render(inv, alerting(), secrets_dir="/run/am-secrets", types=native)
    config = yaml.safe_load(out.text)
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["mobifone"] == {
        "name": "mobifone", "pagerduty_configs": [{"routing_key_file": "/run/am-secrets/mobifone-pager-0-key"}]}
    assert out.secrets["mobifone-pager-0-key"] == "pager-key-0123456789"
    assert {"receiver": "mobifone", "matchers": ['carrier="452-01"'], "continue": True} in config["route"]["routes"]

    collectors = {**NOTIFIERS, "pager": NotifierType(Delivery(collector=True), lambda spec, ctx: None)}
    out = amconfig.render(inv, alerting(), types=collectors)
    assert "mobifone" not in {r["name"] for r in yaml.safe_load(out.text)["receivers"]}
    assert "# mobifone: its pager receivers are served by the collector, not by Alertmanager" in out.text

    with pytest.raises(ValueError, match="receiver type 'pager' declares no delivery: register it in NOTIFIERS"):
        amconfig.render(inv, alerting())


def test_with_no_receivers_at_all_everything_goes_to_an_empty_noc_receiver() -> None:
    inv = inventory("zones: {}\ncarriers:\n  mobifone: {plmn: 452-01, name: M}\n")
    out = amconfig.render(inv, alerting("noc: []\n"))
    config = yaml.safe_load(out.text)
    assert config["receivers"] == [{"name": "noc"}]
    assert config["route"]["routes"] == [{"receiver": "noc"}]
    assert "global" not in config


def test_amtool_accepts_it_and_routes_each_carrier_to_itself_and_the_noc(tmp_path: Path) -> None:
    written = amconfig.write(inventory(), alerting(), tmp_path / "alertmanager.yml")
    check = amtool("check-config", str(tmp_path / "alertmanager.yml"))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout and "1 inhibit rules" in check.stdout and "3 receivers" in check.stdout
    cases = {
        ("alertname=ServiceOutage", "carrier=452-04", "zone=dinh-vu"): "viettel,noc",
        ("alertname=ServiceOutage", "carrier=452-02", "zone=dinh-vu"): "vinaphone,noc",
        ("alertname=ServiceOutage", "carrier=452-01", "zone=dinh-vu"): "noc",
        ("alertname=ProbeDown", "zone=dinh-vu", "probe=p1"): "noc",
    }
    for labels, receivers in cases.items():
        test = amtool("config", "routes", "test", f"--config.file={tmp_path / 'alertmanager.yml'}", *labels)
        assert test.stdout.strip() == receivers, (labels, test.stdout, test.stderr)
    secrets_dir = tmp_path / "alertmanager-secrets"
    assert {p.name: p.read_text() for p in secrets_dir.iterdir()} == {
        "viettel-webhook-0-token": TOKEN, "smtp-password": SMTP_PASSWORD}
    for p in secrets_dir.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert [w[0] for w in written] == [secrets_dir / "viettel-webhook-0-token", secrets_dir / "smtp-password",
                                       tmp_path / "alertmanager.yml"]


def test_the_example_is_the_rendering_of_this_inventory_and_amtool_accepts_it() -> None:
    text = rendered().text
    if os.environ.get("ZW_WRITE_EXAMPLES") == "1":
        EXAMPLE_FILE.write_text(text)
    assert EXAMPLE_FILE.read_text() == text, (
        "config/alertmanager.example.yml is out of date: run this test with ZW_WRITE_EXAMPLES=1 to rewrite it")
    check = amtool("check-config", str(EXAMPLE_FILE))
    assert check.returncode == 0, check.stdout + check.stderr


def test_cli_writes_the_configuration_and_prints_no_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    alerting_yaml = "".join(f"  {line}\n" for line in ALERTING.splitlines())
    (tmp_path / "collector.yaml").write_text(f"inventory: inventory.yaml\nalerting:\n{alerting_yaml}")
    out = tmp_path / "am" / "alertmanager.yml"
    code = cli.main(["-c", str(tmp_path / "collector.yaml"), "render-alertmanager", "--out", str(out),
                     "--secrets-dir", str(tmp_path / "s")])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert printed.out.splitlines() == [
        f"wrote {tmp_path / 's' / 'viettel-webhook-0-token'}: secret named by the configuration (mode 0600)",
        f"wrote {tmp_path / 's' / 'smtp-password'}: secret named by the configuration (mode 0600)",
        f"wrote {out}: Alertmanager configuration: 2 carrier route(s) and the NOC",
    ]
    assert TOKEN not in printed.out + printed.err
    assert f"credentials_file: {tmp_path / 's' / 'viettel-webhook-0-token'}" in out.read_text()
    (tmp_path / "bare.yaml").write_text("storage: {type: sqlite, path: x.db}\n")
    assert cli.main(["-c", str(tmp_path / "bare.yaml"), "render-alertmanager", "--out", str(out)]) == 2
    assert "names no inventory" in capsys.readouterr().err
