"""What every vendor module shares: the vendors, their poll commands, the parsed shapes and the field helpers."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from agent.sources import at
from agent.sources.at import ATParseError

Vendor = Literal["generic", "quectel", "simcom", "sierra"]
VENDORS: Final[tuple[Vendor, ...]] = ("generic", "quectel", "simcom", "sierra")

_3GPP_POLL: Final = ("AT+CSQ", "AT+CESQ", "AT+COPS?", "AT+CREG?", "AT+CGREG?", "AT+CEREG?")
_VENDOR_POLL: Final[dict[Vendor, tuple[str, ...]]] = {
    "generic": (),
    "quectel": ('AT+QENG="servingcell"', "AT+QCSQ", "AT+QNWINFO"),
    "simcom": ("AT+CPSI?",),
    "sierra": ("AT!GSTATUS?",),
}
# Manufacturer names as ATI and AT+CGMI print them ("Quectel", "SIMCOM INCORPORATED", "Sierra Wireless, Inc.").
_MAKERS: Final[tuple[tuple[str, Vendor], ...]] = (("quectel", "quectel"), ("simcom", "simcom"), ("sierra", "sierra"))

_UNKNOWN_TEXT: Final = frozenset({"", "-", "--", "---"})
_ID_UNKNOWN: Final = frozenset({65535})  # PCI, channel: 255 is a real PCI
_LTE_RATS: Final = frozenset({"lte", "lte-m", "nbiot", "nr5g-nsa"})  # the serving cell id is an LTE ECI
_ECI_LIMIT: Final = 1 << 28
_NCI_LIMIT: Final = 1 << 36
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_CELL_LIMIT: Final = 1 << 64  # a cell id beyond 64 bits is garbage: it gets no cell tag (at most 16 hex digits)


def detect_vendor(text: str) -> Vendor | None:
    """Return the vendor named in an ATI or AT+CGMI answer, or None if it names none this module knows."""
    low = text.lower()
    return next((vendor for name, vendor in _MAKERS if name in low), None)


def revision_of(text: str) -> str | None:
    """Return the firmware revision in an ATI answer ("Revision: RM500QGLABR11A06M4G"), None if it names none."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "revision" and value.strip():
            return value.strip()
    return None


@dataclass(slots=True)
class Scales:
    """What one modem's firmware was seen to print, where the vendors' firmware differ (kept per modem and
    firmware revision: a new revision starts over).

    ``nr_sinr_tenths``: Quectel NR SINR (QENG NR5G-SA/NR5G-NSA) in tenths of a dB (early RM500Q firmware:
    ``180`` for 18.0 dB) rather than dB; learnt from the first value no SINR in dB can have (beyond -23..40).
    ``lte_sinr_code``: Quectel QENG LTE SINR as the 0..250 code of AT+QCSQ (dB = v/5 - 20) rather than dB;
    learnt from the first value above 40.
    """

    revision: str | None = None
    nr_sinr_tenths: bool = False
    lte_sinr_code: bool = False


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

    rat: str | None  # lte, lte-m, nbiot, nr5g-sa, nr5g-nsa, umts, gsm; None while searching or with no service
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
