"""The facts about modems: cellular readings within the coverage window, and active QoS test results.

Records: ``Reading`` (one ``cellular`` sample: RSRP, registration, technology, SINR, RSRQ) and ``Modem`` (one
modem's readings, oldest first, bounded by the window and ``MAX_READINGS``). ``CellularObservers`` holds them
with each modem's QoS history (``collector.alerting.qos``) and applies ``cellular`` and ``qos`` samples.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Final

from collector.alerting.config import RuleSettings
from collector.alerting.facts.devices import DeviceObservers
from collector.alerting.facts.fields import _bool, _number
from collector.alerting.qos import QosHistory
from zonewatch import wire

MAX_READINGS: Final = 64            # cellular readings kept per modem (within the coverage window)


@dataclass(slots=True, frozen=True)
class Reading:
    """One cellular reading of one modem."""

    time_ns: int
    rsrp_dbm: float | None
    registered: bool | None
    rat: str | None
    sinr_db: float | None = None   # the serving cell's SINR and RSRQ: interference when RSRP is fine
    rsrq_db: float | None = None


@dataclass(slots=True)
class Modem:
    """Readings of one modem within the coverage window, oldest first."""

    zone: str
    readings: list[Reading] = field(default_factory=list)

    @property
    def latest(self) -> Reading | None:
        """Return the newest reading."""
        return self.readings[-1] if self.readings else None


class CellularObservers(DeviceObservers):
    """The modems' facts and how samples set them (see ``collector.alerting.facts``)."""

    def __init__(self, settings: RuleSettings) -> None:
        super().__init__(settings)
        self.coverage_window_ns = int(settings.coverage_window * 1e9)
        self.cellular: dict[tuple[str, str, str], Modem] = {}
        self.modems_of: dict[str, list[tuple[str, str, str]]] = {}  # probe -> its cellular keys
        self.qos: dict[tuple[str, str, str], QosHistory] = {}   # (probe, carrier, modem) -> recent QoS results
        self.qos_window_ns = int(max(settings.qos.access_window, settings.qos.transfer_window) * 1e9)

    def _cellular(self, batch: wire.Batch, sample: wire.Sample) -> None:
        carrier, modem = sample.tags.get("carrier", ""), sample.tags.get("modem", "")
        key = (batch.probe, carrier, modem)
        state = self.cellular.get(key)
        if state is None:
            state = self.cellular[key] = Modem(batch.zone)
            self.modems_of.setdefault(batch.probe, []).append(key)
        reading = Reading(sample.time_ns, _number(sample.fields.get("rsrp_dbm")),
                          _bool(sample.fields.get("registered")), sample.tags.get("rat"),
                          _number(sample.fields.get("sinr_db")), _number(sample.fields.get("rsrq_db")))
        readings = state.readings
        newest = max(reading.time_ns, readings[-1].time_ns if readings else reading.time_ns)
        if reading.time_ns < newest - self.coverage_window_ns:
            return  # replayed: older than the window the rules look at
        if not readings or reading.time_ns >= readings[-1].time_ns:
            readings.append(reading)
        else:
            readings.insert(bisect.bisect_right([r.time_ns for r in readings], reading.time_ns), reading)
        cut = bisect.bisect_left([r.time_ns for r in readings], newest - self.coverage_window_ns)
        drop = max(cut, len(readings) - MAX_READINGS)
        if drop:
            del readings[:drop]

    def _qos(self, batch: wire.Batch, sample: wire.Sample) -> None:
        key = (batch.probe, sample.tags.get("carrier", ""), sample.tags.get("modem", ""))
        history = self.qos.get(key)
        if history is None:
            history = self.qos[key] = QosHistory(batch.zone)
        history.add(sample, self.qos_window_ns)
