"""Parsers for 3GPP AT answers, fed with the strings real modems print.

The quirky registration strings are ModemManager's test strings; the COPS strings are from a Quectel RM5xx
log on NR SA. Expected values are worked out by hand from TS 27.007 in the comments, not by the code.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from agent.sources.at import (
    ATParseError,
    Cesq,
    Cops,
    Csq,
    LteCellId,
    NrCellId,
    Registration,
    format_plmn,
    parse_cesq,
    parse_cops,
    parse_creg,
    parse_csq,
    rat_name,
    split_cell_id,
    split_nr_cell_id,
)

# --- +CSQ: rssi dBm = 2*v - 113; 99 = unknown ---------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("+CSQ: 18,99", Csq(rssi_dbm=-77, ber=None)),  # 36 - 113; LTE modems report ber 99
        ("+CSQ: 0,0", Csq(rssi_dbm=-113, ber=0)),  # <= -113 dBm
        ("+CSQ: 1,7", Csq(rssi_dbm=-111, ber=7)),
        ("+CSQ: 31,99", Csq(rssi_dbm=-51, ber=None)),  # >= -51 dBm
        ("+CSQ: 99,99", Csq(rssi_dbm=None, ber=None)),  # no signal known: nothing, not -113
        ("+CSQ:23,99\r\n", Csq(rssi_dbm=-67, ber=None)),  # no space, line ending left on
    ],
)
def test_parse_csq(line: str, expected: Csq) -> None:
    assert parse_csq(line) == expected


# --- +CESQ: rxlev-111, rscp-121, ecno/2-24.5, rsrq/2-20, rsrp-141; 99/255 = unknown -------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # LTE: rsrq 20 -> -10 dB, rsrp 80 -> -61 dBm; GSM and UMTS fields unknown
        ("+CESQ: 99,99,255,255,20,80", Cesq(None, None, None, None, -10.0, -61)),
        # UMTS: rscp 95 -> -26 dBm, ecno 40 -> -4.5 dB
        ("+CESQ: 99,99,95,40,255,255", Cesq(None, None, -26, -4.5, None, None)),
        # GSM: rxlev 10 -> -101 dBm, ber class 6
        ("+CESQ: 10,6,255,255,255,255", Cesq(-101, 6, None, None, None, None)),
        ("+CESQ:10,6,255,255,255,255", Cesq(-101, 6, None, None, None, None)),  # no space after the colon
        # range ends: rsrp 0 -> -141 (< -140), 97 -> -44 (>= -44); rsrq 0 -> -20, 34 -> -3
        ("+CESQ: 99,99,255,255,0,0", Cesq(None, None, None, None, -20.0, -141)),
        ("+CESQ: 99,99,255,255,34,97", Cesq(None, None, None, None, -3.0, -44)),
        ("+CESQ: 99,99,255,255,255,255", Cesq(None, None, None, None, None, None)),
        # odd rsrq raw gives a half dB: 25 -> -7.5
        ("+CESQ: 99,99,255,255,25,46", Cesq(None, None, None, None, -7.5, -95)),
    ],
)
def test_parse_cesq(line: str, expected: Cesq) -> None:
    assert parse_cesq(line) == expected


def test_cesq_unknown_rsrp_is_none_not_a_number() -> None:
    result = parse_cesq("+CESQ: 99,99,255,255,20,255")
    assert result.rsrp_dbm is None
    assert result.rsrq_db == -10.0


# --- +COPS: mode[,format,oper[,AcT]] ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # Quectel RM5xx on NR SA, the same network in all three formats; the double space is the operator's
        ('+COPS: 0,0,"CHINA  MOBILE",12', Cops(0, 0, "CHINA  MOBILE", None, 12)),
        ('+COPS: 0,1,"CMCC",12', Cops(0, 1, "CMCC", None, 12)),
        ('+COPS: 0,2,"46000",12', Cops(0, 2, "46000", "460-00", 12)),
        # Viettel on LTE: MCC 452 + 2-digit MNC 04
        ('+COPS: 0,2,"45204",7', Cops(0, 2, "45204", "452-04", 7)),
        # 6 digits: MCC 310 + 3-digit MNC 410
        ('+COPS: 1,2,"310410",2', Cops(1, 2, "310410", "310-410", 2)),
        ('+COPS: 0,2,"45201"', Cops(0, 2, "45201", "452-01", None)),  # no AcT
        ("+COPS: 0,2,45202,7", Cops(0, 2, "45202", "452-02", 7)),  # unquoted
        ("+COPS: 0", Cops(0, None, None, None, None)),  # not registered: mode only
        ("+COPS: 2", Cops(2, None, None, None, None)),  # deregistered
    ],
)
def test_parse_cops(line: str, expected: Cops) -> None:
    assert parse_cops(line) == expected


@pytest.mark.parametrize(
    ("act", "rat"),
    [
        (0, "gsm"), (1, "gsm"), (3, "gsm"),
        (2, "umts"), (4, "umts"), (5, "umts"), (6, "umts"),
        (7, "lte"), (9, "nbiot"), (10, "lte"),
        (11, "nr5g-sa"), (12, "nr5g"), (13, "nr5g-nsa"),
        (None, None), (42, None),
    ],
)  # fmt: skip
def test_rat_name(act: int | None, rat: str | None) -> None:
    assert rat_name(act) == rat


def test_cops_rat_comes_from_act() -> None:
    assert parse_cops('+COPS: 0,2,"46000",12').rat == "nr5g"
    assert parse_cops('+COPS: 0,2,"45204",13').rat == "nr5g-nsa"
    assert parse_cops("+COPS: 0").rat is None


# --- +CREG / +CGREG / +CEREG / +C5GREG --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # quoted and unquoted hex
        ('+CREG: 2,1,"CE00","01CEAD8F"', Registration("CREG", 2, 1, 0xCE00, 0x1CEAD8F, None)),
        ("+CREG: 2,1,8BE3,2BAF", Registration("CREG", 2, 1, 0x8BE3, 0x2BAF, None)),
        # leading zeros on n and stat, lower-case hex, no space after the colon
        ('+CREG:002,001,"18d8","ffff"', Registration("CREG", 2, 1, 0x18D8, 0xFFFF, None)),
        # spaces inside fields
        ("+CEREG: 2,1, 1F00, 79D903 ,7", Registration("CEREG", 2, 1, 0x1F00, 0x79D903, 7)),
        # a vendor's extra RAC (20) between TAC and cell id
        ("+CEREG: 2,1, 1F00, 20 ,79D903 ,7", Registration("CEREG", 2, 1, 0x1F00, 0x79D903, 7)),
        # two-digit stat: 10 = CSFB not preferred, roaming
        ('+CEREG: 2,10,"8d83","671f98a",7', Registration("CEREG", 2, 10, 0x8D83, 0x671F98A, 7)),
        # 5GS with NSSAI fields after AcT 11 (NR SA)
        ("+C5GREG: 2,1,1F00,79D903,11,6,ABCDEF", Registration("C5GREG", 2, 1, 0x1F00, 0x79D903, 11)),
        # Quectel 5G SA: 24-bit TAC, 36-bit NCI zero-padded to 16 hex digits
        (
            '+C5GREG: 2,1,"46550B","0000000170C23000",11,1,"01"',
            Registration("C5GREG", 2, 1, 0x46550B, 0x170C23000, 11),
        ),
        # standard +CGREG carries <rac> after <AcT>
        ('+CGREG: 2,1,"1A2B","00C3A1F2",2,"0F"', Registration("CGREG", 2, 1, 0x1A2B, 0xC3A1F2, 2)),
        # answers without location (n = 0 or 1)
        ("+CEREG: 0,1", Registration("CEREG", 0, 1, None, None, None)),
        ("+CREG: 1,5", Registration("CREG", 1, 5, None, None, None)),
        # empty optional fields
        ("+CEREG: 2,0,,,", Registration("CEREG", 2, 0, None, None, None)),
        # unsolicited result codes: no <n>
        ("+CREG: 5", Registration("CREG", None, 5, None, None, None)),
        ('+CREG: 1,"CE00","01CEAD8F"', Registration("CREG", None, 1, 0xCE00, 0x1CEAD8F, None)),
        ('+CEREG: 1,"1A2B","5F1EA15",7', Registration("CEREG", None, 1, 0x1A2B, 0x5F1EA15, 7)),
        ("+CEREG: 1,1F00,79D903,7", Registration("CEREG", None, 1, 0x1F00, 0x79D903, 7)),
        ("+C5GREG: 1,1F00,79D903,11,6,ABCDEF", Registration("C5GREG", None, 1, 0x1F00, 0x79D903, 11)),
    ],
)
def test_parse_creg(line: str, expected: Registration) -> None:
    assert parse_creg(line) == expected


@pytest.mark.parametrize(("stat", "registered"), [
    (0, False),  # not registered, not searching
    (1, True),  # home
    (2, False),  # searching
    (3, False),  # denied
    (4, False),  # unknown
    (5, True),  # roaming
    (6, True), (7, True),  # SMS only, home / roaming
    (8, False),  # emergency only
    (9, True), (10, True),  # CSFB not preferred, home / roaming
    (11, False),  # attached for emergency bearers only
])  # fmt: skip
def test_registered_states(stat: int, registered: bool) -> None:
    assert parse_creg(f'+CEREG: 2,{stat},"1A2B","5F1EA15",7').registered is registered
    assert parse_creg(f"+CREG: {stat}").registered is registered


def test_registration_rat() -> None:
    assert parse_creg('+CEREG: 2,1,"1A2B","5F1EA15",7').rat == "lte"
    assert parse_creg('+C5GREG: 2,1,"46550B","0000000170C23000",11,1,"01"').rat == "nr5g-sa"
    assert parse_creg("+CREG: 2,1,8BE3,2BAF").rat is None


# --- cell identity ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("eci", "expected"),
    [
        (0x5F1EA15, LteCellId(enb_id=389610, sector=21)),  # 0x5F1EA = 389610, 0x15 = 21
        (187214780, LteCellId(enb_id=731307, sector=188)),  # SIMCom prints decimal: 0xB28AB, 0xBC
        (0x79D903, LteCellId(enb_id=31193, sector=3)),  # 0x79D9 = 31193
        (0xFFFFFFF, LteCellId(enb_id=0xFFFFF, sector=0xFF)),  # the 28-bit maximum
    ],
)
def test_split_cell_id(eci: int, expected: LteCellId) -> None:
    assert split_cell_id(eci) == expected


@pytest.mark.parametrize("eci", [0x170C23000, -1])
def test_split_cell_id_rejects_what_is_not_an_eci(eci: int) -> None:
    with pytest.raises(ValueError, match="28 bits"):
        split_cell_id(eci)


@pytest.mark.parametrize(
    ("nci", "bits", "expected"),
    [
        # 0x170C23000 (the Quectel SA log's NCI): 24-bit gNB = 0x170C23 = 1510435, 12-bit cell = 0x000
        (0x170C23000, 24, NrCellId(gnb_id=1510435, sector=0)),
        # 22 bits: gNB = 0x170C23000 >> 14 = 0x5C308 = 377608, cell = low 14 bits = 0x3000 = 12288
        (0x170C23000, 22, NrCellId(gnb_id=377608, sector=12288)),
        # 32 bits: gNB = 0x170C2300 = 268435456 + 117440512 + 786432 + 8192 + 768 = 386671360, cell = low 4 bits
        (0x170C23000, 32, NrCellId(gnb_id=386671360, sector=0)),
        # 0x00B2C1D45: 24-bit gNB = 0x00B2C1 = 45761, cell = 0xD45 = 3397; 28-bit gNB = 0x00B2C1D = 732189, 0x45 = 69
        (0x00B2C1D45, 24, NrCellId(gnb_id=45761, sector=3397)),
        (0x00B2C1D45, 28, NrCellId(gnb_id=732189, sector=69)),
        (0xFFFFFFFFF, 24, NrCellId(gnb_id=0xFFFFFF, sector=0xFFF)),  # the 36-bit maximum
    ],
)
def test_split_nr_cell_id(nci: int, bits: int, expected: NrCellId) -> None:
    assert split_nr_cell_id(nci, bits) == expected


@pytest.mark.parametrize(
    ("nci", "bits", "message"),
    [
        (1 << 36, 24, "36 bits"),
        (-1, 24, "36 bits"),
        (0x170C23000, 21, "22 to 32 bits long, got 21"),
        (0x170C23000, 33, "22 to 32 bits long, got 33"),
    ],
)
def test_split_nr_cell_id_rejects(nci: int, bits: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_nr_cell_id(nci, bits)


@pytest.mark.parametrize(
    ("mcc", "mnc", "plmn"),
    [
        ("452", "04", "452-04"),
        ("452", "4", "452-04"),  # a modem that drops the leading zero
        (" 454", "12", "454-12"),  # Quectel firmware that pads the MCC with a space
        ("310", "410", "310-410"),
        ('"460"', '"00"', "460-00"),
        ("-", "-", None),
        ("45", "04", None),
        ("452", "1234", None),
    ],
)
def test_format_plmn(mcc: str, mnc: str, plmn: str | None) -> None:
    assert format_plmn(mcc, mnc) == plmn


def test_5g_sa_registration_counts_as_registered() -> None:
    # A 5G SA modem is registered on 5GS (+C5GREG stat 1) while +CEREG says not registered (stat 0).
    assert parse_creg('+C5GREG: 2,1,"46550B","0000000170C23000",11,1,"01"').registered is True
    assert parse_creg("+CEREG: 2,0").registered is False
    assert parse_creg("+C5GREG: 2,0").registered is False  # EN-DC: NR is a leg of the LTE registration


# --- malformed lines: ATParseError quotes the line and says what was expected -----------------------------


@pytest.mark.parametrize(
    ("parser", "line", "message"),
    [
        (parse_csq, "+CSQ: 18", "cannot parse '+CSQ: 18': expected '+CSQ: <rssi 0-31 or 99>,<ber 0-7 or 99>"),
        (parse_csq, "+CSQ: 45,99", "cannot parse '+CSQ: 45,99': expected rssi 0..31 or 99 (unknown), got 45"),
        (parse_csq, "+CSQ: -5,99", "cannot parse '+CSQ: -5,99': expected '+CSQ: <rssi"),
        (parse_csq, "+CESQ: 18,99", "cannot parse '+CESQ: 18,99': expected '+CSQ:"),
        (parse_csq, "OK", "cannot parse 'OK': expected '+CSQ:"),
        (parse_cesq, "+CESQ: 99,99,255,255,20", "(6 values, got 5)"),
        (parse_cesq, "+CESQ: 99,99,255,255,35,80", "expected rsrq 0..34 or 255 (unknown), got 35"),
        (parse_cesq, "+CESQ: 99,99,255,255,20,98", "expected rsrp 0..97 or 255 (unknown), got 98"),
        (parse_cesq, "+CESQ: 99,99,255,255,20,-61", "with decimal values"),
        (parse_cops, '+COPS: 0,2,"4520",7', "expected a numeric operator of 5 or 6 digits (MCC+MNC)"),
        (parse_cops, '+COPS: 0,2,"Viettel",7', "got 'Viettel'"),
        (parse_cops, '+COPS: 0,3,"45204",7', "expected format 0 (long), 1 (short) or 2 (numeric), got 3"),
        (parse_cops, "+COPS: 9", "expected mode 0..4, got 9"),
        (parse_cops, '+COPS: 0,"45204"', "cannot parse '+COPS: 0,\"45204\"': expected '+COPS: <mode>"),
        (parse_creg, "+CEREG: 2,12", "cannot parse '+CEREG: 2,12': expected stat 0..11, got 12"),
        (parse_creg, '+CEREG: 2,1,"1G2B","5F1EA15",7', "expected area code (LAC/TAC) as hexadecimal digits"),
        (parse_creg, '+CEREG: 2,1,"1A2B","5F1EA15",LTE', "expected AcT as a decimal number, got 'LTE'"),
        (parse_creg, "+CEREG:", "with at least <stat>"),
        (parse_creg, "+COPS: 0", "expected '+CREG:', '+CGREG:', '+CEREG:' or '+C5GREG:'"),
        (parse_creg, "ERROR", "cannot parse 'ERROR'"),
        # garbled numbers: int() refuses strings of more than 4300 digits, and no field has more than 20
        (parse_csq, "+CSQ: " + "1" * 4301 + ",99", "with decimal values of at most 20 digits"),
        (parse_cesq, "+CESQ: 99,99,255,255,20," + "0" * 21, "with decimal values of at most 20 digits"),
        (parse_cops, "+COPS: " + "0" * 21, "expected '+COPS: <mode>"),
        (parse_cops, '+COPS: 0,2,"45204",' + "7" * 5000, "expected '+COPS: <mode>"),
        (parse_creg, "+CEREG: 2," + "1" * 5000, "expected stat as a decimal number of at most 20 digits, got 5000"),
        (parse_creg, '+CEREG: 2,1,"1A2B","1' + "0" * 16 + '",7', "expected cell id of at most 64 bits, got 17"),
    ],
)
def test_malformed_lines(parser: Callable[[str], object], line: str, message: str) -> None:
    with pytest.raises(ATParseError, match=re.escape(message)) as caught:
        parser(line)
    assert caught.value.line == line
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("line", "nr"),
    [
        # 27.007's Rel-15 fields, the reporting ranges of TS 38.133: SS-RSRQ from -43 dB in 0.5 dB steps,
        # SS-RSRP from -156 dBm in 1 dB steps, SS-SINR from -23 dB in 0.5 dB steps; step 0 ("below") the bottom
        ("+CESQ: 99,99,255,255,255,255,60,87,86", (-13.5, -70, 19.5)),
        ("+CESQ: 99,99,255,255,255,255,0,0,0", (-43.0, -156, -23.0)),
        ("+CESQ: 99,99,255,255,255,255,1,1,1", (-43.0, -156, -23.0)),
        ("+CESQ: 99,99,255,255,255,255,127,126,127", (20.0, -31, 40.0)),
        ("+CESQ: 99,99,255,255,20,80,255,255,255", (None, None, None)),  # LTE only: NR unknown
    ],
)
def test_parse_cesq_nr_fields(line: str, nr: tuple[float | None, int | None, float | None]) -> None:
    cesq = parse_cesq(line)
    assert (cesq.ss_rsrq_db, cesq.ss_rsrp_dbm, cesq.ss_sinr_db) == nr


def test_parse_cesq_rejects_an_nr_value_out_of_range() -> None:
    with pytest.raises(ATParseError, match="ss_rsrp 0..126"):
        parse_cesq("+CESQ: 99,99,255,255,255,255,60,127,86")


def test_an_mcc_printed_as_an_integer_gets_its_zeros_back() -> None:
    assert format_plmn("1", "1") == "001-01"  # the test network
    assert format_plmn("452", "4") == "452-04"
