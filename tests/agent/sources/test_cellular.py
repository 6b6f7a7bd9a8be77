"""CellularSource against the simulated modem over a real pty (pyserial on both ends, no sleeps)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

import zwconf
from agent import wire
from agent.sim.modem import SimModem
from agent.sources import SourceError
from agent.sources.cellular import CellularConfig, CellularSource

NOW = 1_764_289_990_000_000_000
TIMEOUT = 0.3
SETUP = ["ATE0", "AT+COPS=3,2", "AT+CEREG=2"]
POLL = ["AT+CSQ", "AT+CESQ", "AT+COPS?", "AT+CEREG?"]


def make_config(port: str, extra: str = "") -> CellularConfig:
    """Load a cellular config the way the agent does."""
    text = f"type: cellular\nname: viettel\nport: {port}\ntimeout: {round(TIMEOUT * 1000)}ms\n{extra}"
    return zwconf.load(CellularConfig, text, "agent.yaml")


def collect(source: CellularSource, now_ns: int = NOW) -> list[wire.Sample]:
    """Run one poll to completion."""
    return asyncio.run(source.collect(now_ns))


@pytest.fixture
def modem() -> Iterator[SimModem]:
    with SimModem() as sim:
        yield sim


@pytest.fixture
def new_source() -> Iterator[Callable[[CellularConfig], CellularSource]]:
    made: list[CellularSource] = []

    def new(config: CellularConfig) -> CellularSource:
        made.append(CellularSource(config))
        return made[-1]

    yield new
    for source in made:
        asyncio.run(source.close())


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

    assert modem.commands == SETUP + POLL + POLL


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
    assert modem.commands == SETUP + POLL + SETUP + POLL


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
        "AT+CEREG?: answered +CME ERROR: 10)"
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
        assert second.commands == SETUP + POLL


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


def test_close_without_collect_is_harmless(source: CellularSource) -> None:
    asyncio.run(source.close())


def test_config_defaults() -> None:
    config = zwconf.load(CellularConfig, "type: cellular\nname: viettel\nport: /dev/ttyUSB2\n")

    assert (config.baudrate, config.carrier, config.interval, config.timeout) == (115200, None, 30.0, 2.0)


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
    ],
)
def test_bad_config_names_the_key(text: str, message: str) -> None:
    with pytest.raises(zwconf.ConfigError) as caught:
        zwconf.load(CellularConfig, text, "agent.yaml")

    assert str(caught.value) == message
