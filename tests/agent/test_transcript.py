"""``zonewatch-agent parse-transcript`` and the pure transcript reader behind it.

Each case in ``tests/agent/sources/testdata/cellular/<case>/`` holds ``transcript.txt`` (what a modem printed,
with CR LF line ends), ``expected.json`` (what the command prints, worked out by hand; the arithmetic is below)
and optionally ``options.json`` (``--vendor``/``--carrier``). Hand arithmetic for the cases:

- generic-lte-echo: +CSQ 18 -> 2*18-113 = -77 dBm; +CESQ rsrq 20 -> 20/2-20 = -10 dB, rsrp 80 -> 80-141 = -61 dBm;
  ECI 5F1EA15 -> eNB 0x5F1EA = 389610, sector 0x15 = 21; Telit in ATI is no vendor read here -> generic.
- quectel-eg25-lte: QENG RSRP -104, RSRQ -9, RSSI -78, PCI 188, band 20; QCSQ SINR code 155 -> 155/5-20 = 11 dB;
  ECI 7676A09 -> eNB 0x7676A = 485226, sector 9.
- quectel-rm500q-nsa: Quectel's EN-DC example: anchor RSRP -99, RSRQ -12, RSSI -67, SINR 11, PCI 12, band 3;
  NR leg RSRP -71, SINR 13, RSRQ -11 (SINR first in the NSA line).
- quectel-rm5xx-sa-two-polls: NCI 170C23000 -> 24-bit gNB 0x170C23 = 1510435, cell 0; +C5GREG registered while
  +CEREG is not; the second QENG starts a second poll, registered from its CONNECT state.
- quectel-nsa-nr-not-attached: 65535/-32768 in the NSA line: NR not attached, so rat lte and no nr_* fields.
- quectel-searching: nothing but "not registered"; the carrier comes from --carrier 452-04.
- simcom-sim7600-lte: tenths: RSRQ -94 -> -9.4, RSRP -850 -> -85, RSSI -545 -> -54.5, rounded half to even -> -54;
  cell 187214780 = 0xB28ABBC -> eNB 0xB28AB = 731307, sector 0xBC = 188; no +CEREG, so no "registered".
- simcom-sim8200-nsa: NR5G_NSA RSRP -750 -> -75, RSRQ -105 -> -10.5, SNR 180 -> 18; RSSI -553 -> -55.3 -> -55.
- sierra-em7455-lte: main-antenna RSRP -86 (not -91), RSSI -57; cell 0A14666A -> eNB 0xA1466 = 660582, 0x6A = 106;
  "EMM state: Registered" gives registered.
- echo-off-two-polls: no echo; the second +CSQ starts poll 2: +CESQ rsrq 24 -> -8 dB, rsrp 70 -> -71 dBm; the
  +CEREG URC (no <n>) gives ECI 5F1EA16 -> sector 0x16 = 22; "RDY", "+CPIN: READY", the bad +CSQ 45 and the
  +CME ERROR are listed with their line numbers.
- read-as-generic: with --vendor generic, the +QCSQ line is listed, not read; +CSQ 20 -> -73 dBm.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent import cli
from agent.transcript import parse_transcript
from tests.agent.sources.test_vendors import assert_field_types

CASES_DIR = Path(__file__).parent / "sources" / "testdata" / "cellular"
CASES = sorted(p.parent.name for p in CASES_DIR.glob("*/transcript.txt"))


def options(case: str) -> dict[str, str]:
    path = CASES_DIR / case / "options.json"
    return json.loads(path.read_text()) if path.exists() else {}


def expected(case: str) -> dict[str, Any]:
    return json.loads((CASES_DIR / case / "expected.json").read_text())


def test_there_are_cases() -> None:
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES)
def test_parse_transcript(case: str) -> None:
    with open(CASES_DIR / case / "transcript.txt", newline="") as file:  # keep the modem's CR LF
        text = file.read()
    assert "\r\n" in text

    result = parse_transcript(text, **options(case))  # type: ignore[arg-type]

    assert result.to_json() == expected(case)
    for sample in result.samples:
        assert_field_types(sample.fields)


@pytest.mark.parametrize("case", CASES)
def test_parse_transcript_command(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = [arg for key, value in options(case).items() for arg in (f"--{key}", value)]

    code = cli.main(["parse-transcript", str(CASES_DIR / case / "transcript.txt"), *args])

    assert code == 0
    assert json.loads(capsys.readouterr().out) == expected(case)


def test_command_needs_no_configuration_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    transcript = tmp_path / "capture.txt"
    transcript.write_text("AT+CSQ\n+CSQ: 18,99\nOK\n")

    code = cli.main(["-c", str(tmp_path / "no-such-agent.yaml"), "parse-transcript", str(transcript)])

    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["samples"] == [{"measurement": "cellular", "tags": {}, "fields": {"rssi_dbm": -77}}]


def test_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nothing = tmp_path / "nothing.txt"
    nothing.write_text("AT+CGSN\n867962040012345\nOK\n")

    assert cli.main(["parse-transcript", str(nothing)]) == 1  # no reading in it
    out = json.loads(capsys.readouterr().out)
    assert out["samples"] == []
    assert out["unparsed"] == [{"line": 2, "text": "867962040012345", "command": "AT+CGSN", "reason":
                                "an answer to AT+CGSN that is not read (not a signal, operator or registration "
                                "answer)"}]  # fmt: skip

    assert cli.main(["parse-transcript", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_command_rejects_a_carrier_that_is_no_plmn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["parse-transcript", str(tmp_path / "x.txt"), "--carrier", "45204"])

    assert done.value.code == 2
    assert "expected a PLMN like 452-04 (MCC-MNC), got '45204'" in capsys.readouterr().err


def test_help_explains_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])

    out = capsys.readouterr().out
    assert "parse-transcript FILE [--vendor auto|generic|quectel|simcom|sierra] [--carrier 452-04]" in out
    assert "Needs no" in out and "configuration file" in out


# --- how a transcript is split ----------------------------------------------------------------------------------


def test_a_repeated_command_starts_a_new_poll() -> None:
    text = "AT+CSQ\n+CSQ: 18,99\nOK\nAT+CSQ\n+CSQ: 20,99\nOK\nAT+CSQ\n+CSQ: 99,99\nOK\n"

    result = parse_transcript(text)

    # -77, -73, then unknown: the third poll gives nothing, so it makes no sample (not an empty one), and says so
    assert [s.fields for s in result.samples] == [{"rssi_dbm": -77}, {"rssi_dbm": -73}]
    assert [(p.line, p.kind) for p in result.unparsed] == [(8, "missing")]
    assert "gave no value" in result.unparsed[0].reason


def test_lowercase_commands_and_blank_lines_are_read() -> None:
    text = "\n\nat+cesq\r\n\r\n+CESQ: 99,99,255,255,20,80\r\n\r\nOK\r\n\r\n"

    (sample,) = parse_transcript(text).samples

    assert sample.fields == {"rsrp_dbm": -61, "rsrq_db": -10.0}


def test_auto_vendor_comes_from_ati_before_vendor_answers() -> None:
    text = 'ATI\nQuectel\nEC25\nOK\nAT+CSQ\n+CSQ: 18,99\nOK\n'

    assert parse_transcript(text).vendor == "quectel"
    assert parse_transcript("AT+CPSI?\n+CPSI: NO SERVICE,Online\nOK\n").vendor == "simcom"
    assert parse_transcript("AT+CSQ\n+CSQ: 18,99\nOK\n").vendor == "generic"
    assert parse_transcript("AT+CSQ\n+CSQ: 18,99\nOK\n", vendor="sierra").vendor == "sierra"


def test_transcript_cut_off_mid_answer_still_reads_what_is_there() -> None:
    text = 'AT+QENG="servingcell"\n+QENG: "servingcell","NOCONN","LTE","FDD",452,04,5F1EA15,12,1650,3,5,5,1A2B,' \
           "-95,-11,-65,14,30\n"

    (sample,) = parse_transcript(text, carrier="452-01").samples

    assert sample.tags == {"carrier": "452-04", "rat": "lte", "band": "B3", "cell": "5F1EA15"}
    assert sample.fields["rsrp_dbm"] == -95


def test_the_mmcli_command_wrapper_is_read() -> None:
    # what `mmcli -m 0 --command=...` prints: the answer lines inside response: '...', no final OK
    text = (
        "$ mmcli -m 0 --command='AT+QENG=\"servingcell\"'\n"
        "response: '+QENG: \"servingcell\",\"NOCONN\"\n"
        "+QENG: \"LTE\",\"FDD\",452,04,5F1EA15,12,1650,3,5,5,1A2B,-99,-12,-67,11,9,230,-\n"
        "+QENG: \"NR5G-NSA\",452,04,500,-75,180,-11'\n"
        "$ mmcli -m 0 --command=+cops?\n"
        "response: '+COPS: 0,2,\"45204\",13'\n"
    )
    result = parse_transcript(text)

    (sample,) = result.samples
    assert result.unparsed == () and result.vendor == "quectel"
    assert sample.tags == {"carrier": "452-04", "rat": "nr5g-nsa", "band": "B3", "cell": "5F1EA15"}
    # LTE anchor: RSRP -99, RSRQ -12, RSSI -67, SINR 11 dB; NR leg: RSRP -75, RSRQ -11, SINR 180 in tenths: 18.0 dB
    assert sample.fields == {"rsrp_dbm": -99, "rsrq_db": -12.0, "sinr_db": 11.0, "rssi_dbm": -67, "registered": True,
                             "pci": 12, "enb_id": 389610, "sector": 21, "nr_rsrp_dbm": -75, "nr_rsrq_db": -11.0,
                             "nr_sinr_db": 18.0}


def test_mmcli_json_is_read() -> None:
    data = Path(__file__).parent / "sources" / "testdata" / "cellular" / "mmcli" / "lte-home"
    text = (data / "modem.json").read_text() + "\n" + (data / "signal.json").read_text()

    (sample,) = parse_transcript(text).samples

    # as the ModemManager backend reads it: lte.rsrp -95, rsrq -11, rssi -65, snr 13.2; operator-code 45204
    assert sample.tags == {"carrier": "452-04", "rat": "lte"}
    assert sample.fields == {"rsrp_dbm": -95, "rsrq_db": -11.0, "sinr_db": 13.2, "rssi_dbm": -65, "registered": True}


def test_broken_mmcli_json_is_reported() -> None:
    result = parse_transcript('{"modem": {"generic": ')
    assert result.samples == () and result.unparsed[0].kind == "unparsed"
