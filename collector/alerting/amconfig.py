"""An Alertmanager configuration rendered from the inventory and the ``alerting`` section.

::

    route (receiver noc, group_by alertname zone carrier group device)
      carrier="452-04"  -> receiver viettel     continue: true  (so the NOC route below gets it as well)
      carrier="452-02"  -> receiver vinaphone   continue: true
      (everything)      -> receiver noc
    inhibit: ServiceOutage mutes RedundancyLost with equal zone, group, carrier

Each carrier's receivers that Alertmanager delivers natively (``webhook`` and ``email``: as each type's
``Delivery`` declares, ``notify/registry.py``) become its Alertmanager receiver (sent resolved notifications
too); the others (``mqtt``) have no Alertmanager counterpart and stay with the collector, unless
``alerting.mqtt_delivery`` is ``alertmanager`` and their type goes through the relay: then each becomes a webhook
to the MQTT relay of the collector at ``relay`` (``notify/relay.py``; render one configuration per Alertmanager
peer, each naming its own host's collector). A carrier with none of them gets no route: its alerts reach the
NOC only. A receiver whose type is not registered is an error. Secrets (webhook bearer
tokens, the SMTP password) are not written into the configuration: each goes to a file of its own in the secrets
folder, which the configuration names (``credentials_file``, ``smtp_auth_password_file``).

``render`` is pure; ``write`` puts the files on disk. ``zonewatch-collector render-alertmanager`` calls it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collector.alerting.config import AlertingConfig, SmtpConfig
from collector.alerting.notify.payload import GROUP_BY
from collector.alerting.notify.registry import NOTIFIERS, NotifierType
from collector.alerting.notify.relay import relay_url
from collector.alerting.notify.routing import NOC, declared, receiver_name
from collector.inventory import Inventory, Receiver

SMTP_SECRET = "smtp-password"
RELAY_SECRET = "relay-token"   # alerting.relay_token: what Alertmanager sends the collectors' MQTT relays
INHIBIT_RULES = [{
    "source_matchers": ['alertname="ServiceOutage"'],
    "target_matchers": ['alertname="RedundancyLost"'],
    "equal": ["zone", "group", "carrier"],
}]


@dataclass(frozen=True)
class Timing:
    """Alertmanager's grouping timers (durations as Alertmanager writes them)."""

    group_wait: str = "10s"         # a new group waits this long for more alerts before its first notification
    group_interval: str = "1m"      # then changes to the group are sent at most this often
    repeat_interval: str = "4h"     # a group still firing is notified again after this long


@dataclass(frozen=True)
class Rendered:
    """The configuration text and the secret files it names (file name in the secrets folder -> content)."""

    text: str
    secrets: dict[str, str] = field(default_factory=dict)


class _Builder:
    def __init__(self, secrets_dir: str, relay: str | None = None, relay_token: str | None = None,
                 types: Mapping[str, NotifierType] = NOTIFIERS) -> None:
        self.secrets_dir = secrets_dir.rstrip("/") or "/"
        self.secrets: dict[str, str] = {}
        self.types = types
        self.smtp_needed = False   # a receiver Alertmanager delivers needs its SMTP relay (an email receiver)
        self.relay = relay   # the collector's base URL when Alertmanager delivers MQTT through its relay
        self.relay_token = relay_token

    def secret(self, name: str, value: str) -> str:
        self.secrets[name] = value
        return f"{self.secrets_dir}/{name}"

    def receiver(self, name: str, owner: str, configs: list[Receiver]) -> dict[str, Any] | None:
        """Return an Alertmanager receiver for the receivers among ``configs`` that Alertmanager delivers
        (natively, or through the relay when there is one), or None."""
        out: dict[str, Any] = {"name": name}
        for i, r in enumerate(configs):
            d = declared(r.type, self.types)
            if d.alertmanager is not None:
                key, entry = d.alertmanager(r, f"{owner}-{r.type}-{i}", self.secret)
                self.smtp_needed = self.smtp_needed or "smtp" in d.needs
                out.setdefault(key, []).append(entry)
            elif d.relay and self.relay is not None:
                hook: dict[str, Any] = {"url": relay_url(self.relay, receiver_name(owner, r.type, i)),
                                        "send_resolved": True}
                if self.relay_token is not None:
                    path = self.secret(RELAY_SECRET, self.relay_token)
                    hook["http_config"] = {"authorization": {"type": "Bearer", "credentials_file": path}}
                out.setdefault("webhook_configs", []).append(hook)
        return out if len(out) > 1 else None

    def smtp(self, smtp: SmtpConfig) -> dict[str, Any]:
        out: dict[str, Any] = {"smtp_smarthost": f"{smtp.host}:{smtp.port}", "smtp_from": smtp.from_,
                               "smtp_require_tls": smtp.starttls}
        if smtp.username:
            out["smtp_auth_username"] = smtp.username
        if smtp.password is not None:
            out["smtp_auth_password_file"] = self.secret(SMTP_SECRET, smtp.password.get_secret_value())
        return out


def render(inventory: Inventory, cfg: AlertingConfig, *, secrets_dir: str = "/etc/alertmanager/zonewatch-secrets",
           timing: Timing = Timing(), relay: str | None = None,
           types: Mapping[str, NotifierType] = NOTIFIERS) -> Rendered:
    """Return the configuration for ``inventory`` (see the module docstring); secrets are named, not written.
    ``relay`` (the base URL of the collector beside this Alertmanager) is needed with ``mqtt_delivery:
    alertmanager``; ``types``: the registered receiver types."""
    if cfg.mqtt_via_alertmanager and relay is None:
        raise ValueError("alerting.mqtt_delivery: alertmanager: give the URL of the collector beside this "
                         "Alertmanager, whose relay publishes the MQTT notifications")
    token = cfg.relay_token.get_secret_value() if cfg.relay_token is not None else None
    b = _Builder(secrets_dir, relay if cfg.mqtt_via_alertmanager else None, token, types)
    notes: list[str] = []
    noc = b.receiver(NOC, NOC, list(cfg.noc)) or {"name": NOC}
    if len(noc) == 1:
        notes.append("noc: no webhook or email receiver in alerting.noc: the NOC route sends nothing")
    receivers = [noc]
    routes: list[dict[str, Any]] = []
    for key, carrier in inventory.carriers.items():
        if key == NOC:
            raise ValueError(f"carriers.{key}: the key {NOC!r} is the NOC receiver's name in Alertmanager: "
                             "rename the carrier")
        own = b.receiver(key, key, list(carrier.notify))
        for kind in dict.fromkeys(r.type for r in carrier.notify):   # the types Alertmanager has no receiver for
            d = declared(kind, types)
            if d.alertmanager is None:
                notes.append(f"{key}: its {kind} receivers are sent through the relay of the collector at {relay}"
                             if d.relay and b.relay is not None else f"{key}: its {kind} receivers are served by "
                             "the collector, not by Alertmanager")
        if own is None:
            notes.append(f"{key} ({carrier.plmn}): no webhook or email receiver: its alerts go to the NOC only")
            continue
        receivers.append(own)
        routes.append({"receiver": key, "matchers": [f'carrier="{carrier.plmn}"'], "continue": True})
    routes.append({"receiver": NOC})
    config: dict[str, Any] = {}
    if b.smtp_needed:
        if cfg.smtp is None:
            raise ValueError("alerting.smtp: email receivers need the SMTP relay")
    if cfg.smtp is not None:
        config["global"] = b.smtp(cfg.smtp)
    config["route"] = {"receiver": NOC, "group_by": list(GROUP_BY), "group_wait": timing.group_wait,
                       "group_interval": timing.group_interval, "repeat_interval": timing.repeat_interval,
                       "routes": routes}
    config["receivers"] = receivers
    config["inhibit_rules"] = INHIBIT_RULES
    head = ["# Alertmanager configuration for ZoneWatch, rendered from the inventory by",
            "# `zonewatch-collector render-alertmanager`. Edit the inventory and render again.",
            "# Each carrier's alerts (label carrier=<PLMN>) go to that carrier and to the NOC."]
    head += [f"# {note}" for note in notes]
    body = yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=1000, allow_unicode=True)
    return Rendered("\n".join(head) + "\n" + body, b.secrets)


def _write(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` atomically with ``text``, created with ``mode`` from the start."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write(inventory: Inventory, cfg: AlertingConfig, out: Path, secrets_dir: Path | None = None,
          timing: Timing = Timing(), relay: str | None = None) -> list[tuple[Path, str]]:
    """Write the configuration to ``out`` and its secrets (mode 0600) into ``secrets_dir`` (default: the
    folder ``alertmanager-secrets`` beside ``out``); return each file written and what it is."""
    secrets_dir = (secrets_dir or out.parent / "alertmanager-secrets").resolve()
    rendered = render(inventory, cfg, secrets_dir=str(secrets_dir), timing=timing, relay=relay)
    written: list[tuple[Path, str]] = []
    if rendered.secrets:
        secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, value in rendered.secrets.items():
            _write(secrets_dir / name, value, 0o600)
            written.append((secrets_dir / name, "secret named by the configuration (mode 0600)"))
    out.parent.mkdir(parents=True, exist_ok=True)
    _write(out, rendered.text, 0o644)
    carriers = sum(1 for line in rendered.text.splitlines() if line.strip().startswith("- receiver:")) - 1
    written.append((out, f"Alertmanager configuration: {carriers} carrier route(s) and the NOC"))
    return written
