"""SIMCom's command: AT+CPSI?."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Final

from agent.sources import at
from agent.sources.at import ATParseError
from agent.sources.vendors.common import (
    NrLeg,
    ServingCell,
    _band,
    _fields,
    _fits,
    _hex,
    _integer,
    _need,
    _number,
)

_SIMCOM_UNKNOWN: Final = frozenset({-32768, 32768})

_CPSI_SHAPE: Final = "'+CPSI: <system mode>,<operation mode>,...'"
# SIM7000/SIM7080: LTE-M and NB-IoT with the LTE fields
_CPSI_IOT: Final = {"LTE CAT-M1": "lte-m", "CAT-M1": "lte-m", "LTE NB-IOT": "nbiot", "CAT-NB1": "nbiot"}
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
    elif mode in _CPSI_IOT:
        cell = replace(_cpsi_lte(line, rest), rat=_CPSI_IOT[mode])
    elif mode == "NR5G_SA":
        cell = _cpsi_sa(line, rest)
    elif mode == "WCDMA":
        cell = _cpsi_identity(line, rest, "umts")
    elif mode == "GSM":
        cell = _cpsi_identity(line, rest, "gsm")
    elif mode == "NO SERVICE":
        return ServingCell(rat=None, state=mode, registered=False)
    else:
        raise ATParseError(line, "a system mode of LTE, LTE CAT-M1, LTE NB-IOT, NR5G_SA, WCDMA, GSM or NO SERVICE, "
                                 f"got {v[0]!r}")
    for extra in lines[1:]:
        w = _fields(extra, "+CPSI", _CPSI_SHAPE)
        if w[0].upper() not in ("NR5G_NSA", "NR5G") or cell.rat != "lte":
            raise ATParseError(extra, "only an NR5G_NSA line after the LTE line")
        if len(w) == 6:  # the first SIM8200 firmware: "NR5G,<PCI>,<arfcn>,..." without the band, order not documented
            continue
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
    """Read the LTE fields. SIMCom's manual: RSRQ, RSRP and RSSI in tenths (-94 is -9.4 dB, -850 is -85.0 dBm);
    RSSNR is not dB but a code, SINR = 2 * RSSNR - 20 (SINR -20 to 30 dB, so RSSNR 0 to 25)."""
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
        sinr_db=_rssnr(_number(line, "RSSNR", v[12], s)),
    )


def _rssnr(code: float | None) -> float | None:
    """Return SIMCom's LTE RSSNR in dB (2 * v - 20); a code outside 0..25 gives a value the bounds check refuses
    when it is beyond what a SINR can be."""
    return None if code is None else 2 * code - 20


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
        sinr_db=_tenths(line, "SNR", v[9]),
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
        sinr_db=_tenths(line, "SNR", v[5]),
    )


def _tenths(line: str, name: str, text: str) -> float | None:
    """Return an NR SNR in dB: SIM8200 firmware prints tenths (290 for 29.0 dB), the first printed dB with a
    decimal point (8.5)."""
    return _number(line, name, text, _SIMCOM_UNKNOWN, scale=1 if "." in text else 10)


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
