"""Sierra Wireless's command: AT!GSTATUS?."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

from agent.sources import at
from agent.sources.at import ATParseError
from agent.sources.vendors.common import (
    _UNKNOWN_TEXT,
    NrLeg,
    ServingCell,
    _band,
    _fits,
    _hex,
)

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
