"""Quectel's commands: AT+QENG="servingcell", AT+QCSQ, AT+QNWINFO."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from agent.sources import at
from agent.sources.at import ATParseError
from agent.sources.vendors.common import (
    NrLeg,
    Qcsq,
    Qnwinfo,
    Scales,
    ServingCell,
    _band,
    _fields,
    _hex,
    _integer,
    _need,
    _number,
)

_QUECTEL_UNKNOWN: Final = frozenset({-32768, 32768, 65535, 255})  # measurements (RSRP, RSRQ, RSSI, SINR)
_QENG_LTE_SINR_DB_MAX: Final = 40  # above this a QENG LTE SINR is the 0..250 code of AT+QCSQ, not dB
_SINR_DB: Final = (-23, 40)  # what a SINR in dB can be (the catalogue's bounds, TS 38.133 SS-SINR range)

_QENG_SHAPE: Final = '\'+QENG: "servingcell",<state>[,<RAT>,...]\' or an EN-DC line \'+QENG: "LTE"|"NR5G-NSA",...\''
_QENG_REGISTERED: Final = {"NOCONN": True, "CONNECT": True, "SEARCH": False, "LIMSRV": False}
_QENG_LTE_KINDS: Final = {"LTE": "lte", "CAT-M": "lte-m", "EMTC": "lte-m", "CAT-NB": "nbiot", "NBIOT": "nbiot"}


def parse_qeng(lines: Sequence[str], scales: Scales | None = None) -> ServingCell:
    """Parse the answer to ``AT+QENG="servingcell"`` in any layout: LTE (and LTE-M, NB-IoT: BG9x print
    "CAT-M"/"eMTC", "CAT-NB"/"NBIoT" with the LTE fields), EN-DC (three lines), NR SA, WCDMA, GSM. ``scales``
    holds what the modem's firmware was seen to print (see Scales) and learns from this answer."""
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
            lte = _qeng_lte(line, rest, "lte", scales)
        elif rat in _QENG_LTE_KINDS:
            other = _qeng_lte(line, rest, _QENG_LTE_KINDS[rat], scales)
        elif rat == "NR5G-NSA":
            leg = _qeng_nsa(line, rest, scales)
        elif rat == "NR5G-SA":
            other = _qeng_sa(line, rest, scales)
        elif rat == "WCDMA":
            other = _qeng_wcdma(line, rest)
        elif rat == "GSM":
            other = _qeng_gsm(line, rest)
        else:
            raise ATParseError(line, "a RAT of LTE, CAT-M, eMTC, CAT-NB, NBIoT, NR5G-NSA, NR5G-SA, WCDMA or GSM, "
                                     f"got {values[0]!r}")

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


def _quectel_lte_sinr(raw: float | None, scales: Scales | None) -> float | None:
    """Return a QENG LTE SINR in dB. The EC2x/BG9x manuals define it as the 0..250 code of AT+QCSQ (1/5 dB from
    -20 dB: dB = v/5 - 20), later firmware prints dB; the two overlap from 0 to 40, so up to 40 it is read as dB
    unless this modem printed a value above 40 before (then it is the code), and above 40 as the code. A value
    beyond both (a negative code, or above 250) is returned as printed, for the bounds check to refuse."""
    if raw is None:
        return None
    code = 0 <= raw <= 250 and (raw > _QENG_LTE_SINR_DB_MAX or (scales is not None and scales.lte_sinr_code))
    if code and raw > _QENG_LTE_SINR_DB_MAX and scales is not None:
        scales.lte_sinr_code = True
    return raw / 5 - 20 if code else raw


def _quectel_nr_sinr(raw: float | None, scales: Scales | None) -> float | None:
    """Return a QENG NR SINR in dB. The RM50xQ/RM52xN manuals give dB; early RM500Q firmware printed tenths of a
    dB (180 for 18.0 dB, beside QMI's 18.5 dB on the same modem). A value no SINR in dB can have (beyond -23..40)
    that tenths explain (-230..400) marks this modem as printing tenths, and then every value is read so; a
    value beyond both is returned as printed, for the bounds check to refuse."""
    if raw is None:
        return None
    low, high = _SINR_DB
    if scales is not None and scales.nr_sinr_tenths:
        return raw / 10
    if low <= raw <= high:
        return raw
    if low * 10 <= raw <= high * 10:
        if scales is not None:
            scales.nr_sinr_tenths = True
        return raw / 10
    return raw


def _qeng_lte(line: str, v: Sequence[str], rat: str, scales: Scales | None) -> ServingCell:
    """Read the LTE fields: EC2x and BG9x have 15 after the RAT, RM5xx 17 (CQI and tx power before srxlev).
    RSRP and RSSI in dBm, RSRQ in dB as printed; SINR see _quectel_lte_sinr."""
    # <is_tdd>,<MCC>,<MNC>,<cellID>,<PCID>,<earfcn>,<band>,<UL_bw>,<DL_bw>,<TAC>,<RSRP>,<RSRQ>,<RSSI>,<SINR>,
    # [<CQI>,<tx_power>,]<srxlev>
    if len(v) not in (15, 17):
        raise ATParseError(line, f'15 (EC2x) or 17 (RM5xx) fields after "LTE", got {len(v)}')
    q = _QUECTEL_UNKNOWN
    return ServingCell(
        rat=rat,
        plmn=at.format_plmn(v[1], v[2]),
        cell_id=_hex(line, "cell id", v[3]),
        pci=_integer(line, "PCI", v[4]),
        channel=_integer(line, "EARFCN", v[5]),
        band=_band("B", v[6]),
        area=_hex(line, "TAC", v[9]),
        rsrp_dbm=_number(line, "RSRP", v[10], q),
        rsrq_db=_number(line, "RSRQ", v[11], q),
        rssi_dbm=_number(line, "RSSI", v[12], q),
        sinr_db=_quectel_lte_sinr(_number(line, "SINR", v[13], q), scales),
    )


def _qeng_nsa(line: str, v: Sequence[str], scales: Scales | None) -> NrLeg:
    """Read the NR5G-NSA line; note SINR before RSRQ (the SA line has them the other way round)."""
    # <MCC>,<MNC>,<PCID>,<RSRP>,<SINR>,<RSRQ>[,<ARFCN>,<band>,<NR_DL_bw>,<scs>]
    _need(line, v, 6, '"NR5G-NSA",<MCC>,<MNC>,<PCID>,<RSRP>,<SINR>,<RSRQ>,...')
    q = _QUECTEL_UNKNOWN
    return NrLeg(
        pci=_integer(line, "PCI", v[2]),
        rsrp_dbm=_number(line, "RSRP", v[3], q),
        sinr_db=_quectel_nr_sinr(_number(line, "SINR", v[4], q), scales),
        rsrq_db=_number(line, "RSRQ", v[5], q),
        arfcn=_integer(line, "ARFCN", v[6]) if len(v) > 6 else None,
        band=_band("n", v[7]) if len(v) > 7 else None,
    )


def _qeng_sa(line: str, v: Sequence[str], scales: Scales | None) -> ServingCell:
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
        sinr_db=_quectel_nr_sinr(_number(line, "SINR", v[11], q), scales),
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


_QCSQ_LTE_KINDS: Final = frozenset({"LTE", "CAT-M1", "CAT-NB1", "EMTC", "NBIOT"})


def parse_qcsq(line: str) -> Qcsq:
    """Parse one ``+QCSQ:`` line; the LTE SINR code 0..250 becomes dB = v/5 - 20. LTE-M and NB-IoT (BG96:
    "CAT-M1", "CAT-NB1"; BG95: "eMTC", "NBIoT") have the LTE fields. Values are taken as printed: one whose sign
    the firmware left out (RSSI ``77``) is refused by the bounds check, never turned into +77 dBm."""
    v = _fields(line, "+QCSQ", _QCSQ_SHAPE)
    mode, rest = v[0].upper(), v[1:]
    q = _QUECTEL_UNKNOWN
    if mode in _QCSQ_LTE_KINDS:  # <rssi>,<rsrp>,<sinr 0-250>,<rsrq>
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
    if mode == "NR5G":  # <rsrp>,<sinr>,<rsrq>; SINR's unit is not settled across firmware: not read
        _need(line, rest, 3, '"NR5G",<rsrp>,<sinr>,<rsrq>')
        _number(line, "SINR", rest[1], q)  # checked for garbage like the others
        return Qcsq(
            sysmode=mode,
            rsrp_dbm=_number(line, "RSRP", rest[0], q),
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
    return Qcsq(sysmode=mode)  # NOSERVICE, TDSCDMA, ...: nothing to read


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
    if any(w in word for w in ("CAT-M", "EMTC")):
        return "lte-m"
    if any(w in word for w in ("CAT-NB", "NBIOT", "NB-IOT")):
        return "nbiot"
    if "LTE" in word:
        return "lte"
    if any(w in word for w in ("WCDMA", "HSDPA", "HSUPA", "HSPA", "TDSCDMA")):
        return "umts"
    if any(w in word for w in ("GSM", "GPRS", "EDGE")):
        return "gsm"
    return None
