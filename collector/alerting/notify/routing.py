"""Who gets a notification: pure functions of the inventory and the ``alerting`` configuration.

- A notification with a ``carrier`` label (a PLMN) goes to that carrier's ``notify`` receivers.
- Every notification goes to the NOC receivers (``alerting.noc``) and, when configured, to Alertmanager
  (which routes by its own configuration, see ``collector/alerting/amconfig.py``).
- With Alertmanager doing the delivery (``alerting.delivery``, the default when it is configured), the
  webhook and email receivers are Alertmanager's to serve (the rendered configuration has them): ZoneWatch
  sends them nothing itself, so nobody gets an alert twice. MQTT receivers are ZoneWatch's, unless
  ``alerting.mqtt_delivery`` gives them to Alertmanager too (through the collectors' relays, ``relay.py``).
- Every peer of an Alertmanager cluster (``alerting.alertmanager.peers``) is a receiver of its own, so a peer
  that is down delays none of the others.

Receiver names are stable and say whose they are, in metrics, logs and outbox file names:
``carrier.<carrier key>.<type>.<n>``, ``noc.<type>.<n>`` (n: position in its list) and ``alertmanager`` (its
cluster's other peers: ``alertmanager.<n>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from collector.alerting.config import AlertingConfig, AlertmanagerTarget
from collector.alerting.model import Notification
from collector.inventory import EmailReceiver, Inventory, MqttReceiver, Receiver
from zonewatch.strict import RefPath

ALERTMANAGER = "alertmanager"
NOC = "noc"


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


def receivers(cfg: AlertingConfig, inventory: Inventory) -> dict[str, ReceiverSpec]:
    """Return every receiver by name: Alertmanager, the NOC's, then each carrier's in inventory order."""
    out: dict[str, ReceiverSpec] = {}
    if cfg.alertmanager is not None:   # each peer of a cluster is a receiver of its own: alertmanager, alertmanager.1
        for i, target in enumerate(cfg.alertmanager.each()):
            name = f"{ALERTMANAGER}.{i}" if i else ALERTMANAGER
            where: RefPath = ("alerting", "alertmanager", "peers", i - 1) if i else ("alerting", "alertmanager")
            out[name] = ReceiverSpec(name, ALERTMANAGER, target, where)

    def ours(r: Receiver) -> bool:
        return not cfg.via_alertmanager or (isinstance(r, MqttReceiver) and not cfg.mqtt_via_alertmanager)

    for i, r in enumerate(cfg.noc):
        if not ours(r):
            continue
        name = f"{NOC}.{r.type}.{i}"
        out[name] = ReceiverSpec(name, NOC, r, ("alerting", "noc", i))
    for key, carrier in inventory.carriers.items():
        for i, r in enumerate(carrier.notify):
            if not ours(r):
                continue
            name = f"carrier.{key}.{r.type}.{i}"
            out[name] = ReceiverSpec(name, key, r, ("carriers", key, "notify", i))
    return out


class Router:
    """Route notifications to receiver names; built once from the configuration, then pure."""

    def __init__(self, cfg: AlertingConfig, inventory: Inventory) -> None:
        self.receivers = receivers(cfg, inventory)
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


def problems(cfg: AlertingConfig, inventory: Inventory, has_mqtt: bool) -> list[tuple[RefPath, str]]:
    """Return each receiver that cannot work with this configuration, with where it is configured."""
    out: list[tuple[RefPath, str]] = []
    for spec in receivers(cfg, inventory).values():
        if isinstance(spec.config, EmailReceiver) and cfg.smtp is None:
            out.append((spec.where, "an email receiver needs alerting.smtp (the relay to send through)"))
        if isinstance(spec.config, MqttReceiver) and not has_mqtt:
            out.append((spec.where, "an mqtt receiver needs the collector's broker connection"))
    return out

