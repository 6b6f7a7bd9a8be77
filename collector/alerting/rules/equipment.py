"""Equipment rules: power (PowerOnBattery, BatteryLow, PowerOnBypass, RectifierFailed), optics (OpticalDegraded),
PON feeders (PonFeederDown), links (LinkDown) and redundancy groups (RedundancyLost, ServiceOutage)."""

from __future__ import annotations

from collector.alerting import ifnames
from collector.alerting.facts import Interface, Optical, PowerFacts
from collector.alerting.facts.devices import NO_PATH
from collector.alerting.rules.base import State, _Device, _fmt, _merge_power, _when
from collector.alerting.rules.devices import DeviceRules
from collector.inventory import RedundancyGroup


class EquipmentRules(DeviceRules):
    """The equipment steps of an evaluation."""

    def power(self) -> None:
        """PowerOnBattery, BatteryLow, PowerOnBypass and RectifierFailed."""
        merged: dict[str, PowerFacts] = {}
        for key, facts in self.facts.power.items():
            name = self.ix.canonical.get(key, key)
            merged[name] = _merge_power(merged[name], facts) if name in merged else facts
        for name, facts in merged.items():
            dev = self.dev(name, facts.zone)
            if dev.state == "unknown":
                continue
            if dev.state != "down" and facts.time_ns < self.stale_cut:
                self.dont_know(alertname="PowerOnBattery", device=name)
                self.dont_know(alertname="BatteryLow", device=name)
                self.dont_know(alertname="PowerOnBypass", device=name)
                self.dont_know(alertname="RectifierFailed", device=name)
                continue
            if facts.on_bypass is False:
                self.clear(facts.on_bypass_ns, alertname="PowerOnBypass", device=name)
            if facts.on_bypass:
                self.emit("PowerOnBypass", dev.labels, dev.carriers, f"{dev.what} is on bypass",
                          f"Since {_when(facts.on_bypass_ns)} the UPS feeds its load straight from the mains through "
                          "its bypass: a mains failure now drops the load.", dev.muted_child)
            failed = facts.rectifiers_failed
            if failed is not None and failed <= 0:
                self.clear(facts.rectifiers_failed_ns, alertname="RectifierFailed", device=name)
            if failed is not None and failed > 0:
                self.emit("RectifierFailed", dev.labels, dev.carriers,
                          f"{dev.what}: {_fmt(failed)} rectifier(s) failed",
                          f"The plant reports {_fmt(failed)} failed rectifier(s) since "
                          f"{_when(facts.rectifiers_failed_ns)}: less capacity to carry the load and charge the "
                          "batteries, and no spare if another fails.", dev.muted_child)
            minutes = facts.battery_minutes
            left = f" About {_fmt(minutes)} minutes of battery left." if minutes is not None else ""
            if facts.on_battery is False:
                self.clear(facts.on_battery_ns, alertname="PowerOnBattery", device=name)
            if facts.battery_low is not True and facts.time_ns >= self.stale_cut:
                self.clear(facts.time_ns, alertname="BatteryLow", device=name)
            if facts.on_battery:
                self.emit("PowerOnBattery", dev.labels, dev.carriers, f"{dev.what} is on battery",
                          f"Mains power is lost since {_when(facts.on_battery_ns)}: the site runs on its "
                          f"batteries.{left}",
                          dev.muted_child)
            short = minutes is not None and minutes < self.settings.battery_low_minutes
            if facts.battery_low or short:
                why = "the UPS reports its battery low" if facts.battery_low else \
                    f"under {_fmt(self.settings.battery_low_minutes)} minutes of runtime left"
                self.emit("BatteryLow", dev.labels, dev.carriers, f"{dev.what}: battery low",
                          f"Battery almost exhausted: {why}.{left} The site goes dark when it runs out.",
                          dev.muted_child)

    def optical(self) -> None:
        """OpticalDegraded, one finding per device and link (ports that are no inventory link are merged)."""
        bucket = self.facts.optical_bucket_ns
        found: dict[tuple[str, str], list[str]] = {}
        fresh: dict[str, bool] = {}   # device -> has a current reading (a port that stopped reporting is ignored)
        for (key, port), facts in self.facts.optical.items():
            if facts.rx_dbm is None:
                continue
            name = self.ix.canonical.get(key, key)
            dev = self.dev(name, facts.zone)
            if dev.state == "unknown":
                continue
            current = dev.state == "down" or facts.time_ns >= self.stale_cut
            fresh[name] = fresh.get(name, False) or current
            why = self._optical_why(facts, bucket) if current else None
            if why is not None:
                link = self.ix.link_at.get((name, port)) or self.ix.link_port.get((name, ifnames.canonical(port)), "")
                found.setdefault((name, link), []).append(f"port {port}: {why}")
        for name, current in fresh.items():
            if not current:   # optical polling stopped
                self.dont_know(alertname="OpticalDegraded", device=name)
            else:
                self.clear(self.now, alertname="OpticalDegraded", device=name)
        for (name, link), problems in sorted(found.items()):
            dev = self.device[name]
            carriers = self.owners(self.inv.links[link].carriers) if link else dev.carriers
            labels = {**dev.labels, "link": link}
            where = f" (link {link})" if link else ""
            self.emit("OpticalDegraded", labels, carriers, f"{dev.what}: optical receive power degraded{where}",
                      "Received light is too weak: " + "; ".join(problems) + ". Expect errors, then a link down: "
                      "check the fibre, connectors and the far-end transmitter.", dev.muted_child)

    def pon_feeders(self) -> None:
        """PonFeederDown, one finding per PON port (its link's carriers when the port is an inventory link)."""
        for (key, port), facts in self.facts.pon.items():
            name = self.ix.canonical.get(key, key)
            dev = self.dev(name, facts.zone)
            if dev.state == "unknown":
                continue
            if dev.state != "down" and facts.time_ns < self.stale_cut:
                self.dont_know(alertname="PonFeederDown", device=name, port=port)
                continue
            if facts.online > 0 or facts.onus <= 0:   # ONUs back, or none configured any more
                since = facts.lit_since_ns if facts.online > 0 else facts.time_ns
                self.clear(since, alertname="PonFeederDown", device=name, port=port)
                continue
            if facts.online_ns < 0:   # never seen lit: a port not in service yet, or dark since before a restart
                self.dont_know(alertname="PonFeederDown", device=name, port=port)
                continue
            link = self.ix.link_at.get((name, port)) or self.ix.link_port.get((name, ifnames.canonical(port)), "")
            carriers = self.owners(self.inv.links[link].carriers) if link else dev.carriers
            self.emit("PonFeederDown", {**dev.labels, "port": port, "link": link}, carriers,
                      f"{dev.what}: no ONU online on PON port {port}",
                      f"All {_fmt(facts.onus)} ONUs configured on PON port {port} are offline since "
                      f"{_when(facts.dark_since_ns)} (some were online at {_when(facts.online_ns)}): the feeder "
                      "fibre or splitter is cut, or the OLT port is down. A power cut in every building the port "
                      "serves looks the same: the ONUs' last down cause (dying gasp) tells them apart.",
                      dev.muted_child)

    def _optical_why(self, facts: Optical, bucket_ns: int) -> str | None:
        rx = facts.rx_dbm
        assert rx is not None
        if rx < self.settings.optical_min_rx_dbm:
            return f"Rx {_fmt(rx)} dBm, under the {_fmt(self.settings.optical_min_rx_dbm)} dBm minimum"
        base = facts.baseline(self.now, bucket_ns)
        if base is not None and rx < base - self.settings.optical_drop_db:
            return (f"Rx {_fmt(rx)} dBm, {_fmt(base - rx)} dB under its usual {_fmt(base)} dBm "
                    f"(more than {_fmt(self.settings.optical_drop_db)} dB)")
        return None

    def _interface(self, name: str, ifname: str) -> Interface | None:
        newest: Interface | None = None
        for key in self.ix.keys.get(name, (name,)):
            state = self.facts.interfaces.get((key, ifname))
            if state is not None and (newest is None or state.time_ns > newest.time_ns):
                newest = state
        return newest

    def _link(self, dev: _Device, iface: Interface | None) -> State:
        """Return whether a link is up: its interface is oper up and its device is not down."""
        if dev.state == "down":
            return "down"
        if dev.state == "unknown" or iface is None or iface.oper_up is None:
            return "unknown"
        if not iface.from_trap and iface.time_ns < self.stale_cut:
            return "unknown"
        return "up" if iface.oper_up else "down"

    def links(self) -> None:
        """LinkDown, for inventory links and for interfaces the agent tagged with a link id."""
        todo: list[tuple[str, str, str, Interface | None, list[str]]] = []
        for link_id, link in self.inv.links.items():
            iface = self._interface(link.device, link.ifname)
            todo.append((link_id, link.device, link.ifname, iface, self.owners(link.carriers)))
        seen: set[tuple[str, str]] = set()
        for (key, ifname), tagged in self.facts.links.items():
            name = self.ix.canonical.get(key, key)
            if (name, ifname) in self.ix.link_at or tagged.link is None or tagged.link in self.inv.links \
                    or (name, ifname) in seen:
                continue
            seen.add((name, ifname))
            todo.append((tagged.link, name, ifname, self._interface(name, ifname), []))
        for link_id, name, ifname, iface, carriers in todo:
            dev = self.dev(name, iface.zone if iface is not None else "")
            state = self._link(dev, iface)
            if link_id in self.inv.links:
                self.link_state[link_id] = (state, iface)
            if dev.state == "unknown":
                continue
            if state == "unknown":
                self.dont_know(alertname="LinkDown", device=name, link=link_id)
                continue
            if iface is None or iface.oper_up is not False or iface.admin_up is False:
                since = iface.up_since_ns if iface is not None and iface.oper_up else \
                    iface.time_ns if iface is not None else self.now
                self.clear(since, alertname="LinkDown", device=name, link=link_id)
                continue
            source = "a linkDown trap" if iface.from_trap else "the last poll"
            self.emit("LinkDown", {**dev.labels, "link": link_id}, carriers or dev.carriers,
                      f"Link {link_id} is down ({name} {ifname})",
                      f"Interface {ifname} of {dev.what} is operationally down while administratively up, "
                      f"since {source} at {_when(iface.time_ns)}. Carriers on it: "
                      f"{self.names(carriers or dev.carriers)}.", dev.muted_child)

    def _member(self, group: RedundancyGroup, index: int) -> tuple[State, str, int]:
        """Return a member's state, what to call it, and (when up) since when it is up (0: not known)."""
        member = group.members[index]
        if member.link is not None:
            known = self.link_state.get(member.link)
            if known is None:
                link = self.inv.links[member.link]
                iface = self._interface(link.device, link.ifname)
                known = (self._link(self.dev(link.device, group.zone), iface), iface)
            state, iface = known
            since = iface.up_since_ns if state == "up" and iface is not None else 0
            return state, f"link {member.link}", max(since, 0)
        if member.device is not None:
            dev = self.dev(member.device, group.zone)
            if dev.state == "up" and not dev.unsure:
                return "up", f"device {member.device}", dev.up_since
            return ("down" if dev.state == "down" else "unknown"), f"device {member.device}", 0
        path = member.path
        assert path is not None
        what = f"path {path.name} to {path.target} (seen by {path.probe})"
        reach = self.facts.reach.get((path.probe, path.target))
        if not self.up(path.probe) or reach is None or reach.path is None or reach.path_ns < self.stale_cut:
            return "unknown", what, 0
        if reach.path == path.name:
            return "up", what, max(reach.path_since_ns, 0)
        now = "the target does not answer" if reach.path == NO_PATH else f"traffic takes {reach.path}"
        return "down", f"{what}: {now}", 0

    def _group_place(self, group: RedundancyGroup) -> dict[str, str]:
        """Return the site and area labels of a group: its own, else what its link and device members share."""
        sites: set[str] = set()
        for member in group.members:   # a traced path has no place of its own
            device = self.inv.links[member.link].device if member.link is not None else member.device
            dev = self.inv.devices.get(device) if device is not None else None
            if dev is not None:
                sites.add(dev.site)
        site = group.site or (sites.pop() if len(sites) == 1 else "")
        area = group.area or (self.inv.sites[site].area or "" if site in self.inv.sites else "")
        return {"area": area, "site": site}

    def groups(self) -> None:
        """RedundancyLost, ServiceOutage and the ``redundancy`` samples."""
        for name, group in self.inv.redundancy_groups.items():
            states = [self._member(group, i) for i in range(len(group.members))]
            up = sum(1 for s, _, _ in states if s == "up")
            unknown = sum(1 for s, _, _ in states if s == "unknown")
            total, needed, service = len(states), group.redundant_needs, group.service_needs
            lost: bool | None = False if up >= needed else True if up + unknown < needed else None
            outage: bool | None = False if up >= service else True if up + unknown < service else None
            carriers = self.owners(group.carriers)
            labels = {"zone": group.zone, **self._group_place(group), "group": name}
            if outage is None:
                self.dont_know(alertname="ServiceOutage", group=name)
                self.dont_know(alertname="RedundancyLost", group=name)  # its mute cannot be decided either
                continue
            # Since when: the k-th member to come back (of those up now) made the group whole for k.
            back = sorted(since for s, _, since in states if s == "up")
            if not outage:
                self.clear(back[service - 1], alertname="ServiceOutage", group=name)
            if lost is None:
                self.dont_know(alertname="RedundancyLost", group=name)
            else:
                if not lost:
                    self.clear(back[needed - 1], alertname="RedundancyLost", group=name)
                state = 2 if outage else 1 if lost else 0
                for carrier in carriers:
                    self.samples.append(("redundancy", {"zone": group.zone, "group": name, "carrier": carrier},
                                         {"members_up": up, "members_needed": needed, "service_needed": service,
                                          "members_total": total, "state": state}))
            down = [what for s, what, _ in states if s == "down"]
            about = f"Redundancy group {name}" + (f" ({group.description})" if group.description else "")
            unknown_text = f" Unknown: {', '.join(w for s, w, _ in states if s == 'unknown')}." if unknown else ""
            detail = (f"{up} of {total} members up; the service needs {service}, its redundancy {needed}. "
                      f"Down: {', '.join(down)}.{unknown_text}")
            if outage:
                self.emit("ServiceOutage", labels, carriers,
                          f"{about}: " + ("every route is down" if up == 0 else f"only {up} of {total} routes up"),
                          f"Service outage for {self.names(carriers)}: {detail}")
            if lost:
                self.emit("RedundancyLost", labels, carriers, f"{about} has lost its redundancy",
                          f"The service runs without enough backup: {detail}",
                          f"ServiceOutage {name}" if outage else None)
