"""Who gets a notification: pure functions of the inventory and the ``alerting`` configuration.

- A notification with a ``carrier`` label (a PLMN) goes to that carrier's ``notify`` receivers.
- Every notification goes to the NOC receivers (``alerting.noc``) and, when configured, to Alertmanager
  (which routes by its own configuration, see ``collector/alerting/amconfig.py``).
- With Alertmanager doing the delivery (``alerting.delivery``, the default when it is configured), the
  receivers Alertmanager delivers natively (webhook, email) are Alertmanager's to serve (the rendered
  configuration has them): ZoneWatch sends them nothing itself, so nobody gets an alert twice. The others (MQTT)
  are ZoneWatch's, unless ``alerting.mqtt_delivery`` gives those the relay takes to Alertmanager too (through
  the collectors' relays, ``relay.py``).
- Who delivers a type is what the type declares (its ``Delivery``, registered in ``registry.py``), never a
  guess: a receiver whose type is not registered, or that nobody would deliver under the configured delivery,
  is a configuration error (``problems``; ``receivers`` raises), not a receiver skipped.
- Every peer of an Alertmanager cluster (``alerting.alertmanager.peers``) is a receiver of its own, so a peer
  that is down delays none of the others.

Receiver names are stable and say whose they are, in metrics, logs and outbox file names:
``carrier.<carrier key>.<type>.<n>``, ``noc.<type>.<n>`` (n: position in its list) and ``alertmanager`` (its
cluster's other peers: ``alertmanager.<n>``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from collector.alerting.config import AlertingConfig, AlertmanagerTarget
from collector.alerting.model import Notification
from collector.alerting.notify.base import Delivery, Need
from collector.alerting.notify.registry import NOTIFIERS, NotifierType
from collector.inventory import Inventory, Receiver
from zonewatch.strict import RefPath

ALERTMANAGER = "alertmanager"
NOC = "noc"
REGISTRY = "collector/alerting/notify/registry.py"
NEEDS: dict[Need, str] = {"smtp": "alerting.smtp (the relay to send through)",
                          "broker": "the collector's broker connection"}
Deliverer = Literal["collector", "alertmanager", "relay"]


@dataclass(frozen=True)
class ReceiverSpec:
    """One receiver: its name, whose it is (``noc``, a carrier key, ``alertmanager``), its settings and
    where they are configured."""

    name: str
    owner: str
    config: Receiver | AlertmanagerTarget
    where: RefPath

    @property
    def type(self) -> str:
        """Return the notifier type (``webhook``, ``email``, ``mqtt``, ``alertmanager``)."""
        return ALERTMANAGER if isinstance(self.config, AlertmanagerTarget) else self.config.type


def receiver_name(owner: str, kind: str, i: int) -> str:
    """Return the name of the ``i``-th receiver (of type ``kind``) of ``owner``: the NOC or a carrier's key."""
    return f"{NOC}.{kind}.{i}" if owner == NOC else f"carrier.{owner}.{kind}.{i}"


def key_path(path: RefPath) -> str:
    """Return a configuration key path as ``carriers.viettel.notify[1]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def declared(kind: str, types: Mapping[str, NotifierType] = NOTIFIERS) -> Delivery:
    """Return what receiver type ``kind`` declares; raise ValueError saying how to register it if it is not."""
    registered = types.get(kind)
    if registered is None:
        raise ValueError(f"receiver type {kind!r} declares no delivery: register it in NOTIFIERS ({REGISTRY}) "
                         "with its Delivery (who can deliver it: the collector, Alertmanager natively, the relay), "
                         "or remove the receiver")
    return registered.delivery


def delivered_by(kind: str, cfg: AlertingConfig, types: Mapping[str, NotifierType] = NOTIFIERS) -> Deliverer:
    """Return who delivers a receiver of type ``kind`` under ``cfg``'s delivery settings: Alertmanager (natively),
    the relay (Alertmanager through the collectors' MQTT relay) or the collector; raise ValueError saying what to
    configure when nobody would."""
    d = declared(kind, types)
    if cfg.via_alertmanager:
        if d.alertmanager is not None:
            return "alertmanager"
        if d.relay and cfg.mqtt_via_alertmanager:
            return "relay"
    if d.collector:
        return "collector"
    if d.alertmanager is not None:
        raise ValueError(f"only Alertmanager delivers {kind} receivers: configure alerting.alertmanager with "
                         "delivery: alertmanager (and render its configuration with render-alertmanager), or "
                         "remove the receiver")
    if d.relay:
        raise ValueError(f"{kind} receivers are delivered only through Alertmanager and the collectors' relay: set "
                         "alerting.mqtt_delivery: alertmanager (with Alertmanager delivering), or remove the "
                         "receiver")
    raise ValueError(f"nobody can deliver {kind} receivers: its Delivery ({REGISTRY}) declares neither the "
                     "collector nor Alertmanager nor the relay")


def _configured(cfg: AlertingConfig, inventory: Inventory) -> Iterator[tuple[str, str, Receiver, RefPath]]:
    """Yield (name, owner, settings, where) for the NOC's receivers, then each carrier's in inventory order."""
    for i, r in enumerate(cfg.noc):
        yield receiver_name(NOC, r.type, i), NOC, r, ("alerting", "noc", i)
    for key, carrier in inventory.carriers.items():
        for i, r in enumerate(carrier.notify):
            yield receiver_name(key, r.type, i), key, r, ("carriers", key, "notify", i)


def receivers(cfg: AlertingConfig, inventory: Inventory,
              types: Mapping[str, NotifierType] = NOTIFIERS) -> dict[str, ReceiverSpec]:
    """Return every receiver the collector delivers to, by name: Alertmanager, the NOC's, then each carrier's in
    inventory order. Raise ValueError, naming the receiver, for one that nobody would deliver (see ``problems``)."""
    out: dict[str, ReceiverSpec] = {}
    if cfg.alertmanager is not None:   # each peer of a cluster is a receiver of its own: alertmanager, alertmanager.1
        for i, target in enumerate(cfg.alertmanager.each()):
            name = f"{ALERTMANAGER}.{i}" if i else ALERTMANAGER
            where: RefPath = ("alerting", "alertmanager", "peers", i - 1) if i else ("alerting", "alertmanager")
            out[name] = ReceiverSpec(name, ALERTMANAGER, target, where)
    for name, owner, r, where in _configured(cfg, inventory):
        try:
            by = delivered_by(r.type, cfg, types)
        except ValueError as exc:
            raise ValueError(f"{key_path(where)}: {exc}") from None
        if by == "collector":
            out[name] = ReceiverSpec(name, owner, r, where)
    return out


class Router:
    """Route notifications to receiver names; built once from the configuration, then pure."""

    def __init__(self, cfg: AlertingConfig, inventory: Inventory,
                 types: Mapping[str, NotifierType] = NOTIFIERS) -> None:
        self.receivers = receivers(cfg, inventory, types)
        self._everyone = [s.name for s in self.receivers.values() if s.owner in (ALERTMANAGER, NOC)]
        self._by_plmn: dict[str, list[str]] = {}
        for key, carrier in inventory.carriers.items():
            self._by_plmn[carrier.plmn] = [s.name for s in self.receivers.values() if s.owner == key
                                           and s.where[0] == "carriers"]

    def route(self, notification: Notification) -> list[str]:
        """Return the receivers of one notification: the carrier's own first, then the NOC's and Alertmanager."""
        plmn = notification.carrier
        own = self._by_plmn.get(plmn, []) if plmn is not None else []
        return [*own, *self._everyone]

    def known_carrier(self, notification: Notification) -> bool:
        """Return False for a ``carrier`` label that names no carrier of the inventory (NOC only, then)."""
        return notification.carrier is None or notification.carrier in self._by_plmn

    def split(self, notifications: Sequence[Notification]) -> dict[str, list[Notification]]:
        """Return, for each receiver that gets any, the notifications it gets, in their order."""
        out: dict[str, list[Notification]] = {}
        for n in notifications:
            for name in self.route(n):
                out.setdefault(name, []).append(n)
        return out


def _a(kind: str) -> str:
    """Return ``kind`` with its article: ``an email``, ``an mqtt`` (said letter by letter), ``a webhook``."""
    spelled = not any(c in "aeiouy" for c in kind)
    return f"an {kind}" if kind[:1] in "aeiou" or (spelled and kind[:1] in "fhlmnrsx") else f"a {kind}"


def problems(cfg: AlertingConfig, inventory: Inventory, has_mqtt: bool,
             types: Mapping[str, NotifierType] = NOTIFIERS) -> list[tuple[RefPath, str]]:
    """Return each receiver that cannot work with this configuration, with where it is configured: its type is
    not registered, nobody would deliver it, or the collector lacks what it needs to deliver it."""
    out: list[tuple[RefPath, str]] = []
    for _, _, r, where in _configured(cfg, inventory):
        try:
            by = delivered_by(r.type, cfg, types)
        except ValueError as exc:
            out.append((where, str(exc)))
            continue
        if by != "collector":
            continue
        needs = types[r.type].delivery.needs
        if "smtp" in needs and cfg.smtp is None:
            out.append((where, f"{_a(r.type)} receiver needs {NEEDS['smtp']}"))
        if "broker" in needs and not has_mqtt:
            out.append((where, f"{_a(r.type)} receiver needs {NEEDS['broker']}"))
    return out

