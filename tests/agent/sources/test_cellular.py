"""CellularSource against the simulated modem over a real pty (pyserial on both ends, no sleeps).

Each vendor personality of SimModem is read end to end; the expected samples are worked out by hand from the
personality's answers (agent/sim/modem.py) in the comments.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import serial

from agent.sim.modem import PERSONALITIES, SimModem
from agent.sources import SourceError
from agent.sources.cellular import CellularConfig, CellularSource
from tests.agent.sources.test_vendors import assert_field_types
from zonewatch import strict, wire

NOW = 1_764_289_990_000_000_000
TIMEOUT = 0.3
# No echo; ATI, then AT+CGMI because ATI named no known vendor; numeric operator; location in +CEREG; 5G
# registration (the generic modem answers ERROR to AT+C5GREG=2, so +C5GREG? is not polled).
SETUP = ["ATE0", "ATI", "AT+CGMI", "AT+COPS=3,2", "AT+CREG=2", "AT+CGREG=2", "AT+CEREG=2", "AT+C5GREG=2"]
POLL = ["AT+CSQ", "AT+CESQ", "AT+COPS?", "AT+CREG?", "AT+CGREG?", "AT+CEREG?"]
CPIN = ["AT+CPIN?"]  # the SIM's state, last in every poll (after the vendor's commands)
HEALTH = ("sim_state", "reg_state")  # what AT+CPIN? and the registration add to the reading


def make_config(port: str, extra: str = "") -> CellularConfig:
    """Load a cellular config the way the agent does."""
    text = f"type: cellular\nname: viettel\nport: {port}\ntimeout: {round(TIMEOUT * 1000)}ms\n{extra}"
    return strict.load(CellularConfig, text, "agent.yaml")


def collect(source: CellularSource, now_ns: int = NOW) -> list[wire.Sample]:
    """Run one poll to completion; return its ``cellular`` readings as ``vendors.to_sample`` makes them (without the
    SIM and registration states, and the ``modem`` sample of a poll after a failure: test_modem_health.py)."""
    return [wire.Sample(s.measurement, s.tags, {k: v for k, v in s.fields.items() if k not in HEALTH}, s.time_ns)
            for s in asyncio.run(source.collect(now_ns)) if s.measurement == "cellular"]


@pytest.fixture
def source(modem: SimModem, new_source: Callable[[CellularConfig], CellularSource]) -> CellularSource:
    return new_source(make_config(modem.port))


# Default modem state: +CSQ: 18,99 / +CESQ: 99,99,255,255,20,80 / +COPS: 0,2,"45204",7 /
# +CEREG: 2,1,"1A2B","5F1EA15",7. Worked out by hand: rssi 2*18-113 = -77 dBm, rsrq 20/2-20 = -10 dB,
# rsrp 80-141 = -61 dBm, PLMN 452-04, AcT 7 = lte, ECI 0x5F1EA15 = eNB 0x5F1EA (389610) sector 0x15 (21).
EXPECTED = wire.Sample(
    measurement="cellular",
    tags={"carrier": "452-04", "modem": "viettel", "rat": "lte", "cell": "5F1EA15"},
    fields={
        "rsrp_dbm": -61,
        "rsrq_db": -10.0,
        "rssi_dbm": -77,
        "registered": True,
        "enb_id": 389610,
        "sector": 21,
    },
    time_ns=NOW,
)


def test_normal_read_gives_the_full_sample(source: CellularSource) -> None:
    samples = collect(source)

    assert samples == [EXPECTED]
    batch = wire.Batch(zone="dinh-vu", probe="p1", seq=1, sent_ns=NOW, samples=tuple(samples))
    assert wire.decode(wire.encode(batch)).samples == (EXPECTED,)  # the collector accepts it as is


def test_modem_is_set_up_once_per_opening(modem: SimModem, source: CellularSource) -> None:
    collect(source)
    collect(source, NOW + 30)

    assert modem.commands == SETUP + POLL + CPIN + POLL + CPIN


def test_signal_follows_the_modem(modem: SimModem, source: CellularSource) -> None:
    modem.set_signal(rsrp_dbm=-95, rsrq_db=-12.5)

    (sample,) = collect(source)

    assert (sample.fields["rsrp_dbm"], sample.fields["rsrq_db"]) == (-95, -12.5)


def test_unknown_rsrp_is_left_out(modem: SimModem, source: CellularSource) -> None:
    modem.cesq = (99, 99, 255, 255, 20, 255)

    (sample,) = collect(source)

    assert "rsrp_dbm" not in sample.fields
    assert sample.fields["rsrq_db"] == -10.0


def test_unknown_rssi_is_left_out(modem: SimModem, source: CellularSource) -> None:
    modem.csq = (99, 99)

    (sample,) = collect(source)

    assert "rssi_dbm" not in sample.fields
    assert sample.fields["rsrp_dbm"] == -61


def test_not_registered(modem: SimModem, new_source: Callable[[CellularConfig], CellularSource]) -> None:
    source = new_source(make_config(modem.port, 'carrier: "452-04"\n'))
    modem.set_registered(False)

    (sample,) = collect(source)

    assert sample.fields == {"rsrp_dbm": -61, "rsrq_db": -10.0, "rssi_dbm": -77, "registered": False}
    # no operator and no cell from the modem: the carrier is the configured one, rat and cell are unknown
    assert sample.tags == {"carrier": "452-04", "modem": "viettel"}


@pytest.mark.parametrize(
    ("cops", "configured", "carrier"),
    [
        ('+COPS: 0,2,"45201",7', None, "452-01"),
        ('+COPS: 0,2,"45201",7', '"452-04"', "452-01"),  # what the modem is on wins: a wrong SIM shows
        ('+COPS: 0,2,"310410",7', None, "310-410"),  # 3-digit MNC
        ('+COPS: 0,0,"Viettel",7', '"452-04"', "452-04"),  # a long name is no PLMN: the config's is used
        ('+COPS: 0,0,"Viettel",7', None, None),
    ],
)
def test_carrier_tag(
    modem: SimModem,
    new_source: Callable[[CellularConfig], CellularSource],
    cops: str,
    configured: str | None,
    carrier: str | None,
) -> None:
    extra = f"carrier: {configured}\n" if configured else ""
    source = new_source(make_config(modem.port, extra))
    modem.cops = cops

    (sample,) = collect(source)

    assert sample.tags.get("carrier") == carrier


def test_rat_from_cops_access_technology(modem: SimModem, source: CellularSource) -> None:
    modem.cops = '+COPS: 0,2,"45204",13'

    (sample,) = collect(source)

    assert sample.tags["rat"] == "nr5g-nsa"


def test_hanging_modem_fails_within_the_timeout_and_recovers(modem: SimModem, source: CellularSource) -> None:
    collect(source)
    modem.hang = True

    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        collect(source)
    elapsed = time.monotonic() - started

    assert str(caught.value) == f"modem viettel on {modem.port}: no answer to AT+CSQ within 300ms"
    assert TIMEOUT <= elapsed < 3 * TIMEOUT

    modem.hang = False
    assert collect(source, NOW + 60) == [dataclasses.replace(EXPECTED, time_ns=NOW + 60)]
    # the port was reopened, so the modem was set up again
    assert modem.commands == SETUP + POLL + CPIN + SETUP + POLL + CPIN


def test_command_answering_error_only_loses_its_values(modem: SimModem, source: CellularSource) -> None:
    modem.cesq = None  # a modem without AT+CESQ answers ERROR

    (sample,) = collect(source)

    assert sample.fields == {"rssi_dbm": -77, "registered": True, "enb_id": 389610, "sector": 21}


def test_modem_answering_only_errors_fails(modem: SimModem, source: CellularSource) -> None:
    modem.error = "+CME ERROR: 10"

    with pytest.raises(SourceError) as caught:
        collect(source)

    assert str(caught.value) == (
        f"modem viettel on {modem.port} gave no usable answer (AT+CSQ: answered +CME ERROR: 10; "
        "AT+CESQ: answered +CME ERROR: 10; AT+COPS?: answered +CME ERROR: 10; "
        "AT+CREG?: answered +CME ERROR: 10; AT+CGREG?: answered +CME ERROR: 10; AT+CEREG?: answered +CME ERROR: 10)"
    )


def test_usb_reset_recovers_on_the_next_collect(
    tmp_path: Path, new_source: Callable[[CellularConfig], CellularSource]
) -> None:
    # The agent is configured with a stable name (a udev by-id link); the device behind it comes and goes.
    link = tmp_path / "ttyUSB-viettel"
    first = SimModem()
    first.start()
    link.symlink_to(first.port)
    source = new_source(make_config(str(link)))
    assert collect(source) == [EXPECTED]

    first.stop()  # unplugged
    with pytest.raises(SourceError, match=f"modem viettel on {link}"):
        collect(source)

    with SimModem() as second:  # re-enumerated, maybe under another name
        link.unlink()
        link.symlink_to(second.port)
        assert collect(source) == [EXPECTED]
        assert second.commands == SETUP + POLL + CPIN


def test_missing_port_names_the_modem_and_the_port(
    tmp_path: Path, new_source: Callable[[CellularConfig], CellularSource]
) -> None:
    source = new_source(make_config(str(tmp_path / "ttyUSB9")))

    with pytest.raises(SourceError, match=f"^modem viettel: cannot open {tmp_path / 'ttyUSB9'}: "):
        collect(source)


def test_sim_modem_answers_in_any_letter_case_and_honours_echo(modem: SimModem) -> None:
    with serial.Serial(modem.port, 115200, timeout=TIMEOUT) as port:
        port.write(b"at+csq\r")
        assert port.read_until(b"OK\r\n") == b"at+csq\r\r\n+CSQ: 18,99\r\n\r\nOK\r\n"  # echo is on at first
        port.write(b"ate0\r")
        assert port.read_until(b"OK\r\n") == b"ate0\r\r\nOK\r\n"
        port.write(b"At+Cops?\r")
        assert port.read_until(b"OK\r\n") == b'\r\n+COPS: 0,2,"45204",7\r\n\r\nOK\r\n'
        port.write(b'AT+QENG="servingcell"\r')
        assert port.read_until(b"ERROR\r\n") == b"\r\nERROR\r\n"  # not simulated
        port.write(b"ATE1\r")
        assert port.read_until(b"OK\r\n") == b"\r\nOK\r\n"
        port.write(b"AT\r")
        assert port.read_until(b"OK\r\n") == b"AT\r\r\nOK\r\n"


# --- vendor personalities, end to end over the pty -------------------------------------------------------------

# ATI named the vendor: no AT+CGMI
VENDOR_SETUP = ["ATE0", "ATI", "AT+COPS=3,2", "AT+CREG=2", "AT+CGREG=2", "AT+CEREG=2", "AT+C5GREG=2"]
QUECTEL = ['AT+QENG="servingcell"', "AT+QCSQ", "AT+QNWINFO"]
CASES = {
    # EC25: QENG RSRP -95, RSRQ -11, RSSI -65, PCI 188, band 3; QCSQ SINR code 170 -> 170/5 - 20 = 14 dB;
    # ECI 5F1EA15 -> eNB 0x5F1EA = 389610, sector 0x15 = 21. The EC25 has no +C5GREG.
    "quectel-lte": (
        POLL + QUECTEL + CPIN,
        {"carrier": "452-04", "modem": "viettel", "rat": "lte", "band": "B3", "cell": "5F1EA15"},
        {"rsrp_dbm": -95, "rsrq_db": -11.0, "sinr_db": 14.0, "rssi_dbm": -65, "registered": True, "pci": 188,
         "enb_id": 389610, "sector": 21},
    ),
    # RM500Q on EN-DC: LTE anchor RSRP -99, RSRQ -12, RSSI -67, PCI 12, band 3, SINR code 155 -> 11 dB;
    # NR leg RSRP -71, SINR 13, RSRQ -11 (SINR before RSRQ in the NSA line). +CEREG registered, +C5GREG not.
    "quectel-nsa": (
        POLL + ["AT+C5GREG?"] + QUECTEL + CPIN,
        {"carrier": "452-04", "modem": "viettel", "rat": "nr5g-nsa", "band": "B3", "cell": "5F1EA15"},
        {"rsrp_dbm": -99, "rsrq_db": -12.0, "sinr_db": 11.0, "rssi_dbm": -67, "registered": True, "pci": 12,
         "enb_id": 389610, "sector": 21, "nr_rsrp_dbm": -71, "nr_rsrq_db": -11.0, "nr_sinr_db": 13.0},
    ),
    # RM520N on SA: +CEREG 2,0 but +C5GREG 2,1 -> registered; NR RSRP -54, RSRQ -10, SINR 16, PCI 901, n41;
    # NCI 0x170C23000 with a 24-bit gNB id: gNB 0x170C23 = 1510435, cell 0x000 = 0. CSQ 99: no RSSI.
    "quectel-sa": (
        POLL + ["AT+C5GREG?"] + QUECTEL + CPIN,
        {"carrier": "452-04", "modem": "viettel", "rat": "nr5g-sa", "band": "n41", "cell": "170C23000"},
        {"rsrp_dbm": -54, "rsrq_db": -10.0, "sinr_db": 16.0, "registered": True, "pci": 901, "gnb_id": 1510435,
         "sector": 0},
    ),
    # SIM7600: CPSI RSRQ -94 -> -9.4 dB, RSRP -850 -> -85 dBm, RSSI -553 -> -55.3 -> -55 dBm, PCI 257,
    # RSSNR 15 -> SINR 2 * 15 - 20 = 10 dB (SIMCom's manual);
    # cell 187214780 = 0xB28ABBC -> eNB 0xB28AB = 731307, sector 0xBC = 188
    "simcom-lte": (
        POLL + ["AT+CPSI?"] + CPIN,
        {"carrier": "452-04", "modem": "viettel", "rat": "lte", "band": "B3", "cell": "B28ABBC"},
        {"rsrp_dbm": -85, "rsrq_db": -9.4, "sinr_db": 10.0, "rssi_dbm": -55, "registered": True, "pci": 257,
         "enb_id": 731307, "sector": 188},
    ),
    # EM7455: main-antenna RSRP -86 (diversity -91 ignored), RSSI -57, RSRQ -10.5, SINR 13.6, band B3;
    # cell 0A14666A -> eNB 0xA1466 = 660582, sector 0x6A = 106; GSTATUS gives no PCI
    "sierra-lte": (
        POLL + ["AT!GSTATUS?"] + CPIN,
        {"carrier": "452-04", "modem": "viettel", "rat": "lte", "band": "B3", "cell": "A14666A"},
        {"rsrp_dbm": -86, "rsrq_db": -10.5, "sinr_db": 13.6, "rssi_dbm": -57, "registered": True,
         "enb_id": 660582, "sector": 106},
    ),
}


@pytest.mark.parametrize("personality", sorted(CASES))
def test_vendor_modem_is_detected_and_read_with_its_commands(
    personality: str, new_source: Callable[[CellularConfig], CellularSource]
) -> None:
    poll, tags, fields = CASES[personality]
    with SimModem(personality) as modem:
        source = new_source(make_config(modem.port))

        (sample,) = collect(source)
        collect(source)

        assert (sample.tags, sample.fields) == (tags, fields)
        assert_field_types(sample.fields)
        assert modem.commands == VENDOR_SETUP + poll + poll


@pytest.mark.parametrize(("personality", "vendor"), [("quectel-nsa", "quectel"), ("simcom-lte", "simcom")])
def test_configured_vendor_skips_detection(
    personality: str, vendor: str, new_source: Callable[[CellularConfig], CellularSource]
) -> None:
    poll, tags, fields = CASES[personality]
    with SimModem(personality) as modem:
        source = new_source(make_config(modem.port, f"vendor: {vendor}\n"))

        (sample,) = collect(source)

        assert (sample.tags, sample.fields) == (tags, fields)
        assert modem.commands == ["ATE0", "AT+CGMR", "AT+COPS=3,2", "AT+CREG=2", "AT+CGREG=2", "AT+CEREG=2",
                                  "AT+C5GREG=2"] + poll


def test_vendor_set_to_generic_reads_3gpp_only(new_source: Callable[[CellularConfig], CellularSource]) -> None:
    with SimModem("quectel-lte") as modem:
        source = new_source(make_config(modem.port, "vendor: generic\n"))

        (sample,) = collect(source)

        # +CESQ rsrq 18 -> -11 dB, rsrp 46 -> -95 dBm; +CSQ 24 -> -65 dBm; no band, PCI or SINR without QENG
        assert sample.fields == {"rsrp_dbm": -95, "rsrq_db": -11.0, "rssi_dbm": -65, "registered": True,
                                 "enb_id": 389610, "sector": 21}
        assert not any(c.startswith("AT+Q") for c in modem.commands)


def test_gnb_id_bits_decides_the_nr_site(new_source: Callable[[CellularConfig], CellularSource]) -> None:
    with SimModem("quectel-sa") as modem:
        source = new_source(make_config(modem.port, "gnb_id_bits: 22\n"))

        (sample,) = collect(source)

        # 22 bits: gNB = 0x170C23000 >> 14 = 377608, cell = 0x170C23000 & 0x3FFF = 0x3000 = 12288
        assert (sample.fields["gnb_id"], sample.fields["sector"]) == (377608, 12288)


def test_vendor_command_answering_error_only_loses_its_values(
    new_source: Callable[[CellularConfig], CellularSource], caplog: pytest.LogCaptureFixture
) -> None:
    with SimModem("quectel-lte") as modem:
        source = new_source(make_config(modem.port))
        modem.answers['AT+QENG="SERVINGCELL"'] = None
        modem.answers["AT+QCSQ"] = None

        with caplog.at_level(logging.INFO, logger="agent.sources.cellular"):
            (first,) = collect(source)
            collect(source)
            modem.answers.update({k: v for k, v in PERSONALITIES["quectel-lte"].answers.items()})
            (again,) = collect(source)

        # 3GPP values and the band (QNWINFO) remain; PCI and SINR came only from QENG and QCSQ
        assert first.fields == {"rsrp_dbm": -95, "rsrq_db": -11.0, "rssi_dbm": -65, "registered": True,
                                "enb_id": 389610, "sector": 21}
        assert first.tags["band"] == "B3"
        assert again.fields == CASES["quectel-lte"][2]
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings == [f'modem viettel on {modem.port}: AT+QENG="servingcell" answered ERROR',
                            f"modem viettel on {modem.port}: AT+QCSQ answered ERROR"]  # once, not at every poll
        infos = [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()]
        assert sorted(infos) == [f'modem viettel on {modem.port}: AT+QCSQ answers again',
                                 f'modem viettel on {modem.port}: AT+QENG="servingcell" answers again']


def test_detection_runs_again_after_a_usb_reset(
    tmp_path: Path, new_source: Callable[[CellularConfig], CellularSource]
) -> None:
    # Someone swaps the modem behind the same by-id link: the next opening must ask again who made it.
    link = tmp_path / "ttyUSB-viettel"
    first = SimModem("quectel-lte")
    first.start()
    link.symlink_to(first.port)
    source = new_source(make_config(str(link)))
    assert collect(source)[0].fields["pci"] == 188  # read with QENG

    first.stop()
    with pytest.raises(SourceError):
        collect(source)

    with SimModem("simcom-lte") as second:
        link.unlink()
        link.symlink_to(second.port)
        (sample,) = collect(source)
        assert sample.fields["pci"] == 257  # read with CPSI
        assert second.commands == VENDOR_SETUP + POLL + ["AT+CPSI?"] + CPIN


# --- failures are logged once, and "recovered" once ------------------------------------------------------------


def run_polls(config_text: str, polls: list[Callable[[], None]], caplog: pytest.LogCaptureFixture) -> list[str]:
    """Poll the agent's only source through the runner once after each step; return what the runner logged."""
    from agent.config import AgentConfig
    from agent.runner import Agent

    agent = Agent(strict.load(AgentConfig, config_text), clock=lambda: NOW)
    try:
        with caplog.at_level(logging.INFO, logger="agent.runner"):
            for step in polls:
                step()
                asyncio.run(agent.poll_once("viettel"))
    finally:
        asyncio.run(agent.close_sources())
    return [r.getMessage() for r in caplog.records if r.name == "agent.runner"]


def agent_config(port: str) -> str:
    return (f"probe: {{id: p1, zone: dinh-vu}}\nsources:\n"
            f"  - {{type: cellular, name: viettel, port: {port}, timeout: {round(TIMEOUT * 1000)}ms}}\n")


def test_hanging_modem_is_logged_once_and_recovered_once(modem: SimModem, caplog: pytest.LogCaptureFixture) -> None:
    def hang() -> None:
        modem.hang = True

    def answer() -> None:
        modem.hang = False

    log = run_polls(agent_config(modem.port), [answer, hang, hang, answer, answer], caplog)

    assert log == [f"source viettel (cellular) failed: modem viettel on {modem.port}: no answer to AT+CSQ within "
                   "300ms", "source viettel (cellular) recovered"]


def test_modem_answering_only_errors_is_logged_once_and_recovered_once(
    modem: SimModem, caplog: pytest.LogCaptureFixture
) -> None:
    def errors() -> None:
        modem.error = "ERROR"

    def fine() -> None:
        modem.error = None

    log = run_polls(agent_config(modem.port), [errors, errors, errors, fine, fine], caplog)

    assert len(log) == 2
    assert log[0].startswith(f"source viettel (cellular) failed: modem viettel on {modem.port} gave no usable "
                             "answer (AT+CSQ: answered ERROR;")
    assert log[1] == "source viettel (cellular) recovered"


def test_vanished_port_is_logged_once_and_recovered_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    link = tmp_path / "ttyUSB-viettel"
    first = SimModem()
    first.start()
    link.symlink_to(first.port)
    second = SimModem()

    def unplug() -> None:
        first.stop()

    def still_gone() -> None:
        pass

    def replug() -> None:
        second.start()
        link.unlink()
        link.symlink_to(second.port)

    try:
        log = run_polls(agent_config(str(link)), [still_gone, unplug, still_gone, still_gone, replug, still_gone],
                        caplog)
    finally:
        second.stop()

    # the read that saw the port vanish and the failed reopenings after it are one failure
    assert len(log) == 2, log
    assert log[0].startswith(f"source viettel (cellular) failed: modem viettel on {link}: ")
    assert log[1] == "source viettel (cellular) recovered"


def test_close_without_collect_is_harmless(source: CellularSource) -> None:
    asyncio.run(source.close())


def test_config_defaults() -> None:
    config = strict.load(CellularConfig, "type: cellular\nname: viettel\nport: /dev/ttyUSB2\n")

    assert (config.baudrate, config.carrier, config.interval, config.timeout) == (115200, None, 30.0, 2.0)
    assert (config.backend, config.vendor, config.gnb_id_bits) == ("at", "auto", 24)
    assert (config.modem_index, config.mmcli_path) == (None, "mmcli")


def test_mmcli_config_needs_no_port() -> None:
    config = strict.load(CellularConfig, "type: cellular\nname: viettel\nbackend: mmcli\nmodem_index: 0\n")

    assert (config.backend, config.port, config.modem_index) == ("mmcli", None, 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "type: cellular\nname: viettel\nport: /dev/ttyUSB2\nbaudrat: 9600\n",
            "agent.yaml:4: baudrat: unknown key 'baudrat' (did you mean 'baudrate'?)",
        ),
        (
            "type: cellular\nname: viettel\nport: /dev/ttyUSB2\ncarrier: '45204'\n",
            "agent.yaml:4: carrier: expected a PLMN like '452-04' (MCC-MNC), got '45204'",
        ),
        (
            "type: cellular\nname: viettel\nport: /dev/ttyUSB2\ntimeout: 2\n",
            "agent.yaml:4: timeout: expected a duration string with a unit, like '30s' or '1m30s', got 2",
        ),
        ("type: cellular\nname: viettel\n", "agent.yaml:1: port: missing (required)"),
        (
            "type: cellular\nname: viettel\nbackend: mmcli\n",
            "agent.yaml:1: imei: missing (required with backend 'mmcli': the modem's IMEI, or modem_index, the N of "
            "'mmcli -m N'; the IMEI survives the renumbering after a USB reset)",
        ),
        (
            "type: cellular\nname: viettel\nbackend: mmcli\nmodem_index: 0\nport: /dev/ttyUSB2\n",
            "agent.yaml:5: port: only used with backend 'at'; ModemManager finds the port (remove it, or set "
            "backend: at)",
        ),
        (
            "type: cellular\nname: viettel\nport: /dev/ttyUSB2\nmodem_index: 0\n",
            "agent.yaml:4: modem_index: only used with backend 'mmcli' (set backend: mmcli, or remove it)",
        ),
        (
            "type: cellular\nname: viettel\nbackend: mmcli\nmodem_index: -1\n",
            "agent.yaml:4: modem_index: expected the modem's index in 'mmcli -L' (0 or more), got -1",
        ),
        (
            "type: cellular\nname: viettel\nbackend: mmcli\nmodem_index: 0\nvendor: quectel\n",
            "agent.yaml:5: vendor: only used with backend 'at'; ModemManager knows the vendor itself",
        ),
        (
            "type: cellular\nname: viettel\nport: /dev/ttyUSB2\nvendor: huawei\n",
            "agent.yaml:4: vendor: expected 'auto', 'generic', 'quectel', 'simcom' or 'sierra', got 'huawei'",
        ),
        (
            "type: cellular\nname: viettel\nport: /dev/ttyUSB2\nbackend: qmi\n",
            "agent.yaml:4: backend: expected 'at' or 'mmcli', got 'qmi'",
        ),
        (
            "type: cellular\nname: viettel\nport: /dev/ttyUSB2\ngnb_id_bits: 36\n",
            "agent.yaml:4: gnb_id_bits: expected 22 to 32 (the operator's gNB id length; 24 is common), got 36",
        ),
    ],
)
def test_bad_config_names_the_key(text: str, message: str) -> None:
    with pytest.raises(strict.ConfigError) as caught:
        strict.load(CellularConfig, text, "agent.yaml")

    assert str(caught.value) == message


def test_an_impossible_value_is_dropped_logged_with_its_command_and_counted(
    new_source: Callable[[CellularConfig], CellularSource], caplog: pytest.LogCaptureFixture
) -> None:
    with SimModem("quectel-lte") as modem:
        source = new_source(make_config(modem.port))
        # QCSQ with its RSSI printed without the sign (77 for -77 dBm), RSRP printed as a positive 95, and QENG
        # giving neither: the RSSI comes from +CSQ instead, the RSRP from +CESQ
        modem.answers['AT+QENG="SERVINGCELL"'] = None
        modem.answers["AT+QCSQ"] = ('+QCSQ: "LTE",77,95,170,-11',)

        with caplog.at_level(logging.DEBUG, logger="agent.sources.cellular"):
            (first,) = collect(source)
            collect(source)

        assert first.fields["rssi_dbm"] == modem.csq[0] * 2 - 113 and first.fields["rssi_dbm"] < 0
        assert first.fields["rsrp_dbm"] < 0
        assert sorted(source.take_dropped()) == sorted([("AT+QCSQ", "rssi_dbm"), ("AT+QCSQ", "rsrp_dbm")] * 2)
        assert source.take_dropped() == []
        warnings = [r.getMessage() for r in caplog.records
                    if r.levelno == logging.WARNING and "dropped" in r.getMessage()]
        assert sorted(warnings) == [  # once per command and field, not at every poll
            "modem viettel: AT+QCSQ: rsrp_dbm = 95 dBm dropped: outside what is physically possible [-156, -31]",
            "modem viettel: AT+QCSQ: rssi_dbm = 77 dBm dropped: outside what is physically possible [-125, -25]"]


def test_a_poll_that_gives_no_value_publishes_no_reading_and_is_counted(
    new_source: Callable[[CellularConfig], CellularSource], caplog: pytest.LogCaptureFixture
) -> None:
    with SimModem("generic") as modem:
        source = new_source(make_config(modem.port))
        modem.csq, modem.cesq, modem.cops, modem.cereg = (99, 99), (99, 99, 255, 255, 255, 255), "+COPS: 0", None

        with caplog.at_level(logging.WARNING, logger="agent.sources.cellular"):
            assert collect(source) == [] and collect(source) == []

        assert source.take_empty() == 2 and source.take_empty() == 0
        assert len([r for r in caplog.records if "no cellular reading" in r.getMessage()]) == 1
