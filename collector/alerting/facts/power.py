"""The facts about power and optics: UPS state, optical receive power and its baseline, PON ports' ONUs.

Records: ``PowerFacts`` (one UPS's values, each with its own time), ``Optical`` (one port's latest rx and a
baseline of bucket means over ``optical_baseline``, at most ``OPTICAL_BUCKETS``) and ``Pon`` (one PON port's
ONUs configured and online). ``PowerObservers`` holds them and applies ``power``, ``optical`` and ``pon``
samples; UPS traps reach ``PowerFacts`` through ``collector.alerting.facts.events``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from collector.alerting.config import RuleSettings
from collector.alerting.facts.cellular import CellularObservers
from collector.alerting.facts.fields import _bool, _number
from zonewatch import wire

OPTICAL_BUCKETS: Final = 24         # the optical baseline window is cut into this many buckets


@dataclass(slots=True)
class PowerFacts:
    """UPS state of one device; each value keeps its own time (a trap carries only some of them)."""

    zone: str
    site: str | None = None
    on_battery: bool | None = None
    on_battery_ns: int = -1
    battery_low: bool | None = None
    battery_low_ns: int = -1
    battery_minutes: float | None = None
    battery_minutes_ns: int = -1
    on_bypass: bool | None = None
    on_bypass_ns: int = -1
    rectifiers_failed: float | None = None
    rectifiers_failed_ns: int = -1
    inverter_mode: bool = False  # the latest poll said: battery output with the mains present (not an outage)

    @property
    def time_ns(self) -> int:
        """Return the time of the newest value."""
        return max(self.on_battery_ns, self.battery_low_ns, self.battery_minutes_ns, self.on_bypass_ns,
                   self.rectifiers_failed_ns)


@dataclass(slots=True)
class Optical:
    """Receive power of one optical port: the latest reading and a bounded baseline."""

    zone: str
    rx_dbm: float | None = None
    time_ns: int = -1
    buckets: dict[int, tuple[int, float]] = field(default_factory=dict)  # bucket -> (count, sum)
    version: int = 0           # changes with the buckets
    memo: tuple[int, int, float | None] = (-1, -1, None)   # (bucket of now, version, baseline)

    def baseline(self, now_ns: int, bucket_ns: int) -> float | None:
        """Return the median of the bucket means before the current bucket, within the window; None if none.

        The value is remembered until the current bucket or the data change (it is asked every evaluation).
        """
        current = now_ns // bucket_ns
        if self.memo[0] == current and self.memo[1] == self.version:
            return self.memo[2]
        value = self._baseline(current)
        self.memo = (current, self.version, value)
        return value

    def _baseline(self, current: int) -> float | None:
        means = sorted(total / count for b, (count, total) in self.buckets.items()
                       if current - OPTICAL_BUCKETS <= b < current)
        if not means:
            return None
        mid = len(means) // 2
        return means[mid] if len(means) % 2 else (means[mid - 1] + means[mid]) / 2


@dataclass(slots=True)
class Pon:
    """ONU counts of one PON port of an OLT: the latest, and since when none or some are online."""

    zone: str
    onus: float = 0.0          # ONUs configured on the port
    online: float = 0.0        # of them online
    time_ns: int = -1
    online_ns: int = -1        # the newest reading with ONUs online (-1: none seen since the collector started)
    dark_since_ns: int = -1    # the first reading of the current run with none online (-1: some are online)
    lit_since_ns: int = -1     # the first reading of the current run with some online (-1: none are)


class PowerObservers(CellularObservers):
    """The UPS, optical and PON facts and how samples set them (see ``collector.alerting.facts``)."""

    def __init__(self, settings: RuleSettings) -> None:
        super().__init__(settings)
        self.optical_bucket_ns = max(1, int(settings.optical_baseline * 1e9) // OPTICAL_BUCKETS)
        self.power: dict[str, PowerFacts] = {}
        self.optical: dict[tuple[str, str], Optical] = {}
        self.pon: dict[tuple[str, str], Pon] = {}

    def _power_of(self, zone: str, device: str) -> PowerFacts:
        state = self.power.get(device)
        if state is None:
            state = self.power[device] = PowerFacts(zone)
        return state

    def _power_sample(self, batch: wire.Batch, sample: wire.Sample) -> None:
        device = sample.tags.get("device")
        if device is None:
            return
        state = self._power_of(batch.zone, device)
        state.site = sample.tags.get("site", state.site)
        f, t = sample.fields, sample.time_ns
        _set_power(state, t, _bool(f.get("on_battery")), _bool(f.get("battery_low")), _number(f.get("battery_minutes")))
        bypass, failed = _bool(f.get("on_bypass")), _number(f.get("rectifiers_failed"))
        if bypass is not None and t >= state.on_bypass_ns:
            state.on_bypass, state.on_bypass_ns = bypass, t
            state.inverter_mode = f.get("inverter_mode") is True
        if failed is not None and t >= state.rectifiers_failed_ns:
            state.rectifiers_failed, state.rectifiers_failed_ns = failed, t

    def _optical(self, batch: wire.Batch, sample: wire.Sample) -> None:
        device, port = sample.tags.get("device"), sample.tags.get("port")
        rx = _number(sample.fields.get("rx_dbm"))
        if device is None or port is None or rx is None:
            return
        state = self.optical.get((device, port))
        if state is None:
            state = self.optical[(device, port)] = Optical(batch.zone)
        t = sample.time_ns
        if t >= state.time_ns:
            state.rx_dbm, state.time_ns = rx, t
        bucket = t // self.optical_bucket_ns
        newest = state.time_ns // self.optical_bucket_ns
        if bucket <= newest - OPTICAL_BUCKETS - 1:
            return  # older than the baseline window
        count, total = state.buckets.get(bucket, (0, 0.0))
        state.buckets[bucket] = (count + 1, total + rx)
        state.version += 1
        if len(state.buckets) > OPTICAL_BUCKETS + 1:
            for old in [b for b in state.buckets if b < newest - OPTICAL_BUCKETS]:
                del state.buckets[old]

    def _pon(self, batch: wire.Batch, sample: wire.Sample) -> None:
        device, port = sample.tags.get("device"), sample.tags.get("port")
        onus, online = _number(sample.fields.get("onus")), _number(sample.fields.get("onus_online"))
        if device is None or port is None or onus is None or online is None:
            return
        state = self.pon.get((device, port))
        if state is None:
            state = self.pon[(device, port)] = Pon(batch.zone)
        t = sample.time_ns
        if online > 0:
            state.online_ns = max(state.online_ns, t)   # a backlog still tells that ONUs were online
        if t < state.time_ns:
            return
        if online > 0 and state.lit_since_ns < 0:
            state.lit_since_ns, state.dark_since_ns = t, -1
        elif online <= 0 and state.dark_since_ns < 0:
            state.dark_since_ns, state.lit_since_ns = t, -1
        state.onus, state.online, state.time_ns = onus, online, t


def _set_power(state: PowerFacts, t: int, on_battery: bool | None, low: bool | None, minutes: float | None) -> None:
    if on_battery is not None and t >= state.on_battery_ns:
        state.on_battery, state.on_battery_ns = on_battery, t
    if low is not None and t >= state.battery_low_ns:
        state.battery_low, state.battery_low_ns = low, t
    if minutes is not None and t >= state.battery_minutes_ns:
        state.battery_minutes, state.battery_minutes_ns = minutes, t
