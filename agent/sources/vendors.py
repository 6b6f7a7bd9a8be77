"""What each modem family prints, and how the answers of one poll become one cellular reading (pure, stdlib only).

The 3GPP answers (+CSQ, +CESQ, +COPS, +CEREG, +C5GREG) are parsed by ``agent.sources.at``; this module adds the
vendor commands, which know the serving cell far better (band, PCI, SINR, the NR leg of EN-DC), and puts all
the answers of one poll together. The AT source, the ModemManager backend and the ``parse-transcript`` command
all end in ``to_sample``, so a field engineer's transcript gives exactly what the agent would send.

Map::

    detect_vendor(text)          answer to ATI or AT+CGMI                 -> "quectel" | "simcom" | "sierra" | None
    vendor_of_line(line)         "+QENG: ...", "+CPSI: ...", "!GSTATUS:"   -> the vendor that prints it, or None
    poll_commands(vendor, nr)    the commands one poll sends              -> ("AT+CSQ", ...)
    parse_qeng(lines)            Quectel AT+QENG="servingcell" (1-3 lines) -> ServingCell
    parse_qcsq(line)             Quectel AT+QCSQ (one line per RAT)        -> Qcsq
    parse_qnwinfo(line)          Quectel AT+QNWINFO                        -> Qnwinfo
    parse_cpsi(lines)            SIMCom AT+CPSI? (1-2 lines)               -> ServingCell
    gstatus_fields(lines)        Sierra AT!GSTATUS? key table              -> {"PCC RxM RSRP": "-86", ...}
    parse_gstatus(lines)         Sierra AT!GSTATUS?                        -> ServingCell
    interpret(replies, vendor)   the replies of one poll                   -> Interpretation (Reading, problems)
    to_sample(reading, ...)      one Reading                               -> the "cellular" Sample

Unknown values: ``-``, ``--``, ``---``, 65535, -32768 and 32768 (and 255 where the field cannot be 255) become
None, never numbers. A line that does not have the expected shape raises ``at.ATParseError``; so does a number
that is not finite (``1.0e999``) or not within 64 bits, or a decimal field of more than 20 digits.

The sample (``to_sample``); a value the modem did not give is left out, and each field keeps one type whatever
the vendor (InfluxDB rejects a field that changes type)::

    tags    carrier  PLMN "452-04" (from the modem; the configured carrier when it gives none)
            modem    the source name
            rat      lte | nr5g-sa | nr5g-nsa | umts | gsm (nbiot, nr5g when that is all the modem says)
            band     "B3", "n78" (the LTE anchor's band on EN-DC)
            cell     serving cell id in hex (LTE ECI, NR NCI, UMTS/GSM CI)
    fields  rsrp_dbm, rssi_dbm, nr_rsrp_dbm           int, rounded to the nearest dB
            rsrq_db, sinr_db, nr_rsrq_db, nr_sinr_db  float
            registered                                bool: +CEREG or +C5GREG says registered
            pci                                       int
            enb_id, sector                            int: LTE ECI >> 8, ECI & 0xFF
            gnb_id, sector                            int: NR NCI split at gnb_id_bits
    On EN-DC (nr5g-nsa) the main fields are the LTE anchor's and the nr_* fields the NR leg's; on NR SA the main
    fields are NR's. Whatever the backend, a value that is not finite or does not fit in a signed 64-bit integer
    is left out (missing), and so is the cell tag of a cell id beyond 64 bits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from agent.sources import at
from agent.sources.at import ATParseError
from zonewatch.wire import FieldValue, Sample

__all__ = [
    "Vendor",
    "VENDORS",
    "ServingCell",
    "NrLeg",
    "Qcsq",
    "Qnwinfo",
    "Reading",
    "Reply",
    "Problem",
    "Interpretation",
    "detect_vendor",
    "poll_commands",
    "parse_qeng",
    "parse_qcsq",
    "parse_qnwinfo",
    "parse_cpsi",
    "gstatus_fields",
    "parse_gstatus",
    "interpret",
    "to_sample",
    "prefix_of",
    "normal_command",
    "vendor_of_line",
]

Vendor = Literal["generic", "quectel", "simcom", "sierra"]
VENDORS: Final[tuple[Vendor, ...]] = ("generic", "quectel", "simcom", "sierra")

_3GPP_POLL: Final = ("AT+CSQ", "AT+CESQ", "AT+COPS?", "AT+CEREG?")
_VENDOR_POLL: Final[dict[Vendor, tuple[str, ...]]] = {
    "generic": (),
    "quectel": ('AT+QENG="servingcell"', "AT+QCSQ", "AT+QNWINFO"),
    "simcom": ("AT+CPSI?",),
    "sierra": ("AT!GSTATUS?",),
}
# Manufacturer names as ATI and AT+CGMI print them ("Quectel", "SIMCOM INCORPORATED", "Sierra Wireless, Inc.").
_MAKERS: Final[tuple[tuple[str, Vendor], ...]] = (("quectel", "quectel"), ("simcom", "simcom"), ("sierra", "sierra"))

_UNKNOWN_TEXT: Final = frozenset({"", "-", "--", "---"})
_QUECTEL_UNKNOWN: Final = frozenset({-32768, 32768, 65535, 255})  # measurements (RSRP, RSRQ, RSSI, SINR)
_SIMCOM_UNKNOWN: Final = frozenset({-32768, 32768})
_ID_UNKNOWN: Final = frozenset({65535})  # PCI, channel: 255 is a real PCI
_QENG_LTE_SINR_DB_MAX: Final = 40  # above this a QENG LTE SINR is the 0..250 code of AT+QCSQ, not dB
_ECI_LIMIT: Final = 1 << 28
_NCI_LIMIT: Final = 1 << 36
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_CELL_LIMIT: Final = 1 << 64  # a cell id beyond 64 bits is garbage: it gets no cell tag (at most 16 hex digits)


def detect_vendor(text: str) -> Vendor | None:
    """Return the vendor named in an ATI or AT+CGMI answer, or None if it names none this module knows."""
    low = text.lower()
    return next((vendor for name, vendor in _MAKERS if name in low), None)


def poll_commands(vendor: Vendor, nr_registration: bool) -> tuple[str, ...]:
    """Return the commands one poll sends: 3GPP (+C5GREG when the modem has it), then the vendor's."""
    return _3GPP_POLL + (("AT+C5GREG?",) if nr_registration else ()) + _VENDOR_POLL[vendor]


# --- what the vendor commands say ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NrLeg:
    """The NR secondary cell of an EN-DC (NSA) connection."""

    pci: int | None = None
    band: str | None = None
    arfcn: int | None = None
    rsrp_dbm: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServingCell:
    """The serving cell as a vendor command describes it; None where it does not say or says "unknown"."""

    rat: str | None  # lte, nr5g-sa, nr5g-nsa, umts, gsm; None while searching or with no service
    state: str | None = None  # the modem's own word: NOCONN, CONNECT, SEARCH, LIMSRV, Online, Registered ...
    registered: bool | None = None  # what that state implies, when it implies anything
    plmn: str | None = None
    band: str | None = None  # "B3", "n78"
    area: int | None = None  # TAC (LTE, NR) or LAC (UMTS, GSM)
    cell_id: int | None = None  # ECI, NCI or CI
    pci: int | None = None
    channel: int | None = None  # EARFCN, NR-ARFCN, UARFCN or ARFCN
    rsrp_dbm: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None
    rssi_dbm: float | None = None
    rscp_dbm: float | None = None
    ecio_db: float | None = None
    nr: NrLeg | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Qcsq:
    """One line of Quectel ``AT+QCSQ``: the signal of one RAT (LTE SINR converted from its 0..250 code)."""

    sysmode: str  # NOSERVICE, GSM, WCDMA, LTE, NR5G, ...
    rssi_dbm: float | None = None
    rsrp_dbm: float | None = None
    sinr_db: float | None = None
    rsrq_db: float | None = None
    rscp_dbm: float | None = None
    ecio_db: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Qnwinfo:
    """Quectel ``AT+QNWINFO``: access technology, operator, band and channel."""

    act: str  # as printed: "FDD LTE", "TDD NR5G", "WCDMA", "No Service"
    rat: str | None = None
    plmn: str | None = None
    band: str | None = None
    channel: int | None = None


# --- field helpers ---------------------------------------------------------------------------------------------


def _fields(line: str, prefix: str, shape: str) -> list[str]:
    """Return the comma-separated fields after ``prefix:``, unquoted and stripped."""
    head, sep, rest = line.strip().partition(":")
    if not sep or head.strip().upper() != prefix:
        raise ATParseError(line, shape)
    return [f.strip().strip('"').strip() for f in rest.split(",")]


def _fits(value: float) -> bool:
    """Return True if ``value`` is finite and within the signed 64-bit range (what a sample field may hold)."""
    if isinstance(value, int):  # math.isfinite would fail on an int beyond the float range
        return _INT64_MIN <= value <= _INT64_MAX
    return math.isfinite(value) and _INT64_MIN <= value <= _INT64_MAX


def _number(line: str, name: str, text: str, unknown: frozenset[int] = frozenset(), scale: float = 1) -> float | None:
    """Return a decimal field divided by ``scale``, None for a dash or an ``unknown`` sentinel."""
    if text in _UNKNOWN_TEXT:
        return None
    if "." not in text and sum(c.isdigit() for c in text) > at.MAX_DIGITS:
        raise ATParseError(line, f"{name} as a number of at most {at.MAX_DIGITS} digits, got {text!r}")
    try:
        value = float(text) if "." in text else int(text)
    except ValueError:
        raise ATParseError(line, f"{name} as a number, got {text!r}") from None
    if not _fits(value):  # 1.0e999 is infinite; 1e30 is no measurement either
        raise ATParseError(line, f"{name} as a finite number within 64 bits, got {text!r}")
    if value in unknown:
        return None
    return value / scale if scale != 1 else value


def _integer(line: str, name: str, text: str, unknown: frozenset[int] = _ID_UNKNOWN) -> int | None:
    """Return a decimal integer field, None for a dash or an ``unknown`` sentinel."""
    if text in _UNKNOWN_TEXT:
        return None
    if not re.fullmatch(r"-?[0-9]+", text):
        raise ATParseError(line, f"{name} as a decimal integer, got {text!r}")
    if len(text) > at.MAX_DIGITS + 1 or not _INT64_MIN <= (value := int(text)) <= _INT64_MAX:
        raise ATParseError(line, f"{name} as a decimal integer within 64 bits, got {text!r}")
    return None if value in unknown else value


def _hex(line: str, name: str, text: str) -> int | None:
    """Return a hex field (``0x`` prefix optional), None for a dash."""
    if text in _UNKNOWN_TEXT:
        return None
    digits = text[2:] if text[:2].lower() == "0x" else text
    if not re.fullmatch(r"[0-9A-Fa-f]+", digits):
        raise ATParseError(line, f"{name} as hexadecimal digits, got {text!r}")
    value = int(digits, 16)  # base 16 has no digit limit; the value is bounded instead
    if value >= _CELL_LIMIT:
        raise ATParseError(line, f"{name} of at most 64 bits, got {len(digits)} hexadecimal digits")
    return value


def _band(prefix: str, number: str | None) -> str | None:
    """Return ``"B3"`` or ``"n78"`` for a band number, None for a dash or what is not a plain band number."""
    if number is None or not (number.isascii() and number.isdigit()) or len(number) > at.MAX_DIGITS:
        return None
    return f"{prefix}{int(number)}"


def _need(line: str, values: Sequence[str], count: int, what: str) -> None:
    """Raise unless ``values`` has at least ``count`` fields."""
    if len(values) < count:
        raise ATParseError(line, f"{what} ({count} fields after the RAT, got {len(values)})")


# --- Quectel ---------------------------------------------------------------------------------------------------

_QENG_SHAPE: Final = '\'+QENG: "servingcell",<state>[,<RAT>,...]\' or an EN-DC line \'+QENG: "LTE"|"NR5G-NSA",...\''
_QENG_REGISTERED: Final = {"NOCONN": True, "CONNECT": True, "SEARCH": False, "LIMSRV": False}


def parse_qeng(lines: Sequence[str]) -> ServingCell:
    """Parse the answer to ``AT+QENG="servingcell"`` in any layout: LTE, EN-DC (three lines), NR SA, WCDMA, GSM."""
    if not lines:
        raise ATParseError("", _QENG_SHAPE)
    rows = [(line, _fields(line, "+QENG", _QENG_SHAPE)) for line in lines]
    state: str | None = None
    first_line, first = rows[0]
    if first[0].lower() == "servingcell":
        if len(first) < 2 or not first[1]:
            raise ATParseError(first_line, '\'+QENG: "servingcell",<state>,...\' with a state')
        state = first[1].upper()
        rows = ([(first_line, first[2:])] if len(first) > 2 else []) + rows[1:]
    registered = _QENG_REGISTERED.get(state) if state is not None else None

    lte: ServingCell | None = None
    leg: NrLeg | None = None
    other: ServingCell | None = None
    for line, values in rows:
        rat, rest = values[0].upper(), values[1:]
        if rat == "LTE":
            lte = _qeng_lte(line, rest)
        elif rat == "NR5G-NSA":
            leg = _qeng_nsa(line, rest)
        elif rat == "NR5G-SA":
            other = _qeng_sa(line, rest)
        elif rat == "WCDMA":
            other = _qeng_wcdma(line, rest)
        elif rat == "GSM":
            other = _qeng_gsm(line, rest)
        else:
            raise ATParseError(line, f"a RAT of LTE, NR5G-NSA, NR5G-SA, WCDMA or GSM, got {values[0]!r}")

    if other is not None:
        cell = other
    elif lte is not None:
        attached = leg is not None and (leg.rsrp_dbm is not None or leg.pci is not None)
        cell = replace(lte, rat="nr5g-nsa" if attached else "lte", nr=leg if attached else None)
    elif leg is not None:
        raise ATParseError(lines[-1], 'the "LTE" anchor line before the "NR5G-NSA" line')
    else:
        cell = ServingCell(rat=None)  # SEARCH: no cell
    return replace(cell, state=state, registered=registered)


def _quectel_lte_sinr(raw: float | None) -> float | None:
    """Return a QENG LTE SINR in dB: up to 40 it is dB already, above it is the 0..250 code (dB = v/5 - 20)."""
    if raw is None or raw <= _QENG_LTE_SINR_DB_MAX:
        return raw
    return raw / 5 - 20 if raw <= 250 else None


def _qeng_lte(line: str, v: Sequence[str]) -> ServingCell:
    """Read the LTE fields: EC2x has 15 after "LTE", RM5xx 17 (CQI and tx power before srxlev)."""
    # <is_tdd>,<MCC>,<MNC>,<cellID>,<PCID>,<earfcn>,<band>,<UL_bw>,<DL_bw>,<TAC>,<RSRP>,<RSRQ>,<RSSI>,<SINR>,
    # [<CQI>,<tx_power>,]<srxlev>
    if len(v) not in (15, 17):
        raise ATParseError(line, f'15 (EC2x) or 17 (RM5xx) fields after "LTE", got {len(v)}')
    q = _QUECTEL_UNKNOWN
    return ServingCell(
        rat="lte",
        plmn=at.format_plmn(v[1], v[2]),
        cell_id=_hex(line, "cell id", v[3]),
        pci=_integer(line, "PCI", v[4]),
        channel=_integer(line, "EARFCN", v[5]),
        band=_band("B", v[6]),
        area=_hex(line, "TAC", v[9]),
        rsrp_dbm=_number(line, "RSRP", v[10], q),
        rsrq_db=_number(line, "RSRQ", v[11], q),
        rssi_dbm=_number(line, "RSSI", v[12], q),
        sinr_db=_quectel_lte_sinr(_number(line, "SINR", v[13], q)),
    )


def _qeng_nsa(line: str, v: Sequence[str]) -> NrLeg:
    """Read the NR5G-NSA line; note SINR before RSRQ (the SA line has them the other way round)."""
    # <MCC>,<MNC>,<PCID>,<RSRP>,<SINR>,<RSRQ>[,<ARFCN>,<band>,<NR_DL_bw>,<scs>]
    _need(line, v, 6, '"NR5G-NSA",<MCC>,<MNC>,<PCID>,<RSRP>,<SINR>,<RSRQ>,...')
    q = _QUECTEL_UNKNOWN
    return NrLeg(
        pci=_integer(line, "PCI", v[2]),
        rsrp_dbm=_number(line, "RSRP", v[3], q),
        sinr_db=_number(line, "SINR", v[4], q),
        rsrq_db=_number(line, "RSRQ", v[5], q),
        arfcn=_integer(line, "ARFCN", v[6]) if len(v) > 6 else None,
        band=_band("n", v[7]) if len(v) > 7 else None,
    )


def _qeng_sa(line: str, v: Sequence[str]) -> ServingCell:
    """Read the NR5G-SA fields; some firmware pads the MCC with a space."""
    # <duplex>,<MCC>,<MNC>,<cellID>,<PCID>,<TAC>,<ARFCN>,<band>,<NR_DL_bw>,<RSRP>,<RSRQ>,<SINR>[,<X>,<srxlev>]
    _need(line, v, 12, '"NR5G-SA",<duplex>,<MCC>,<MNC>,<cellID>,<PCID>,<TAC>,<ARFCN>,<band>,<bw>,<RSRP>,<RSRQ>,<SINR>')
    q = _QUECTEL_UNKNOWN
    return ServingCell(
        rat="nr5g-sa",
        plmn=at.format_plmn(v[1], v[2]),
        cell_id=_hex(line, "cell id", v[3]),
        pci=_integer(line, "PCI", v[4]),
        area=_hex(line, "TAC", v[5]),
        channel=_integer(line, "ARFCN", v[6]),
        band=_band("n", v[7]),
        rsrp_dbm=_number(line, "RSRP", v[9], q),
        rsrq_db=_number(line, "RSRQ", v[10], q),
        sinr_db=_number(line, "SINR", v[11], q),
    )


def _qeng_wcdma(line: str, v: Sequence[str]) -> ServingCell:
    """Read the WCDMA fields: identity, RSCP and Ec/Io."""
    # <MCC>,<MNC>,<LAC>,<cellID>,<uarfcn>,<PSC>,<RAC>,<RSCP>,<ecio>,...
    _need(line, v, 9, '"WCDMA",<MCC>,<MNC>,<LAC>,<cellID>,<uarfcn>,<PSC>,<RAC>,<RSCP>,<ecio>')
    q = _QUECTEL_UNKNOWN
    return ServingCell(
        rat="umts",
        plmn=at.format_plmn(v[0], v[1]),
        area=_hex(line, "LAC", v[2]),
        cell_id=_hex(line, "cell id", v[3]),
        channel=_integer(line, "UARFCN", v[4]),
        rscp_dbm=_number(line, "RSCP", v[7], q),
        ecio_db=_number(line, "Ec/Io", v[8], q),
    )


def _qeng_gsm(line: str, v: Sequence[str]) -> ServingCell:
    """Read the GSM fields (field list from the EC2x manuals, not seen in a capture)."""
    # <MCC>,<MNC>,<LAC>,<cellID>,<BSIC>,<arfcn>,<band>,<rxlev>,...
    _need(line, v, 8, '"GSM",<MCC>,<MNC>,<LAC>,<cellID>,<BSIC>,<arfcn>,<band>,<rxlev>')
    rxlev = _number(line, "rxlev", v[7], _QUECTEL_UNKNOWN)
    # The manuals' examples print dBm (e.g. -62); a value 0..63 would be the 3GPP RXLEV code.
    rssi = rxlev if rxlev is None or rxlev < 0 else (rxlev - 111 if rxlev <= 63 else None)
    return ServingCell(
        rat="gsm",
        plmn=at.format_plmn(v[0], v[1]),
        area=_hex(line, "LAC", v[2]),
        cell_id=_hex(line, "cell id", v[3]),
        channel=_integer(line, "ARFCN", v[5]),
        rssi_dbm=rssi,
    )


_QCSQ_SHAPE: Final = '\'+QCSQ: "<sysmode>"[,<values>]\''


def parse_qcsq(line: str) -> Qcsq:
    """Parse one ``+QCSQ:`` line; the LTE SINR code 0..250 becomes dB = v/5 - 20."""
    v = _fields(line, "+QCSQ", _QCSQ_SHAPE)
    mode, rest = v[0].upper(), v[1:]
    q = _QUECTEL_UNKNOWN
    if mode == "LTE":  # <rssi>,<rsrp>,<sinr 0-250>,<rsrq>
        _need(line, rest, 4, '"LTE",<rssi>,<rsrp>,<sinr>,<rsrq>')
        code = _number(line, "SINR", rest[2], frozenset({-32768, 32768, 255}))
        if code is not None and not 0 <= code <= 250:
            raise ATParseError(line, f"LTE SINR code 0..250, got {rest[2]}")
        return Qcsq(
            sysmode=mode,
            rssi_dbm=_number(line, "RSSI", rest[0], q),
            rsrp_dbm=_number(line, "RSRP", rest[1], q),
            sinr_db=None if code is None else code / 5 - 20,
            rsrq_db=_number(line, "RSRQ", rest[3], q),
        )
    if mode == "NR5G":  # <rsrp>,<sinr>,<rsrq>; units not confirmed, kept as printed
        _need(line, rest, 3, '"NR5G",<rsrp>,<sinr>,<rsrq>')
        return Qcsq(
            sysmode=mode,
            rsrp_dbm=_number(line, "RSRP", rest[0], q),
            sinr_db=_number(line, "SINR", rest[1], q),
            rsrq_db=_number(line, "RSRQ", rest[2], q),
        )
    if mode == "WCDMA":  # <rssi>,<rscp>,<ecio>
        _need(line, rest, 3, '"WCDMA",<rssi>,<rscp>,<ecio>')
        return Qcsq(
            sysmode=mode,
            rssi_dbm=_number(line, "RSSI", rest[0], q),
            rscp_dbm=_number(line, "RSCP", rest[1], q),
            ecio_db=_number(line, "Ec/Io", rest[2], q),
        )
    if mode == "GSM":  # <rssi>
        _need(line, rest, 1, '"GSM",<rssi>')
        return Qcsq(sysmode=mode, rssi_dbm=_number(line, "RSSI", rest[0], q))
    if not mode:
        raise ATParseError(line, _QCSQ_SHAPE)
    return Qcsq(sysmode=mode)  # NOSERVICE, CAT-M1, ...: nothing to read


_QNWINFO_BAND = re.compile(r"^(?:LTE BAND (?P<lte>\d+)|NR5G BAND (?P<nr>\d+))$", re.IGNORECASE)


def parse_qnwinfo(line: str) -> Qnwinfo:
    """Parse ``+QNWINFO: <AcT>,<oper>,<band>,<channel>`` (``+QNWINFO: No Service`` has the AcT only)."""
    v = _fields(line, "+QNWINFO", "'+QNWINFO: \"<AcT>\",\"<MCCMNC>\",\"<band>\",<channel>'")
    act = v[0]
    if len(v) == 1:
        return Qnwinfo(act=act)
    if len(v) < 4:
        raise ATParseError(line, f"'+QNWINFO: \"<AcT>\",\"<MCCMNC>\",\"<band>\",<channel>' (4 fields, got {len(v)})")
    oper, band = v[1], v[2]
    match = _QNWINFO_BAND.match(band)
    return Qnwinfo(
        act=act,
        rat=_qnwinfo_rat(act),
        plmn=at.format_plmn(oper[:3], oper[3:]) if len(oper) in (5, 6) else None,
        band=None if match is None else _band("B", match["lte"]) or _band("n", match["nr"]),
        channel=_integer(line, "channel", v[3]),
    )


def _qnwinfo_rat(act: str) -> str | None:
    """Return the rat tag for a QNWINFO access technology ("NR5G" does not say SA or NSA)."""
    word = act.upper()
    if "NR5G" in word:
        return "nr5g"
    if "LTE" in word:
        return "lte"
    if any(w in word for w in ("WCDMA", "HSDPA", "HSUPA", "HSPA", "TDSCDMA")):
        return "umts"
    if any(w in word for w in ("GSM", "GPRS", "EDGE")):
        return "gsm"
    return None


# --- SIMCom ----------------------------------------------------------------------------------------------------

_CPSI_SHAPE: Final = "'+CPSI: <system mode>,<operation mode>,...'"
_CPSI_BAND = re.compile(r"^(?:EUTRAN-BAND(?P<lte>\d+)|NR5G_BAND(?P<nr>\d+))$", re.IGNORECASE)


def parse_cpsi(lines: Sequence[str]) -> ServingCell:
    """Parse ``AT+CPSI?``: LTE, NR5G_SA, WCDMA, GSM or NO SERVICE, and the NR5G_NSA line that follows an LTE one."""
    if not lines:
        raise ATParseError("", _CPSI_SHAPE)
    line = lines[0]
    v = _fields(line, "+CPSI", _CPSI_SHAPE)
    mode, rest = v[0].upper(), v[1:]
    if mode == "LTE":
        cell = _cpsi_lte(line, rest)
    elif mode == "NR5G_SA":
        cell = _cpsi_sa(line, rest)
    elif mode == "WCDMA":
        cell = _cpsi_identity(line, rest, "umts")
    elif mode == "GSM":
        cell = _cpsi_identity(line, rest, "gsm")
    elif mode == "NO SERVICE":
        return ServingCell(rat=None, state=mode, registered=False)
    else:
        raise ATParseError(line, f"a system mode of LTE, NR5G_SA, WCDMA, GSM or NO SERVICE, got {v[0]!r}")
    for extra in lines[1:]:
        w = _fields(extra, "+CPSI", _CPSI_SHAPE)
        if w[0].upper() not in ("NR5G_NSA", "NR5G") or cell.rat != "lte":
            raise ATParseError(extra, "only an NR5G_NSA line after the LTE line")
        leg = _cpsi_nsa(extra, w[1:])
        if leg.rsrp_dbm is not None or leg.pci is not None:
            cell = replace(cell, rat="nr5g-nsa", nr=leg)
    return cell


def _cpsi_band(text: str) -> str | None:
    """Return "B3" for EUTRAN-BAND3 and "n78" for NR5G_BAND78."""
    match = _CPSI_BAND.match(text)
    return None if match is None else _band("B", match["lte"]) or _band("n", match["nr"])


def _cpsi_plmn(text: str) -> str | None:
    """Return the PLMN of a ``460-11`` field."""
    mcc, _, mnc = text.partition("-")
    return at.format_plmn(mcc, mnc)


def _cpsi_lte(line: str, v: Sequence[str]) -> ServingCell:
    """Read the LTE fields; RSRQ, RSRP and RSSI are in tenths, RSSNR is kept as printed."""
    # <op mode>,<MCC>-<MNC>,<TAC>,<SCellID dec>,<PCellID>,<band>,<earfcn>,<dlbw>,<ulbw>,<RSRQ>,<RSRP>,<RSSI>,<RSSNR>
    _need(line, v, 13, "LTE,<op mode>,<MCC>-<MNC>,<TAC>,<SCellID>,<PCI>,<band>,<earfcn>,<dlbw>,<ulbw>,"
                       "<RSRQ>,<RSRP>,<RSSI>,<RSSNR>")  # fmt: skip
    s = _SIMCOM_UNKNOWN
    return ServingCell(
        rat="lte",
        state=v[0],
        plmn=_cpsi_plmn(v[1]),
        area=_hex(line, "TAC", v[2]),
        cell_id=_integer(line, "cell id", v[3], frozenset()),
        pci=_integer(line, "PCI", v[4]),
        band=_cpsi_band(v[5]),
        channel=_integer(line, "EARFCN", v[6]),
        rsrq_db=_number(line, "RSRQ", v[9], s, scale=10),
        rsrp_dbm=_number(line, "RSRP", v[10], s, scale=10),
        rssi_dbm=_number(line, "RSSI", v[11], s, scale=10),
        sinr_db=_number(line, "RSSNR", v[12], s),
    )


def _cpsi_sa(line: str, v: Sequence[str]) -> ServingCell:
    """Read the NR5G_SA fields; RSRP, RSRQ and SNR are in tenths."""
    # <op mode>,<MCC>-<MNC>,<TAC>,<SCellID>,<PCellID>,<band>,<arfcn>,<RSRP>,<RSRQ>,<SNR>
    _need(line, v, 10, "NR5G_SA,<op mode>,<MCC>-<MNC>,<TAC>,<SCellID>,<PCI>,<band>,<arfcn>,<RSRP>,<RSRQ>,<SNR>")
    s = _SIMCOM_UNKNOWN
    return ServingCell(
        rat="nr5g-sa",
        state=v[0],
        plmn=_cpsi_plmn(v[1]),
        area=_hex(line, "TAC", v[2]),
        cell_id=_integer(line, "cell id", v[3], frozenset()),
        pci=_integer(line, "PCI", v[4]),
        band=_cpsi_band(v[5]),
        channel=_integer(line, "ARFCN", v[6]),
        rsrp_dbm=_number(line, "RSRP", v[7], s, scale=10),
        rsrq_db=_number(line, "RSRQ", v[8], s, scale=10),
        sinr_db=_number(line, "SNR", v[9], s, scale=10),
    )


def _cpsi_nsa(line: str, v: Sequence[str]) -> NrLeg:
    """Read the NR5G_NSA line; RSRP, RSRQ and SNR are in tenths."""
    # <PCellID>,<band>,<arfcn>,<RSRP>,<RSRQ>,<SNR>
    _need(line, v, 6, "NR5G_NSA,<PCI>,<band>,<arfcn>,<RSRP>,<RSRQ>,<SNR>")
    s = _SIMCOM_UNKNOWN
    return NrLeg(
        pci=_integer(line, "PCI", v[0]),
        band=_cpsi_band(v[1]),
        arfcn=_integer(line, "ARFCN", v[2]),
        rsrp_dbm=_number(line, "RSRP", v[3], s, scale=10),
        rsrq_db=_number(line, "RSRQ", v[4], s, scale=10),
        sinr_db=_number(line, "SNR", v[5], s, scale=10),
    )


def _cpsi_identity(line: str, v: Sequence[str], rat: str) -> ServingCell:
    """Read operator, LAC and cell id of a WCDMA or GSM line (their signal fields' units are not confirmed)."""
    # WCDMA: <op mode>,<MCC>-<MNC>,<LAC>,<CellID>,...   GSM: <op mode>,<MCC>-<MNC>,<LAC>,<CellID>,<ARFCN>,<RxLev>,...
    _need(line, v, 4, f"{rat.upper()},<op mode>,<MCC>-<MNC>,<LAC>,<CellID>")
    rssi = None
    if rat == "gsm" and len(v) > 5 and re.fullmatch(r"-[0-9]+", v[5]) and _fits(float(v[5])):
        rssi = float(v[5])  # RxLev in dBm, e.g. -64
    cell = v[3]
    cell_id = _hex(line, "cell id", cell) if cell[:2].lower() == "0x" else _integer(line, "cell id", cell, frozenset())
    return ServingCell(
        rat=rat,
        state=v[0],
        plmn=_cpsi_plmn(v[1]),
        area=_hex(line, "LAC", v[2]),
        cell_id=cell_id,
        rssi_dbm=rssi,
    )


# --- Sierra Wireless -------------------------------------------------------------------------------------------

_GSTATUS_SPLIT = re.compile(r"\t+| {2,}")
_GSTATUS_RSRP: Final = "RSRP (dBm)"


def gstatus_fields(lines: Iterable[str]) -> dict[str, str]:
    """Return the key table of an ``AT!GSTATUS?`` answer (a repeated "RSRP (dBm)" is named after its antenna)."""
    # Two "Key: value" columns per line, separated by tabs (or, once pasted, by runs of spaces); a value may
    # also stand alone in the second column ("EMM state: Registered <tab> Normal Service"). "RSRP (dBm)" follows
    # "PCC RxM RSSI" on one line and "PCC RxD RSSI" on the next: it becomes "PCC RxM RSRP" and "PCC RxD RSRP".
    table: dict[str, str] = {}
    antenna: str | None = None
    for raw in lines:
        text = raw.strip()
        if text.upper().startswith("!GSTATUS:"):
            text = text.split(":", 1)[1].strip()
        pending: str | None = None
        for cell in _GSTATUS_SPLIT.split(text):
            cell = cell.strip()
            if not cell:
                continue
            key, sep, value = cell.partition(":")
            if not sep:
                if pending is not None:  # the value of a key whose value was in the next column
                    table[pending] = cell
                    pending = None
                continue
            key, value = " ".join(key.split()), value.strip()
            if key.endswith(" RSSI"):
                antenna = key[: -len(" RSSI")]
            if key == _GSTATUS_RSRP and antenna is not None:
                key = f"{antenna} RSRP"
            elif key == _GSTATUS_RSRP and key in table:
                key = f"{key} #{sum(k.startswith(_GSTATUS_RSRP) for k in table) + 1}"
            table.setdefault(key, value)
            pending = key if not value else None
    return table


def parse_gstatus(lines: Sequence[str]) -> ServingCell:
    """Parse the answer to ``AT!GSTATUS?`` by key; ``---`` and ``--`` are missing values."""
    table = gstatus_fields(lines)
    if not table:
        raise ATParseError("\n".join(lines), "'Key: value' lines such as 'System mode: LTE'")
    where = "AT!GSTATUS? answer"

    def text(*keys: str) -> str | None:
        for key in keys:
            value = table.get(key)
            if value is not None and value not in _UNKNOWN_TEXT:
                return value
        return None

    def number(*keys: str) -> float | None:
        value = text(*keys)
        if value is None:
            return None
        match = re.match(r"-?[0-9]+(?:\.[0-9]+)?", value)
        if match is None:
            raise ATParseError(f"{keys[0]}: {value}", f"a number in the {where}")
        found = float(match[0])  # no digit limit for float(), but 400 nines are infinite
        if not _fits(found):
            raise ATParseError(f"{keys[0]}: {value}", f"a finite number within 64 bits in the {where}")
        return found

    def hexa(key: str) -> int | None:
        value = text(key)
        if value is None:
            return None
        return _hex(f"{key}: {value}", key, value.split()[0])

    mode = (text("System mode") or "").upper()
    leg = NrLeg(
        band=_sierra_band("n", text("NR5G band")),
        arfcn=_int_or_none(text("NR5G Rx chan")),
        rsrp_dbm=number("NR5G RSRP (dBm)", "NR5G RSRP"),
        rsrq_db=number("NR5G RSRQ (dB)", "NR5G RSRQ"),
        sinr_db=number("NR5G SINR (dB)", "NR5G SINR"),
    )
    nr_known = leg.rsrp_dbm is not None
    emm = text("EMM state")
    registered = None if emm is None else emm.split()[0].lower() == "registered"
    area, cell_id = hexa("TAC"), hexa("Cell ID")
    if "ENDC" in mode or "NSA" in mode or (mode == "LTE" and nr_known):
        rat: str | None = "nr5g-nsa"
    elif "NR5G" in mode or mode == "NR":
        rat = "nr5g-sa"
    elif "LTE" in mode:
        rat = "lte"
    elif any(w in mode for w in ("WCDMA", "UMTS", "HSPA")):
        rat = "umts"
    elif "GSM" in mode:
        rat = "gsm"
    else:
        rat = None
    if rat == "nr5g-sa":  # the NR values are the serving cell's
        return ServingCell(rat=rat, state=emm, registered=registered, area=area, cell_id=cell_id, band=leg.band,
                           channel=leg.arfcn, rsrp_dbm=leg.rsrp_dbm, rsrq_db=leg.rsrq_db, sinr_db=leg.sinr_db)
    return ServingCell(
        rat=rat,
        state=emm,
        registered=registered,
        area=area,
        cell_id=cell_id,
        band=_sierra_band("B", text("LTE band")),
        channel=_int_or_none(text("LTE Rx chan")),
        rsrp_dbm=number("PCC RxM RSRP", _GSTATUS_RSRP),
        rssi_dbm=number("PCC RxM RSSI"),
        rsrq_db=number("RSRQ (dB)"),
        sinr_db=number("SINR (dB)"),
        nr=leg if rat == "nr5g-nsa" and nr_known else None,
    )


def _sierra_band(prefix: str, value: str | None) -> str | None:
    """Return "B3"/"n78" for a GSTATUS band such as "B3", "LTE B3", "n78" or "3"."""
    if value is None:
        return None
    match = re.search(r"(?:^|[ Bbn])([0-9]+)\b", value)
    return None if match is None else _band(prefix, match[1])


def _int_or_none(value: str | None) -> int | None:
    """Return the leading integer of a value such as "1300" or "20 MHz", None if there is none."""
    match = None if value is None else re.match(r"[0-9]+", value)
    return None if match is None or len(match[0]) > at.MAX_DIGITS else int(match[0])


# --- one poll --------------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """What a modem printed for one command: information lines and the final result code."""

    command: str | None  # as sent or echoed; None for lines whose command is unknown (a transcript without echo)
    lines: list[str] = field(default_factory=list)
    final: str | None = "OK"  # OK, ERROR, +CME ERROR: <n>; None if the transcript ends before one
    numbers: list[int] = field(default_factory=list)  # transcript line number of each entry of ``lines``
    final_number: int | None = None

    @property
    def ok(self) -> bool:
        """Return True unless the command ended in an error."""
        return self.final is None or self.final == "OK"

    def number(self, index: int) -> int | None:
        """Return the transcript line number of ``lines[index]``, if known."""
        return self.numbers[index] if index < len(self.numbers) else None


@dataclass(frozen=True, slots=True)
class Problem:
    """A reply or line that gave no value: ``kind`` says why."""

    command: str | None
    kind: Literal["error", "missing", "unparsed", "unread"]  # ERROR answer, no answer line, bad line, not ours
    text: str  # the line as printed, or the final result code
    reason: str
    line: int | None = None  # transcript line number

    def __str__(self) -> str:
        """Return the problem as one phrase, quoting the line when it is one that failed to parse."""
        return f"cannot parse {self.text!r}: {self.reason}" if self.kind == "unparsed" else self.reason


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """One modem's state at one poll, whatever the backend: the input of ``to_sample``."""

    rat: str | None = None
    plmn: str | None = None
    band: str | None = None
    cell_id: int | None = None
    cell_kind: Literal["lte", "nr"] | None = None  # how to split cell_id into site and sector
    pci: int | None = None
    registered: bool | None = None
    rsrp_dbm: float | None = None
    rsrq_db: float | None = None
    sinr_db: float | None = None
    rssi_dbm: float | None = None
    nr_rsrp_dbm: float | None = None
    nr_rsrq_db: float | None = None
    nr_sinr_db: float | None = None


@dataclass(frozen=True, slots=True)
class Interpretation:
    """What one poll's replies say: the reading, what gave nothing, and which commands answered usefully."""

    reading: Reading
    problems: tuple[Problem, ...]
    answered: frozenset[str]  # commands (as sent) whose reply had no problem
    usable: bool  # False if no reply gave any value


_IDENTITY: Final = frozenset({"ATI", "ATI0", "AT+CGMI", "AT+GMI", "AT+CGMM", "AT+GMM", "AT+CGMR", "AT+GMR"})
# Command (upper case, no spaces) -> the prefix of the line that answers it.
_EXPECTED: Final = {
    "AT+CSQ": "+CSQ",
    "AT+CESQ": "+CESQ",
    "AT+COPS?": "+COPS",
    "AT+CREG?": "+CREG",
    "AT+CGREG?": "+CGREG",
    "AT+CEREG?": "+CEREG",
    "AT+C5GREG?": "+C5GREG",
    'AT+QENG="SERVINGCELL"': "+QENG",
    "AT+QCSQ": "+QCSQ",
    "AT+QNWINFO": "+QNWINFO",
    "AT+CPSI?": "+CPSI",
    "AT!GSTATUS?": "!GSTATUS",
}
_OWNER: Final[dict[str, Vendor]] = {
    "+QENG": "quectel",
    "+QCSQ": "quectel",
    "+QNWINFO": "quectel",
    "+CPSI": "simcom",
    "!GSTATUS": "sierra",
}
_PREFIX = re.compile(r"^\s*([+!$^*#%][A-Za-z0-9]+)\s*:")


def prefix_of(line: str) -> str | None:
    """Return the answer prefix of a line (``"+CSQ"``, ``"!GSTATUS"``), or None for a line without one."""
    match = _PREFIX.match(line)
    return None if match is None else match[1].upper()


def vendor_of_line(line: str) -> Vendor | None:
    """Return the vendor whose command prints a line like this one (``+QENG:`` is Quectel's), None if 3GPP."""
    return _OWNER.get(prefix_of(line) or "")


def normal_command(command: str | None) -> str:
    """Return a command in the form used as a key: upper case, no spaces."""
    return "" if command is None else "".join(command.split()).upper()


@dataclass
class _Answers:
    """The parsed answers of one poll, filled as the replies are read."""

    csq: at.Csq | None = None
    cesq: at.Cesq | None = None
    cops: at.Cops | None = None
    cereg: at.Registration | None = None
    c5greg: at.Registration | None = None
    qeng: ServingCell | None = None
    cpsi: ServingCell | None = None
    gstatus: ServingCell | None = None
    qcsq: list[Qcsq] = field(default_factory=list)
    qnwinfo: Qnwinfo | None = None
    any: bool = False


def interpret(replies: Sequence[Reply], vendor: Vendor | None = None) -> Interpretation:
    """Read the replies of one poll; ``vendor`` None accepts every vendor's answers, otherwise only its own."""
    found = _Answers()
    problems: list[Problem] = []
    answered: set[str] = set()
    for reply in replies:
        before = len(problems)
        _read_reply(reply, vendor, found, problems)
        if len(problems) == before and reply.command is not None:
            answered.add(reply.command)
    return Interpretation(_reading(found), tuple(problems), frozenset(answered), found.any)


def _read_reply(reply: Reply, vendor: Vendor | None, found: _Answers, problems: list[Problem]) -> None:
    """Parse one reply into ``found``, adding a Problem for every line or answer that gave nothing."""
    command = normal_command(reply.command)
    if not reply.ok:
        problems.append(Problem(reply.command, "error", reply.final or "", f"answered {reply.final}",
                                reply.final_number))
        return
    if command in _IDENTITY:
        return  # read by detect_vendor, not here
    expected = _EXPECTED.get(command)
    if command == "AT!GSTATUS?" or (reply.lines and prefix_of(reply.lines[0]) == "!GSTATUS"):
        if not reply.lines:
            problems.append(Problem(reply.command, "missing", reply.final or "", "answered without a status table",
                                    reply.final_number))
        elif _allowed("!GSTATUS", reply, 0, vendor, problems):
            try:
                found.gstatus = parse_gstatus(reply.lines)
            except ATParseError as exc:
                problems.append(Problem(reply.command, "unparsed", exc.line, f"expected {exc.expected}",
                                        reply.number(0)))
            else:
                found.any = True
        return

    groups: dict[str, list[int]] = {}  # multi-line answers: prefix -> indexes of its lines
    for index, line in enumerate(reply.lines):
        prefix = prefix_of(line)
        if prefix is not None and not _allowed(prefix, reply, index, vendor, problems):
            continue
        if prefix in ("+QENG", "+CPSI"):
            groups.setdefault(prefix, []).append(index)
            continue
        try:
            known = prefix is not None and _read_line(prefix, line, found)
        except ATParseError as exc:
            problems.append(Problem(reply.command, "unparsed", line, f"expected {exc.expected}", reply.number(index)))
            continue
        if known:
            found.any = True
        else:
            what = f"an answer to {reply.command}" if reply.command else "a line"
            problems.append(Problem(reply.command, "unread", line, f"{what} that is not read (not a signal, "
                                    "operator or registration answer)", reply.number(index)))
    for prefix, indexes in groups.items():
        lines = [reply.lines[i] for i in indexes]
        try:
            cell = parse_qeng(lines) if prefix == "+QENG" else parse_cpsi(lines)
        except ATParseError as exc:
            at_index = next((i for i in indexes if reply.lines[i] == exc.line), indexes[0])
            problems.append(Problem(reply.command, "unparsed", exc.line or lines[0], f"expected {exc.expected}",
                                    reply.number(at_index)))
            continue
        if prefix == "+QENG":
            found.qeng = cell
        else:
            found.cpsi = cell
        found.any = True

    if expected is not None and not any(prefix_of(line) == expected for line in reply.lines):
        problems.append(Problem(reply.command, "missing", reply.final or "", f"answered without a {expected}: line",
                                reply.final_number))


def _allowed(prefix: str, reply: Reply, index: int, vendor: Vendor | None, problems: list[Problem]) -> bool:
    """Return True unless the line is another vendor's answer than the one the modem is read as."""
    owner = _OWNER.get(prefix)
    if owner is None or vendor is None or owner == vendor:
        return True
    line = reply.lines[index] if index < len(reply.lines) else ""
    problems.append(Problem(reply.command, "unread", line, f"a {owner} answer, but the modem is read as {vendor}",
                            reply.number(index)))
    return False


def _read_line(prefix: str, line: str, found: _Answers) -> bool:
    """Parse a one-line answer into ``found``; return False for a prefix that is not read."""
    if prefix == "+CSQ":
        found.csq = at.parse_csq(line)
    elif prefix == "+CESQ":
        found.cesq = at.parse_cesq(line)
    elif prefix == "+COPS":
        found.cops = at.parse_cops(line)
    elif prefix == "+CEREG":
        found.cereg = at.parse_creg(line)
    elif prefix == "+C5GREG":
        found.c5greg = at.parse_creg(line)
    elif prefix in ("+CREG", "+CGREG"):
        at.parse_creg(line)  # checked, but service is judged on +CEREG and +C5GREG
    elif prefix == "+QCSQ":
        found.qcsq.append(parse_qcsq(line))
    elif prefix == "+QNWINFO":
        found.qnwinfo = parse_qnwinfo(line)
    else:
        return False
    return True


def _first(*values: float | None) -> float | None:
    """Return the first value that is not None."""
    return next((v for v in values if v is not None), None)


def _reading(found: _Answers) -> Reading:
    """Put the answers of one poll together: vendor answers first, 3GPP answers where they say nothing."""
    serving = found.qeng or found.cpsi or found.gstatus
    cops, cesq, csq, info = found.cops, found.cesq, found.csq, found.qnwinfo
    regs = [r for r in (found.cereg, found.c5greg) if r is not None]
    on = [r for r in regs if r.registered]

    if regs:
        registered: bool | None = bool(on)
    else:
        registered = serving.registered if serving is not None else None

    rat = next((r for r in (
        serving.rat if serving is not None else None,
        cops.rat if cops is not None else None,
        *(r.rat for r in on),
        *(r.rat for r in regs),
        info.rat if info is not None else None,
    ) if r), None)  # fmt: skip

    cell_id: int | None = None
    cell_kind: Literal["lte", "nr"] | None = None
    if serving is not None and serving.cell_id is not None:
        cell_id = serving.cell_id
        if serving.rat in ("lte", "nr5g-nsa"):
            cell_kind = "lte"
        elif serving.rat == "nr5g-sa":
            cell_kind = "nr"
    else:
        reg = next((r for r in on + regs if r.cell_id is not None), None)
        if reg is not None:
            cell_id = reg.cell_id
            cell_kind = "nr" if reg.command == "C5GREG" else "lte"
    if rat in ("umts", "gsm"):
        cell_kind = None

    lte_qcsq = next((q for q in found.qcsq if q.sysmode == "LTE"), None)
    other_qcsq = next((q for q in found.qcsq if q.sysmode in ("WCDMA", "GSM")), None)
    anchor_is_lte = serving is None or serving.rat in ("lte", "nr5g-nsa")
    sv = serving if serving is not None else ServingCell(rat=None)
    qcsq_lte = lte_qcsq if anchor_is_lte and lte_qcsq is not None else Qcsq(sysmode="")
    nr = sv.nr or NrLeg()
    return Reading(
        rat=rat,
        plmn=(cops.plmn if cops is not None else None) or sv.plmn or (info.plmn if info is not None else None),
        band=sv.band or (info.band if info is not None else None),
        cell_id=cell_id,
        cell_kind=cell_kind,
        pci=sv.pci,
        registered=registered,
        rsrp_dbm=_first(sv.rsrp_dbm, qcsq_lte.rsrp_dbm, cesq.rsrp_dbm if cesq is not None else None),
        rsrq_db=_first(sv.rsrq_db, qcsq_lte.rsrq_db, cesq.rsrq_db if cesq is not None else None),
        # AT+QCSQ's SINR code is documented; QENG's is firmware-dependent, so QCSQ wins on LTE.
        sinr_db=_first(qcsq_lte.sinr_db, sv.sinr_db),
        rssi_dbm=_first(
            sv.rssi_dbm,
            qcsq_lte.rssi_dbm,
            other_qcsq.rssi_dbm if other_qcsq is not None else None,
            csq.rssi_dbm if csq is not None else None,
        ),
        nr_rsrp_dbm=nr.rsrp_dbm,
        nr_rsrq_db=nr.rsrq_db,
        nr_sinr_db=nr.sinr_db,
    )


def to_sample(
    reading: Reading,
    *,
    now_ns: int,
    modem: str | None = None,
    carrier: str | None = None,
    gnb_id_bits: int = 24,
) -> Sample:
    """Return the ``cellular`` sample for a reading; ``carrier`` is used when the modem gave no PLMN."""
    tags: dict[str, str] = {}
    if reading.plmn or carrier:
        tags["carrier"] = reading.plmn or carrier or ""
    if modem is not None:
        tags["modem"] = modem
    if reading.rat:
        tags["rat"] = reading.rat
    if reading.band:
        tags["band"] = reading.band
    fields: dict[str, FieldValue] = {}

    # Every backend's parser bounds its numbers; these checks keep any Reading within the wire contract.
    def put_dbm(name: str, value: float | None) -> None:
        if value is not None and _fits(value):
            fields[name] = round(value)

    def put_db(name: str, value: float | None) -> None:
        if value is not None and _fits(value):
            fields[name] = round(float(value), 2)

    put_dbm("rsrp_dbm", reading.rsrp_dbm)
    put_db("rsrq_db", reading.rsrq_db)
    put_db("sinr_db", reading.sinr_db)
    put_dbm("rssi_dbm", reading.rssi_dbm)
    if reading.registered is not None:
        fields["registered"] = reading.registered
    if reading.pci is not None and _INT64_MIN <= reading.pci <= _INT64_MAX:
        fields["pci"] = reading.pci
    if reading.cell_id is not None and 0 <= reading.cell_id < _CELL_LIMIT:
        tags["cell"] = f"{reading.cell_id:X}"
        if reading.cell_kind == "lte" and reading.cell_id < _ECI_LIMIT:
            lte = at.split_cell_id(reading.cell_id)
            fields["enb_id"], fields["sector"] = lte.enb_id, lte.sector
        elif reading.cell_kind == "nr" and reading.cell_id < _NCI_LIMIT:
            nr = at.split_nr_cell_id(reading.cell_id, gnb_id_bits)
            fields["gnb_id"], fields["sector"] = nr.gnb_id, nr.sector
    put_dbm("nr_rsrp_dbm", reading.nr_rsrp_dbm)
    put_db("nr_rsrq_db", reading.nr_rsrq_db)
    put_db("nr_sinr_db", reading.nr_sinr_db)
    return Sample(measurement="cellular", tags=tags, fields=fields, time_ns=now_ns)
