"""A modem's state at one poll, whatever the backend (AT commands, ModemManager): the ``Reading``, the check of
its values against their fields' physical bounds (``guard``, which lists what it drops as ``Rejected``), and the
``cellular`` sample made of it (``to_sample``). Pure; ``poll`` makes a Reading of one poll's AT replies,
``agent.sources.mmcli`` of ModemManager's answers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final, Literal

from agent.sources import at
from agent.sources.vendors.common import _CELL_LIMIT, _ECI_LIMIT, _NCI_LIMIT, _fits
from zonewatch.measurements import CATALOGUE
from zonewatch.wire import FieldValue, Sample

__all__ = ["Reading", "Rejected", "guard", "to_sample", "within"]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A value that is not physically possible for its field (a scale or a sign misread): dropped, not stored."""

    field: str
    command: str  # the command (or mmcli call) that gave it
    value: float

    def __str__(self) -> str:
        """Return the rejection as a log phrase."""
        spec = _SPECS[self.field]
        return (f"{self.command}: {self.field} = {self.value:g} {spec.unit} dropped: outside what is physically "
                f"possible [{spec.low:g}, {spec.high:g}]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reading:
    """One modem's state at one poll, whatever the backend: the input of ``to_sample``. ``origin`` says which
    command gave each value; ``rejected`` holds the values dropped as physically impossible."""

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
    rscp_dbm: float | None = None
    ecio_db: float | None = None
    origin: tuple[tuple[str, str], ...] = ()  # (field, command)
    rejected: tuple[Rejected, ...] = ()


_SPECS: Final = CATALOGUE["cellular"].fields
# Reading attribute -> what it must be within (the catalogue's field of the same name)
_CHECKED: Final = ("rsrp_dbm", "rsrq_db", "sinr_db", "rssi_dbm", "nr_rsrp_dbm", "nr_rsrq_db", "nr_sinr_db",
                   "rscp_dbm", "ecio_db", "pci")


def within(name: str, value: float) -> bool:
    """Return True if ``value`` is finite and within the catalogue's physical bounds of field ``name``."""
    spec = _SPECS[name]
    if not _fits(value):
        return False
    return (spec.low is None or value >= spec.low) and (spec.high is None or value <= spec.high)


def guard(reading: Reading) -> Reading:
    """Return the reading with every value outside its field's physical bounds (zonewatch.measurements) left
    out and listed in ``rejected`` with the command that gave it. Every backend's reading goes through this
    before it becomes a sample."""
    origin = dict(reading.origin)
    dropped: dict[str, None] = {}
    rejected = list(reading.rejected)
    for name in _CHECKED:
        value = getattr(reading, name)
        if value is not None and not within(name, value):
            dropped[name] = None
            rejected.append(Rejected(name, origin.get(name, "unknown"), value))
    if not dropped:
        return reading
    return replace(reading, rejected=tuple(rejected), **dict.fromkeys(dropped))  # type: ignore[arg-type]


def to_sample(
    reading: Reading,
    *,
    now_ns: int,
    modem: str | None = None,
    carrier: str | None = None,
    gnb_id_bits: int = 24,
) -> Sample:
    """Return the ``cellular`` sample for a reading; ``carrier`` is used when the modem gave no PLMN. A value
    outside its field's physical bounds is left out (``guard``: call it first to report what it drops)."""
    reading = guard(reading)
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

    # Every value is within its bounds (guard); rounding keeps it there (the bounds are whole numbers).
    def put_dbm(name: str, value: float | None) -> None:
        if value is not None:
            fields[name] = round(value)

    def put_db(name: str, value: float | None) -> None:
        if value is not None:
            fields[name] = round(float(value), 2)

    put_dbm("rsrp_dbm", reading.rsrp_dbm)
    put_db("rsrq_db", reading.rsrq_db)
    put_db("sinr_db", reading.sinr_db)
    put_dbm("rssi_dbm", reading.rssi_dbm)
    put_dbm("rscp_dbm", reading.rscp_dbm)
    put_db("ecio_db", reading.ecio_db)
    if reading.registered is not None:
        fields["registered"] = reading.registered
    if reading.pci is not None:
        fields["pci"] = int(reading.pci)
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
