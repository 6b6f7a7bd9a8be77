"""Software updates: the version the centre wants a probe to run, and the probe's ``update`` report (the
contract: ``zonewatch.wire``, "Software updates")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from zonewatch.wire.core import MAX_TAG_VALUE, Event, WireError

# ---------------------------------------------------------------------------------------------- software updates

UPDATE_EVENT: Final = "update"
UPDATE_RESULTS: Final = ("requested", "installed", "rolled_back", "failed", "refused")
# A release version as pip and install.sh take it (PEP 440, local labels included): it becomes a command-line
# argument of the privileged updater and a tag value, so nothing else passes.
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+!_-]{0,63}\Z")


def valid_version(version: str) -> bool:
    """Return True if ``version`` may be asked of a probe (``software: {version: ...}``)."""
    return bool(_VERSION.match(version))


@dataclass(frozen=True, slots=True)
class UpdateReport:
    """What a probe said about a software version the centre wants it to run (the ``update`` event)."""

    result: str              # one of UPDATE_RESULTS
    wanted: str              # the version asked for
    running: str             # the version running now
    error: str = ""
    seconds: float = 0.0
    time_ns: int = 0


def update_report(report: UpdateReport) -> Event:
    """Return the ``update`` event that carries ``report`` (its error on one line, cut to ``MAX_TAG_VALUE``)."""
    if report.result not in UPDATE_RESULTS:
        raise WireError("bad_tag", f"update result {report.result!r} is not one of {', '.join(UPDATE_RESULTS)}")
    tags = {"result": report.result, "wanted": report.wanted, "running": report.running}
    error = " ".join(report.error.split())
    if error:
        tags["error"] = error if len(error) <= MAX_TAG_VALUE else error[: MAX_TAG_VALUE - 1] + "\u2026"
    return Event(UPDATE_EVENT, tags, {"seconds": round(max(report.seconds, 0.0), 3)}, report.time_ns)


def read_update_report(event: Event) -> UpdateReport | None:
    """Return the report an ``update`` event carries, or None if ``event`` is not one (or not a whole one)."""
    if event.name != UPDATE_EVENT:
        return None
    tags = event.tags
    result, wanted, running = tags.get("result"), tags.get("wanted"), tags.get("running")
    seconds = event.fields.get("seconds", 0)
    if result not in UPDATE_RESULTS or wanted is None or running is None or isinstance(seconds, bool):
        return None
    return UpdateReport(result, wanted, running, tags.get("error", ""), float(seconds), event.time_ns)
