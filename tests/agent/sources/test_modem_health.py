"""A modem's own health: the ``modem`` sample of every poll (SIM, registration, answering), the recovery steps the
cellular source runs on a real pty (``agent.sim.modem``), and the probe's storage self-report.

Times come in as ``now_ns``; the only waiting is the modem's own AT timeout (``TIMEOUT``) when it does not answer.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.runner import Agent
from agent.selfreport import storage_fields
from agent.sim.modem import SimModem
from agent.sources import SourceError, modem_state
from agent.sources.cellular import CellularConfig, CellularSource, ModemDown
from agent.sources.vendors import Reply
from zonewatch import strict, wire
from zonewatch.measurements import problems

S = 1_000_000_000
NOW = 1_764_289_990 * S
TIMEOUT = 0.2


@pytest.mark.parametrize(("final", "lines", "state"), [
    ("OK", ["+CPIN: READY"], 0),
    ("OK", ["+CPIN: SIM PIN"], 2),
    ("OK", ["+CPIN: SIM PUK"], 3),
    ("OK", ['+CPIN: "PH-NET PIN"'], 2),          # locked to another network: a code before it may register
    ("OK", ["+CPIN: SIM PIN2"], 0),              # PIN2 guards a few SIM files, not service
    ("OK", ["+CPIN: NOT INSERTED"], 1),
    ("OK", ["+CPIN: NOT READY"], None),          # still starting
    ("+CME ERROR: 10", [], 1),                   # SIM not inserted
    ("+CME ERROR: SIM not inserted", [], 1),     # the same, verbose
    ("+CME ERROR: 13", [], 4),                   # SIM failure
    ("+CME ERROR: 14", [], None),                # SIM busy
    ("ERROR", [], None),                         # no such command
    ("OK", [], None),
])
def test_the_sim_state_from_cpin(final: str, lines: list[str], state: int | None) -> None:
    assert modem_state.parse_cpin(Reply("AT+CPIN?", lines, final)) == state


def test_the_registration_state_prefers_the_registered_answer() -> None:
    lte, nr = Reply("AT+CEREG?", ["+CEREG: 2,0"]), Reply("AT+C5GREG?", ['+C5GREG: 2,1,"46550B","0170C23000",11'])
    assert modem_state.registration_state([lte, nr]) == 1            # NR SA: registered on 5G only
    assert modem_state.registration_state([Reply("AT+CEREG?", ["+CEREG: 2,3"])]) == 3   # denied
    assert modem_state.registration_state([Reply("AT+CEREG?", [], "ERROR")]) is None


def make_config(port: str, extra: str = "") -> CellularConfig:
    text = f"type: cellular\nname: vt\nport: {port}\ncarrier: '452-04'\ntimeout: {round(TIMEOUT * 1000)}ms\n{extra}"
    return strict.load(CellularConfig, text, "agent.yaml")


def poll(source: CellularSource, at: float) -> list[wire.Sample]:
    """Poll at ``at`` seconds from NOW; a failed poll returns the samples its ModemDown carries."""
    try:
        return asyncio.run(source.collect(NOW + int(at * S)))
    except ModemDown as down:
        return down.samples


def health(samples: list[wire.Sample]) -> dict[str, wire.FieldValue]:
    """Return the fields of the poll's ``modem`` sample (a poll the modem did not answer, or the first after)."""
    (sample,) = [s for s in samples if s.measurement == "modem"]
    assert problems(sample.measurement, sample.tags, sample.fields) == []
    assert sample.tags == {"modem": "vt", "carrier": "452-04"}
    return dict(sample.fields)


def reading(samples: list[wire.Sample]) -> dict[str, wire.FieldValue]:
    """Return the SIM and registration fields of the poll's ``cellular`` reading."""
    (sample,) = [s for s in samples if s.measurement == "cellular"]
    assert problems(sample.measurement, sample.tags, sample.fields) == []
    return {k: v for k, v in sample.fields.items() if k in ("sim_state", "registered", "reg_state")}


def test_every_reading_says_how_the_sim_is_and_how_the_modem_is_registered(
        modem: SimModem, new_source: Callable[[CellularConfig], CellularSource]) -> None:
    source = new_source(make_config(modem.port))
    first = poll(source, 0)
    assert [s.measurement for s in first] == ["cellular"]   # one reading a poll
    assert reading(first) == {"sim_state": 0, "registered": True, "reg_state": 1}
    modem.sim = "SIM PIN"
    modem.cereg = "+CEREG: 2,2"   # searching: a SIM that asks for its PIN cannot register
    assert reading(poll(source, 30)) == {"sim_state": 2, "registered": False, "reg_state": 2}
    modem.sim = None              # taken out: +CME ERROR: 10
    assert reading(poll(source, 60))["sim_state"] == 1
    modem.sim = "READY"
    modem.cereg = "+CEREG: 2,3"   # the network refuses it
    assert reading(poll(source, 90)) == {"sim_state": 0, "registered": False, "reg_state": 3}


def test_a_modem_that_stops_answering_is_recovered_in_steps_and_says_so(
        modem: SimModem, new_source: Callable[[CellularConfig], CellularSource]) -> None:
    source = new_source(make_config(modem.port, "recovery: {wait: 10s}\n"))
    poll(source, 0)
    modem.hang = True
    failed = poll(source, 30)     # no answer: the reopen is due
    assert [s.measurement for s in failed] == ["modem"] and health(failed) == {"answering": False, "recovery_step": 0}
    assert health(poll(source, 35)) == {"answering": False, "recovery_step": 1}   # reopened instead of read: fails
    assert health(poll(source, 38)) == {"answering": False, "recovery_step": 0}   # a read: the cfun waits 10 s
    assert health(poll(source, 40)) == {"answering": False, "recovery_step": 0}   # a read: now the cfun is due
    modem.hang, before = False, len(modem.commands)
    modem.csq = modem.cesq = modem.cops = modem.cereg = None   # it answers, but nothing usable
    assert health(poll(source, 45)) == {"answering": False, "recovery_step": 2}   # cfun: the modem resets
    assert modem.resets == 1 and modem.commands[before:] == ["AT+CFUN=1,1"]      # instead of the read
    assert source.take_recoveries() == [("reopen", "failed"), ("cfun", "ok")]
    modem.set_registered(True)
    modem.set_signal(-90, -10)
    back = poll(source, 50)
    assert [s.measurement for s in back] == ["cellular", "modem"] and health(back) == {"answering": True,
                                                                                       "recovery_step": 0}
    assert [s.measurement for s in poll(source, 55)] == ["cellular"]


def test_a_reopen_that_works_reads_the_modem_in_the_same_poll(
        modem: SimModem, new_source: Callable[[CellularConfig], CellularSource]) -> None:
    source = new_source(make_config(modem.port))
    poll(source, 0)
    modem.hang = True
    poll(source, 30)              # the reopen is due
    modem.hang = False            # it comes back by itself
    back = poll(source, 60)       # reopened, set up, and read: one poll
    assert [s.measurement for s in back] == ["cellular", "modem"]
    assert health(back) == {"answering": True, "recovery_step": 1}   # back, by the reopen
    assert source.take_recoveries() == [("reopen", "ok")]


def test_a_vanished_port_fails_with_a_modem_sample_and_the_runner_spools_it(tmp_path: Path) -> None:
    link = tmp_path / "ttyUSB-vt"
    config = make_config(str(link))
    source = CellularSource(config)
    try:
        with pytest.raises(ModemDown) as down:
            asyncio.run(source.collect(NOW))
        assert isinstance(down.value, SourceError) and f"cannot open {link}" in str(down.value)
        assert health(down.value.samples) == {"answering": False, "recovery_step": 0}
        with pytest.raises(ModemDown) as again:
            asyncio.run(source.collect(NOW + 30 * S))   # the reopen that was due: the port is still gone
        assert health(again.value.samples) == {"answering": False, "recovery_step": 1}
        assert source.take_recoveries() == [("reopen", "failed")]
    finally:
        asyncio.run(source.close())

    cfg = strict.load(AgentConfig, f"probe: {{id: p1, zone: z}}\nspool: {{path: '{tmp_path / 'spool.db'}'}}\n"
                                   f"sources:\n  - {{type: cellular, name: vt, port: '{link}', timeout: 200ms}}\n")
    agent = Agent(cfg, clock=lambda: NOW)
    try:
        result = asyncio.run(agent.poll_once("vt"))
    finally:
        asyncio.run(agent.close_sources())
    assert result.error is not None and f"cannot open {link}" in result.error
    assert [(s.measurement, s.fields["answering"]) for s in result.samples] == [("modem", False)]


def test_a_usb_cycle_that_would_outlast_the_poll_is_refused_naming_the_key_and_line() -> None:
    with pytest.raises(strict.ConfigError) as raised:
        make_config("/dev/ttyUSB2", "interval: 10s\nrecovery:\n  usb: {hub: '1-1', port: 2}\n")
    assert str(raised.value).startswith("agent.yaml:7: recovery: usb.timeout (20s) must be shorter than the source's "
                                        "interval (10s)")


def test_the_self_report_says_how_full_the_spool_and_the_disk_are(tmp_path: Path) -> None:
    fs = os.statvfs(tmp_path)
    fields = storage_fields(tmp_path / "spool.db", 64 * 2**20, 256 * 2**20)
    assert fields["spool_fill_pct"] == 25.0
    assert fields["disk_free_pct"] == pytest.approx(100 * fs.f_bavail / fs.f_blocks, abs=1)
    assert fields["disk_free_mb"] == pytest.approx(fs.f_bavail * fs.f_frsize / 2**20, rel=0.05)
    assert problems("probe", {}, fields) == []
    gone = storage_fields(tmp_path / "no" / "such" / "spool.db", 0, 2**20)
    assert gone == {"spool_fill_pct": 0.0}   # a file system it cannot read: only what it knows


def test_the_simulated_modem_answers_cpin_and_cfun(modem: SimModem) -> None:
    assert modem.answer("AT+CPIN?") == ["+CPIN: READY", "OK"]
    modem.sim = None
    assert modem.answer("at+cpin?") == ["+CME ERROR: 10"]
    assert modem.answer("AT+CFUN=1,1") == ["OK"] and modem.resets == 1
