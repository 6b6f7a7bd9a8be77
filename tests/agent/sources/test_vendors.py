"""Vendor AT parsers and the interpretation of one poll, fed with the strings modems print.

The Quectel strings are the EG25 example, Quectel's own EN-DC worked example and the RM5xx NR SA log lines; the
SIMCom ones are the examples found in SIMCom's manual and public parsers; the Sierra dump follows the EM7455
key table (its TAC and cell id decimals are made consistent with the hex). Expected values are worked out by
hand in the comments, from the layouts in the vendors' manuals, not by the code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest

from agent.sources.at import ATParseError
from agent.sources.vendors import (
    NrLeg,
    Qcsq,
    Qnwinfo,
    Reading,
    Rejected,
    Reply,
    Scales,
    ServingCell,
    detect_vendor,
    gstatus_fields,
    guard,
    interpret,
    parse_cpsi,
    parse_gstatus,
    parse_qcsq,
    parse_qeng,
    parse_qnwinfo,
    poll_commands,
    to_sample,
)
from zonewatch.wire import FieldValue

# The type of every field, whatever the vendor: InfluxDB refuses a field whose type changes.
FIELD_TYPES: dict[str, type] = {
    "rsrp_dbm": int, "rssi_dbm": int, "nr_rsrp_dbm": int,
    "rsrq_db": float, "sinr_db": float, "nr_rsrq_db": float, "nr_sinr_db": float,
    "registered": bool, "pci": int, "enb_id": int, "gnb_id": int, "sector": int, "rscp_dbm": int, "ecio_db": float,
}  # fmt: skip


def assert_field_types(fields: dict[str, FieldValue]) -> None:
    """Fail if a field is unknown or has another type than FIELD_TYPES says."""
    assert {name: type(value) for name, value in fields.items()} == {name: FIELD_TYPES[name] for name in fields}


# --- vendor detection --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "vendor"),
    [
        ("Quectel\nEC25\nRevision: EC25EFAR06A06M4G", "quectel"),
        ("Quectel", "quectel"),  # AT+CGMI
        ("Manufacturer: SIMCOM INCORPORATED\nModel: SIMCOM_SIM7600E-H\nRevision: SIM7600M22_V2.0", "simcom"),
        ("SIMCOM INCORPORATED", "simcom"),
        ("Manufacturer: Sierra Wireless, Incorporated\nModel: EM7455", "sierra"),
        ("Telit\nLE910C4-EU\n25.30.224", None),
        ("", None),
    ],
)
def test_detect_vendor(answer: str, vendor: str | None) -> None:
    assert detect_vendor(answer) == vendor


POLL3 = ("AT+CSQ", "AT+CESQ", "AT+COPS?", "AT+CREG?", "AT+CGREG?", "AT+CEREG?")  # the 3GPP commands of a poll


@pytest.mark.parametrize(
    ("vendor", "nr", "commands"),
    [
        ("generic", False, ("AT+CSQ", "AT+CESQ", "AT+COPS?", "AT+CREG?", "AT+CGREG?", "AT+CEREG?")),
        ("generic", True, ("AT+CSQ", "AT+CESQ", "AT+COPS?", "AT+CREG?", "AT+CGREG?", "AT+CEREG?", "AT+C5GREG?")),
        ("quectel", False, (*POLL3, 'AT+QENG="servingcell"', "AT+QCSQ", "AT+QNWINFO")),
        ("simcom", True, (*POLL3, "AT+C5GREG?", "AT+CPSI?")),
        ("sierra", False, ("AT+CSQ", "AT+CESQ", "AT+COPS?", "AT+CREG?", "AT+CGREG?", "AT+CEREG?", "AT!GSTATUS?")),
    ],
)  # fmt: skip
def test_poll_commands(vendor: str, nr: bool, commands: tuple[str, ...]) -> None:
    assert poll_commands(vendor, nr) == commands  # type: ignore[arg-type]


# --- Quectel AT+QENG="servingcell" -------------------------------------------------------------------------------

EG25_LTE = '+QENG: "servingcell","NOCONN","LTE","FDD",214,01,7676A09,188,6300,20,3,3,603,-104,-9,-78,11,23'
NSA = [
    '+QENG: "servingcell","NOCONN"',
    '+QENG: "LTE","FDD",460,01,5F1EA15,12,1650,3,5,5,DE10,-99,-12,-67,11,9,230,-',
    '+QENG: "NR5G-NSA",460,01,747,-71,13,-11,627264,78,12,1',
]
SA = '+QENG: "servingcell","NOCONN","NR5G-SA","TDD",460,00,170C23000,901,46550B,504990,41,-,-54,-10,16,-,-'


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        # EC2x LTE, 18 fields: MCC 214 MNC 01, ECI 7676A09, PCI 188, EARFCN 6300, band 20, TAC 0x603,
        # RSRP -104, RSRQ -9, RSSI -78, SINR 11 (<= 40: already dB)
        pytest.param([EG25_LTE], ServingCell(
            rat="lte", state="NOCONN", registered=True, plmn="214-01", band="B20", area=0x603, cell_id=0x7676A09,
            pci=188, channel=6300, rsrp_dbm=-104, rsrq_db=-9, rssi_dbm=-78, sinr_db=11), id="ec2x-lte"),
        # RM5xx LTE, 20 fields: CQI 9 and tx power 230 sit before srxlev and are not read
        pytest.param(['+QENG: "servingcell","CONNECT","LTE","FDD",460,01,5F1EA15,12,1650,3,5,5,DE10,-99,-12,-67,11,'
                      '9,230,-'], ServingCell(
            rat="lte", state="CONNECT", registered=True, plmn="460-01", band="B3", area=0xDE10, cell_id=0x5F1EA15,
            pci=12, channel=1650, rsrp_dbm=-99, rsrq_db=-12, rssi_dbm=-67, sinr_db=11), id="rm5xx-lte"),
        # EN-DC: the LTE line has no "servingcell",<state> prefix; the NSA line is PCI 747, RSRP -71, then
        # SINR 13 before RSRQ -11, ARFCN 627264, band n78
        pytest.param(NSA, ServingCell(
            rat="nr5g-nsa", state="NOCONN", registered=True, plmn="460-01", band="B3", area=0xDE10,
            cell_id=0x5F1EA15, pci=12, channel=1650, rsrp_dbm=-99, rsrq_db=-12, rssi_dbm=-67, sinr_db=11,
            nr=NrLeg(pci=747, band="n78", arfcn=627264, rsrp_dbm=-71, sinr_db=13, rsrq_db=-11)), id="endc"),
        # EN-DC with NR not attached: 65535 and -32768 are unknown, so the modem is on LTE only
        pytest.param([NSA[0], NSA[1], '+QENG: "NR5G-NSA",460,00,65535,-32768,-32768,-32768'], ServingCell(
            rat="lte", state="NOCONN", registered=True, plmn="460-01", band="B3", area=0xDE10, cell_id=0x5F1EA15,
            pci=12, channel=1650, rsrp_dbm=-99, rsrq_db=-12, rssi_dbm=-67, sinr_db=11), id="endc-nr-lost"),
        # NR SA (the RM5xx log): NCI 170C23000, PCI 901, TAC 46550B, ARFCN 504990, band n41, bandwidth "-",
        # RSRP -54, RSRQ -10, SINR 16 (RSRQ before SINR here)
        pytest.param([SA], ServingCell(
            rat="nr5g-sa", state="NOCONN", registered=True, plmn="460-00", band="n41", area=0x46550B,
            cell_id=0x170C23000, pci=901, channel=504990, rsrp_dbm=-54, rsrq_db=-10, sinr_db=16), id="nr-sa"),
        # firmware that pads the MCC with a space
        pytest.param(['+QENG: "servingcell","CONNECT","NR5G-SA","TDD", 454,12,170C23000,901,46550B,504990,41,-,'
                      '-54,-10,16,-,-'], ServingCell(
            rat="nr5g-sa", state="CONNECT", registered=True, plmn="454-12", band="n41", area=0x46550B,
            cell_id=0x170C23000, pci=901, channel=504990, rsrp_dbm=-54, rsrq_db=-10, sinr_db=16), id="mcc-space"),
        # WCDMA: LAC 3AB2, cell B55EEFF, UARFCN 3037, RSCP -94, Ec/Io -15
        pytest.param(['+QENG: "servingcell","NOCONN","WCDMA",515,03,3AB2,B55EEFF,3037,352,1,-94,-15,-,-,-,-,-'],
                     ServingCell(rat="umts", state="NOCONN", registered=True, plmn="515-03", area=0x3AB2,
                                 cell_id=0xB55EEFF, channel=3037, rscp_dbm=-94, ecio_db=-15), id="wcdma"),
        # GSM, built from the EC2x manual's field list: LAC 550A, cell 2BDA, BSIC 23, ARFCN 94, rxlev -62 dBm
        pytest.param(['+QENG: "servingcell","NOCONN","GSM",460,00,550A,2BDA,23,94,0,-62,255,255,0,38,38,1,-,-,-,-,'
                      '-,-,-,-,-,"-"'], ServingCell(rat="gsm", state="NOCONN", registered=True, plmn="460-00",
                                                    area=0x550A, cell_id=0x2BDA, channel=94, rssi_dbm=-62), id="gsm"),
        # searching: no cell at all, and no service
        pytest.param(['+QENG: "servingcell","SEARCH"'], ServingCell(rat=None, state="SEARCH", registered=False),
                     id="search"),
        # limited service (emergency only): camped on a cell, but not registered
        pytest.param(['+QENG: "servingcell","LIMSRV","LTE","FDD",452,04,5F1EA15,12,1650,3,5,5,1A2B,-121,-19,-95,-'
                      ',-'], ServingCell(rat="lte", state="LIMSRV", registered=False, plmn="452-04", band="B3",
                                         area=0x1A2B, cell_id=0x5F1EA15, pci=12, channel=1650, rsrp_dbm=-121,
                                         rsrq_db=-19, rssi_dbm=-95, sinr_db=None), id="limsrv"),
    ],
)  # fmt: skip
def test_parse_qeng(lines: list[str], expected: ServingCell) -> None:
    assert parse_qeng(lines) == expected


@pytest.mark.parametrize(
    ("sinr", "db"),
    [
        ("11", 11),  # <= 40: dB as printed
        ("-5", -5),
        ("40", 40),
        ("41", -11.8),  # > 40 is the 0..250 code: 41/5 - 20 = -11.8
        ("150", 10.0),  # 150/5 - 20 = 10
        ("250", 30.0),
        ("255", None),  # unknown
        ("-", None),
    ],
)
def test_qeng_lte_sinr_units(sinr: str, db: float | None) -> None:
    line = f'+QENG: "servingcell","NOCONN","LTE","FDD",452,04,5F1EA15,12,1650,3,5,5,1A2B,-95,-11,-65,{sinr},30'
    assert parse_qeng([line]).sinr_db == (pytest.approx(db) if db is not None else None)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['+QENG: "servingcell","NOCONN","LTE","FDD",214,01,7676A09,188,6300,20,3,3,603,-104,-9,-78,11'],
         '15 (EC2x) or 17 (RM5xx) fields after "LTE", got 14'),
        (['+QENG: "servingcell","NOCONN","CDMA",1,2,3'], "NR5G-SA, WCDMA or GSM, got 'CDMA'"),
        (['+QENG: "servingcell"'], 'with a state'),
        ([NSA[0], NSA[2]], 'the "LTE" anchor line before the "NR5G-NSA" line'),
        (['+QENG: "servingcell","NOCONN","NR5G-SA","TDD",460,00,170C23000,901,46550B,504990,41,-,-54'],
         "12 fields after the RAT, got 10"),
        (['+QENG: "servingcell","NOCONN","LTE","FDD",214,01,7676A09,188,6300,20,3,3,603,high,-9,-78,11,23'],
         "RSRP as a number, got 'high'"),
        (['+QENG: "servingcell","NOCONN","LTE","FDD",214,01,7676AZ9,188,6300,20,3,3,603,-104,-9,-78,11,23'],
         "cell id as hexadecimal digits, got '7676AZ9'"),
        # numbers no modem prints: an infinite one (float() reads 1.0e999 as inf), one beyond 64 bits, 5000 digits
        (['+QENG: "servingcell","NOCONN","LTE","FDD",214,01,7676A09,188,6300,20,3,3,603,-104,-9,-78,-1.0e999,23'],
         "SINR as a finite number within 64 bits, got '-1.0e999'"),
        (['+QENG: "servingcell","NOCONN","LTE","FDD",214,01,7676A09,188,6300,20,3,3,603,-1' + "0" * 30 + ',-9,-78,1,2'],
         "RSRP as a number of at most 20 digits"),
        (['+QENG: "servingcell","NOCONN","LTE","FDD",214,01,7676A09,' + "9" * 5000 + ",6300,20,3,3,603,-104,-9,-78,1"
          + ",2"],
         "PCI as a decimal integer within 64 bits"),
        (['+QENG: "servingcell","NOCONN","LTE","FDD",214,01,' + "F" * 300 + ',188,6300,20,3,3,603,-104,-9,-78,1,2'],
         "cell id of at most 64 bits, got 300 hexadecimal digits"),
        (["+CSQ: 18,99"], "expected '+QENG:"),
    ],
)  # fmt: skip
def test_parse_qeng_rejects(lines: list[str], message: str) -> None:
    with pytest.raises(ATParseError, match=re.escape(message)):
        parse_qeng(lines)


# --- Quectel AT+QCSQ, AT+QNWINFO --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # LTE: RSSI -69, RSRP -102, SINR code 150 -> 150/5 - 20 = 10 dB, RSRQ -12
        ('+QCSQ: "LTE",-69,-102,150,-12', Qcsq(sysmode="LTE", rssi_dbm=-69, rsrp_dbm=-102, sinr_db=10.0,
                                                rsrq_db=-12)),
        ('+QCSQ: "LTE",-65,-95,0,-11', Qcsq(sysmode="LTE", rssi_dbm=-65, rsrp_dbm=-95, sinr_db=-20.0, rsrq_db=-11)),
        ('+QCSQ: "LTE",-65,-95,250,-11', Qcsq(sysmode="LTE", rssi_dbm=-65, rsrp_dbm=-95, sinr_db=30.0,
                                               rsrq_db=-11)),
        ('+QCSQ: "LTE",-65,-95,255,-11', Qcsq(sysmode="LTE", rssi_dbm=-65, rsrp_dbm=-95, sinr_db=None,
                                               rsrq_db=-11)),  # unknown
        # the NR5G SINR's unit differs between firmware: not read
        ('+QCSQ: "NR5G",-54,16,-10', Qcsq(sysmode="NR5G", rsrp_dbm=-54, rsrq_db=-10)),
        ('+QCSQ: "WCDMA",-70,-85,-6', Qcsq(sysmode="WCDMA", rssi_dbm=-70, rscp_dbm=-85, ecio_db=-6)),
        ('+QCSQ: "GSM",-70', Qcsq(sysmode="GSM", rssi_dbm=-70)),
        ('+QCSQ: "NOSERVICE"', Qcsq(sysmode="NOSERVICE")),
    ],
)  # fmt: skip
def test_parse_qcsq(line: str, expected: Qcsq) -> None:
    assert parse_qcsq(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('+QCSQ: "LTE",-69,-102,251,-12', "LTE SINR code 0..250, got 251"),
        ('+QCSQ: "LTE",-69', "4 fields after the RAT, got 1"),
        ('+QCSQ: "GSM",1.0e999', "RSSI as a finite number within 64 bits, got '1.0e999'"),
        ('+QCSQ: "NR5G",-90,1' + "0" * 30 + '.5,-11', "SINR as a finite number within 64 bits"),
        ('+QENG: "LTE",-69', "expected '+QCSQ:"),
    ],
)
def test_parse_qcsq_rejects(line: str, message: str) -> None:
    with pytest.raises(ATParseError, match=re.escape(message)):
        parse_qcsq(line)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('+QNWINFO: "FDD LTE","46692","LTE BAND 7",3050',
         Qnwinfo(act="FDD LTE", rat="lte", plmn="466-92", band="B7", channel=3050)),
        ('+QNWINFO: "TDD NR5G","99970","NR5G BAND 78",641280',
         Qnwinfo(act="TDD NR5G", rat="nr5g", plmn="999-70", band="n78", channel=641280)),
        ('+QNWINFO: "WCDMA","45202","WCDMA 2100",10788',
         Qnwinfo(act="WCDMA", rat="umts", plmn="452-02", band=None, channel=10788)),
        ('+QNWINFO: "FDD LTE","310410","LTE BAND 2",900',
         Qnwinfo(act="FDD LTE", rat="lte", plmn="310-410", band="B2", channel=900)),
        ("+QNWINFO: No Service", Qnwinfo(act="No Service")),
    ],
)  # fmt: skip
def test_parse_qnwinfo(line: str, expected: Qnwinfo) -> None:
    assert parse_qnwinfo(line) == expected


# --- SIMCom AT+CPSI? ------------------------------------------------------------------------------------------

def _fields_of(cell: ServingCell) -> dict[str, object]:
    return {name: getattr(cell, name) for name in ServingCell.__dataclass_fields__}


CPSI_LTE = "+CPSI: LTE,Online,460-11,0x5A1E,187214780,257,EUTRAN-BAND3,1850,5,5,-94,-850,-545,15"
CPSI_LTE_CELL = ServingCell(
    # RSRQ -94 tenths = -9.4 dB, RSRP -850 = -85.0 dBm, RSSI -545 = -54.5 dBm; RSSNR 15 kept as dB
    rat="lte", state="Online", plmn="460-11", area=0x5A1E, cell_id=187214780, pci=257, band="B3", channel=1850,
    # RSSNR 15 is no dB: SIMCom's manual gives SINR = 2 * RSSNR - 20 = 10 dB
    rsrq_db=-9.4, rsrp_dbm=-85.0, rssi_dbm=-54.5, sinr_db=10,
)  # fmt: skip


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param([CPSI_LTE], CPSI_LTE_CELL, id="lte"),
        # NR SA: RSRP -770 = -77.0 dBm, RSRQ -110 = -11.0 dB, SNR 290 = 29.0 dB
        pytest.param(["+CPSI: NR5G_SA,Online,242-12,0x765D,4955280,0,NR5G_BAND78,640704,-770,-110,290"],
                     ServingCell(rat="nr5g-sa", state="Online", plmn="242-12", area=0x765D, cell_id=4955280, pci=0,
                                 band="n78", channel=640704, rsrp_dbm=-77.0, rsrq_db=-11.0, sinr_db=29.0), id="nr-sa"),
        # EN-DC: the NR5G_NSA line follows; PCI 393, n41, RSRP -75.0, RSRQ -10.5, SNR 18.0
        pytest.param([CPSI_LTE, "+CPSI: NR5G_NSA,393,NR5G_BAND41,504990,-750,-105,180"],
                     ServingCell(**{**_fields_of(CPSI_LTE_CELL), "rat": "nr5g-nsa", "nr": NrLeg(
                         pci=393, band="n41", arfcn=504990, rsrp_dbm=-75.0, rsrq_db=-10.5, sinr_db=18.0)}),
                     id="endc"),
        # older firmware prints "NR5G," for the same line
        pytest.param([CPSI_LTE, "+CPSI: NR5G,393,NR5G_BAND41,504990,-750,-105,180"],
                     ServingCell(**{**_fields_of(CPSI_LTE_CELL), "rat": "nr5g-nsa", "nr": NrLeg(
                         pci=393, band="n41", arfcn=504990, rsrp_dbm=-75.0, rsrq_db=-10.5, sinr_db=18.0)}),
                     id="endc-old-firmware"),
        # NR leg not attached: 65535 and -32768/32768 are unknown, so the modem is on LTE
        pytest.param([CPSI_LTE, "+CPSI: NR5G_NSA,65535,NR5G_BAND41,504990,-32768,32768,-32768"], CPSI_LTE_CELL,
                     id="endc-nr-lost"),
        pytest.param(["+CPSI: NO SERVICE,Online"], ServingCell(rat=None, state="NO SERVICE", registered=False),
                     id="no-service"),
        # WCDMA and GSM: only operator, LAC and cell id (the signal fields' units are not confirmed)
        pytest.param(["+CPSI: WCDMA,Online,452-02,0xA809,11122855,WCDMA IMT 2000,279,10663,0,1.5,62,33,52,500"],
                     ServingCell(rat="umts", state="Online", plmn="452-02", area=0xA809, cell_id=11122855),
                     id="wcdma"),
        pytest.param(["+CPSI: GSM,Online,452-04,0x182d,12401,27 EGSM 900,-64,2110,42-42"],
                     ServingCell(rat="gsm", state="Online", plmn="452-04", area=0x182D, cell_id=12401, rssi_dbm=-64),
                     id="gsm"),
    ],
)  # fmt: skip
def test_parse_cpsi(lines: list[str], expected: ServingCell) -> None:
    assert parse_cpsi(lines) == expected


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["+CPSI: LTE,Online,460-11,0x5A1E"], "13 fields after the RAT, got 3"),
        (["+CPSI: CDMA,Online,460-03"], "NR5G_SA, WCDMA, GSM or NO SERVICE, got 'CDMA'"),
        (["+CPSI: NR5G_SA,Online,242-12,0x765D,4955280,0,NR5G_BAND78,640704,-770,-110,290",
          "+CPSI: NR5G_NSA,393,NR5G_BAND41,504990,-750,-105,180"], "only an NR5G_NSA line after the LTE line"),
        (["+CPSI: LTE,Online,460-11,0x5A1E,187214780,257,EUTRAN-BAND3,1850,5,5,-94,-8.50x,-545,15"],
         "RSRP as a number, got '-8.50x'"),
    ],
)  # fmt: skip
def test_parse_cpsi_rejects(lines: list[str], message: str) -> None:
    with pytest.raises(ATParseError, match=re.escape(message)):
        parse_cpsi(lines)


# --- Sierra AT!GSTATUS? -------------------------------------------------------------------------------------

T = "\t"
EM7455 = [
    "!GSTATUS: ",
    f"Current Time:  4527{T}{T}Temperature: 37",
    f"Reset Counter: 1{T}{T}Mode:        ONLINE         ",
    f"System mode:   LTE        {T}PS state:    Attached     ",
    f"LTE band:      B3     {T}{T}LTE bw:      20 MHz  ",
    f"LTE Rx chan:   1300{T}{T}LTE Tx chan: 19300",
    "LTE CA state:  INACTIVE",
    f"EMM state:     Registered     {T}Normal Service ",
    "RRC state:     RRC Idle       ",
    f"IMS reg state: No Srv  {T}{T}",
    "",
    f"PCC RxM RSSI:  -57{T}{T}RSRP (dBm):  -86",
    f"PCC RxD RSSI:  -61{T}{T}RSRP (dBm):  -91",
    f"Tx Power:      --{T}{T}TAC:         8C65 (35941)",
    f"RSRQ (dB):     -10.5{T}{T}Cell ID:     0A14666A (169109098)",
    "SINR (dB):      13.6",
]
# Main antenna RSRP -86 (not the diversity antenna's -91), RSSI -57; TAC 0x8C65; cell 0x0A14666A; EARFCN 1300.
EM7455_CELL = ServingCell(
    rat="lte", state="Registered", registered=True, band="B3", area=0x8C65, cell_id=0xA14666A, channel=1300,
    rsrp_dbm=-86, rssi_dbm=-57, rsrq_db=-10.5, sinr_db=13.6,
)  # fmt: skip


def test_gstatus_key_table_names_each_rsrp_after_its_antenna() -> None:
    table = gstatus_fields(EM7455)

    assert table["PCC RxM RSRP"] == "-86"
    assert table["PCC RxD RSRP"] == "-91"
    assert table["PCC RxM RSSI"] == "-57"
    assert table["EMM state"] == "Registered"
    assert table["Tx Power"] == "--"
    assert table["TAC"] == "8C65 (35941)"
    assert table["LTE bw"] == "20 MHz"
    assert table["LTE Tx chan"] == "19300"
    assert "RSRP (dBm)" not in table


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param(EM7455, EM7455_CELL, id="em7455"),
        # the same dump pasted from a terminal that turned the tabs into spaces
        pytest.param([line.replace(T, "    ") for line in EM7455], EM7455_CELL, id="tabs-as-spaces"),
        # other firmware names the RSRP keys itself
        pytest.param([
            "System mode:   LTE        \tPS state:    Attached",
            "LTE band:      B3\t\tLTE bw:      20 MHz",
            "PCC RxM RSSI:  -57\t\tPCC RxM RSRP:  -86",
            "PCC RxD RSSI:  -61\t\tPCC RxD RSRP:  -91",
        ], ServingCell(rat="lte", band="B3", rsrp_dbm=-86, rssi_dbm=-57), id="rsrp-keys-named"),
        # a 5G model on EN-DC: the NR5G keys carry the NR leg
        pytest.param([*EM7455, "NR5G band:     n41\t\tNR5G bw:     100 MHz", "NR5G Rx chan:  504990",
                      "NR5G RSRP (dBm): -78\t\tNR5G RSRQ (dB):  -11", "NR5G SINR (dB):  17.5"],
                     ServingCell(**{**_fields_of(EM7455_CELL), "rat": "nr5g-nsa", "nr": NrLeg(
                         band="n41", arfcn=504990, rsrp_dbm=-78, rsrq_db=-11, sinr_db=17.5)}), id="endc"),
        # a 5G model on LTE: the NR5G values read "---" (missing)
        pytest.param([*EM7455, "NR5G band:     ---\t\tNR5G bw:     ---", "NR5G RSRP (dBm): ---\t\tNR5G RSRQ (dB): ---",
                      "NR5G SINR (dB):  ---"], EM7455_CELL, id="nr-missing"),
        # no service: missing values and a deregistered EMM
        pytest.param(["!GSTATUS: ", "System mode:   No service", "EMM state:     Deregistered\tNo Service",
                      "PCC RxM RSSI:  -108\t\tRSRP (dBm):  ---", "RSRQ (dB):     ---\t\tCell ID:     ---"],
                     ServingCell(rat=None, state="Deregistered", registered=False, rssi_dbm=-108),
                     id="no-service"),
    ],
)  # fmt: skip
def test_parse_gstatus(lines: list[str], expected: ServingCell) -> None:
    assert parse_gstatus(lines) == expected


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["!GSTATUS: "], "'Key: value' lines"),
        (["System mode: LTE", "RSRQ (dB):     low"], "a number in the AT!GSTATUS? answer"),
        (["System mode: LTE", "TAC:  8G65 (35941)"], "TAC as hexadecimal digits, got '8G65'"),
        (["System mode: LTE", "SINR (dB):  " + "9" * 400 + ".0"], "a finite number within 64 bits in the AT!GSTATUS?"),
    ],
)
def test_parse_gstatus_rejects(lines: list[str], message: str) -> None:
    with pytest.raises(ATParseError, match=re.escape(message)):
        parse_gstatus(lines)


# --- one poll: which answer wins, registration, problems ---------------------------------------------------


def replies(*pairs: tuple[str, Sequence[str] | str]) -> list[Reply]:
    """Build replies: (command, lines) ends in OK; (command, "ERROR") is a command that failed."""
    out = []
    for command, lines in pairs:
        if isinstance(lines, str):
            out.append(Reply(command, [], final=lines))
        else:
            out.append(Reply(command, list(lines)))
    return out


LTE_QENG = '+QENG: "servingcell","NOCONN","LTE","FDD",452,04,5F1EA15,188,1650,3,5,5,1A2B,-95,-11,-65,5,30'


def test_vendor_values_win_over_3gpp_ones() -> None:
    result = interpret(replies(
        ("AT+CSQ", ["+CSQ: 18,99"]),  # -77 dBm
        ("AT+CESQ", ["+CESQ: 99,99,255,255,20,80"]),  # RSRQ -10, RSRP -61
        ("AT+COPS?", ['+COPS: 0,2,"45204",7']),
        ("AT+CEREG?", ['+CEREG: 2,1,"1A2B","5F1EA15",7']),
        ('AT+QENG="servingcell"', [LTE_QENG]),  # RSRP -95, RSRQ -11, RSSI -65, SINR 5
        ("AT+QCSQ", ['+QCSQ: "LTE",-65,-95,150,-11']),  # SINR code 150: 10 dB
        ("AT+QNWINFO", ['+QNWINFO: "FDD LTE","45204","LTE BAND 3",1650']),
    ), "quectel")  # fmt: skip

    assert replace(result.reading, origin=()) == Reading(
        rat="lte", plmn="452-04", band="B3", cell_id=0x5F1EA15, cell_kind="lte", pci=188, registered=True,
        rsrp_dbm=-95, rsrq_db=-11, rssi_dbm=-65,
        sinr_db=10.0,  # AT+QCSQ's documented code wins over QENG's firmware-dependent SINR
    )  # fmt: skip
    assert dict(result.reading.origin)["sinr_db"] == "AT+QCSQ"
    assert dict(result.reading.origin)["rsrp_dbm"] == 'AT+QENG="servingcell"'
    assert result.problems == () and result.usable


@pytest.mark.parametrize(
    ("cereg", "c5greg", "registered"),
    [
        ("+CEREG: 2,1", "+C5GREG: 2,0", True),  # LTE (or EN-DC anchor) registered
        ("+CEREG: 2,0", '+C5GREG: 2,1,"46550B","0000000170C23000",11,1,"01"', True),  # 5G SA
        ("+CEREG: 2,5", None, True),  # roaming
        ("+CEREG: 2,2", "+C5GREG: 2,2", False),  # searching on both
        ("+CEREG: 2,3", None, False),  # denied
        (None, '+C5GREG: 2,1,"46550B","0000000170C23000",11,1,"01"', True),
    ],
)
def test_registered_if_cereg_or_c5greg_says_so(cereg: str | None, c5greg: str | None, registered: bool) -> None:
    pairs: list[tuple[str, Sequence[str] | str]] = [("AT+CEREG?", [cereg] if cereg else "ERROR")]
    if c5greg is not None:
        pairs.append(("AT+C5GREG?", [c5greg]))

    assert interpret(replies(*pairs)).reading.registered is registered


def test_sa_cell_comes_from_c5greg_and_splits_as_nr() -> None:
    reading = interpret(replies(
        ("AT+COPS?", ['+COPS: 0,2,"46000",12']),
        ("AT+CEREG?", ["+CEREG: 2,0"]),
        ("AT+C5GREG?", ['+C5GREG: 2,1,"46550B","0000000170C23000",11,1,"01"']),
    )).reading  # fmt: skip

    # COPS AcT 12 only says NG-RAN; the registered +C5GREG (AcT 11) says SA and gives the NCI
    assert (reading.rat, reading.cell_id, reading.cell_kind) == ("nr5g", 0x170C23000, "nr")
    sample = to_sample(reading, now_ns=1, gnb_id_bits=22)
    # 22-bit gNB id: 0x170C23000 >> 14 = 377608, cell = 0x170C23000 & 0x3FFF = 12288
    assert (sample.fields["gnb_id"], sample.fields["sector"]) == (377608, 12288)
    assert sample.tags["cell"] == "170C23000"


def test_vendor_state_decides_registration_only_without_cereg_and_c5greg() -> None:
    only_qeng = interpret(replies(('AT+QENG="servingcell"', ['+QENG: "servingcell","SEARCH"'])))
    with_cereg = interpret(replies(('AT+QENG="servingcell"', ['+QENG: "servingcell","SEARCH"']),
                                   ("AT+CEREG?", ["+CEREG: 2,1"])))
    nothing_says = interpret(replies(("AT+CSQ", ["+CSQ: 18,99"])))

    assert only_qeng.reading.registered is False
    assert with_cereg.reading.registered is True
    assert nothing_says.reading.registered is None
    assert "registered" not in to_sample(nothing_says.reading, now_ns=1).fields


def test_problems_say_what_gave_nothing() -> None:
    result = interpret([
        Reply("AT+CSQ", ["+CSQ: 45,99"]),
        Reply("AT+CESQ", [], final="+CME ERROR: 100"),
        Reply("AT+COPS?", []),
        Reply("AT+CEREG?", ["+QIND: \"csq\",18,99", '+CEREG: 2,1,"1A2B","5F1EA15",7']),
        Reply("AT+CPSI?", [CPSI_LTE]),
    ], "quectel")  # fmt: skip

    assert [(p.command, p.kind, str(p)) for p in result.problems] == [
        ("AT+CSQ", "unparsed", "cannot parse '+CSQ: 45,99': expected rssi 0..31 or 99 (unknown), got 45"),
        ("AT+CESQ", "error", "answered +CME ERROR: 100"),
        ("AT+COPS?", "missing", "answered without a +COPS: line"),
        ("AT+CEREG?", "unread", 'an answer to AT+CEREG? that is not read (not a signal, operator or registration '
                                'answer)'),
        ("AT+CPSI?", "unread", "a simcom answer, but the modem is read as quectel"),
    ]  # fmt: skip
    assert result.answered == frozenset()
    assert result.usable  # the +CEREG line still counted
    assert result.reading.registered is True


def test_a_poll_of_errors_only_is_not_usable() -> None:
    result = interpret(replies(("AT+CSQ", "ERROR"), ("AT+CESQ", "ERROR")))

    assert not result.usable
    assert result.reading == Reading()


# --- the sample ---------------------------------------------------------------------------------------------


def test_sample_leaves_unknown_values_out_and_keeps_each_field_type() -> None:
    reading = Reading(rat="lte", plmn="452-04", rsrp_dbm=-85.0, rsrq_db=-9, sinr_db=15, rssi_dbm=-54.4,
                      registered=True, cell_id=187214780, cell_kind="lte", nr_rsrp_dbm=-75.6, nr_rsrq_db=-10.5)

    sample = to_sample(reading, now_ns=7, modem="viettel", carrier="452-01")

    assert sample.tags == {"carrier": "452-04", "modem": "viettel", "rat": "lte", "cell": "B28ABBC"}
    assert sample.fields == {
        "rsrp_dbm": -85, "rsrq_db": -9.0, "sinr_db": 15.0, "rssi_dbm": -54, "registered": True,
        "enb_id": 731307, "sector": 188,  # 187214780 = 0xB28ABBC: eNB 0xB28AB, cell 0xBC
        "nr_rsrp_dbm": -76, "nr_rsrq_db": -10.5,
    }  # fmt: skip
    assert_field_types(sample.fields)
    assert sample.time_ns == 7


def test_configured_carrier_is_used_only_when_the_modem_gives_no_plmn() -> None:
    assert to_sample(Reading(), now_ns=1, carrier="452-04").tags == {"carrier": "452-04"}
    assert to_sample(Reading(plmn="452-01"), now_ns=1, carrier="452-04").tags == {"carrier": "452-01"}
    assert to_sample(Reading(), now_ns=1).tags == {}


def test_a_line_with_a_number_no_modem_prints_is_listed_and_the_other_answers_are_kept() -> None:
    result = interpret(replies(("AT+CSQ", ["+CSQ: 18,99"]), ("AT+QCSQ", ['+QCSQ: "LTE",-65,-1.0e999,150,-10'])))

    assert [str(p) for p in result.problems] == [
        "cannot parse '+QCSQ: \"LTE\",-65,-1.0e999,150,-10': expected RSRP as a finite number within 64 bits, "
        "got '-1.0e999'"]
    assert to_sample(result.reading, now_ns=1).fields == {"rssi_dbm": -77}  # from +CSQ: 2 * 18 - 113


def test_sample_leaves_out_what_no_field_or_tag_may_hold() -> None:
    # Whatever the backend: a value that is not finite or not within 64 bits is missing, as is the cell tag (and
    # the site split) of a cell id that is negative or beyond 64 bits (16 hexadecimal digits).
    reading = Reading(rat="lte", rsrp_dbm=float("-inf"), rsrq_db=float("nan"), sinr_db=1e300, rssi_dbm=-(10**400),
                      nr_rsrp_dbm=2e19, nr_sinr_db=10**30, pci=2**64, cell_id=2**64, cell_kind="lte")
    assert to_sample(reading, now_ns=1) == to_sample(Reading(rat="lte"), now_ns=1)
    assert to_sample(Reading(cell_id=-5, cell_kind="lte"), now_ns=1).tags == {}
    # values that fit in 64 bits but no modem can measure are left out as well (the catalogue's bounds)
    edge = to_sample(Reading(rsrp_dbm=-9.2e18, pci=2**63 - 1, cell_id=2**64 - 1, cell_kind="lte"), now_ns=1)
    assert edge.tags == {"cell": "F" * 16} and edge.fields == {}


def test_a_negative_simcom_cell_id_gives_no_cell() -> None:
    cell = parse_cpsi(["+CPSI: LTE,Online,460-11,0x5A1E,-5,257,EUTRAN-BAND3,1850,5,5,-94,-850,-545,15"])
    assert cell.cell_id == -5
    sample = to_sample(interpret(replies(("AT+CPSI?", [CPSI_LTE.replace("187214780", "-5")]))).reading, now_ns=1)
    assert "cell" not in sample.tags and "enb_id" not in sample.fields


@pytest.mark.parametrize("band", ["\u00b2", "\u0663", "9" * 5000])  # digits to str.isdigit, not to int()
def test_a_band_that_is_no_plain_number_is_unknown(band: str) -> None:
    assert parse_qeng([EG25_LTE.replace(",6300,20,", f",6300,{band},")]).band is None


def test_umts_cell_is_not_split_into_an_lte_site() -> None:
    reading = interpret(replies(('AT+QENG="servingcell"', [
        '+QENG: "servingcell","NOCONN","WCDMA",515,03,3AB2,B55EEFF,3037,352,1,-94,-15,-,-,-,-,-']))).reading

    sample = to_sample(reading, now_ns=1)

    assert sample.tags == {"carrier": "515-03", "rat": "umts", "cell": "B55EEFF"}
    assert "enb_id" not in sample.fields and "sector" not in sample.fields


PARSERS: list[tuple[Callable[[str], object], str]] = [
    (parse_qcsq, '+QCSQ: "LTE",-69,-102,150,-12'),
    (parse_qnwinfo, '+QNWINFO: "FDD LTE","46692","LTE BAND 7",3050'),
    (lambda line: parse_qeng([line]), EG25_LTE),
    (lambda line: parse_cpsi([line]), CPSI_LTE),
]


@pytest.mark.parametrize(("parser", "line"), PARSERS)
def test_parsers_tolerate_line_endings_and_spaces(parser: Callable[[str], object], line: str) -> None:
    assert parser(line.replace(": ", ":") + "\r\n") == parser(line)


# --- issue 15: each class of misread value ----------------------------------------------------------------------
# Lines written from the field lists of the vendors' AT manuals (Quectel EC2x/BG9x/RM5xx QENG and QCSQ, SIMCom
# SIM7500/SIM7600 and SIM7080 CPSI, 3GPP TS 27.007 +CESQ/+CREG); expected values worked out by hand.

EG25_LTE_SINR_CODE = '+QENG: "servingcell","NOCONN","LTE","FDD",452,04,5F1EA15,188,1650,3,5,5,1A2B,-95,-11,-65,150,20'


def test_a_simcom_rssnr_is_a_code_not_db() -> None:
    # SIMCom: SINR = 2 * RSSNR - 20, SINR -20..30 dB: RSSNR 0 -> -20 dB, 25 -> 30 dB, 7 -> -6 dB
    for rssnr, sinr in ((0, -20), (25, 30), (7, -6)):
        cell = parse_cpsi([CPSI_LTE.rsplit(",", 1)[0] + f",{rssnr}"])
        assert cell.sinr_db == sinr


def test_a_quectel_qeng_lte_sinr_code_is_learnt_per_modem() -> None:
    scales = Scales()
    # 150 cannot be dB (SINR tops out near 40): the 0..250 code, 150/5 - 20 = 10 dB
    assert parse_qeng([EG25_LTE_SINR_CODE], scales).sinr_db == 10
    # once the modem printed the code, a small value is the code too: 30/5 - 20 = -14 dB (not +30 dB)
    assert parse_qeng([EG25_LTE_SINR_CODE.replace(",150,20", ",30,20")], scales).sinr_db == -14
    # a modem never seen printing the code: 30 is dB, as later firmware prints it
    assert parse_qeng([EG25_LTE_SINR_CODE.replace(",150,20", ",30,20")], Scales()).sinr_db == 30


def test_a_value_printed_without_its_sign_is_dropped_never_stored() -> None:
    result = interpret(replies(
        ("AT+CSQ", ["+CSQ: 18,99"]),  # 2 * 18 - 113 = -77 dBm
        ("AT+QCSQ", ['+QCSQ: "LTE",77,-95,150,-11']),  # RSSI printed without its minus sign
    ), "quectel")  # fmt: skip

    assert result.reading.rssi_dbm == -77 and dict(result.reading.origin)["rssi_dbm"] == "AT+CSQ"
    assert result.reading.rejected == (Rejected("rssi_dbm", "AT+QCSQ", 77),)
    assert "AT+QCSQ: rssi_dbm = 77 dBm dropped: outside what is physically possible [-125, -25]" == str(
        result.reading.rejected[0])
    assert to_sample(result.reading, now_ns=1).fields["rssi_dbm"] == -77


def test_every_impossible_value_is_left_out_whatever_the_backend() -> None:
    reading = Reading(rat="lte", rsrp_dbm=95, rsrq_db=-9, sinr_db=150, rscp_dbm=-10, ecio_db=6.5, pci=2000,
                      origin=(("rsrp_dbm", "mmcli --signal-get"),))
    checked = guard(reading)
    assert (checked.rsrp_dbm, checked.rsrq_db, checked.sinr_db, checked.pci) == (None, -9, None, None)
    assert [(r.field, r.command) for r in checked.rejected] == [
        ("rsrp_dbm", "mmcli --signal-get"), ("sinr_db", "unknown"), ("rscp_dbm", "unknown"), ("ecio_db", "unknown"),
        ("pci", "unknown")]
    assert to_sample(reading, now_ns=1).fields == {"rsrq_db": -9.0}


RM500Q_ENDC = ['+QENG: "servingcell","NOCONN"',
               '+QENG: "LTE","FDD",452,04,5F1EA15,12,1650,3,5,5,1A2B,-99,-12,-67,11,9,230,-']


def test_early_rm500q_nr_sinr_in_tenths_is_detected_and_remembered() -> None:
    scales = Scales(revision="RM500QGLAAR03A01M4G")
    # 180 is no SINR in dB (beyond 40) but 18.0 dB in tenths, as early RM500Q firmware printed it
    first = parse_qeng([*RM500Q_ENDC, '+QENG: "NR5G-NSA",452,04,500,-75,180,-11'], scales)
    assert first.nr is not None and first.nr.sinr_db == 18.0 and scales.nr_sinr_tenths
    # the same firmware's 35 is then 3.5 dB
    later = parse_qeng([*RM500Q_ENDC, '+QENG: "NR5G-NSA",452,04,500,-75,35,-11'], scales)
    assert later.nr is not None and later.nr.sinr_db == 3.5
    # current firmware (dB, per the RM5xx manual): 35 is 35 dB
    fresh = parse_qeng([*RM500Q_ENDC, '+QENG: "NR5G-NSA",452,04,500,-75,35,-11'], Scales())
    assert fresh.nr is not None and fresh.nr.sinr_db == 35


def test_cesq_nr_fields_give_the_reading_on_nr_sa() -> None:
    # +CSQ always 99 on NR SA; +CESQ's Rel-15 fields: ss_rsrq 60 -> 60/2 - 43.5 = -13.5 dB,
    # ss_rsrp 87 -> 87 - 157 = -70 dBm, ss_sinr 86 -> 86/2 - 23.5 = 19.5 dB
    reading = interpret(replies(
        ("AT+CSQ", ["+CSQ: 99,99"]),
        ("AT+CESQ", ["+CESQ: 99,99,255,255,255,255,60,87,86"]),
        ("AT+COPS?", ['+COPS: 0,2,"45204",11']),
        ("AT+C5GREG?", ['+C5GREG: 2,1,"46550B","0000000170C23000",11,1,"01"']),
    )).reading  # fmt: skip

    assert (reading.rat, reading.rsrp_dbm, reading.rsrq_db, reading.sinr_db) == ("nr5g-sa", -70, -13.5, 19.5)
    assert to_sample(reading, now_ns=1).fields["rsrp_dbm"] == -70


def test_cesq_nr_fields_are_the_nr_leg_on_endc() -> None:
    # LTE rsrq 20 -> -10 dB, rsrp 80 -> -61 dBm; NR ss_rsrp 70 -> -87 dBm, ss_rsrq 64 -> -11.5 dB, ss_sinr 70 -> 11.5
    reading = interpret(replies(
        ("AT+CESQ", ["+CESQ: 99,99,255,255,20,80,64,70,70"]),
        ("AT+COPS?", ['+COPS: 0,2,"45204",13']),
    )).reading  # fmt: skip

    assert (reading.rsrp_dbm, reading.nr_rsrp_dbm, reading.nr_rsrq_db, reading.nr_sinr_db) == (-61, -87, -11.5, 11.5)


@pytest.mark.parametrize(
    ("lines", "rat"),
    [
        # BG95: "eMTC" with the LTE fields; SINR 80 is the code: 80/5 - 20 = -4 dB
        (['+QENG: "servingcell","NOCONN","eMTC","FDD",452,04,5F1EA15,188,1650,3,0,0,1A2B,-100,-12,-75,80,20'], "lte-m"),
        (['+QENG: "servingcell","NOCONN","CAT-M","FDD",452,04,5F1EA15,188,1650,3,0,0,1A2B,-100,-12,-75,80,20'],
         "lte-m"),  # BG96
        (['+QENG: "servingcell","NOCONN","NBIoT","FDD",452,04,5F1EA15,188,1650,3,0,0,1A2B,-100,-12,-75,80,20'],
         "nbiot"),
        (['+QENG: "servingcell","NOCONN","CAT-NB","FDD",452,04,5F1EA15,188,1650,3,0,0,1A2B,-100,-12,-75,80,20'],
         "nbiot"),
    ],
)
def test_lte_m_and_nb_iot_are_read_not_dropped(lines: list[str], rat: str) -> None:
    sample = to_sample(interpret(replies(('AT+QENG="servingcell"', lines))).reading, now_ns=1)
    assert sample.tags["rat"] == rat and sample.tags["carrier"] == "452-04"
    # ECI 0x5F1EA15: eNB 0x5F1EA = 389610, sector 0x15 = 21
    assert sample.fields == {"rsrp_dbm": -100, "rsrq_db": -12.0, "rssi_dbm": -75, "sinr_db": -4.0, "registered": True,
                             "pci": 188, "enb_id": 389610, "sector": 21}


@pytest.mark.parametrize(
    ("line", "sinr"),
    [('+QCSQ: "CAT-M1",-75,-100,100,-12', 0.0), ('+QCSQ: "CAT-NB1",-75,-100,150,-12', 10.0),
     ('+QCSQ: "eMTC",-75,-100,125,-12', 5.0), ('+QCSQ: "NBIoT",-75,-100,50,-12', -10.0)],
)  # code v -> v/5 - 20 dB
def test_qcsq_lte_m_and_nb_iot(line: str, sinr: float) -> None:
    assert parse_qcsq(line) == Qcsq(sysmode=line.split('"')[1].upper(), rssi_dbm=-75, rsrp_dbm=-100, sinr_db=sinr,
                                    rsrq_db=-12)


def test_simcom_lte_m_line() -> None:
    # SIM7080: "LTE CAT-M1" with the LTE fields; RSRP -1000 -> -100.0 dBm, RSSNR 10 -> 2*10 - 20 = 0 dB
    cell = parse_cpsi(["+CPSI: LTE CAT-M1,Online,452-04,0x1A2B,187214780,257,EUTRAN-BAND3,1850,0,0,-120,-1000,-750,10"])
    assert (cell.rat, cell.rsrp_dbm, cell.sinr_db, cell.plmn) == ("lte-m", -100, 0, "452-04")


def test_wcdma_rscp_and_ecio_are_kept() -> None:
    sample = to_sample(interpret(replies(('AT+QENG="servingcell"', [
        '+QENG: "servingcell","NOCONN","WCDMA",452,02,3AB2,B55EEFF,10663,279,1,-94,-15,-,-,-,-,-']))).reading,
        now_ns=1)
    assert sample.fields == {"rscp_dbm": -94, "ecio_db": -15.0, "registered": True}
    # +CESQ on WCDMA: rscp 36 -> 36 - 121 = -85 dBm, ecno 37 -> 37/2 - 24.5 = -6 dB
    assert to_sample(interpret(replies(("AT+CESQ", ["+CESQ: 99,99,36,37,255,255"]))).reading, now_ns=1).fields == {
        "rscp_dbm": -85, "ecio_db": -6.0}


def test_a_plmn_printed_as_integers_still_gives_the_carrier() -> None:
    # a test network's MCC 001 printed as the integer 1
    cell = parse_qeng(['+QENG: "servingcell","NOCONN","LTE","FDD",1,1,5F1EA15,188,1650,3,5,5,1A2B,-95,-11,-65,5,20'])
    assert cell.plmn == "001-01"
    # a 3-digit MNC printed as an integer (310-010 as 310,10): the string of +QNWINFO wins
    reading = interpret(replies(
        ('AT+QENG="servingcell"', ['+QENG: "servingcell","NOCONN","LTE","FDD",310,10,5F1EA15,188,1650,3,5,5,1A2B,'
                                   '-95,-11,-65,5,20']),
        ("AT+QNWINFO", ['+QNWINFO: "FDD LTE","310010","LTE BAND 3",1650']),
    )).reading  # fmt: skip
    assert reading.plmn == "310-010"


@pytest.mark.parametrize(
    ("lines", "registered", "cell"),
    [
        # no +CEREG (ERROR): +CREG says registered, its cell is an LTE ECI (AcT 7)
        ([("AT+CREG?", ['+CREG: 2,1,"1A2B","5F1EA15",7']), ("AT+CEREG?", "ERROR")], True, 0x5F1EA15),
        ([("AT+CGREG?", ["+CGREG: 2,5"]), ("AT+CEREG?", "ERROR")], True, None),  # roaming, on GPRS
        ([("AT+CREG?", ["+CREG: 2,2"]), ("AT+CGREG?", ["+CGREG: 2,2"])], False, None),  # searching
        # the most specific answer that says registered wins: EPS registered, CS not
        ([("AT+CREG?", ["+CREG: 2,0"]), ("AT+CEREG?", ['+CEREG: 2,1,"1A2B","5F1EA15",7'])], True, 0x5F1EA15),
    ],
)
def test_registration_from_whichever_answers(lines: list[tuple[str, Sequence[str] | str]], registered: bool,
                                             cell: int | None) -> None:
    reading = interpret(replies(*lines)).reading
    assert (reading.registered, reading.cell_id) == (registered, cell)


def test_a_poll_with_no_value_makes_no_sample_fields() -> None:
    result = interpret(replies(
        ("AT+CSQ", ["+CSQ: 99,99"]), ("AT+CESQ", ["+CESQ: 99,99,255,255,255,255"]), ("AT+COPS?", ["+COPS: 0"]),
    ))  # fmt: skip
    assert result.usable  # the modem answered ...
    assert to_sample(result.reading, now_ns=1).fields == {}  # ... but gave nothing to publish
