"""Device rules: each device's state from every probe that watches it (DeviceDown, SiteDown, ProbesDisagree),
the mutes down a parent chain, and DeviceRebooted."""

from __future__ import annotations

from collector.alerting.rules.base import _KIND, S, _cause_device, _Device, _span, _when
from collector.alerting.rules.probes import ProbeRules
from collector.inventory import Device


class DeviceRules(ProbeRules):
    """The devices steps of an evaluation."""

    def devices(self) -> None:
        """DeviceDown, after every device's state (parents are decided before their children are muted)."""
        for name in self.inv.devices:
            self._view(name)
        for key in self.facts.pollers:  # polled but not in the inventory
            name = self.ix.canonical.get(key, key)
            if name not in self.device:
                self._view(name)
        undecided = [dev for dev in self.device.values() if dev.state == "down" and self._undecided(dev) is not None]
        for dev in undecided:
            dev.state = "unknown"
        for dev in self.device.values():
            dev.muted_by = self._ancestor_down(dev.name)
        self._sites()
        for dev in self.device.values():
            dev.muted_child = dev.muted_by or (f"DeviceDown {dev.name}" if dev.state == "down" else None)
        behind = self._behind()
        for dev in self.device.values():
            if dev.state == "unknown":
                self.dont_know(device=dev.name)
            elif dev.state == "unpolled":
                self.dont_know(alertname="DeviceDown", device=dev.name)
            elif dev.state == "up":
                if dev.unsure:
                    self.dont_know(alertname="DeviceDown", device=dev.name)
                else:
                    self.clear(dev.up_since, alertname="DeviceDown", device=dev.name)
                self._disagree(dev)
            elif dev.state == "down":
                polls = self.settings.device_down_polls
                seen = ", ".join(dev.down_by)
                blind = f" ({', '.join(dev.blind)} cannot see it: probe down)" if dev.blind else ""
                description = (f"No answer to SNMP or ping from {seen}{blind} since {_when(dev.down_since)} "
                               f"({dev.down_polls} polls in a row, {polls} needed). Owners: "
                               f"{self.names(dev.carriers)}.")
                self.emit("DeviceDown", dev.labels, dev.carriers, f"{dev.what} is down", description, dev.muted_by)
                for carrier, mine in behind.get(dev.name, {}).items():
                    self.emit("DeviceDown", dev.labels, [carrier], f"{dev.what} is down: your "
                              f"{', '.join(mine)} behind it cannot be reached",
                              f"{description} Your equipment behind it ({', '.join(mine)}) cannot be reached "
                              f"until it is back; its own alerts are muted under this one.", dev.muted_by)

    def _disagree(self, dev: _Device) -> None:
        """ProbesDisagree: a device one watcher gets answers from while another, up and fresh, gets none. An
        answer wins for the owners (a probe cut off from a device is not the device's fault, and one probe
        alone cannot invent an outage); the NOC hears of the disagreement, so no probe can hide one either."""
        if not dev.down_by or dev.muted_by is not None:
            self.clear(0, alertname="ProbesDisagree", device=dev.name)
            return
        polls = self.settings.device_down_polls
        self.emit("ProbesDisagree", {k: v for k, v in dev.labels.items() if k != "carrier"}, [],
                  f"Probes disagree about {dev.what}",
                  f"{', '.join(dev.down_by)} got no SNMP or ping answer for {polls} or more polls in a row since "
                  f"{_when(dev.down_since)}, while {', '.join(dev.up_by)} gets answers. Its owners are not paged "
                  "while any watcher gets answers: either the silent probe's path to it is broken, or one of the "
                  "probes is wrong (misconfigured or compromised). It clears when they agree.")

    def _behind(self) -> dict[str, dict[str, list[str]]]:
        """Return, per down ancestor that mutes others, the carriers owning muted devices behind it but not
        the ancestor itself, each with its devices there."""
        out: dict[str, dict[str, list[str]]] = {}
        for dev in self.device.values():
            cause = _cause_device(dev.muted_by) if dev.state == "down" and dev.muted_by else None
            root = self.device.get(cause) if cause is not None else None
            if root is None:
                continue
            for carrier in dev.carriers:
                if carrier not in root.carriers:
                    out.setdefault(root.name, {}).setdefault(carrier, []).append(dev.name)
        return out

    def _sites(self) -> None:
        """SiteDown: a site with two or more watched devices, every one of them down (power, or the site's
        uplink). It is the news: what its devices, and the devices hanging below them elsewhere, would say is
        muted under it. It is muted itself only when every one of its devices is explained by a down
        ancestor outside the site (then that ancestor is the news)."""
        at: dict[str, list[_Device]] = {}
        for dev in self.device.values():
            site = self.inv.sites.get(dev.labels.get("site", ""))
            if site is not None and dev.state != "unpolled":
                at.setdefault(dev.labels["site"], []).append(dev)
        down: list[str] = []  # sites down and not explained from outside: they mute
        for name, devs in at.items():
            if len(devs) < 2:
                continue
            sure = [d.up_since for d in devs if d.state == "up" and not d.unsure]
            if sure:
                self.clear(min(sure), alertname="SiteDown", site=name)
                continue
            if any(d.state == "up" for d in devs):   # only unsure ones: a first miss, or back from a restart
                self.dont_know(alertname="SiteDown", site=name)
                continue
            if any(d.state == "unknown" for d in devs):
                self.dont_know(alertname="SiteDown", site=name)
                continue
            outside = [d.muted_by for d in devs if d.muted_by and self._site_of(d.muted_by) != name]
            muted_by = outside[0] if len(outside) == len(devs) else None
            if muted_by is None:
                down.append(name)
            site = self.inv.sites[name]
            carriers = self.owners([*site.owners, *(plmn for d in devs for plmn in d.carriers)])
            listed = ", ".join(d.name for d in devs)
            self.emit("SiteDown", {"zone": site.zone, "area": site.area or "", "site": name}, carriers,
                      f"Site {name} is down: none of its {len(devs)} devices answers",
                      f"No answer from {listed} since {_when(min(d.down_since for d in devs))}: the site has "
                      f"lost power or its uplink. Their own alerts are muted under this one. "
                      f"Owners: {self.names(carriers)}.", muted_by)
        for dev in self.device.values():
            if dev.labels.get("site") in down and dev.state == "down":
                cause: str | None = dev.labels["site"]
            else:
                cause = self._site_of(dev.muted_by) if dev.muted_by else None
            if cause in down:
                dev.muted_by = f"SiteDown {cause}"

    def _site_of(self, cause: str) -> str | None:
        """Return the site of the device a ``DeviceDown <device>`` mute names."""
        device = self.inv.devices.get(_cause_device(cause) or "")
        return device.site if device is not None else None

    def _describe(self, name: str, zone: str) -> _Device:
        dev = self.inv.devices.get(name)
        if dev is None:
            return _Device(name, zone, {"zone": zone, "device": name}, [], f"Device {name}")
        site = self.inv.sites.get(dev.site)
        labels = {"zone": site.zone if site else zone, "area": (site.area if site else None) or "",
                  "site": dev.site, "device": name}
        what = f"{_KIND.get(dev.kind, 'Device')} {name} at site {dev.site}"
        return _Device(name, labels["zone"], labels, self.owners(dev.owners), what)

    def _view(self, name: str) -> _Device:
        """Decide whether ``name`` answers, from every probe that polls or pings it."""
        known = self.device.get(name)
        if known is not None:
            return known
        keys = self.ix.keys.get(name, (name,))
        observers: set[str] = set()
        for key in keys:
            observers.update(self.facts.pollers.get(key, ()))
            observers.update(self.facts.reachers.get(key, ()))
        zone = next((self.facts.probes[p].zone for p in sorted(observers) if p in self.facts.probes), "")
        dev = self._describe(name, zone)
        self.device[name] = dev
        inv: Device | None = self.inv.devices.get(name)
        if not observers:
            homes = inv.watchers if inv is not None else []
            dev.state = "unknown" if homes and not any(self.up(home) for home in homes) else "unpolled"
            if dev.state == "unknown":
                dev.blind.extend(homes)
            return dev
        need = self.settings.device_down_polls
        for probe in sorted(observers):
            if not self.up(probe):
                dev.blind.append(probe)
                continue
            fresh = [poll for key in keys for poll in (self.facts.polls.get((probe, key)),
                                                       self.facts.reach.get((probe, key)))
                     if poll is not None and poll.time_ns >= self.stale_cut]
            if not fresh:
                continue
            newest = max(poll.time_ns for poll in fresh)
            if all(poll.misses >= need for poll in fresh):
                dev.down_by.append(probe)
                since = min(poll.miss_since_ns for poll in fresh)
                dev.down_since = max(dev.down_since, since)
                polls = min(poll.misses for poll in fresh)
                dev.down_polls = polls if not dev.down_polls else min(dev.down_polls, polls)
                dev.evidence = newest if not dev.evidence else min(dev.evidence, newest)
            else:
                dev.up_by.append(probe)
                answered = [poll.answered_since_ns for poll in fresh if poll.answered and poll.answered_since_ns]
                if answered:
                    dev.up_since = min(answered) if not dev.up_since else min(dev.up_since, *answered)
                dev.recovered = max(dev.recovered, *(poll.recovered_ns for poll in fresh))
        dev.state = "up" if dev.up_by else "down" if dev.down_by else "unknown"
        dev.unsure = dev.state == "up" and not dev.up_since
        return dev

    def _undecided(self, dev: _Device) -> str | None:
        """Return the ancestor that keeps ``dev``'s down state undecided, if any: one that answered again after
        ``dev``'s newest down evidence (that evidence may show only the ancestor's outage), or one that is
        missing its latest polls too but is not judged yet (it may be the cause). ``dev`` is unknown until
        it is polled again, or until the ancestor is judged down (and mutes it)."""
        seen = {dev.name}
        inv = self.inv.devices.get(dev.name)
        parent = inv.parent if inv is not None else None
        while parent is not None and parent not in seen and parent in self.inv.devices:
            seen.add(parent)
            up = self._view(parent)
            if up.state == "up" and (up.unsure or up.recovered > dev.evidence):
                return parent
            parent = self.inv.devices[parent].parent
        return None

    def _ancestor_down(self, name: str) -> str | None:
        """Return ``DeviceDown <a>`` for the highest down ancestor in an unbroken down chain above ``name``."""
        inv = self.inv.devices.get(name)
        root: str | None = None
        seen = {name}
        parent = inv.parent if inv is not None else None
        while parent is not None and parent not in seen and parent in self.inv.devices:
            seen.add(parent)
            if self._view(parent).state != "down":
                break
            root = parent
            parent = self.inv.devices[parent].parent
        return f"DeviceDown {root}" if root is not None else None

    def dev(self, key: str, zone: str) -> _Device:
        """Return the device reported as ``key`` (an id or an address), described even if never polled."""
        name = self.ix.canonical.get(key, key)
        known = self.device.get(name)
        if known is None:
            known = self.device[name] = self._describe(name, zone)
            known.state = "unpolled"
        return known

    def reboots(self) -> None:
        """DeviceRebooted, for ``reboot_hold`` after the reboot."""
        hold = int(self.settings.reboot_hold * S)
        latest: dict[str, tuple[int, str, str]] = {}
        for key, facts in self.facts.devices.items():
            if facts.reboot_ns is None or self.now - facts.reboot_ns >= hold:
                continue
            name = self.ix.canonical.get(key, key)
            if name not in latest or facts.reboot_ns > latest[name][0]:
                latest[name] = (facts.reboot_ns, facts.reboot_how, facts.zone)
        for key, facts in self.facts.devices.items():   # what is known of a device's uptime decides it
            name = self.ix.canonical.get(key, key)
            if name not in latest and facts.uptime_ns >= self.stale_cut:
                self.clear(self.now, alertname="DeviceRebooted", device=name)
        for name, (when, how, zone) in latest.items():
            dev = self.dev(name, zone)
            if dev.state == "unknown":
                continue
            self.emit("DeviceRebooted", dev.labels, dev.carriers, f"{dev.what} restarted",
                      f"It restarted at {_when(when)} ({how}). This alert clears by itself "
                      f"{_span(hold)} after the restart.", dev.muted_child)
