"""Pure parsers for the 3GPP TS 27.007 answers a cellular modem gives (no I/O, standard library only).

Each parser takes one line as the modem printed it and returns a small frozen dataclass. Values the modem
marks as unknown (99, 255) become ``None``, never a number. A line that does not have the expected shape
raises ``ATParseError`` quoting the line and saying what was expected; so does a number of more than 20 digits
or a hexadecimal field of more than 64 bits (no modem prints one: the line is garbled).

Map::

    parse_csq(line)    "+CSQ: <rssi>,<ber>"                                -> Csq
    parse_cesq(line)   "+CESQ: <rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp>[,<ss_rsrq>,<ss_rsrp>,<ss_sinr>]" -> Cesq
    parse_cops(line)   "+COPS: <mode>[,<format>,<oper>[,<AcT>]]"           -> Cops
    parse_creg(line)   "+CREG/+CGREG/+CEREG/+C5GREG: [<n>,]<stat>[,...]"   -> Registration
    split_cell_id(eci) 28-bit LTE ECI                                      -> LteCellId (eNB, sector)
    split_nr_cell_id(nci, gnb_id_bits)  36-bit NR NCI                      -> NrCellId (gNB, sector)
    format_plmn(mcc, mnc) "452", "4" or "04" (an MCC printed as an integer: "1" -> "001") -> "452-04"
    rat_name(act)      3GPP access technology number                       -> "lte", "nr5g-sa", ...

Exceptions::

    ValueError
     └── ATParseError   a line that is not the answer the parser expects
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ATParseError",
    "Csq",
    "Cesq",
    "Cops",
    "Registration",
    "LteCellId",
    "NrCellId",
    "REGISTERED_STATES",
    "MAX_DIGITS",
    "parse_csq",
    "parse_cesq",
    "parse_cops",
    "parse_creg",
    "split_cell_id",
    "split_nr_cell_id",
    "format_plmn",
    "rat_name",
]


class ATParseError(ValueError):
    """A modem line that is not the answer the parser expects; the message quotes it."""

    def __init__(self, line: str, expected: str) -> None:
        super().__init__(f"cannot parse {line!r}: expected {expected}")
        self.line = line
        self.expected = expected


# Access technology (<AcT> in COPS, CREG, CEREG, C5GREG) -> rat tag value.
# 8 (EC-GSM-IoT) is a GSM variant and is reported as gsm.
_RAT: Final[dict[int, str]] = {
    0: "gsm",
    1: "gsm",
    3: "gsm",
    8: "gsm",
    2: "umts",
    4: "umts",
    5: "umts",
    6: "umts",
    7: "lte",
    9: "nbiot",
    10: "lte",  # E-UTRA connected to the 5G core
    11: "nr5g-sa",
    12: "nr5g",
    13: "nr5g-nsa",
}

#: Registration <stat> values that mean the modem has service (home, roaming, SMS-only, CSFB not preferred).
REGISTERED_STATES: Final = frozenset({1, 5, 6, 7, 9, 10})
_MAX_STAT: Final = 11  # 11 = attached for emergency bearer services only (RLOS): no service for us
_MAX_N: Final = 5  # <n> in a query answer: URC mode 0..5

_ECI_BITS: Final = 28
_NCI_BITS: Final = 36
_GNB_ID_BITS: Final = range(22, 33)  # TS 38.413: the gNB id is 22 to 32 bits of the NCI, chosen by the operator
#: Digits a decimal field may have: enough for any 64-bit value (and leading zeros), far below the 4300 digits
#: beyond which int() refuses a string.
MAX_DIGITS: Final = 20
_HEX_LIMIT: Final = 1 << 64  # a hex field (LAC, TAC, cell id) of more than 64 bits is garbage


@dataclass(frozen=True, slots=True)
class Csq:
    """Answer to ``AT+CSQ``: received signal strength and bit error rate class."""

    rssi_dbm: int | None
    ber: int | None


@dataclass(frozen=True, slots=True)
class Cesq:
    """Answer to ``AT+CESQ``, converted to dBm and dB; only the current RAT's values are known."""

    rxlev_dbm: int | None
    ber: int | None
    rscp_dbm: int | None
    ecno_db: float | None
    rsrq_db: float | None
    rsrp_dbm: int | None
    # Rel-15 NR fields (27.007 +CESQ, mapped as 38.133 reports SS-RSRQ, SS-RSRP and SS-SINR); None if absent
    ss_rsrq_db: float | None = None
    ss_rsrp_dbm: int | None = None
    ss_sinr_db: float | None = None


@dataclass(frozen=True, slots=True)
class Cops:
    """Answer to ``AT+COPS?``: selection mode and, when registered, the operator and access technology."""

    mode: int
    format: int | None
    operator: str | None  # as printed: long name, short name or MCCMNC digits
    plmn: str | None  # "452-04"; known only when the modem answered in numeric format (2)
    act: int | None

    @property
    def rat(self) -> str | None:
        """Return the rat tag value for the access technology, or None if unknown."""
        return rat_name(self.act)


@dataclass(frozen=True, slots=True)
class Registration:
    """Answer to ``AT+CREG?``/``+CGREG?``/``+CEREG?``/``+C5GREG?`` or the matching unsolicited code."""

    command: str  # "CREG", "CGREG", "CEREG" or "C5GREG"
    n: int | None  # URC mode; None for an unsolicited result code
    stat: int
    area: int | None  # LAC (2G/3G) or TAC (LTE 16-bit, NR 24-bit)
    cell_id: int | None  # CI, LTE ECI (28-bit) or NR NCI (36-bit)
    act: int | None

    @property
    def registered(self) -> bool:
        """Return True if ``stat`` means the modem has service."""
        return self.stat in REGISTERED_STATES

    @property
    def rat(self) -> str | None:
        """Return the rat tag value for the access technology, or None if unknown."""
        return rat_name(self.act)


@dataclass(frozen=True, slots=True)
class LteCellId:
    """An LTE ECI split into the eNodeB (site) id and the cell (sector) within it."""

    enb_id: int
    sector: int


@dataclass(frozen=True, slots=True)
class NrCellId:
    """An NR NCI split into the gNodeB (site) id and the cell (sector) within it."""

    gnb_id: int
    sector: int


def rat_name(act: int | None) -> str | None:
    """Return the rat tag value for a 3GPP access technology number, or None if unknown."""
    return None if act is None else _RAT.get(act)


def parse_csq(line: str) -> Csq:
    """Parse ``+CSQ: <rssi>,<ber>``; rssi 0..31 -> -113..-51 dBm, 99 -> None."""
    shape = "'+CSQ: <rssi 0-31 or 99>,<ber 0-7 or 99>'"
    values = _ints(line, "+CSQ", shape)
    if len(values) != 2:
        raise ATParseError(line, f"{shape} (2 values, got {len(values)})")
    rssi = _value(line, "rssi", values[0], 0, 31, 99)
    ber = _value(line, "ber", values[1], 0, 7, 99)
    return Csq(rssi_dbm=None if rssi is None else 2 * rssi - 113, ber=ber)


def parse_cesq(line: str) -> Cesq:
    """Parse ``+CESQ: <rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp>[,<ss_rsrq>,<ss_rsrp>,<ss_sinr>]`` into dBm and dB
    (99/255 -> None).

    The three NR fields (3GPP Rel-15) are reporting ranges of TS 38.133 that 27.007 takes over: ss_rsrq 0..127
    in 0.5 dB steps from -43 dB (0: below -43), ss_rsrp 0..126 in 1 dB steps from -156 dBm (0: below -156),
    ss_sinr 0..127 in 0.5 dB steps from -23 dB (0: below -23); each value becomes the lower edge of its step,
    and step 0 the bottom of the range (what can be said of "below").
    """
    shape = "'+CESQ: <rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp>[,<ss_rsrq>,<ss_rsrp>,<ss_sinr>]'"
    values = _ints(line, "+CESQ", shape)
    if len(values) not in (6, 9):
        raise ATParseError(line, f"{shape} (6 values, got {len(values)}), or 9 with the NR ones")
    rxlev = _value(line, "rxlev", values[0], 0, 63, 99)
    ber = _value(line, "ber", values[1], 0, 7, 99)
    rscp = _value(line, "rscp", values[2], 0, 96, 255)
    ecno = _value(line, "ecno", values[3], 0, 49, 255)
    rsrq = _value(line, "rsrq", values[4], 0, 34, 255)
    rsrp = _value(line, "rsrp", values[5], 0, 97, 255)
    ss_rsrq = ss_rsrp = ss_sinr = None
    if len(values) == 9:
        ss_rsrq = _value(line, "ss_rsrq", values[6], 0, 127, 255)
        ss_rsrp = _value(line, "ss_rsrp", values[7], 0, 126, 255)
        ss_sinr = _value(line, "ss_sinr", values[8], 0, 127, 255)
    return Cesq(
        rxlev_dbm=None if rxlev is None else rxlev - 111,
        ber=ber,
        rscp_dbm=None if rscp is None else rscp - 121,
        ecno_db=None if ecno is None else ecno * 0.5 - 24.5,
        rsrq_db=None if rsrq is None else rsrq * 0.5 - 20.0,
        rsrp_dbm=None if rsrp is None else rsrp - 141,
        ss_rsrq_db=None if ss_rsrq is None else max(ss_rsrq, 1) * 0.5 - 43.5,
        ss_rsrp_dbm=None if ss_rsrp is None else max(ss_rsrp, 1) - 157,
        ss_sinr_db=None if ss_sinr is None else max(ss_sinr, 1) * 0.5 - 23.5,
    )


_COPS = re.compile(
    r"""^\s*(?P<mode>[0-9]{1,20})
        (?:\s*,\s*(?P<format>[0-9]{1,20})
           \s*,\s*(?:"(?P<quoted>[^"]*)"|(?P<bare>[^,"]*?))
           (?:\s*,\s*(?P<act>[0-9]{1,20}))?
        )?\s*$""",
    re.VERBOSE,
)


def parse_cops(line: str) -> Cops:
    """Parse ``+COPS: <mode>[,<format>,<oper>[,<AcT>]]``; a numeric oper becomes the PLMN ``"452-04"``."""
    shape = "'+COPS: <mode>[,<format 0-2>,\"<operator>\"[,<AcT>]]'"
    match = _COPS.match(_payload(line, "+COPS", shape))
    if match is None:
        raise ATParseError(line, shape)
    mode = int(match["mode"])
    if mode > 4:
        raise ATParseError(line, f"mode 0..4, got {mode}")
    if match["format"] is None:
        return Cops(mode=mode, format=None, operator=None, plmn=None, act=None)
    fmt = int(match["format"])
    if fmt > 2:
        raise ATParseError(line, f"format 0 (long), 1 (short) or 2 (numeric), got {fmt}")
    operator = match["quoted"] if match["quoted"] is not None else match["bare"].strip()
    plmn = None
    if fmt == 2:
        if not re.fullmatch(r"\d{5,6}", operator):
            raise ATParseError(line, f"a numeric operator of 5 or 6 digits (MCC+MNC), got {operator!r}")
        plmn = format_plmn(operator[:3], operator[3:])
    act = None if match["act"] is None else int(match["act"])
    return Cops(mode=mode, format=fmt, operator=operator or None, plmn=plmn, act=act)


_REG_COMMANDS: Final = ("C5GREG", "CEREG", "CGREG", "CREG")
_SMALL_INT = re.compile(r"\d{1,3}")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_DIGITS = re.compile(r"[0-9]+")


def parse_creg(line: str) -> Registration:
    """Parse a +CREG/+CGREG/+CEREG/+C5GREG answer (``<n>,<stat>,...``) or its URC (``<stat>,...``)."""
    head, sep, rest = line.strip().partition(":")
    command = head.strip().lstrip("+").upper()
    if not sep or not head.strip().startswith("+") or command not in _REG_COMMANDS:
        raise ATParseError(line, "'+CREG:', '+CGREG:', '+CEREG:' or '+C5GREG:' then [<n>,]<stat>[,...]")
    raw = [field.strip() for field in rest.split(",")]
    quoted = [len(f) >= 2 and f[0] == '"' and f[-1] == '"' for f in raw]
    fields = [f[1:-1].strip() if q else f for f, q in zip(raw, quoted, strict=True)]
    if fields == [""]:
        raise ATParseError(line, f"'+{command}: [<n>,]<stat>[,...]' with at least <stat>")

    if _has_n(fields, quoted):
        n: int | None = _small(line, "n", fields[0], quoted[0])
        fields, quoted = fields[1:], quoted[1:]
    else:
        n = None
    stat = _small(line, "stat", fields[0], quoted[0])
    if stat > _MAX_STAT:
        raise ATParseError(line, f"stat 0..{_MAX_STAT}, got {stat}")

    # After <stat>: <area>,<ci>,<AcT>[,...]. Some vendors put a routing area code between <area> and <ci>
    # ("+CEREG: 2,1, 1F00, 20 ,79D903 ,7"); the standard +CGREG puts <rac> after <AcT> instead, and +C5GREG
    # follows <AcT> with the NSSAI fields, so only CREG and CEREG are read with that layout.
    after = fields[1:]
    if command in ("CREG", "CEREG") and len(after) == 4:
        after = [after[0], after[2], after[3]]
    area = _hex(line, "area code (LAC/TAC)", after[0]) if len(after) > 0 else None
    cell_id = _hex(line, "cell id", after[1]) if len(after) > 1 else None
    act = None
    if len(after) > 2 and after[2]:
        act = _small(line, "AcT", after[2], False)
    return Registration(command=command, n=n, stat=stat, area=area, cell_id=cell_id, act=act)


def split_cell_id(eci: int) -> LteCellId:
    """Split a 28-bit LTE ECI into eNB id (``eci >> 8``) and sector (``eci & 0xFF``)."""
    if not 0 <= eci < 1 << _ECI_BITS:
        raise ValueError(f"LTE ECI must be 0..0x{(1 << _ECI_BITS) - 1:X} (28 bits), got 0x{eci:X}")
    return LteCellId(enb_id=eci >> 8, sector=eci & 0xFF)


def split_nr_cell_id(nci: int, gnb_id_bits: int = 24) -> NrCellId:
    """Split a 36-bit NR NCI into gNB id (the top ``gnb_id_bits`` bits) and sector (the rest)."""
    if gnb_id_bits not in _GNB_ID_BITS:
        raise ValueError(f"the gNB id is 22 to 32 bits long, got {gnb_id_bits}")
    if not 0 <= nci < 1 << _NCI_BITS:
        raise ValueError(f"NR NCI must be 0..0x{(1 << _NCI_BITS) - 1:X} (36 bits), got 0x{nci:X}")
    sector_bits = _NCI_BITS - gnb_id_bits
    return NrCellId(gnb_id=nci >> sector_bits, sector=nci & ((1 << sector_bits) - 1))


def format_plmn(mcc: str, mnc: str) -> str | None:
    """Return the PLMN ``"452-04"`` for an MCC and MNC as a modem printed them, or None if they are not digits.

    Some firmware prints both as integers: the MCC of the test network gets its zeros back ("1" -> "001"; every
    other MCC is 200 or more, so a shorter one is garbled and gives None),
    the MNC is taken as two digits when it has fewer (an MNC of three digits printed as "10" cannot be told
    from "10": an answer that prints the PLMN as a string, +COPS or +QNWINFO, is preferred for that reason).
    """
    mcc, mnc = mcc.strip().strip('"').strip(), mnc.strip().strip('"').strip()
    if not (_DIGITS.fullmatch(mcc) and len(mcc) <= 3 and _DIGITS.fullmatch(mnc) and len(mnc) <= 3):
        return None
    if len(mcc) < 3 and int(mcc) != 1:
        return None
    return f"{mcc.zfill(3)}-{mnc.zfill(2)}"


def _payload(line: str, prefix: str, shape: str) -> str:
    """Return what follows ``prefix:`` in ``line``, tolerating missing or extra spaces."""
    text = line.strip()
    head, sep, rest = text.partition(":")
    if not sep or head.strip().upper() != prefix:
        raise ATParseError(line, shape)
    return rest


def _ints(line: str, prefix: str, shape: str) -> list[int]:
    """Return the comma-separated decimal values after ``prefix:``."""
    parts = [p.strip() for p in _payload(line, prefix, shape).split(",")]
    if not all(p.isdigit() and p.isascii() for p in parts):
        raise ATParseError(line, f"{shape} with decimal values")
    if any(len(p) > MAX_DIGITS for p in parts):
        raise ATParseError(line, f"{shape} with decimal values of at most {MAX_DIGITS} digits")
    return [int(p) for p in parts]


def _value(line: str, name: str, value: int, low: int, high: int, unknown: int) -> int | None:
    """Return ``value`` if in ``low..high``, None if it is the ``unknown`` sentinel."""
    if value == unknown:
        return None
    if not low <= value <= high:
        raise ATParseError(line, f"{name} {low}..{high} or {unknown} (unknown), got {value}")
    return value


def _has_n(fields: list[str], quoted: list[bool]) -> bool:
    """Return True if the fields start with ``<n>,<stat>`` (a query answer) rather than ``<stat>`` (a URC)."""
    if len(fields) == 1:
        return False
    if len(fields) == 2:
        return True
    if len(fields) == 3:  # "<stat>,<area>,<ci>"
        return False
    # Four or more: in an answer the second field is <stat>, a small unquoted decimal; in a URC it is the
    # area code, which modems print as 4 or more hex digits, usually quoted.
    if quoted[1] or not _SMALL_INT.fullmatch(fields[1]) or not _SMALL_INT.fullmatch(fields[0]):
        return False
    return int(fields[0]) <= _MAX_N and int(fields[1]) <= _MAX_STAT


def _small(line: str, name: str, field: str, quoted: bool) -> int:
    """Return a small decimal field such as <n>, <stat> or <AcT>, leading zeros allowed."""
    if quoted or not field.isdigit() or not field.isascii():
        raise ATParseError(line, f"{name} as a decimal number, got {field!r}")
    if len(field) > MAX_DIGITS:
        raise ATParseError(line, f"{name} as a decimal number of at most {MAX_DIGITS} digits, got {len(field)}")
    return int(field)


def _hex(line: str, name: str, field: str) -> int | None:
    """Return a hex field (quoted or not, any case, zero-padded or not), None if empty."""
    if not field:
        return None
    if not _HEX.fullmatch(field):
        raise ATParseError(line, f"{name} as hexadecimal digits, got {field!r}")
    value = int(field, 16)  # base 16 has no digit limit; the value is bounded instead
    if value >= _HEX_LIMIT:
        raise ATParseError(line, f"{name} of at most 64 bits, got {len(field)} hexadecimal digits")
    return value
