"""ModemManager's answers to a cellular reading, pure: the JSON that ``mmcli -J`` prints, parsed, and put
together into one ``vendors.Reading`` (``agent.sources.mmcli`` runs mmcli and hands its output here).

Every value mmcli prints is a string; ``--`` (and a missing key: older ModemManager releases have no
``5g.rssi`` and no ``threshold`` block) means unknown, and so does a number beyond the signed 64-bit range (no
reading is that large; the sample must not carry it). The cell info is a list of strings such as
``"cell type: lte, serving: yes, operator id: 45204, tac: 1A2B, ci: 5F1EA15, physical ci: 188, earfcn: 1650"``.

Map::

    parse_number(text)          "-104.00", "-67,00", "--"       -> float | None (None beyond 64 bits too)
    parse_status(document)      JSON of mmcli -m N -J            -> ModemStatus
    parse_signal(document)      JSON of mmcli -m N --signal-get  -> SignalReport
    parse_cell_info(document)   JSON of mmcli -m N --get-cell-info -> CellInfo | None (the serving cell)
    parse_modem_list(document)  JSON of mmcli -L                 -> modem indexes
    reading(status, signal, cell)  all                           -> vendors.Reading

Exceptions::

    ValueError
     └── MmcliParseError   JSON that is not what mmcli prints; the message names the key
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from agent.sources.vendors import Reading

__all__ = [
    "MmcliParseError",
    "ModemStatus",
    "SignalReport",
    "CellInfo",
    "parse_cell_info",
    "parse_modem_list",
    "parse_number",
    "parse_status",
    "parse_signal",
    "reading",
]

_UNKNOWN: Final = frozenset({"", "--"})
_LIMIT: Final = float(2**63)  # a value at least this large (in magnitude) is no reading: unknown
_NUMBER = re.compile(r"^[+-]?[0-9]+(?:[.,][0-9]+)?$")
# registration-state values (MMModem3gppRegistrationState) that mean the modem has service
_REGISTERED: Final = frozenset({
    "home", "roaming", "home-sms-only", "roaming-sms-only", "home-csfb-not-preferred", "roaming-csfb-not-preferred",
})  # fmt: skip
_NOT_REGISTERED: Final = frozenset({"idle", "searching", "denied", "unknown", "emergency-only", "attached-rlos"})
_UMTS: Final = frozenset({"umts", "hsdpa", "hsupa", "hspa", "hspa-plus"})
_GSM: Final = frozenset({"gsm", "gsm-compact", "gprs", "edge"})
_RATS: Final = ("gsm", "umts", "lte", "5g")
_VALUES: Final = ("rssi", "rscp", "ecio", "rsrp", "rsrq", "snr")


class MmcliParseError(ValueError):
    """JSON that does not have the shape mmcli prints; the message names the key."""


@dataclass(frozen=True, slots=True)
class ModemStatus:
    """What ``mmcli -m N -J`` says about registration and technology."""

    state: str | None  # generic.state: registered, connected, searching, ...
    registration: str | None  # 3gpp.registration-state: home, roaming, searching, ...
    access_technologies: tuple[str, ...]  # generic.access-technologies, e.g. ("lte", "5gnr")
    plmn: str | None  # 3gpp.operator-code as "452-04"
    manufacturer: str | None = None
    model: str | None = None
    imei: str | None = None  # 3gpp.imei, else generic.equipment-identifier

    @property
    def registered(self) -> bool | None:
        """Return whether the modem has service, None if mmcli does not say."""
        if self.registration in _REGISTERED:
            return True
        if self.registration in _NOT_REGISTERED:
            return False
        return None

    @property
    def rat(self) -> str | None:
        """Return the rat tag value for the access technologies (lte and 5gnr together are EN-DC)."""
        techs = set(self.access_technologies)
        if "5gnr" in techs:
            return "nr5g-nsa" if techs & {"lte", "lte-cat-m"} else "nr5g-sa"
        if "lte" in techs:
            return "lte"
        if "lte-cat-m" in techs:
            return "lte-m"
        if "lte-nb-iot" in techs:
            return "nbiot"
        if techs & _UMTS:
            return "umts"
        if techs & _GSM:
            return "gsm"
        return None


@dataclass(frozen=True, slots=True)
class SignalReport:
    """What ``mmcli -m N --signal-get -J`` says: values per RAT ("lte", "5g", "umts", "gsm"), None if unknown."""

    refresh_rate_s: float | None  # None when the key is missing (older ModemManager)
    values: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def get(self, rat: str, name: str) -> float | None:
        """Return one value, e.g. ``get("lte", "rsrp")``."""
        return self.values.get(rat, {}).get(name)

    @property
    def all_unknown(self) -> bool:
        """Return True if every signal value reads "--" (what ModemManager shows before polling is set up)."""
        return all(v is None for block in self.values.values() for v in block.values())


def parse_number(text: object) -> float | None:
    """Return the number in an mmcli value ("-104.00", or "-67,00" from a non-C locale), None for "--" and for a
    number beyond the signed 64-bit range (400 digits would even be infinite)."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise MmcliParseError(f"expected a string value, got {text!r}")
    value = text.strip()
    if value in _UNKNOWN:
        return None
    if not _NUMBER.match(value):
        raise MmcliParseError(f"expected a number or '--', got {text!r}")
    number = float(value.replace(",", "."))  # float() has no digit limit
    return number if -_LIMIT < number < _LIMIT else None  # also False for infinity


def _object(document: Any, *path: str) -> Mapping[str, Any]:
    """Return the object at ``path``; an empty one if a key is missing, an error if something is not an object."""
    node = document
    for depth, key in enumerate(path):
        if not isinstance(node, Mapping):
            raise MmcliParseError(f"{'.'.join(path[:depth]) or 'the document'}: expected a JSON object")
        node = node.get(key, {})
    if not isinstance(node, Mapping):
        raise MmcliParseError(f"{'.'.join(path)}: expected a JSON object")
    return node


def _text(node: Mapping[str, Any], key: str, where: str) -> str | None:
    """Return a string value, None if missing or "--"."""
    value = node.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MmcliParseError(f"{where}.{key}: expected a string, got {value!r}")
    return None if value.strip() in _UNKNOWN else value.strip()


def parse_status(document: Any) -> ModemStatus:
    """Read the parts of ``mmcli -m N -J`` that matter; missing keys are unknown values."""
    if not isinstance(document, Mapping) or not isinstance(document.get("modem"), Mapping):
        raise MmcliParseError("expected a JSON object with a 'modem' object, as mmcli -m N -J prints")
    generic = _object(document, "modem", "generic")
    gpp = _object(document, "modem", "3gpp")
    techs = generic.get("access-technologies", [])
    if isinstance(techs, str):  # a single value printed as a string
        techs = [t.strip() for t in techs.split(",")]
    if not isinstance(techs, list) or not all(isinstance(t, str) for t in techs):
        raise MmcliParseError(f"modem.generic.access-technologies: expected a list of strings, got {techs!r}")
    code = _text(gpp, "operator-code", "modem.3gpp")
    plmn = f"{code[:3]}-{code[3:]}" if code is not None and code.isdigit() and len(code) in (5, 6) else None
    return ModemStatus(
        state=_text(generic, "state", "modem.generic"),
        registration=_text(gpp, "registration-state", "modem.3gpp"),
        access_technologies=tuple(t.strip() for t in techs if t.strip() not in _UNKNOWN),
        plmn=plmn,
        manufacturer=_text(generic, "manufacturer", "modem.generic"),
        model=_text(generic, "model", "modem.generic"),
        imei=_text(gpp, "imei", "modem.3gpp") or _text(generic, "equipment-identifier", "modem.generic"),
    )


@dataclass(frozen=True, slots=True)
class CellInfo:
    """The serving cell as ``mmcli --get-cell-info`` describes it."""

    kind: str  # cell type: lte, 5gnr, umts, gsm
    plmn: str | None = None
    cell_id: int | None = None
    pci: int | None = None
    area: int | None = None


def parse_cell_info(document: Any) -> CellInfo | None:
    """Return the serving cell of ``mmcli -m N --get-cell-info -J`` (a list of "key: value, ..." strings under
    modem.generic.cell-info, or modem.cell-info), None if no cell says ``serving: yes``."""
    if not isinstance(document, Mapping) or not isinstance(document.get("modem"), Mapping):
        raise MmcliParseError("expected a JSON object with a 'modem' object, as mmcli --get-cell-info -J prints")
    cells = _object(document, "modem", "generic").get("cell-info", document["modem"].get("cell-info", []))
    if not isinstance(cells, list) or not all(isinstance(c, str) for c in cells):
        raise MmcliParseError(f"modem.generic.cell-info: expected a list of strings, got {cells!r}")
    for text in cells:
        info = {k.strip().lower(): v.strip() for k, _, v in (p.partition(":") for p in text.split(","))}
        if info.get("serving") != "yes":
            continue
        code = info.get("operator id", "")
        return CellInfo(
            kind=info.get("cell type", ""),
            plmn=f"{code[:3]}-{code[3:]}" if code.isdigit() and len(code) in (5, 6) else None,
            cell_id=_hex_or_none(info.get("ci")),
            pci=int(info["physical ci"]) if info.get("physical ci", "").isdigit()
            and len(info["physical ci"]) < 6 else None,
            area=_hex_or_none(info.get("tac") or info.get("lac")),
        )
    return None


def _hex_or_none(text: str | None) -> int | None:
    """Return a hex id of at most 16 digits (cell id, TAC), None for anything else."""
    if text is None or not re.fullmatch(r"[0-9A-Fa-f]{1,16}", text):
        return None
    return int(text, 16)


def parse_modem_list(document: Any) -> list[int]:
    """Return the modem indexes of ``mmcli -L -J`` ({"modem-list": ["/org/freedesktop/ModemManager1/Modem/3"]})."""
    if not isinstance(document, Mapping):
        raise MmcliParseError("expected a JSON object, as mmcli -L -J prints")
    paths = document.get("modem-list", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise MmcliParseError(f"modem-list: expected a list of strings, got {paths!r}")
    return [int(m[1]) for m in (re.search(r"/Modem/([0-9]{1,9})$", p) for p in paths) if m]


def parse_signal(document: Any) -> SignalReport:
    """Read ``mmcli -m N --signal-get -J``: the refresh rate and each RAT's values."""
    if not isinstance(document, Mapping) or not isinstance(document.get("modem"), Mapping):
        raise MmcliParseError("expected a JSON object with a 'modem' object, as mmcli --signal-get -J prints")
    signal = _object(document, "modem", "signal")
    refresh = _object(document, "modem", "signal", "refresh")
    rate_text = refresh.get("rate")
    try:
        rate = parse_number(rate_text) if rate_text is not None else None
    except MmcliParseError as exc:
        raise MmcliParseError(f"modem.signal.refresh.rate: {exc}") from None
    values: dict[str, dict[str, float | None]] = {}
    for rat in _RATS:
        block = signal.get(rat)
        if block is None:
            continue
        if not isinstance(block, Mapping):
            raise MmcliParseError(f"modem.signal.{rat}: expected a JSON object")
        out: dict[str, float | None] = {}
        for name in _VALUES:
            if name in block:
                try:
                    out[name] = parse_number(block[name])
                except MmcliParseError as exc:
                    raise MmcliParseError(f"modem.signal.{rat}.{name}: {exc}") from None
        values[rat] = out
    return SignalReport(refresh_rate_s=rate, values=values)


def reading(status: ModemStatus, signal: SignalReport | None, cell: CellInfo | None = None) -> Reading:
    """Put the status, the signal and the serving cell together: the main fields are the serving RAT's, the NR
    leg's on EN-DC; each value's origin is the mmcli call that gave it."""
    rat = status.rat
    s = signal if signal is not None else SignalReport(refresh_rate_s=None)
    if rat in ("lte", "lte-m", "nr5g-nsa", "nbiot"):
        main = "lte"
    elif rat == "nr5g-sa":
        main = "5g"
    elif rat in ("umts", "gsm"):
        main = rat
    else:  # unknown technology: the first RAT that has values
        main = next((r for r in ("lte", "5g", "umts", "gsm") if any(
            v is not None for v in s.values.get(r, {}).values())), "lte")  # fmt: skip
    nsa = rat == "nr5g-nsa"
    values = {
        "rsrp_dbm": s.get(main, "rsrp"),
        "rsrq_db": s.get(main, "rsrq"),
        "sinr_db": s.get(main, "snr"),
        "rssi_dbm": s.get(main, "rssi"),
        "rscp_dbm": s.get("umts", "rscp") if main == "umts" else None,
        "ecio_db": s.get("umts", "ecio") if main == "umts" else None,
        "nr_rsrp_dbm": s.get("5g", "rsrp") if nsa else None,
        "nr_rsrq_db": s.get("5g", "rsrq") if nsa else None,
        "nr_sinr_db": s.get("5g", "snr") if nsa else None,
    }
    origin = tuple((name, "mmcli --signal-get") for name, value in values.items() if value is not None)
    # the serving cell: the LTE anchor's on EN-DC (the id kind must match the cell type)
    wanted = {"lte": "lte", "lte-m": "lte", "nbiot": "lte", "nr5g-nsa": "lte", "nr5g-sa": "5gnr"}.get(rat or "")
    use = cell if cell is not None and (wanted is None or cell.kind == wanted) else None
    kind: Literal["lte", "nr"] | None = None
    if use is not None:
        kind = "lte" if use.kind == "lte" else "nr" if use.kind == "5gnr" else None
        origin += (("pci", "mmcli --get-cell-info"),) if use.pci is not None else ()
    return Reading(
        rat=rat,
        plmn=status.plmn or (use.plmn if use is not None else None),
        registered=status.registered,
        cell_id=use.cell_id if use is not None else None,
        cell_kind=kind,
        pci=use.pci if use is not None else None,
        origin=origin,
        rsrp_dbm=values["rsrp_dbm"],
        rsrq_db=values["rsrq_db"],
        sinr_db=values["sinr_db"],
        rssi_dbm=values["rssi_dbm"],
        rscp_dbm=values["rscp_dbm"],
        ecio_db=values["ecio_db"],
        nr_rsrp_dbm=values["nr_rsrp_dbm"],
        nr_rsrq_db=values["nr_rsrq_db"],
        nr_sinr_db=values["nr_sinr_db"],
    )
