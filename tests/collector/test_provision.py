"""render-vmauth and render-grafana: what they write for an inventory, the secrets' modes, and bad input named.
(tests/integration/test_carrier_access.py runs the real vmauth on what render-vmauth writes.)"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from collector import cli
from collector.inventory import Inventory
from collector.provision import grafana, vmauth
from tests.integration import zone_scenario as scn
from zonewatch.strict import load

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = load(Inventory, scn.INVENTORY_YAML, "inventory.yaml")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_vmauth_gives_each_carrier_its_filter_and_the_authority_none(tmp_path: Path) -> None:
    written = vmauth.write(INVENTORY, tmp_path, "http://127.0.0.1:8428/")
    config = yaml.safe_load((tmp_path / "auth.yml").read_text())
    prefixes = {u["username"]: [m["url_prefix"] for m in u["url_map"]] for u in config["users"]}
    assert prefixes == {"zone-authority": ["http://127.0.0.1:8428/"],
                        "viettel": ["http://127.0.0.1:8428/?extra_label=own_452_04=1"],
                        "vinaphone": ["http://127.0.0.1:8428/?extra_label=own_452_02=1"]}
    assert all(m["src_paths"] == list(vmauth.READ_PATHS) for u in config["users"] for m in u["url_map"])
    assert not any("url_prefix" in u for u in config["users"])   # no route outside the read paths
    secrets = tmp_path / "secrets"
    for name in ("viettel", "vinaphone", "zone-authority", "vmauth-admin-key"):
        assert mode(secrets / name) == 0o600
    assert mode(tmp_path / "auth.yml") == mode(tmp_path / "vmauth.env") == 0o600
    env = (tmp_path / "vmauth.env").read_text()
    key = (secrets / "vmauth-admin-key").read_text().strip()
    assert f"metricsAuthKey={key}\n" in env and f"auth_config={tmp_path.resolve()}/auth.yml\n" in env
    assert {w.path.name for w in written} >= {"auth.yml", "vmauth.env", "viettel"}
    before = {u["username"]: u["password"] for u in config["users"]}
    vmauth.write(INVENTORY, tmp_path, "http://127.0.0.1:8428")   # rendered again: the same passwords
    again = yaml.safe_load((tmp_path / "auth.yml").read_text())
    assert {u["username"]: u["password"] for u in again["users"]} == before
    assert all(w not in [str(w.what) for w in written] for w in before.values())   # never printed


@pytest.mark.parametrize(("change", "message"), [
    ({"vm_url": "vm:8428"}, "--vm-url: expected VictoriaMetrics' base URL"),
    ({"vm_url": "http://vm:8428/api?x=1"}, "--vm-url"),
    ({"listen": "8427"}, "--listen: expected host:port"),
])
def test_vmauth_names_bad_input(tmp_path: Path, change: dict[str, str], message: str) -> None:
    args = {"vm_url": "http://127.0.0.1:8428", "listen": "127.0.0.1:8427", **change}
    with pytest.raises(ValueError, match=message):
        vmauth.write(INVENTORY, tmp_path, args["vm_url"], listen=args["listen"])


def test_a_carrier_key_vmauth_reserves_is_refused() -> None:
    inventory = load(Inventory, scn.INVENTORY_YAML.replace("carriers:\n", "carriers:\n  zone-authority: "
                                                           "{plmn: '452-09', name: Other}\n"), "inventory.yaml")
    with pytest.raises(ValueError, match="carriers.zone-authority: 'zone-authority' is reserved"):
        vmauth.users(inventory)


def test_grafana_gives_each_carrier_an_organisation_its_datasource_and_the_dashboards(tmp_path: Path) -> None:
    vmauth.write(INVENTORY, tmp_path / "vmauth", "http://127.0.0.1:8428")
    secrets = tmp_path / "vmauth" / "secrets"
    grafana.write(INVENTORY, tmp_path / "grafana", "http://vmauth:8427", secrets_dir=secrets, org_ids={"vinaphone": 7})
    out = tmp_path / "grafana"
    sources = yaml.safe_load((out / "provisioning/datasources/zonewatch-carriers.yaml").read_text())["datasources"]
    assert [(s["orgId"], s["basicAuthUser"], s["url"], s["access"]) for s in sources] == [
        (2, "viettel", "http://vmauth:8427", "proxy"), (7, "vinaphone", "http://vmauth:8427", "proxy")]
    assert sources[0]["secureJsonData"] == {"basicAuthPassword": "${ZONEWATCH_VMAUTH_PASSWORD_VIETTEL}"}
    env = (out / "grafana.env").read_text()
    assert f"ZONEWATCH_VMAUTH_PASSWORD_VIETTEL={(secrets / 'viettel').read_text().strip()}\n" in env
    assert mode(out / "grafana.env") == 0o600
    providers = yaml.safe_load((out / "provisioning/dashboards/zonewatch-carriers.yaml").read_text())["providers"]
    main = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/zonewatch.yaml").read_text())["providers"][0]
    assert [p["orgId"] for p in providers] == [2, 7]
    for provider in providers:   # the dashboards exactly as Main Org loads them, into the carrier's organisation
        assert {k: v for k, v in provider.items() if k not in ("name", "orgId")} == \
            {k: v for k, v in main.items() if k != "name"}
    assert "2\tViettel (452-04)\n" in (out / "orgs.txt").read_text()


def test_rendered_again_each_carrier_keeps_its_organisation(tmp_path: Path) -> None:
    def render(carriers: str) -> list[tuple[int, str]]:
        inventory = load(Inventory, scn.INVENTORY_YAML.replace("carriers:\n", "carriers:\n" + carriers),
                         "inventory.yaml")
        vmauth.write(inventory, tmp_path / "vmauth", "http://127.0.0.1:8428")
        grafana.write(inventory, tmp_path / "grafana", "http://vmauth:8427", secrets_dir=tmp_path / "vmauth/secrets")
        path = tmp_path / "grafana/provisioning/datasources/zonewatch-carriers.yaml"
        return [(s["orgId"], s["basicAuthUser"]) for s in yaml.safe_load(path.read_text())["datasources"]]

    assert render("") == [(2, "viettel"), (3, "vinaphone")]
    # a carrier whose key sorts first joins: it gets a new organisation, nobody's datasource moves into another's
    assert render("  mobifone: {plmn: '452-01', name: MobiFone}\n") == [(4, "mobifone"), (2, "viettel"),
                                                                       (3, "vinaphone")]
    # mobifone leaves as gtel joins: mobifone's organisation (and whoever is still in it) does not go to gtel
    assert render("  gtel: {plmn: '452-07', name: Gtel}\n") == [(5, "gtel"), (2, "viettel"), (3, "vinaphone")]
    assert "# 4\tretired, never given to another carrier: MobiFone (452-01)\n" in (
        tmp_path / "grafana/orgs.txt").read_text()
    # and still not once mobifone has gone from the datasources file too
    assert render("  gmobile: {plmn: '452-08', name: Gmobile}\n")[0] == (6, "gmobile")


@pytest.mark.parametrize(("org_ids", "message"), [
    ({"vodafone": 3}, "--org-id names carrier"),
    ({"viettel": 1}, "Main Org"),
    ({"viettel": 3, "vinaphone": 3}, "the same organisation"),
])
def test_grafana_names_bad_organisation_ids(tmp_path: Path, org_ids: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        grafana.orgs(INVENTORY, 2, org_ids)


def test_the_commands_write_and_name_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "inventory.yaml").write_text(scn.INVENTORY_YAML)
    config = tmp_path / "collector.yaml"
    config.write_text("inventory: inventory.yaml\nstorage: {type: victoriametrics, url: 'http://127.0.0.1:8428'}\n")
    assert cli.main(["-c", str(config), "render-vmauth", "--out", str(tmp_path / "va")]) == 0
    assert "auth.yml: vmauth users: zone-authority (unfiltered) and 2 carrier(s)" in capsys.readouterr().out
    assert cli.main(["-c", str(config), "render-grafana", "--out", str(tmp_path / "gr"),
                     "--secrets", str(tmp_path / "nowhere")]) == 2
    assert "no password file for viettel, vinaphone" in capsys.readouterr().err
    assert cli.main(["-c", str(config), "render-grafana", "--out", str(tmp_path / "gr"), "--secrets",
                     str(tmp_path / "va" / "secrets"), "--org-id", "viettel"]) == 2
    assert "--org-id 'viettel': expected CARRIER=ID" in capsys.readouterr().err
