"""Hostile configuration against the real collector command: ``zonewatch-collector check-config`` as a process,
with an inventory written by someone who wants the collector's secrets or its memory.

Each case must end with exit code 2 and one line on stderr naming the file, the line and the key, quickly (an
alias bomb used to take a minute and gigabytes), and without printing a secret. The collector configuration
declares one token for Viettel's webhook; the broker's password sits beside its folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

COLLECTOR = str(Path(sys.executable).with_name("zonewatch-collector"))
TOKEN, BROKER_PASSWORD = "zw-HOSTILE-vt-token-41", "zw-HOSTILE-broker-42"
HOOK = "https://alerts.viettel.example/zonewatch/"


def check_config(config: Path) -> subprocess.CompletedProcess[str]:
    """Run ``zonewatch-collector -c CONFIG check-config``; capture both streams."""
    env = {**os.environ, "ZW_COLLECTOR_MQTT_PASSWORD": BROKER_PASSWORD, "ZW_SECRET_VT": TOKEN}
    return subprocess.run([COLLECTOR, "-c", str(config), "check-config"], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A collector configuration in ``tmp_path``, its secrets folder, and the broker's password beside it."""
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "vt-token").write_text(TOKEN + "\n")
    (secrets / "vt-token").chmod(0o600)
    (tmp_path / "mqtt-password").write_text(BROKER_PASSWORD + "\n")
    (tmp_path / "mqtt-password").chmod(0o600)
    (tmp_path / "collector.yaml").write_text(f"""\
mqtt: {{username: collector, password: {{env: ZW_COLLECTOR_MQTT_PASSWORD}}}}
http: {{enabled: false}}
inventory: inventory.yaml
secrets:
  dir: '{secrets}'
  env_prefix: ZW_SECRET_
  receivers:
    vt-token: {{file: vt-token, sends_to: '{HOOK}', carrier: 452-04}}
""")
    return tmp_path


def inventory(token: str, url: str = HOOK + "alerts", plmn: str = "452-04") -> str:
    return f"""\
zones: {{dv: {{name: Dinh Vu}}}}
carriers:
  viettel:
    plmn: {plmn}
    name: Viettel
    notify:
      - {{type: webhook, url: '{url}', bearer_token: {token}}}
"""


def alias_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x,x,x,x,x,x,x,x,x,x]"]
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join([*lines, f"zones: {{dv: {{name: DV, areas: *a{levels - 1}}}}}"]) + "\n"


REFUSED = [
    pytest.param(inventory("{file: /proc/self/environ}"),
                 ":7: carriers.viettel.notify[0].bearer_token: an inventory may not read a file", id="file-environ"),
    pytest.param(inventory("{file: ../mqtt-password}"),
                 ":7: carriers.viettel.notify[0].bearer_token: an inventory may not read a file", id="file-traversal"),
    pytest.param(inventory("{env: ZW_COLLECTOR_MQTT_PASSWORD}"),
                 ":7: carriers.viettel.notify[0].bearer_token: an inventory may not read an environment variable",
                 id="env-broker-password"),
    pytest.param(inventory("{secret: mqtt-password}"),
                 ":7: carriers.viettel.notify[0].bearer_token: unknown secret 'mqtt-password'", id="undeclared"),
    pytest.param(inventory("{secret: vt-token}", url="https://collect.attacker.example/vt"),
                 f":7: carriers.viettel.notify[0].bearer_token: secret 'vt-token' may only be sent to URLs "
                 f"under {HOOK}",
                 id="token-to-attacker"),
    pytest.param(inventory("{secret: vt-token}", plmn="452-02"),
                 ":7: carriers.viettel.notify[0].bearer_token: secret 'vt-token' is declared for carrier 452-04",
                 id="token-of-another-carrier"),
    pytest.param(alias_bomb(), ":5: a4[7]: aliases expand to more than 100,000 values", id="billion-laughs"),
    pytest.param("zones: {}\n" + "#" * (4 * 2**20), ": larger than 4 MiB", id="oversized"),
]


@pytest.mark.parametrize(("text", "expected"), REFUSED)
def test_a_hostile_inventory_is_refused_in_one_line(site: Path, text: str, expected: str) -> None:
    (site / "inventory.yaml").write_text(text)
    proc = check_config(site / "collector.yaml")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"zonewatch-collector: {site / 'inventory.yaml'}{expected}"), line
    for secret in (TOKEN, BROKER_PASSWORD):
        assert secret not in proc.stdout + proc.stderr


@pytest.mark.parametrize(("change", "expected"), [
    (lambda s: (s / "secrets" / "vt-token").chmod(0o666),
     "secrets.receivers.vt-token.file: secret file {dir}/vt-token may be written by its group and every user (mode "
     "0666)"),
    (lambda s: (s / "secrets" / "vt-token").unlink() or (s / "secrets" / "vt-token").symlink_to(s / "mqtt-password"),
     "secrets.receivers.vt-token.file: cannot read secret file {dir}/vt-token: it, or a folder on the way, is a "
     "symbolic link"),
    (lambda s: (s / "secrets").chmod(0o777),
     "secrets.receivers.vt-token.file: secret folder {dir} may be written by its group and every user"),
])
def test_an_unsafe_secret_file_is_refused_in_one_line(site: Path, change: object, expected: str) -> None:
    (site / "inventory.yaml").write_text(inventory("{secret: vt-token}"))
    change(site)  # type: ignore[operator]
    proc = check_config(site / "collector.yaml")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"zonewatch-collector: {site / 'collector.yaml'}:8: "
                           + expected.format(dir=site / "secrets")), line
    assert BROKER_PASSWORD not in proc.stderr and TOKEN not in proc.stderr


def test_a_declared_token_for_its_own_url_is_taken(site: Path) -> None:
    (site / "inventory.yaml").write_text(inventory("{secret: vt-token}"))
    proc = check_config(site / "collector.yaml")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert f"{site / 'collector.yaml'}: ok" in proc.stdout
    assert TOKEN not in proc.stdout + proc.stderr
