"""The zone inventory (YAML): what exists, where, and which carrier owns it.

Loading checks every cross-reference and names the offending key (``devices.bts-01.parent: unknown device
'olt-9'``). The alert rules, the notification routing and the reports read the same model::

    zones               areas (and their outlines, the park's plan image), coverage thresholds per technology
    carriers            PLMN, name, and how to reach them (``notify``: webhook, email, MQTT receivers)
    sites               BTS, fibre PoP, shelter; shared or not (``owners``)
    devices             kind, owner carriers, parent device, polling probe, address (for ICMP)
    links               which device interface carries which carriers' route
    redundancy_groups   members (links, devices or traced paths); how many the service and its redundancy need
    probes              zone, area, position, modems and their carriers
    maintenance         planned works: a scope, when (one-off or recurring, in a time zone), ticket, who

An asset with several owners (a shared BTS, leased fibre) alerts every owner.

The inventory is less trusted than the collector configuration (carriers edit their own parts of it): a
carrier's webhook token is a literal string or ``{secret: NAME}``, a secret the collector configuration declares
with the URLs it may be sent to (``collector/secrets.py``); ``{file: ...}`` and ``{env: ...}`` are refused here.
Load it with ``load_inventory`` to hand it those secrets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import BeforeValidator, Field, SecretStr, ValidationInfo, field_validator, model_validator

from collector import positions
from collector.maintenance import Window, refusal, scope_problem
from collector.positions import Outline, Plan, Point
from collector.secrets import CONTEXT_KEY, PLMN, BoundSecret, SecretSource, context
from zonewatch import wire
from zonewatch.strict import Duration, RefPath, Secret, Strict, SubkeyError, load_file

_PLMN = PLMN
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
TECHNOLOGIES = ("lte", "nr5g-sa", "nr5g-nsa", "umts", "gsm")


def _check_ids(section: str, keys: Collection[str]) -> None:
    for key in keys:
        if not _ID.match(key):
            raise ValueError(f"{section} key {key!r} is not an id: use lowercase letters, digits, - _ . "
                             "(at most 63 characters, starting with a letter or digit)")


class WebhookReceiver(Strict):
    """POST Alertmanager's webhook JSON to ``url``."""

    type: Literal["webhook"]
    url: str
    bearer_token: Secret | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value


class EmailReceiver(Strict):
    """Send each notification by email through the collector's SMTP relay (``alerting.smtp``)."""

    type: Literal["email"]
    to: list[str] = Field(min_length=1)

    @field_validator("to")
    @classmethod
    def _to(cls, value: list[str]) -> list[str]:
        for address in value:
            if not re.match(r"^[^@\s]+@[^@\s]+$", address):
                raise ValueError(f"expected an email address like noc@carrier.example, got {address!r}")
        return value


class MqttReceiver(Strict):
    """Publish Alertmanager's webhook JSON, QoS 1, on the carrier's own topic of the collector's broker."""

    type: Literal["mqtt"]
    topic: str

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not value or "+" in value or "#" in value or not value.isprintable():
            raise ValueError(f"expected a plain MQTT topic (no wildcards), got {value!r}")
        if value.startswith(("zw/", "zonewatch/", "$")):
            raise ValueError(f"topic {value!r} is reserved (zw/ is the probes' tree, zonewatch/ the collector's, $ "
                             "the broker's)")
        return value


Receiver = WebhookReceiver | EmailReceiver | MqttReceiver


def _carrier_token(value: Any, info: ValidationInfo) -> Any:
    """Take a carrier webhook's token: a literal string, or ``{secret: NAME}`` from the collector configuration
    (bound to the URLs it may go to); never a file or an environment variable of the inventory's choosing."""
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        return SecretStr(value)
    if isinstance(value, dict) and len(value) == 1:
        ((kind, ref),) = value.items()
        if kind in ("file", "env"):
            what = "a file" if kind == "file" else "an environment variable"
            raise ValueError(f"an inventory may not read {what}: declare the token in the collector "
                             "configuration under secrets.receivers (with the URL it may be sent to) and write "
                             "{secret: NAME} here")
        if kind == "secret" and isinstance(ref, str):
            source: SecretSource | None = (info.context or {}).get(CONTEXT_KEY)
            if source is None:
                raise ValueError(f"secret {ref!r}: no secrets to take it from (the inventory is read with the "
                                 "collector configuration's secrets.receivers)")
            url = info.data.get("url")
            if not isinstance(url, str):
                raise ValueError(f"secret {ref!r}: needs a valid url to check it may be sent there")
            return source.token(ref, url)
    raise ValueError("expected {secret: NAME} (declared under secrets.receivers in the collector "
                     "configuration) or a string")


CarrierToken = Annotated[SecretStr, BeforeValidator(_carrier_token)]


class CarrierWebhookReceiver(WebhookReceiver):
    """A carrier's webhook (``carriers.<id>.notify``): its token is a literal or a declared ``{secret: NAME}``."""

    bearer_token: CarrierToken | None = None


if TYPE_CHECKING:  # read as Receivers (a CarrierWebhookReceiver is a WebhookReceiver); lists are invariant
    CarrierReceiver: TypeAlias = Receiver
else:
    CarrierReceiver = CarrierWebhookReceiver | EmailReceiver | MqttReceiver


AnyCarrierReceiver = Annotated[CarrierReceiver, Field(discriminator="type")]


class EscalationStep(Strict):
    """One step of a carrier's escalation (``collector.alerting.escalation``): an alert of the carrier still
    unacknowledged ``after`` this long since it paged goes to ``notify`` too: receivers, or the names of the
    inventory's ``contacts`` (the zone authority, say)."""

    after: Duration
    notify: list[AnyCarrierReceiver | str] = Field(min_length=1)

    @field_validator("after")
    @classmethod
    def _after(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("expected a positive duration such as '15m'")
        return value


class Carrier(Strict):
    """A mobile operator, keyed by its PLMN (MCC-MNC)."""

    plmn: str
    name: str
    contact: str | None = None
    notify: list[AnyCarrierReceiver] = []
    escalation: list[EscalationStep] = []

    @field_validator("escalation")
    @classmethod
    def _escalation(cls, value: list[EscalationStep]) -> list[EscalationStep]:
        for i in range(1, len(value)):
            if value[i].after <= value[i - 1].after:
                raise SubkeyError((i, "after"), f"each step comes later than the one before: {value[i].after:g} s "
                                  f"is not after step {i - 1}'s {value[i - 1].after:g} s")
        return value

    @field_validator("plmn")
    @classmethod
    def _plmn(cls, value: str) -> str:
        if not _PLMN.match(value):
            raise ValueError(f"expected a PLMN like '452-04' (MCC-MNC), got {value!r}")
        return value


class Thresholds(Strict):
    """Limits for one technology: RSRP under ``hole_dbm`` is a coverage hole, under ``fair_dbm`` weak; with RSRP
    at ``fair_dbm`` or better, SINR under ``sinr_poor_db`` or RSRQ under ``rsrq_poor_db`` is interference (the
    signal is there, drowned). The SINR and RSRQ defaults are the "poor" bounds usual in LTE planning
    (SINR < 0 dB, RSRQ < -15 dB)."""

    hole_dbm: float = -110.0
    fair_dbm: float = -100.0
    good_dbm: float = -90.0
    sinr_poor_db: float = 0.0
    rsrq_poor_db: float = -15.0

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not self.hole_dbm < self.fair_dbm <= self.good_dbm:
            raise ValueError(f"expected hole_dbm < fair_dbm <= good_dbm, got {self.hole_dbm} / {self.fair_dbm} / "
                             f"{self.good_dbm}")
        return self


class CoverageRule(Strict):
    """How an area's coverage follows from its probes', each judged on its own: ``worst`` (the default: a
    hole at one gate is a hole in the area), or ``share`` (the area is at a level when at least ``share_pct``
    of its probes are at that level or worse)."""

    area: Literal["worst", "share"] = "worst"
    share_pct: float | None = None

    @model_validator(mode="after")
    def _share(self) -> CoverageRule:
        if self.area == "share" and (self.share_pct is None or not 0 < self.share_pct <= 100):
            raise SubkeyError(("share_pct",), "area: share needs share_pct, a percentage over 0 and at most 100 "
                              f"(got {self.share_pct})")
        if self.area == "worst" and self.share_pct is not None:
            raise SubkeyError(("share_pct",), "share_pct applies to area: share only (area is worst here)")
        return self


class Zone(Strict):
    """An industrial park or economic zone, divided into areas."""

    name: str
    areas: list[str] = []
    thresholds: dict[str, Thresholds] = {}
    plan: Plan | None = None                 # the park's plan image and its corners (collector.positions)
    outlines: dict[str, Outline] = {}        # area -> its outline, in the same coordinates
    coverage: CoverageRule = CoverageRule()

    @field_validator("thresholds")
    @classmethod
    def _technologies(cls, value: dict[str, Thresholds]) -> dict[str, Thresholds]:
        for tech in value:
            if tech not in ("default", *TECHNOLOGIES):
                raise ValueError(f"unknown technology {tech!r} (expected default, {', '.join(TECHNOLOGIES)})")
        return value

    def threshold(self, rat: str | None) -> Thresholds:
        """Return the thresholds for technology ``rat``: its own, else the zone's default, else the built-in."""
        if rat is not None and rat in self.thresholds:
            return self.thresholds[rat]
        return self.thresholds.get("default", Thresholds())


class Site(Strict):
    """A place with equipment: a BTS, a fibre PoP, a shelter."""

    zone: str
    area: str | None = None
    kind: Literal["bts", "fibre_pop", "shelter", "other"] = "other"
    owners: list[str] = []


class Device(Strict):
    """A piece of equipment polled or trapped by a probe.

    ``probe`` (or ``probes``, for a device two probes watch) names the probes that may report on it; a device
    that names none may be reported by any probe of its site's zone (see ``collector.scope``)."""

    site: str
    kind: Literal["bts", "switch", "router", "olt", "ups", "other"] = "other"
    owners: list[str] = []
    parent: str | None = None
    probe: str | None = None
    probes: list[str] = []
    address: str | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Device:
        if self.probe is not None and self.probes:
            raise ValueError("give probe (one watcher) or probes (several), not both")
        return self

    @property
    def watchers(self) -> list[str]:
        """Return the probes that watch this device (empty: not said)."""
        return list(self.probes) if self.probes else [self.probe] if self.probe is not None else []


class Link(Strict):
    """A device interface that carries carriers' traffic into the zone (a fibre route, a microwave hop)."""

    device: str
    ifname: str
    carriers: list[str] = []


class PathRef(Strict):
    """A traced path: probe ``probe`` tracing ``target`` sees the route it knows as ``name``."""

    probe: str
    target: str
    name: str


class Member(Strict):
    """One member of a redundancy group: exactly one of a link, a device or a traced path."""

    link: str | None = None
    device: str | None = None
    path: PathRef | None = None

    @model_validator(mode="after")
    def _one(self) -> Member:
        given = [k for k in ("link", "device", "path") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a member is exactly one of link, device or path, got {given or 'none'}")
        return self

    @property
    def key(self) -> str:
        """Return a stable name for the member (``link:viettel-primary``, ``path:p1/10.0.0.1/primary``)."""
        if self.link is not None:
            return f"link:{self.link}"
        if self.device is not None:
            return f"device:{self.device}"
        assert self.path is not None
        return f"path:{self.path.probe}/{self.path.target}/{self.path.name}"


class MinUp(Strict):
    """How many members of a redundancy group must be up, said apart for the service and for its redundancy."""

    service: Annotated[int, Field(ge=1)] = 1        # fewer up: ServiceOutage
    redundancy: Annotated[int, Field(ge=1)] | None = None   # fewer up: RedundancyLost (default: every member)

    @model_validator(mode="before")
    @classmethod
    def _not_a_number(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(f"min_up is a mapping now, not a number ({value}): say what the service needs and "
                             f"what redundancy needs, e.g. {{service: 1, redundancy: {value}}} (fewer than service "
                             "up: ServiceOutage; fewer than redundancy up: RedundancyLost)")
        return value


class RedundancyGroup(Strict):
    """Routes (links, devices or paths) that carry one service, and how many of them it needs.

    Fewer than ``min_up.service`` members up (default 1): ServiceOutage (critical). Fewer than
    ``min_up.redundancy`` (default: all of them) but at least the service's need: RedundancyLost (warning);
    ServiceOutage mutes RedundancyLost. ``site`` and ``area`` label its alerts (default: the site and area
    every link and device member shares, if they share one).
    """

    zone: str
    carriers: list[str] = Field(min_length=1)
    members: list[Member] = Field(min_length=2)
    min_up: MinUp = MinUp()
    site: str | None = None
    area: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _min_up(self) -> RedundancyGroup:
        total = len(self.members)
        redundancy = self.redundant_needs
        if not 1 <= redundancy <= total:
            raise ValueError(f"min_up.redundancy must be between 1 and the number of members ({total}), "
                             f"got {redundancy}")
        if self.min_up.service > redundancy:
            raise ValueError(f"min_up.service ({self.min_up.service}) cannot be more than min_up.redundancy "
                             f"({redundancy}{'' if self.min_up.redundancy else ': every member'})")
        return self

    @property
    def redundant_needs(self) -> int:
        """Return how many members must be up for the service to be redundant (all unless said otherwise)."""
        return self.min_up.redundancy if self.min_up.redundancy is not None else len(self.members)

    @property
    def service_needs(self) -> int:
        """Return how many members must be up for the service to run at all."""
        return self.min_up.service


class Modem(Strict):
    """One modem in a probe, on one carrier."""

    name: str
    carrier: str


class Probe(Strict):
    """A probe (agent) installed in a zone area."""

    zone: str
    area: str | None = None
    position: Point | None = None   # x/y metres on the zone's plan, or lat/lon (collector.positions)
    modems: list[Modem] = []
    # The probe's agent configuration as the centre wants it (collector.fleet.desired): given (``{}`` too), the
    # collector renders it over ``probe_defaults`` and publishes it on the probe's config topic.
    config: dict[str, Any] | None = None


class Inventory(Strict):
    """The whole inventory file."""

    zones: dict[str, Zone]
    carriers: dict[str, Carrier] = {}
    sites: dict[str, Site] = {}
    devices: dict[str, Device] = {}
    links: dict[str, Link] = {}
    redundancy_groups: dict[str, RedundancyGroup] = {}
    probes: dict[str, Probe] = {}
    probe_defaults: dict[str, Any] | None = None   # agent configuration every probe with a ``config`` starts from
    # Named receivers that carriers' escalation steps refer to (the zone authority, the park's NOC on call).
    contacts: dict[str, list[AnyCarrierReceiver]] = {}
    # Maintenance windows (collector.maintenance): alerts in their scope are stored muted while they are open.
    maintenance: dict[str, Window] = {}

    @field_validator("zones", "carriers", "sites", "devices", "links", "redundancy_groups", "probes", "contacts",
                     "maintenance")
    @classmethod
    def _keys(cls, value: dict[str, object], info: object) -> dict[str, object]:
        _check_ids(getattr(info, "field_name", "inventory"), value)
        return value

    def carrier_of(self, name: str) -> Carrier | None:
        """Return the carrier named by key (``viettel``) or PLMN (``452-04``)."""
        if name in self.carriers:
            return self.carriers[name]
        return next((c for c in self.carriers.values() if c.plmn == name), None)

    def plmns(self, carriers: Collection[str]) -> list[str]:
        """Return the PLMNs of the carriers named (keys or PLMNs), in order, without repeats."""
        out: list[str] = []
        for name in carriers:
            carrier = self.carrier_of(name)
            if carrier is not None and carrier.plmn not in out:
                out.append(carrier.plmn)
        return out

    def check_refs(self) -> list[tuple[RefPath, str]]:
        """Return every reference to something the inventory does not define."""
        problems: list[tuple[RefPath, str]] = []

        def need(path: RefPath, kind: str, name: str | None, known: Collection[str]) -> None:
            if name is not None and name not in known:
                listed = ", ".join(sorted(known)) or "none defined"
                problems.append((path, f"unknown {kind} {name!r} (known: {listed})"))

        plmns = {c.plmn: key for key, c in self.carriers.items()}
        if wire.ENROL_ZONE in self.zones:
            problems.append((("zones", wire.ENROL_ZONE), f"zone id {wire.ENROL_ZONE!r} is reserved: zw/v1/"
                             f"{wire.ENROL_ZONE}/... are the topics new probes ask to be enrolled on; choose another"))
        for key, carrier in self.carriers.items():
            for i, receiver in enumerate(carrier.notify):
                token = receiver.bearer_token if isinstance(receiver, WebhookReceiver) else None
                if isinstance(token, BoundSecret) and token.carrier not in (None, carrier.plmn):
                    problems.append((("carriers", key, "notify", i, "bearer_token"),
                                     f"secret {token.name!r} is declared for carrier {token.carrier} "
                                     f"(secrets.receivers.{token.name}.carrier), not for {carrier.plmn}"))
        problems.extend(self._escalation_refs())
        for key, site in self.sites.items():
            need(("sites", key, "zone"), "zone", site.zone, self.zones)
            if site.zone in self.zones:
                need(("sites", key, "area"), "area", site.area, self.zones[site.zone].areas)
            for i, owner in enumerate(site.owners):
                need(("sites", key, "owners", i), "carrier", owner, self.carriers)
        for key, dev in self.devices.items():
            need(("devices", key, "site"), "site", dev.site, self.sites)
            need(("devices", key, "parent"), "device", dev.parent, self.devices)
            need(("devices", key, "probe"), "probe", dev.probe, self.probes)
            for i, watcher in enumerate(dev.probes):
                need(("devices", key, "probes", i), "probe", watcher, self.probes)
            for i, owner in enumerate(dev.owners):
                need(("devices", key, "owners", i), "carrier", owner, self.carriers)
            if dev.parent == key:
                problems.append((("devices", key, "parent"), f"device {key!r} cannot be its own parent"))
        for key, link in self.links.items():
            need(("links", key, "device"), "device", link.device, self.devices)
            for i, owner in enumerate(link.carriers):
                need(("links", key, "carriers", i), "carrier", owner, self.carriers)
        for key, group in self.redundancy_groups.items():
            need(("redundancy_groups", key, "zone"), "zone", group.zone, self.zones)
            for i, owner in enumerate(group.carriers):
                need(("redundancy_groups", key, "carriers", i), "carrier", owner, self.carriers)
            need(("redundancy_groups", key, "site"), "site", group.site, self.sites)
            if group.zone in self.zones:
                need(("redundancy_groups", key, "area"), "area", group.area, self.zones[group.zone].areas)
            seen: set[str] = set()
            for i, member in enumerate(group.members):
                where: RefPath = ("redundancy_groups", key, "members", i)
                need((*where, "link"), "link", member.link, self.links)
                need((*where, "device"), "device", member.device, self.devices)
                if member.path is not None:
                    need((*where, "path", "probe"), "probe", member.path.probe, self.probes)
                if member.key in seen:
                    problems.append((where, f"{member.key} is listed twice"))
                seen.add(member.key)
        problems.extend(self._parent_cycles())
        problems.extend(positions.problems(self))
        for key, window in self.maintenance.items():
            problem = scope_problem(window.scope, self)
            if problem is not None:
                problems.append((("maintenance", key, "scope"), problem))
            elif (problem := refusal(window, self)) is not None:
                problems.append((("maintenance", key, "as_carrier"), problem))
        for key, probe in self.probes.items():
            if key == "collector":
                problems.append((("probes", key), "'collector' is reserved for the collector's own series"))
            need(("probes", key, "zone"), "zone", probe.zone, self.zones)
            if probe.zone in self.zones:
                need(("probes", key, "area"), "area", probe.area, self.zones[probe.zone].areas)
            for i, modem in enumerate(probe.modems):
                if modem.carrier not in self.carriers and modem.carrier not in plmns:
                    need(("probes", key, "modems", i, "carrier"), "carrier", modem.carrier, self.carriers)
        if not problems:   # the probes' desired configurations, rendered from a consistent inventory
            from collector.fleet.desired import render_all

            problems.extend((p.path, p.message) for p in render_all(self)[1])
        return problems

    def _escalation_refs(self) -> list[tuple[RefPath, str]]:
        """Return the escalation steps' unknown contacts, and tokens bound to another carrier than theirs."""
        problems: list[tuple[RefPath, str]] = []

        def bound(where: RefPath, receiver: Receiver, plmn: str | None) -> None:
            token = receiver.bearer_token if isinstance(receiver, WebhookReceiver) else None
            if isinstance(token, BoundSecret) and token.carrier not in (None, plmn):
                whose = f"carrier {plmn}" if plmn else "a contact (shared by every carrier's escalation)"
                problems.append(((*where, "bearer_token"), f"secret {token.name!r} is declared for carrier "
                                 f"{token.carrier} (secrets.receivers.{token.name}.carrier), not for {whose}"))

        for name, receivers in self.contacts.items():
            for i, receiver in enumerate(receivers):
                bound(("contacts", name, i), receiver, None)
        for key, carrier in self.carriers.items():
            for i, step in enumerate(carrier.escalation):
                for j, item in enumerate(step.notify):
                    where: RefPath = ("carriers", key, "escalation", i, "notify", j)
                    if isinstance(item, str):
                        if item not in self.contacts:
                            listed = ", ".join(sorted(self.contacts)) or "none defined"
                            problems.append((where, f"unknown contact {item!r} (known: {listed})"))
                    else:
                        bound(where, item, carrier.plmn)
        return problems

    def _parent_cycles(self) -> list[tuple[RefPath, str]]:
        problems: list[tuple[RefPath, str]] = []
        for start in self.devices:
            chain = [start]
            node = self.devices[start].parent
            while node is not None and node in self.devices and node not in chain:
                chain.append(node)
                node = self.devices[node].parent
            if node == start and len(chain) > 1:
                loop = " -> ".join([*chain, start])
                problems.append((("devices", start, "parent"), f"parents form a loop: {loop}"))
                break
        return problems


def load_inventory(path: str | os.PathLike[str], secrets: SecretSource) -> Inventory:
    """Read the inventory at ``path``; its receivers' ``{secret: NAME}`` come from ``secrets`` (the collector
    configuration's ``secrets`` section, or ``collector.secrets.NAMES_ONLY`` for a reader that sends nothing)."""
    return load_file(Inventory, path, context=context(secrets))
