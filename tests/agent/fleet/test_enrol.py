"""Enrolment on the probe, without a broker: the hardware identity (parsers, and the simulated modems over their
pty), the resend schedule, opening the sealed reply, the state files and the configuration it gives."""

from __future__ import annotations

import asyncio
import random
import stat
from pathlib import Path

import pytest
from nacl.public import PrivateKey, SealedBox

from agent.config import AgentConfig
from agent.fleet import enrol
from agent.fleet.enrol import EnrolError, Resend, identity_from, open_reply, parse_iccid, parse_imei
from agent.sim.modem import IDENTITIES, SimModem
from agent.sources.vendors import Reply
from zonewatch import wire
from zonewatch.strict import ConfigError, load

RID = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(("lines", "imei"), [
    (["867962040012345"], "867962040012345"),
    (["+CGSN: 867962040012345"], "867962040012345"),
    (['+CGSN: "867962040012345"'], "867962040012345"),
    (["+CGSN: 86796204001234"], "86796204001234"),
    (["ERROR"], None),
    (["+CGSN: 8679620400123456789"], None),
    (["+CGSN: 86796204OO12345"], None),
])
def test_imei_answers(lines: list[str], imei: str | None) -> None:
    assert parse_imei(lines) == imei


@pytest.mark.parametrize(("lines", "iccid"), [
    (["+CCID: 89840480000012345678"], "89840480000012345678"),
    (['+CCID: "89840480000012345678"'], "89840480000012345678"),
    (["+QCCID: 8984048000001234568F"], "8984048000001234568F"),
    (["!ICCID: 8984048000001234568f"], "8984048000001234568F"),
    (["89840480000012345678"], "89840480000012345678"),
    (["+CME ERROR: 10"], None),
    (["+CCID: 1234"], None),
])
def test_iccid_answers(lines: list[str], iccid: str | None) -> None:
    assert parse_iccid(lines) == iccid


def test_identity_takes_the_first_iccid_command_that_answers() -> None:
    replies = [Reply("AT+CGSN", ["861536030123456"]), Reply("AT+CCID", [], "ERROR"),
               Reply("AT+QCCID", ["+QCCID: 89840480000012345679"]), Reply("AT!ICCID?", [], "ERROR")]
    assert identity_from("vt", replies) == wire.ModemIdentity("vt", "861536030123456", "89840480000012345679")
    assert identity_from("vt", [Reply("AT+CGSN", [], "ERROR")]) == wire.ModemIdentity("vt")


@pytest.mark.parametrize("personality", ["generic", "quectel-lte", "sierra-lte"])
def test_modems_say_who_they_are_over_their_port(personality: str, tmp_path: Path) -> None:
    imei, _, line = IDENTITIES[personality]
    with SimModem(personality) as modem:
        cfg = load(AgentConfig, f"probe: {{id: p7, zone: ez}}\nsources:\n"
                                f"  - {{type: cellular, name: vt, port: '{modem.port}', timeout: 1s}}\n"
                                "  - {type: cellular, name: mm, backend: mmcli, modem_index: 0}\n")
        found = asyncio.run(enrol.read_modems(cfg))
    assert found == (wire.ModemIdentity("vt", imei, line.split(":")[1].strip()),)   # mmcli: not asked over AT


def test_a_silent_modem_is_listed_without_identity(tmp_path: Path) -> None:
    with SimModem() as modem:
        modem.hang = True
        cfg = load(AgentConfig, f"probe: {{id: p7, zone: ez}}\nsources:\n"
                                f"  - {{type: cellular, name: vt, port: '{modem.port}', timeout: 200ms}}\n")
        assert asyncio.run(enrol.read_modems(cfg)) == (wire.ModemIdentity("vt"),)


def test_resend_doubles_to_its_cap_with_a_spread() -> None:
    rng = random.Random(7)
    schedule = Resend(10.0, 300.0)
    waits = [schedule.delay(n, rng) for n in range(10)]
    for n, wait in enumerate(waits):
        nominal = min(300.0, 10.0 * 2**n)
        assert 0.75 * nominal <= wait <= 1.25 * nominal
    assert max(waits) <= 375.0
    assert len({round(w, 6) for w in waits[-4:]}) == 4          # spread: not the same wait every time
    assert schedule.delay(10**6, rng) <= 375.0


def sealed(key: PrivateKey, answer: wire.EnrolAnswer) -> bytes:
    box = SealedBox(key.public_key).encrypt(wire.encode_enrol_answer(answer))
    return wire.encode_enrol_reply(answer.request, box)


def test_the_reply_opens_with_the_probes_key_only() -> None:
    key = PrivateKey.generate()
    approved = wire.EnrolAnswer(RID, "approved", "ez", "p7", "p7", "a-long-enough-password-1234")
    assert open_reply(key, RID, sealed(key, approved)) == approved
    rejected = wire.EnrolAnswer(RID, "rejected", reason="not one of ours")
    assert open_reply(key, RID, sealed(key, rejected)) == rejected
    assert open_reply(key, RID, b"") is None                                  # a cleared reply
    with pytest.raises(EnrolError, match="cannot open"):
        open_reply(key, RID, sealed(PrivateKey.generate(), approved))
    with pytest.raises(EnrolError, match="for request fedcba987654"):
        open_reply(key, RID, sealed(key, wire.EnrolAnswer("fedcba9876543210" * 2, "rejected")))
    with pytest.raises(EnrolError, match="not well formed"):
        open_reply(key, RID, b'{"request": 1}')


def test_the_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    folder = str(tmp_path / "enrol")
    key = enrol.load_or_make_key(folder)
    assert bytes(enrol.load_or_make_key(folder)) == bytes(key)
    assert stat.S_IMODE((tmp_path / "enrol" / "key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "enrol").stat().st_mode) == 0o700
    (tmp_path / "enrol" / "key").write_bytes(b"short")
    with pytest.raises(EnrolError, match="not a 32-byte key"):
        enrol.load_or_make_key(folder)


def test_credentials_are_kept_0600_and_make_the_configuration_the_probe_runs(tmp_path: Path) -> None:
    secret = tmp_path / "bootstrap"
    secret.write_text("bootstrap-pw\n")
    secret.chmod(0o600)
    cfg = load(AgentConfig, f"probe: {{id: p7, zone: ez}}\nmqtt: {{host: broker, port: 8883}}\n"
                            f"enrol: {{password: {{file: '{secret}'}}, state_dir: '{tmp_path / 'enrol'}'}}\n")
    assert cfg.enrol is not None and cfg.enrol.bootstrap_user("ez") == "enrol-ez"
    assert enrol.read_credentials(cfg.enrol.state_dir) is None
    answer = wire.EnrolAnswer(RID, "approved", "ez", "p9", "p9", "a-long-enough-password-1234")
    enrol.write_credentials(cfg.enrol.state_dir, answer)
    for name in ("password", "credentials.json"):
        assert stat.S_IMODE((tmp_path / "enrol" / name).stat().st_mode) == 0o600
    kept = enrol.read_credentials(cfg.enrol.state_dir)
    assert kept is not None
    run = enrol.enrolled(cfg, *kept)
    assert (run.probe.id, run.probe.zone, run.mqtt.username, run.mqtt.host) == ("p9", "ez", "p9", "broker")
    assert run.mqtt.password is not None and run.mqtt.password.get_secret_value() == "a-long-enough-password-1234"
    # a configuration without enrol can name the same file
    plain = load(AgentConfig, f"probe: {{id: p9, zone: ez}}\nmqtt: {{username: p9, password: "
                              f"{{file: '{tmp_path / 'enrol' / 'password'}'}}}}\n")
    assert plain.mqtt.password is not None and plain.mqtt.password.get_secret_value() == answer.password


def test_a_rejection_is_remembered(tmp_path: Path) -> None:
    secret = tmp_path / "bootstrap"
    secret.write_text("bootstrap-pw\n")
    secret.chmod(0o600)
    (tmp_path / "enrol").mkdir()
    (tmp_path / "enrol" / "rejected.json").write_text("{}")
    cfg = load(AgentConfig, f"probe: {{id: p7, zone: ez}}\n"
                            f"enrol: {{password: {{file: '{secret}'}}, state_dir: '{tmp_path / 'enrol'}'}}\n")
    import threading

    with pytest.raises(enrol.Rejected, match="remove the files in"):
        enrol.ensure(cfg, threading.Event())


@pytest.mark.parametrize(("text", "error"), [
    ("probe: {id: p7, zone: enrol}\n",
     "agent.yaml:1: probe.zone: zone id 'enrol' is reserved for enrolment topics"),
    ("probe: {id: p7, zone: ez}\nmqtt: {username: p7}\nenrol: {password: pw}\n",
     "agent.yaml:2: mqtt.username: give mqtt credentials or an enrol section, not both"),
    ("probe: {id: p7, zone: ez}\nenrol: {password: pw, state_dir: enrol}\n",
     "agent.yaml:2: enrol.state_dir: expected an absolute path, got 'enrol'"),
])
def test_agent_configuration_names_what_is_wrong(text: str, error: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(AgentConfig, text, "agent.yaml")
    assert str(err.value).startswith(error), str(err.value)
