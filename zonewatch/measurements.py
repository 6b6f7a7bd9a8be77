"""The measurement catalogue: every measurement ZoneWatch stores, its tags, its fields with their units and
physical bounds, and who writes it.

This is the one list the rest is checked against: the README's measurement tables, the series the Grafana
dashboards query (``<measurement>_<field>`` in VictoriaMetrics), the measurements a probe may not write
(``zonewatch.wire.COLLECTOR_MEASUREMENTS``), and what the sources and the alert engine produce (tests run their
output through ``problems``). A field's bounds are what is physically possible, not what is usual: a reading
outside them is a parsing or scaling error (a sentinel taken for a value, hundredths taken for units), never
a bad day in the field.

Bounds come from the standards and the vendors' own definitions:

- RSRP: 3GPP TS 36.133 / 38.133 report -156 to -31 dBm (the extended range); RSRQ -43 to 20 dB (extended);
  SINR as modems report it, -23 to 40 dB; RSSI -125 to -25 dBm (AT+CSQ gives -113 to -51, vendors' own
  commands a little wider).
- LTE PCI 0-503, NR PCI 0-1007; an eNB id has 20 bits (28-bit ECI); a gNB id at most 32 bits (36-bit NCI);
  the sector is what is left of the cell id (8 bits in LTE, at most 14 in NR).
- Optical power: transceiver DOM reports -40 dBm (no light) to about +10 dBm; amplified line ports reach
  +25 dBm. A dark port's -40 (or 0) is no reading, which the profiles leave out.
- Percentages 0-100; durations, counts and counters never negative.

The measurements an operator configures for site sensors (the ``telemetry`` source) are theirs to name and
are not listed here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["Field", "Measurement", "CATALOGUE", "COLLECTOR_WRITTEN", "series", "problems"]

Kind = Literal["gauge", "counter", "bool", "state", "id"]
Writer = Literal["probe", "collector"]


@dataclass(frozen=True)
class Field:
    """One field: its unit (as the README says it), what kind of value, and the physically possible range."""

    unit: str
    kind: Kind = "gauge"
    low: float | None = None
    high: float | None = None
    doc: str = ""


def _bool(doc: str = "") -> Field:
    return Field("1/0", "bool", doc=doc)


def _count(unit: str = "count", doc: str = "") -> Field:
    return Field(unit, "counter", 0, None, doc)


def _at_least0(unit: str, doc: str = "") -> Field:
    return Field(unit, "gauge", 0, None, doc)


def _pct(doc: str = "") -> Field:
    return Field("%", "gauge", 0, 100, doc)


RSRP, RSRQ, SINR = Field("dBm", "gauge", -156, -31), Field("dB", "gauge", -43, 20), Field("dB", "gauge", -23, 40)


@dataclass(frozen=True)
class Measurement:
    """One measurement: who writes it, its tags (``zone`` and ``probe`` come from the batch), its fields."""

    writer: Writer
    tags: tuple[str, ...]
    fields: Mapping[str, Field]
    doc: str
    extra_tags: bool = False   # takes tags beyond ``tags`` (events carry what the trap said)


CATALOGUE: Final[Mapping[str, Measurement]] = {
    "cellular": Measurement(
        "probe", ("zone", "probe", "carrier", "modem", "rat", "band", "cell"), {
            "rsrp_dbm": RSRP, "rsrq_db": RSRQ, "sinr_db": SINR, "rssi_dbm": Field("dBm", "gauge", -125, -25),
            "registered": _bool("registered on its home network or roaming"),
            "pci": Field("1", "id", 0, 1007), "enb_id": Field("1", "id", 0, 2**20 - 1),
            "gnb_id": Field("1", "id", 0, 2**32 - 1), "sector": Field("1", "id", 0, 2**14 - 1),
            "nr_rsrp_dbm": RSRP, "nr_rsrq_db": RSRQ, "nr_sinr_db": SINR,
            "sim_state": Field("1", "state", 0, 4, "AT+CPIN?: 0 ready, 1 no SIM, 2 PIN required, 3 PUK required, "
                               "4 SIM failure"),
            "reg_state": Field("1", "state", 0, 11, "the 3GPP registration <stat>: 0 not searching, 1 home, "
                               "2 searching, 3 denied, 4 unknown, 5 roaming, ...")},
        "the serving cell as each modem sees it, and the modem's SIM and registration"),
    "device": Measurement(
        "probe", ("zone", "probe", "device", "site"), {
            "up": _bool("the device answered the poll"), "uptime_s": _at_least0("s"),
            "rebooted": _bool("sysUpTime went back since the last poll")},
        "a polled device"),
    "interface": Measurement(
        "probe", ("zone", "probe", "device", "ifname", "link"), {
            "oper_up": _bool(), "admin_up": _bool(), "in_octets": _count("octets"), "out_octets": _count("octets"),
            "in_errors": _count("packets"), "out_errors": _count("packets"),
            "speed_mbps": Field("Mbit/s", "gauge", 0, 10**7)},
        "one interface of a polled device"),
    "optical": Measurement(
        "probe", ("zone", "probe", "device", "port"), {
            "rx_dbm": Field("dBm", "gauge", -40, 25), "tx_dbm": Field("dBm", "gauge", -40, 25)},
        "a transceiver's receive and transmit power"),
    "power": Measurement(
        "probe", ("zone", "probe", "device", "site"), {
            "on_battery": _bool(), "battery_low": _bool(), "battery_minutes": _at_least0("min"),
            "battery_pct": _pct(), "seconds_on_battery": _at_least0("s")},
        "a UPS or a site's DC power"),
    "reach": Measurement(
        "probe", ("zone", "probe", "target", "path"), {
            "rtt_ms": _at_least0("ms"), "loss_pct": _pct(), "hops": Field("1", "gauge", 0, 255),
            "path_changed": _bool()},
        "reachability and route of a target from the probe"),
    "qos": Measurement(
        "probe", ("zone", "probe", "carrier", "modem", "test", "target"), {
            "success": _bool("the test reached its target (a transfer: it finished)"),
            "time_ms": _at_least0("ms", "access time: name resolution, connection, first answer"),
            "connect_ms": _at_least0("ms"), "tls_ms": _at_least0("ms"),
            "status": Field("1", "id", 100, 599, "the HTTP status"), "bytes": _count("bytes"),
            "rtt_ms": _at_least0("ms"), "jitter_ms": _at_least0("ms"), "loss_pct": _pct(),
            "dropped": _bool("a transfer that started and did not finish"),
            "down_mbps": Field("Mbit/s", "gauge", 0, 10**5), "up_mbps": Field("Mbit/s", "gauge", 0, 10**5),
            "budget_left_bytes": _at_least0("bytes"), "budget_used_bytes": _at_least0("bytes"),
            "refused": _count("tests", "tests refused this period for the SIM's data budget")},
        "active service tests through one carrier's modem (agent.sources.qos)"),
    "probe": Measurement(
        "probe", ("zone", "probe", "version"), {
            "up": _bool("from the probe's status; the collector writes it"), "planned": _bool("a stop on purpose"),
            "spool_depth": _at_least0("batches"), "spool_dropped": _count("batches"),
            "rss_mb": _at_least0("MiB"), "cpu_s": _count("s"),
            "seq_gaps": _at_least0("batches", "the collector's count of batches missing"),
            "spool_fill_pct": Field("%", "gauge", 0, None, "spool bytes against spool.max_bytes (over 100 only while "
                                    "batches in flight, which the bounds never drop, hold it over)"),
            "disk_free_pct": _pct("space the agent may still use on the spool's file system"),
            "disk_free_mb": _at_least0("MiB", "the same in MiB"),
            "info": Field("1", "gauge", 1, 1, "always 1, tagged with the agent's version")},
        "the probe itself"),
    "modem": Measurement(
        "probe", ("zone", "probe", "modem", "carrier"), {
            "answering": _bool("false: the modem did not answer the poll; true: the first poll it answered after"),
            "recovery_step": Field("1", "state", 0, 3, "the recovery step run at this poll: 0 none, 1 reopen, "
                                   "2 cfun, 3 usb_power")},
        "a poll the modem did not answer, and the first it answered after (the end of the episode)"),
    "event": Measurement(
        "collector", ("zone", "probe", "event", "device", "ifname", "trap_oid", "result", "hash", "running", "error",
                      "wanted"), {
            "occurred": _bool("always 1: an event happened at this time"), "if_index": Field("1", "id", 0, None),
            "admin_up": _bool(), "oper_up": _bool(), "cold": _bool("a cold start"), "cleared": _bool(),
            "depleted": _bool(), "battery_minutes": _at_least0("min"), "seconds_on_battery": _at_least0("s"),
            "varbinds": _count("varbinds"),
            # the probe's report on a configuration from the centre (event ``config``, zonewatch.wire.config_report)
            "version": Field("1", "id", 0, None, "the version of the configuration the report is about"),
            "running_version": Field("1", "id", 0, None, "the version running after it (0: the probe's own file)"),
            "seconds": _at_least0("s", "how long the switch to it took (``update``: from the request to the "
                                       "result)")},
        "a probe's events (traps, link changes) as the collector stores them", extra_tags=True),
    "alert": Measurement(
        "collector", ("alertname", "severity", "zone", "area", "carrier", "site", "device", "link", "group", "probe",
                      "modem"),
        {"firing": Field("1", "state", 0, 1, "1 while firing, 0 once when it resolves"),
         "muted": Field("1", "state", 0, 1, "1 while a stronger alert or a window mutes it")},
        "every alert's state changes, and every 60 s while firing", extra_tags=True),
    "redundancy": Measurement(
        "collector", ("zone", "group", "carrier"), {
            "members_up": _at_least0("members"), "members_needed": _at_least0("members"),
            "service_needed": _at_least0("members"), "members_total": _at_least0("members"),
            "state": Field("1", "state", 0, 2, "0 ok, 1 RedundancyLost, 2 ServiceOutage")},
        "each redundancy group"),
    "coverage": Measurement(
        "collector", ("zone", "area", "carrier"), {
            "level": Field("1", "state", 0, 4, "0 good, 1 fair, 2 weak, 3 hole, 4 no service"),
            "rsrp_dbm": RSRP, "probes": _at_least0("probes")},
        "each carrier's coverage of each area"),
}

COLLECTOR_WRITTEN: Final = frozenset(name for name, m in CATALOGUE.items() if m.writer == "collector")


def series() -> set[str]:
    """Return every VictoriaMetrics series name ZoneWatch writes: ``<measurement>_<field>``."""
    return {f"{name}_{f}" for name, m in CATALOGUE.items() for f in m.fields}


def problems(measurement: str, tags: Mapping[str, str], fields: Mapping[str, object]) -> list[str]:
    """Return what is wrong with one sample against the catalogue: an unknown measurement, tag or field, a
    value of the wrong kind, or one outside its physical bounds (empty: nothing)."""
    m = CATALOGUE.get(measurement)
    if m is None:
        return [f"measurement {measurement!r} is not in the catalogue"]
    out = []
    if not m.extra_tags:
        out += [f"{measurement}: tag {t!r} is not in the catalogue" for t in tags if t not in m.tags]
    for name, value in fields.items():
        spec = m.fields.get(name)
        if spec is None:
            out.append(f"{measurement}: field {name!r} is not in the catalogue")
            continue
        if spec.kind == "bool":
            if not isinstance(value, bool):
                out.append(f"{measurement}.{name} = {value!r}: expected a boolean")
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            out.append(f"{measurement}.{name} = {value!r}: expected a finite number")
            continue
        if spec.kind in ("id", "counter", "state") and not float(value).is_integer():
            out.append(f"{measurement}.{name} = {value!r}: expected a whole number")
        if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
            out.append(f"{measurement}.{name} = {value!r} {spec.unit} is outside what is physically possible "
                       f"[{spec.low}, {spec.high}]")
    return out
