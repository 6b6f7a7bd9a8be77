"""Secrets never leave the process: SNMP communities and keys, trap communities and v3 keys, MQTT passwords
and the TSDB token are set to known, distinctive values (through ``{env: ...}`` and ``{file: ...}``), and
every output is searched for them, raw and in hex and base64: the stdout and stderr of ``check-config``,
``once`` and ``once --json``, configuration errors, the debug logs of ``run`` (agent and collector), both
``/metrics`` pages, the spool and intake files, every MQTT message under ``zw/v1/#``, what reached
VictoriaMetrics, and the alert notifications (webhook bodies, the outboxes and the alert state; a webhook's
bearer token may appear only in its own Authorization header, an SMTP password nowhere). Each output must
also say something (a silent failure would pass any search), and each error must name what failed.

The secrets a sender got wrong (a wrong trap community, a wrong SNMPv3 key) count too: they are somebody's
secret as well.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests import services

pytestmark = pytest.mark.integration

SECRETS = {
    "snmp_community": "zw-SECRET-community-71",
    "snmp_wrong_community": "zw-SECRET-wrongcomm-72",
    "snmp_auth": "zw-SECRET-v3auth-73",
    "snmp_priv": "zw-SECRET-v3priv-74",
    "snmp_wrong_auth": "zw-SECRET-badauth-75",
    "trap_community": "zw-SECRET-trapcomm-76",
    "trap_wrong_community": "zw-SECRET-wrongtrap-77",
    "trap_auth": "zw-SECRET-trapauth-78",
    "trap_priv": "zw-SECRET-trappriv-79",
    "trap_wrong_priv": "zw-SECRET-badtrappriv-80",
    "agent_mqtt": "zw-SECRET-agentmqtt-81",
    "collector_mqtt": "zw-SECRET-collmqtt-82",
    "telemetry_mqtt": "zw-SECRET-sensors-83",
    "wrong_mqtt": "zw-SECRET-wrongmqtt-84",
    "influx_token": "zw-SECRET-influxtoken-85",
    "watcher_mqtt": "zw-SECRET-watcher-86",
    "webhook_token": "zw-SECRET-webhook-87",
    "smtp_password": "zw-SECRET-smtp-88",
}
SNMP_USER = "zwsecret"
TRAP_USER, TRAP_ENGINE = "zwtrapsec", "8000000001020399"
LINK_DOWN = ["1.3.6.1.6.3.1.1.5.3", "1.3.6.1.2.1.2.2.1.1.2", "i", "2", "1.3.6.1.2.1.2.2.1.8.2", "i", "2"]


# ---------------------------------------------------------------------------------------------- searching


def encodings(secret: str) -> dict[str, bytes]:
    """Return the forms a leaked ``secret`` could take: raw, hex (both cases), base64 (at each of the three
    alignments it can have inside a longer encoded text, standard and URL-safe)."""
    raw = secret.encode()
    forms = {"raw": raw, "hex": raw.hex().encode(), "HEX": raw.hex().upper().encode()}
    for shift in range(3):
        data = b"\0" * shift + raw
        full = data[: len(data) // 3 * 3]
        core = base64.b64encode(full)[4 if shift else 0:]  # the first group mixes in what came before
        forms[f"base64+{shift}"] = core
        forms[f"base64url+{shift}"] = base64.urlsafe_b64encode(full)[4 if shift else 0:]
    return forms


def leaks(outputs: Mapping[str, bytes | str]) -> list[str]:
    """Return one line per secret found in any output: where, which secret, in which form, and the line."""
    found = []
    for where, content in outputs.items():
        data = content.encode() if isinstance(content, str) else content
        for name, secret in SECRETS.items():
            for form, needle in encodings(secret).items():
                at = data.find(needle)
                if at >= 0:
                    start, end = data.rfind(b"\n", 0, at) + 1, data.find(b"\n", at)
                    line = data[start: end if end >= 0 else len(data)][:300].decode(errors="replace")
                    found.append(f"{where}: secret {name} ({form}) in: {line}")
    return found


def assert_no_leak(outputs: Mapping[str, bytes | str]) -> None:
    found = leaks(outputs)
    assert not found, "secrets leaked:\n" + "\n".join(found)


def test_the_search_finds_every_form() -> None:
    """The search itself: a secret is found raw, in hex, and in base64 wherever it sits in the encoded text."""
    secret = SECRETS["snmp_auth"]
    for prefix in ("", "u", "us", "user:"):
        blob = base64.b64encode(f"{prefix}{secret}".encode())
        assert leaks({"basic-auth": b"Authorization: Basic " + blob}), prefix
        assert leaks({"urlsafe": base64.urlsafe_b64encode(f"{prefix}{secret}".encode())}), prefix
    assert leaks({"hex": f"key={secret.encode().hex()}"})
    assert leaks({"raw": f"x\nkey {secret} y\n"}) == [f"raw: secret snmp_auth (raw) in: key {secret} y"]
    assert not leaks({"clean": "zw-SECRET- nothing here"})


# ---------------------------------------------------------------------------------------------- helpers


def secret_env() -> dict[str, str]:
    """The environment variables the configs read their ``{env: ...}`` secrets from."""
    return {f"ZW_SEC_{name.upper()}": value for name, value in SECRETS.items()}


def secret_files(folder: Path) -> Path:
    """Write every secret to ``folder/<name>`` (mode 0600, with a trailing newline as editors leave it), in a
    folder only its owner may write (the collector refuses an inventory secret from any other)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    for name, value in SECRETS.items():
        path = folder / name
        path.write_text(value + "\n")
        path.chmod(0o600)
    return folder


def run_cli(program: str, config: Path, *args: str, env: Mapping[str, str] | None = None,
            log_level: str = "debug") -> subprocess.CompletedProcess[str]:
    """Run ``python -m <program> -c CONFIG --log-level LEVEL ARGS`` with ``env`` added; capture both streams."""
    return subprocess.run([sys.executable, "-m", program, "-c", str(config), "--log-level", log_level, *args],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


def files_under(folder: Path, *patterns: str) -> dict[str, bytes]:
    """Return the bytes of every file matching ``patterns`` under ``folder`` (SQLite files with their WAL)."""
    out = {}
    for pattern in patterns:
        for path in sorted(folder.glob(pattern)):
            if path.is_file():
                out[path.name] = path.read_bytes()
    return out


def snmptrap_env(tmp: Path) -> dict[str, str]:
    home = tmp / "net-snmp"
    home.mkdir(exist_ok=True)
    return {**os.environ, "SNMPCONFPATH": str(home), "SNMP_PERSISTENT_DIR": str(home), "HOME": str(home)}


def snmptrap(tmp: Path, *args: str) -> None:
    binary = services.require("snmptrap")
    proc = subprocess.run([binary, "-m", "", *args], capture_output=True, text=True, timeout=30,
                          env=snmptrap_env(tmp))
    assert proc.returncode == 0, proc.stderr


def v3_trap_args(auth: str, priv: str) -> list[str]:
    return ["-v3", "-e", f"0x{TRAP_ENGINE}", "-l", "authPriv", "-u", TRAP_USER, "-a", "SHA", "-A", auth,
            "-x", "AES", "-X", priv]


@pytest.fixture
def snmpd_secret(tmp_path: Path) -> Iterator[services.Service]:
    """snmpd that answers the secret community and the secret v3 user."""
    svc = services.start_snmpd(tmp_path / "snmpd", community=SECRETS["snmp_community"],
                               v3_user=(SNMP_USER, SECRETS["snmp_auth"], SECRETS["snmp_priv"]))
    yield svc
    svc.stop()


def snmp_sources(port: int, secrets: Path) -> str:
    """Four SNMP devices on one snmpd (right and wrong v2c community, right and wrong v3 key) and one whose
    host name does not resolve."""
    quick = "timeout: 500ms, retries: 0, interval: 1s"
    return f"""
  - {{type: snmp, name: good-v2c, host: 127.0.0.1, port: {port}, version: v2c,
      community: {{env: ZW_SEC_SNMP_COMMUNITY}}, {quick}}}
  - {{type: snmp, name: wrong-v2c, host: 127.0.0.1, port: {port}, version: v2c,
      community: {{file: '{secrets / 'snmp_wrong_community'}'}}, {quick}}}
  - {{type: snmp, name: good-v3, host: 127.0.0.1, port: {port}, user: {SNMP_USER},
      auth_key: {{env: ZW_SEC_SNMP_AUTH}}, priv_key: {{file: '{secrets / 'snmp_priv'}'}}, {quick}}}
  - {{type: snmp, name: wrong-v3, host: 127.0.0.1, port: {port}, user: {SNMP_USER},
      auth_key: {{env: ZW_SEC_SNMP_WRONG_AUTH}}, priv_key: {{env: ZW_SEC_SNMP_PRIV}}, {quick}}}
  - {{type: snmp, name: no-host, host: no-such-host.invalid, port: {port}, version: v2c,
      community: {{env: ZW_SEC_SNMP_COMMUNITY}}, {quick}}}
"""


def trap_source(port: int, secrets: Path) -> str:
    return f"""
  - type: traps
    listen: 127.0.0.1:{port}
    communities: [{{env: ZW_SEC_TRAP_COMMUNITY}}]
    v3_users:
      - {{user: {TRAP_USER}, auth_key: {{file: '{secrets / 'trap_auth'}'}}, priv_key: {{env: ZW_SEC_TRAP_PRIV}},
          engine_id: "{TRAP_ENGINE}"}}
    devices: {{127.0.0.1: sw-traps}}
"""


# ---------------------------------------------------------------------------------------------- check-config, once


def test_check_config_and_once_print_no_secret(tmp_path: Path, snmpd_secret: services.Service) -> None:
    secrets = secret_files(tmp_path / "secrets")
    closed = services.free_port()  # nothing listens here: the telemetry broker and the uplink are unreachable
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"""
probe: {{id: p1, zone: z1}}
mqtt: {{port: {closed}, username: p1, password: {{env: ZW_SEC_AGENT_MQTT}}}}
spool: {{path: '{tmp_path / 'never.db'}'}}
metrics: {{enabled: false}}
sources:
{snmp_sources(snmpd_secret.port, secrets)}
{trap_source(services.free_udp_port(), secrets)}
  - type: telemetry
    name: sensors
    broker: {{port: {closed}, username: sensors, password: {{file: '{secrets / 'telemetry_mqtt'}'}}}}
    connect_timeout: 500ms
    subscriptions: [{{topic: site/+/power, measurement: power, fields: {{battery_pct: pct}}}}]
  - {{type: cellular, name: unplugged, port: '{tmp_path / 'no-such-tty'}', timeout: 500ms}}
""")
    env = secret_env()
    check = run_cli("agent", cfg, "check-config", env=env)
    once = run_cli("agent", cfg, "once", env=env)
    as_json = run_cli("agent", cfg, "once", "--json", env=env)

    assert check.returncode == 0, check.stderr
    assert f"{cfg}: ok (8 sources, probe z1/p1)" in check.stdout
    for proc in (once, as_json):
        assert proc.returncode == 1, proc.stderr  # the unplugged modem failed
        out, err = proc.stdout, proc.stderr
        assert "# good-v2c (snmp): " in out and "# good-v3 (snmp): " in out
        assert "# traps (traps): listens" in out and "# sensors (telemetry): listens" in out
        assert "# unplugged (cellular): FAILED" in out and "no-such-tty" in out, out
        # An SNMP device that cannot be read (wrong community or key, unknown host) is a reading (up=false)
        # and a warning that names the device and the likely cause.
        assert "no-host (no-such-host.invalid:" in err and "cannot resolve" in err, err
        assert "wrong-v3 (127.0.0.1:" in err and "wrong auth key" in err, err
        assert "wrong-v2c (127.0.0.1:" in err and "wrong community" in err, err
    assert "interface,device=good-v2c,ifname=lo " in once.stdout
    assert "interface,device=good-v3,ifname=lo " in once.stdout
    assert "device,device=wrong-v2c up=false" in once.stdout
    assert "device,device=wrong-v3 up=false" in once.stdout
    assert "device,device=no-host up=false" in once.stdout
    assert '"probe": "p1"' in as_json.stdout
    assert not (tmp_path / "never.db").exists()
    assert_no_leak({"check-config stdout": check.stdout, "check-config stderr": check.stderr,
                    "once stdout": once.stdout, "once stderr": once.stderr,
                    "once --json stdout": as_json.stdout, "once --json stderr": as_json.stderr})


# ---------------------------------------------------------------------------------------------- configuration errors

SNMP_V2C = "{type: snmp, name: sw, host: 127.0.0.1, version: v2c, community: %s}"
LITERAL = SECRETS["snmp_community"]
CONFIG_ERRORS = [
    pytest.param(SNMP_V2C % "{env: ZW_SEC_NOT_SET}", ["sources[0].community", "ZW_SEC_NOT_SET", "not set"],
                 id="env-not-set"),
    pytest.param(SNMP_V2C % "{file: '@/no-such-secret'}", ["sources[0].community", "no-such-secret"],
                 id="file-missing"),
    pytest.param("{type: snmp, name: sw, host: 127.0.0.1, version: v2c, community: {env: ZW_SEC_SNMP_COMMUNITY},"
                 " user: u, auth_key: {env: ZW_SEC_SNMP_AUTH}}", ["sources[0]", "'user' is for version 'v3'"],
                 id="v3-keys-on-v2c"),
    pytest.param("{type: snmp, name: sw, host: 127.0.0.1, user: u, auth_key: {env: ZW_SEC_SNMP_AUTH},"
                 " community: {env: ZW_SEC_SNMP_COMMUNITY}}", ["sources[0]", "priv_key"], id="v3-missing-priv"),
    pytest.param("{type: snmp, name: sw, host: 127.0.0.1, user: u, auth_key: {env: ZW_SEC_SNMP_AUTH},"
                 " priv_key: {envv: ZW_SEC_SNMP_PRIV}}", ["sources[0].priv_key", "{env: VARIABLE}"],
                 id="secret-ref-misspelt"),
    pytest.param(f"{{type: snmp, name: sw, host: 127.0.0.1, version: v2c, comunity: {LITERAL}}}",
                 ["sources[0].comunity", "did you mean 'community'"], id="literal-secret-under-misspelt-key"),
    pytest.param("{type: traps, listen: 127.0.0.1:1162, v3_users: [{user: u, auth_key: zwSEC-7, engine_id: "
                 "'8000000001020304', priv_key: {env: ZW_SEC_TRAP_PRIV}}]}",
                 ["sources[0].v3_users[0].auth_key", "at least 8 characters"], id="trap-key-too-short"),
    pytest.param(f"{{type: traps, listen: 127.0.0.1:1162, communities: {SECRETS['trap_community']}}}",
                 ["sources[0].communities", "list"], id="communities-not-a-list"),
    pytest.param(f"{{type: traps, listen: 127.0.0.1:1162, communities: [{SECRETS['trap_community']}],"
                 " devices: {nowhere: sw}}", ["sources[0].devices", "nowhere"], id="other-error-beside-a-secret"),
]


@pytest.mark.parametrize(("source", "expected"), CONFIG_ERRORS)
def test_a_config_error_names_the_key_but_no_secret(tmp_path: Path, source: str, expected: list[str]) -> None:
    secrets = secret_files(tmp_path / "secrets")
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"""probe: {{id: p1, zone: z1}}
mqtt: {{username: p1, password: {{file: '{secrets / 'agent_mqtt'}'}}}}
sources:
  - {source.replace('@', str(tmp_path))}
""")
    proc = run_cli("agent", cfg, "check-config", env=secret_env())
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    (line,) = proc.stderr.strip().splitlines()  # one line, naming the file, the line and the key
    assert line.startswith(f"zonewatch-agent: {cfg}:4: "), line
    for text in expected:
        assert text in line, line
    assert_no_leak({"check-config stderr": proc.stderr, "check-config stdout": proc.stdout})


def test_a_collector_config_error_names_the_key_but_no_secret(tmp_path: Path) -> None:
    secrets = secret_files(tmp_path / "secrets")
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(f"""mqtt: {{username: collector, password: {{file: '{secrets / 'collector_mqtt'}'}}}}
storage: {{type: influxdb, url: 'http://127.0.0.1:1', org: o, bucket: b, token: {{env: ZW_SEC_NO_TOKEN}}}}
""")
    proc = run_cli("collector", cfg, "check-config", env=secret_env())
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert f"{cfg}:2: storage.token: " in proc.stderr and "ZW_SEC_NO_TOKEN" in proc.stderr, proc.stderr
    cfg.write_text(cfg.read_text().replace("ZW_SEC_NO_TOKEN", "ZW_SEC_INFLUX_TOKEN"))
    ok = run_cli("collector", cfg, "check-config", env=secret_env())
    assert ok.returncode == 0 and f"{cfg}: ok (storage influxdb)" in ok.stdout, (ok.stdout, ok.stderr)
    assert_no_leak({"collector check-config stderr": proc.stderr, "collector check-config (ok) stdout": ok.stdout,
                    "collector check-config (ok) stderr": ok.stderr})


# ---------------------------------------------------------------------------------------------- run


class Watcher:
    """A separate MQTT client subscribed to zw/v1/#, keeping every message (topic and payload)."""

    def __init__(self, port: int, password: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="zw-secret-watcher",
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set("watcher", password)
        self.client.on_connect = lambda c, *_: c.subscribe("zw/v1/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(port: int, user: str, password: str, topic: str, payload: str) -> None:
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"zw-secret-{user}")
    client.username_pw_set(user, password)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def secure_mosquitto(tmp_path: Path) -> Iterator[services.Service]:
    """mosquitto that accepts only the users of the password file, each with its secret password."""
    folder = tmp_path / "mosquitto"
    folder.mkdir()
    passwd = folder / "passwd"
    binary = services.require("mosquitto_passwd")
    users = {"p1": "agent_mqtt", "collector": "collector_mqtt", "collector-urgent": "collector_mqtt",
             "sensors": "telemetry_mqtt", "watcher": "watcher_mqtt"}
    for i, (user, secret) in enumerate(users.items()):
        create = ["-c"] if i == 0 else []
        subprocess.run([binary, *create, "-b", str(passwd), user, SECRETS[secret]], check=True, timeout=30,
                       capture_output=True)
    svc = services.start_mosquitto(folder, listener_options=f"allow_anonymous false\npassword_file {passwd}")
    yield svc
    svc.stop()


def test_run_logs_metrics_spool_and_messages_hold_no_secret(tmp_path: Path, snmpd_secret: services.Service,
                                                             secure_mosquitto: services.Service,
                                                             victoriametrics: services.Service) -> None:
    secrets = secret_files(tmp_path / "secrets")
    broker, env = secure_mosquitto.port, secret_env()
    trap_port, agent_metrics, collector_http = services.free_udp_port(), services.free_port(), services.free_port()
    closed = services.free_port()
    hooks = services.WebhookServer().start()
    (tmp_path / "inventory.yaml").write_text(f"""
zones: {{z1: {{name: Zone one}}}}
carriers:
  c1:
    plmn: 452-04
    name: Carrier one
    notify:
      - {{type: webhook, url: '{hooks.url}/c1', bearer_token: {{secret: c1-hook}}}}
      - {{type: email, to: [noc@carrier.example]}}
sites: {{s1: {{zone: z1, owners: [c1]}}}}
devices:
  sw-traps: {{site: s1, owners: [c1], probe: p1}}
  good-v2c: {{site: s1, probe: p1}}
  wrong-v2c: {{site: s1, probe: p1}}
  good-v3: {{site: s1, probe: p1}}
  wrong-v3: {{site: s1, probe: p1}}
  no-host: {{site: s1, probe: p1}}
probes: {{p1: {{zone: z1}}}}
""")
    (tmp_path / "collector.yaml").write_text(f"""
mqtt: {{port: {broker}, username: collector, password: {{file: '{secrets / 'collector_mqtt'}'}}, client_id: zw-sec}}
storage: {{type: influxdb, url: '{victoriametrics.url}', org: zone, bucket: zw, token: {{env: ZW_SEC_INFLUX_TOKEN}}}}
queue: {{path: '{tmp_path / 'collector' / 'intake.db'}'}}
http: {{listen: '127.0.0.1:{collector_http}'}}
inventory: inventory.yaml
secrets:
  dir: '{secrets}'
  receivers: {{c1-hook: {{file: webhook_token, sends_to: '{hooks.url}/c1', carrier: 452-04}}}}
alerting:
  interval: 1s
  noc: [{{type: webhook, url: '{hooks.url}/noc'}}]
  smtp: {{host: 127.0.0.1, port: {closed}, from: zw@zone.example, username: zw,
          password: {{file: '{secrets / 'smtp_password'}'}}}}
  retry: {{initial: 200ms, max: 1s}}
""")
    subscriptions = "[{topic: site/+/power, measurement: power, topic_tags: {site: 1}, fields: {battery_pct: pct}}]"
    (tmp_path / "agent.yaml").write_text(f"""
probe: {{id: p1, zone: z1}}
mqtt: {{port: {broker}, username: p1, password: {{env: ZW_SEC_AGENT_MQTT}}}}
spool: {{path: '{tmp_path / 'agent' / 'spool.db'}'}}
metrics: {{listen: '127.0.0.1:{agent_metrics}'}}
self_interval: 1s
sources:
{snmp_sources(snmpd_secret.port, secrets)}
{trap_source(trap_port, secrets)}
  - type: telemetry
    name: sensors
    broker: {{port: {broker}, username: sensors, password: {{file: '{secrets / 'telemetry_mqtt'}'}}}}
    connect_timeout: 2s
    subscriptions: {subscriptions}
  - type: telemetry
    name: sensors-wrong-password
    broker: {{port: {broker}, username: sensors, password: {{env: ZW_SEC_WRONG_MQTT}}}}
    connect_timeout: 500ms
    subscriptions: {subscriptions}
  - type: telemetry
    name: sensors-unreachable
    broker: {{port: {closed}, username: sensors, password: {{env: ZW_SEC_TELEMETRY_MQTT}}}}
    connect_timeout: 500ms
    subscriptions: {subscriptions}
""")
    agent_log, collector_log = tmp_path / "agent" / "agent.log", tmp_path / "collector" / "collector.log"
    watcher = Watcher(broker, SECRETS["watcher_mqtt"])
    collector = agent = None
    try:
        services.wait_for(watcher.subscribed.is_set, 10, "the watcher's subscription")
        collector = services.start_zonewatch(
            "collector", ["-c", str(tmp_path / "collector.yaml"), "--log-level", "debug", "run"],
            tmp_path / "collector", env=env, ready=lambda: "collector subscribed" in collector_log.read_text())
        agent = services.start_zonewatch(
            "agent", ["-c", str(tmp_path / "agent.yaml"), "--log-level", "debug", "run"], tmp_path / "agent",
            env=env, ready=lambda: "listener traps (traps) started" in agent_log.read_text())

        snmptrap(tmp_path, "-v2c", "-c", SECRETS["trap_community"], f"127.0.0.1:{trap_port}", "", *LINK_DOWN)
        snmptrap(tmp_path, "-v2c", "-c", SECRETS["trap_wrong_community"], f"127.0.0.1:{trap_port}", "", *LINK_DOWN)
        snmptrap(tmp_path, *v3_trap_args(SECRETS["trap_auth"], SECRETS["trap_priv"]), f"127.0.0.1:{trap_port}", "",
                 "1.3.6.1.6.3.1.1.5.1")
        snmptrap(tmp_path, *v3_trap_args(SECRETS["trap_auth"], SECRETS["trap_wrong_priv"]),
                 f"127.0.0.1:{trap_port}", "", "1.3.6.1.6.3.1.1.5.2")
        publish(broker, "sensors", SECRETS["telemetry_mqtt"], "site/gate-a/power", '{"pct": 87}')

        def seen(text: bytes) -> bool:
            return any(text in payload for _, payload in watcher.snapshot())

        services.wait_for(lambda: seen(b'"link_down"'), 20, "the accepted v2c trap on zw/v1/z1/p1/events")
        services.wait_for(lambda: seen(b'"device_restarted"'), 20, "the accepted v3 trap on the events topic")
        services.wait_for(lambda: seen(b'"battery_pct"'), 20, "the telemetry reading on the data topic")
        services.wait_for(lambda: seen(b'"good-v3"') and seen(b'"wrong-v2c"'), 20, "the SNMP polls on the data topic")
        services.wait_for(lambda: "sensors-wrong-password" in agent_log.read_text()
                          and "sensors-unreachable" in agent_log.read_text(), 10, "the failing site brokers logged")
        services.wait_for(lambda: 'result="bad_community"' in http_get(f"http://127.0.0.1:{agent_metrics}/metrics"),
                          10, "the refused trap counted on /metrics")
        services.wait_for(lambda: services.vm_query(victoriametrics.url, "event_occurred") != [], 20,
                          "the trap event in VictoriaMetrics")
        services.wait_for(lambda: services.vm_query(victoriametrics.url, "interface_in_octets") != [], 20,
                          "the polled interfaces in VictoriaMetrics")
        for path in ("c1", "noc"):  # the v3 coldStart trap from sw-traps: DeviceRebooted to its owner and the NOC
            hooks.wait(f"/{path}", 1, f"DeviceRebooted at /{path}")
        failing = "receiver carrier.c1.email.1 is not taking notifications"
        services.wait_for(lambda: failing in collector_log.read_text(), 20,
                          "the email receiver's failure (its SMTP relay is down) logged")
        agent_page = http_get(f"http://127.0.0.1:{agent_metrics}/metrics")
        collector_page = http_get(f"http://127.0.0.1:{collector_http}/metrics")
        with urllib.request.urlopen(f"{victoriametrics.url}/api/v1/export?match[]={{__name__!=''}}", timeout=10) as r:
            exported = r.read()
    finally:
        watcher.close()
        hooks.stop()
        if agent is not None:
            agent.stop()
        if collector is not None:
            collector.stop()
    assert agent is not None and collector is not None
    assert agent.proc.returncode == 0, agent.log_tail(40)
    assert collector.proc.returncode == 0, collector.log_tail(40)

    agent_text, collector_text = agent_log.read_text(), collector_log.read_text()
    assert " DEBUG " in agent_text  # debug logging was on
    assert "collector running: storage influxdb" in collector_text
    assert "wrong-v3" in agent_text  # the failing device is named
    assert "sensors-wrong-password: the site broker" in agent_text and "refused the connection" in agent_text
    assert "sensors-unreachable: the site broker" in agent_text
    assert "dropped a trap from 127.0.0.1" in agent_text  # the refused traps are named by sender
    assert "zonewatch_" in agent_page and "zonewatch_" in collector_page
    assert b"interface_in_octets" in exported and b"event_occurred" in exported
    messages = watcher.snapshot()
    topics = {topic for topic, _ in messages}
    assert {"zw/v1/z1/p1/status", "zw/v1/z1/p1/data", "zw/v1/z1/p1/events"} <= topics, topics
    stores = {**files_under(tmp_path / "agent", "spool.db*"),
              **files_under(tmp_path / "collector", "intake.db*", "alerts.db*", "outbox/*.db*")}
    assert {"spool.db", "intake.db", "alerts.db", "carrier.c1.email.1.db"} <= set(stores), sorted(stores)
    (rebooted,) = [a for h in hooks.at("/c1") for a in h.body["alerts"]]
    assert rebooted["labels"]["alertname"] == "DeviceRebooted" and rebooted["labels"]["device"] == "sw-traps"
    assert {h.headers["Authorization"] for h in hooks.at("/c1")} == {f"Bearer {SECRETS['webhook_token']}"}
    assert all("Authorization" not in h.headers for h in hooks.at("/noc"))
    notifications = {f"webhook {h.path} #{i} body": repr(h.body) for i, h in enumerate(hooks.hooks)}
    notifications.update({f"webhook {h.path} #{i} headers": repr(h.headers) for i, h in enumerate(hooks.hooks)
                          if h.path != "/c1"})
    assert_no_leak({
        "agent log": agent_text, "collector log": collector_text,
        "agent /metrics": agent_page, "collector /metrics": collector_page,
        "VictoriaMetrics export": exported,
        **{f"file {name}": data for name, data in stores.items()},
        **{f"MQTT {topic} #{i}": payload for i, (topic, payload) in enumerate(messages)},
        **{f"MQTT topic #{i}": topic for i, (topic, _) in enumerate(messages)},
        **notifications,
    })


def test_a_refused_mqtt_password_is_reported_without_it(tmp_path: Path, secure_mosquitto: services.Service) -> None:
    """The agent and the collector with a wrong MQTT password: the refusal is logged, the password is not."""
    broker, env = secure_mosquitto.port, secret_env()
    (tmp_path / "collector.yaml").write_text(f"""
mqtt: {{port: {broker}, username: collector, password: {{env: ZW_SEC_WRONG_MQTT}}, client_id: zw-sec-wrong}}
storage: {{type: sqlite, path: '{tmp_path / 'zw.db'}'}}
queue: {{path: '{tmp_path / 'intake.db'}'}}
http: {{enabled: false}}
""")
    (tmp_path / "agent.yaml").write_text(f"""
probe: {{id: p1, zone: z1}}
mqtt: {{port: {broker}, username: p1, password: {{env: ZW_SEC_WRONG_MQTT}}}}
spool: {{path: '{tmp_path / 'spool.db'}'}}
metrics: {{enabled: false}}
self_interval: 1s
""")
    agent_log, collector_log = tmp_path / "agent" / "agent.log", tmp_path / "collector" / "collector.log"
    collector = services.start_zonewatch("collector", ["-c", str(tmp_path / "collector.yaml"), "--log-level", "debug",
                                                       "run"], tmp_path / "collector", env=env)
    agent = None
    try:
        agent = services.start_zonewatch("agent", ["-c", str(tmp_path / "agent.yaml"), "--log-level", "debug",
                                                   "run"], tmp_path / "agent", env=env)
        services.wait_for(lambda: "refused" in agent_log.read_text(), 20, "the agent's refusal logged")
        services.wait_for(lambda: "refused" in collector_log.read_text() or not collector.alive(), 20,
                          "the collector's refusal logged")
    finally:
        if agent is not None:
            agent.stop()
        collector.stop()
    agent_text, collector_text = agent_log.read_text(), collector_log.read_text()
    assert f"broker 127.0.0.1:{broker} refused the connection" in agent_text, agent_text
    assert f"127.0.0.1:{broker}" in collector_text and "refused" in collector_text, collector_text
    stores = {**files_under(tmp_path, "spool.db*"), **files_under(tmp_path, "intake.db*")}
    assert_no_leak({"agent log": agent_text, "collector log": collector_text,
                    **{f"file {name}": data for name, data in stores.items()}})
