"""Escalation: a carrier's alert still unacknowledged some time after it paged goes to the next receivers.

The inventory says it per carrier (``carriers.<key>.escalation``: steps of ``after`` and ``notify``, receivers or
names of ``contacts``, such as the zone authority). This module is pure: ``policies`` reads the inventory once,
``due`` says, for the open incidents at ``now_ns``, which steps to take. The responder
(``collector.alerting.responder``) calls it on every evaluation tick, sends, and notes what it sent.

Rules:

- Step *i* is due once the incident has been unacknowledged for its ``after`` since it paged (its first
  firing notification), and not before the steps ahead of it. Steps missed while the collector was down are
  all due at its first tick.
- An acknowledgement stops every step not taken yet; a resolve too (and goes to everyone notified).
- Alerts without a ``carrier`` label (the NOC's own) and carriers without steps never escalate.

Receiver names, as in the routing (``notify/routing.py``) and in metrics, logs and outbox files:
``carrier.<key>.escalation.<step>.<type>.<n>`` for a receiver written in a step, ``contact.<name>.<type>.<n>``
for a contact's (one outbox however many carriers' steps name it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from collector.alerting.acks import Incident
from collector.alerting.notify.routing import ReceiverSpec
from collector.inventory import Inventory

__all__ = ["CONTACT", "Step", "Policies", "policies", "due"]

CONTACT = "contact"


@dataclass(frozen=True)
class Step:
    """One step: after how long unacknowledged (ns since the page), which receivers (by name)."""

    after_ns: int
    receivers: tuple[str, ...]


@dataclass(frozen=True)
class Policies:
    """Every carrier's steps (by PLMN) and every escalation receiver (by name)."""

    steps: Mapping[str, Sequence[Step]]
    receivers: Mapping[str, ReceiverSpec]


def policies(inventory: Inventory) -> Policies:
    """Return the escalation steps and receivers the inventory declares."""
    receivers: dict[str, ReceiverSpec] = {}
    contacts: dict[str, list[str]] = {}
    for name, configs in inventory.contacts.items():
        for n, r in enumerate(configs):
            spec = ReceiverSpec(f"{CONTACT}.{name}.{r.type}.{n}", name, r, ("contacts", name, n))
            receivers[spec.name] = spec
            contacts.setdefault(name, []).append(spec.name)
    steps: dict[str, list[Step]] = {}
    for key, carrier in inventory.carriers.items():
        for i, step in enumerate(carrier.escalation):
            names: list[str] = []
            for n, item in enumerate(step.notify):
                if isinstance(item, str):
                    names += [c for c in contacts.get(item, []) if c not in names]
                    continue
                spec = ReceiverSpec(f"carrier.{key}.escalation.{i}.{item.type}.{n}", key, item,
                                    ("carriers", key, "escalation", i, "notify", n))
                receivers[spec.name] = spec
                names.append(spec.name)
            steps.setdefault(carrier.plmn, []).append(Step(int(step.after * 1e9), tuple(names)))
    return Policies(steps, receivers)


def due(incidents: Sequence[Incident], steps: Mapping[str, Sequence[Step]],
        now_ns: int) -> list[tuple[Incident, int, Step]]:
    """Return (incident, step index, step) for every step to take at ``now_ns``, in order of the incidents
    and of their steps; see the module docstring."""
    out: list[tuple[Incident, int, Step]] = []
    for incident in incidents:
        if incident.acked_ns is not None or not incident.open or incident.carrier is None:
            continue
        waited = now_ns - incident.paged_ns
        for index, step in enumerate(steps.get(incident.carrier, ())):
            if index < incident.steps:
                continue
            if waited < step.after_ns:
                break
            out.append((incident, index, step))
    return out
