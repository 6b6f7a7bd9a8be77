"""The facts events set: link traps, device restarts and UPS traps, applied to the records of their families.

``EventObservers`` applies each event (or an ``event`` sample replayed from the store) to the interface,
device or UPS it names: ``link_down``/``link_up`` to ``Interface`` (an ``if_index`` alone is named by the
``if_names`` it learns from earlier traps), ``device_restarted`` to ``DeviceFacts``, ``power_on_battery`` and
``battery_low`` to ``PowerFacts``. See ``collector.alerting.facts`` for how a trap and a poll outrank each other.
"""

from __future__ import annotations

from collector.alerting.config import RuleSettings
from collector.alerting.facts.devices import DeviceFacts, _oper, _reboot
from collector.alerting.facts.fields import _bool, _number
from collector.alerting.facts.power import PowerObservers, _set_power
from zonewatch import wire


class EventObservers(PowerObservers):
    """How events set the facts (see ``collector.alerting.facts``)."""

    def __init__(self, settings: RuleSettings) -> None:
        super().__init__(settings)
        self.if_names: dict[tuple[str, int], str] = {}    # (device, ifIndex) -> ifname, learned from traps

    def _event(self, batch: wire.Batch, event: wire.Event) -> None:
        device = event.tags.get("device")
        if device is None:
            return
        name, f, t = event.name, event.fields, event.time_ns
        if name in ("link_down", "link_up"):
            self._link_event(batch, device, event)
        elif name == "device_restarted":
            facts = self.devices.get(device)
            if facts is None:
                facts = self.devices[device] = DeviceFacts(batch.zone)
            _reboot(facts, t, "coldStart trap" if f.get("cold") else "warmStart trap")
        elif name == "power_on_battery":
            state = self._power_of(batch.zone, device)
            cleared = bool(f.get("cleared", False))
            if not cleared and state.inverter_mode:
                return  # an inverter in inverter mode sends upsTrapOnBattery while its mains are present
            _set_power(state, t, not cleared, None, _number(f.get("battery_minutes")))
        elif name == "battery_low":
            state = self._power_of(batch.zone, device)
            _set_power(state, t, None, not bool(f.get("cleared", False)), None)

    def _link_event(self, batch: wire.Batch, device: str, event: wire.Event) -> None:
        f = event.fields
        if f.get("present") is False:   # an empty slot or cage (notPresent): no link went down or came up
            return
        index = f.get("if_index")
        index = index if isinstance(index, int) and not isinstance(index, bool) else None
        ifname = event.tags.get("ifname")
        if ifname is not None and index is not None:
            self.if_names[(device, index)] = ifname
        elif ifname is None and index is not None:
            ifname = self.if_names.get((device, index), f"ifIndex.{index}")
        if ifname is None:
            return
        state = self._interface_of(batch.zone, device, ifname)
        if event.time_ns < state.time_ns:
            return
        oper = _bool(f.get("oper_up"))
        _oper(state, (event.name == "link_up") if oper is None else oper, event.time_ns)
        admin = _bool(f.get("admin_up"))
        if admin is not None:
            state.admin_up = admin
        state.time_ns, state.from_trap = event.time_ns, True

