"""The alerting contract: what rules find, what the tracker remembers, what notifiers send.

Labels follow Alertmanager's model. ``carrier`` is the owner's PLMN (``452-04``): an asset with two owners
gives two findings, one per owner, so that each carrier's route matches on one label. A finding for an
asset with no owner has no ``carrier`` label and goes to the zone's NOC only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

ALERT_NAMES: Final = (
    "ProbeDown", "DeviceDown", "LinkDown", "RedundancyLost", "ServiceOutage", "CoverageHole", "NoService",
    "WeakSignal", "PowerOnBattery", "BatteryLow", "OpticalDegraded", "DeviceRebooted", "SiteDown", "DataLoss",
    "ProbeMisbehaving", "CollectorFault", "ProbesDisagree", "ProbeConfigRejected", "DataAccessFailure",
    "ThroughputBelowTarget", "ProbeUpdateFailed", "CoverageInterference",
    "ModemDown", "SimProblem", "ProbeClockSkew", "SpoolFilling", "ProbeDiskLow",   # collector.alerting.health
    "PowerOnBypass", "RectifierFailed", "PonFeederDown",
    "MaintenanceOverrun", "MaintenanceActive",                                     # collector.alerting.maintenance
    "ParkUplinkDown",                                                              # collector.alerting.parks
)

SEVERITY: Final[Mapping[str, str]] = {
    "ProbeDown": "critical",
    "DeviceDown": "critical",
    "LinkDown": "warning",
    "RedundancyLost": "warning",
    "ServiceOutage": "critical",
    "CoverageHole": "warning",
    "NoService": "critical",
    "WeakSignal": "info",
    "CoverageInterference": "warning",
    "PowerOnBattery": "warning",
    "BatteryLow": "critical",
    "PowerOnBypass": "warning",
    "RectifierFailed": "warning",
    "OpticalDegraded": "warning",
    "PonFeederDown": "critical",
    "DeviceRebooted": "info",
    "SiteDown": "critical",
    "DataLoss": "warning",
    "ProbeMisbehaving": "critical",
    "CollectorFault": "critical",
    "ProbesDisagree": "warning",
    "ProbeConfigRejected": "warning",
    "DataAccessFailure": "critical",
    "ThroughputBelowTarget": "warning",
    "ProbeUpdateFailed": "warning",
    "ModemDown": "warning",
    "SimProblem": "warning",
    "ProbeClockSkew": "warning",
    "SpoolFilling": "warning",
    "ProbeDiskLow": "warning",
    "MaintenanceOverrun": "warning",
    "MaintenanceActive": "info",
    "ParkUplinkDown": "critical",
}

# Labels an alert may carry, in the order they are shown; ``alertname`` and ``severity`` are always there.
LABELS: Final = ("alertname", "severity", "zone", "area", "carrier", "site", "device", "port", "link", "group",
                 "probe", "modem", "maintenance")

Status = Literal["firing", "resolved"]


def fingerprint(labels: Mapping[str, str]) -> str:
    """Return a stable id for a label set (the same labels always give the same id, in any order)."""
    text = "\x00".join(f"{k}\x01{labels[k]}" for k in sorted(labels))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Finding:
    """A condition a rule sees as true at the evaluation time.

    ``muted_by`` says why its notifications are held (``ProbeDown p1``, ``DeviceDown sw-core``,
    ``ServiceOutage viettel-fibre``); the alert is still tracked, stored and resolved.
    """

    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    muted_by: str | None = None

    @property
    def key(self) -> str:
        """Return the fingerprint of the labels."""
        return fingerprint(self.labels)

    @property
    def alertname(self) -> str:
        """Return the alert name."""
        return self.labels["alertname"]


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation found.

    ``unknown`` lists label matchers (a subset of labels): an existing alert whose labels contain every
    pair of one matcher can be neither confirmed nor cleared now (its only observer is down, its evidence
    is older than its parent's recovery), so the tracker leaves it as it is. ``clear`` lists matchers of
    alerts the rules judged clear on evidence, each with the time (ns) since when the evidence says so: the
    tracker ends a matching alert with that time (``endsAt``), and after a restart it ends only alerts with
    such evidence (the rest are kept until ``restart_grace`` is over). ``samples`` are derived measurements
    (``redundancy``, ``coverage``) as (measurement, tags, fields) for the store.
    """

    findings: list[Finding]
    unknown: list[Mapping[str, str]] = field(default_factory=list)
    samples: list[tuple[str, dict[str, str], dict[str, int | float | bool]]] = field(default_factory=list)
    clear: list[tuple[Mapping[str, str], int]] = field(default_factory=list)


@dataclass(frozen=True)
class Notification:
    """One message to receivers: an alert that started firing, or that resolved.

    Times are nanoseconds since the epoch; ``ends_ns`` is 0 while firing. ``flapping`` is true on the one
    notification that says an alert flaps and will not page again until it settles.
    """

    status: Status
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_ns: int
    ends_ns: int = 0
    flapping: bool = False

    @property
    def key(self) -> str:
        """Return the fingerprint of the labels."""
        return fingerprint(self.labels)

    @property
    def carrier(self) -> str | None:
        """Return the owner carrier's PLMN, or None for an alert with no owner."""
        return self.labels.get("carrier")
