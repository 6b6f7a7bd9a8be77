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
- DC power: a -48 V telecom plant's bus is 0-60 V (the profiles hold it to that; the catalogue allows a UPS's
  battery string up to 1000 V); battery temperature -40 to 100 C (beyond that the battery is gone).

The measurements an operator configures for site sensors (the ``telemetry`` source) are theirs to name and
are not listed here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["Field", "Measurement", "CATALOGUE", "COLLECTOR_WRITTEN", "OWNER_LABEL_PREFIX", "OWNERSHIP_TAGS",
           "owner_label", "series", "problems"]

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
            # WCDMA: CPICH RSCP and Ec/No as TS 25.133 reports them (-120..-25 dBm, -24.5..0 dB), a little wider
            "rscp_dbm": Field("dBm", "gauge", -125, -25), "ecio_db": Field("dB", "gauge", -25, 0),
            "sim_state": Field("1", "state", 0, 4, "AT+CPIN?: 0 ready, 1 no SIM, 2 PIN required, 3 PUK required, "
                               "4 SIM failure"),
            "reg_state": Field("1", "state", 0, 11, "the 3GPP registration <stat>: 0 not searching, 1 home, "
                               "2 searching, 3 denied, 4 unknown, 5 roaming, ...")},
        "the serving cell as each modem sees it, and the modem's SIM and registration"),
    "survey": Measurement(
        "probe", ("zone", "probe", "survey", "carrier", "modem", "rat"), {
            "rsrp_dbm": RSRP, "rsrq_db": RSRQ, "sinr_db": SINR, "rssi_dbm": Field("dBm", "gauge", -125, -25),
            "registered": _bool("registered on its home network or roaming"), "pci": Field("1", "id", 0, 1007),
            "lat": Field("°", "gauge", -90, 90, "WGS 84 latitude of the reading (gpsd, or a lat/lon waypoint)"),
            "lon": Field("°", "gauge", -180, 180, "WGS 84 longitude"),
            "x_m": Field("m", "gauge", -10**6, 10**6, "metres east on the zone's plan (an x/y waypoint)"),
            "y_m": Field("m", "gauge", -10**6, 10**6, "metres north on the zone's plan"),
            "fix": Field("1", "state", 0, 3, "where the position came from: 0 a waypoint, 2 a 2D GPS fix, 3 a 3D one"),
            "error_m": _at_least0("m", "the GPS's estimated horizontal error (gpsd's eph), when it gives one"),
            "age_s": _at_least0("s", "how old the position was when the modem was read")},
        "a walk survey's cellular readings, each with the position it was taken at (zonewatch-agent survey); "
        "positions are fields, so a walk adds one series per survey, modem and technology, not one per step"),
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
            "rx_dbm": Field("dBm", "gauge", -40, 25), "tx_dbm": Field("dBm", "gauge", -40, 25),
            # SFF-8472 digital diagnostics: what the transceiver's A2h fields can hold
            "temperature_c": Field("°C", "gauge", -128, 128), "bias_ma": Field("mA", "gauge", 0, 131.072),
            "voltage_v": Field("V", "gauge", 0, 6.5536)},
        "a transceiver's receive and transmit power, and where the device gives them its temperature, laser "
        "bias and supply voltage"),
    "pon": Measurement(
        "probe", ("zone", "probe", "device", "port"), {
            "onus": _at_least0("ONUs", "ONUs configured on the PON port"),
            "onus_online": _at_least0("ONUs"), "onus_offline": _at_least0("ONUs"),
            "onu_rx_min_dbm": Field("dBm", "gauge", -40, 25, "the weakest downstream Rx an ONU reports"),
            "onu_rx_median_dbm": Field("dBm", "gauge", -40, 25),
            "olt_rx_min_dbm": Field("dBm", "gauge", -40, 25, "the weakest upstream Rx the OLT measures of an ONU"),
            "olt_rx_median_dbm": Field("dBm", "gauge", -40, 25)},
        "a GPON port of an OLT: its ONUs counted and their optical levels summarised"),
    "onu": Measurement(
        "probe", ("zone", "probe", "device", "port", "onu"), {
            "rx_dbm": Field("dBm", "gauge", -40, 25, "downstream, at the ONU"),
            "tx_dbm": Field("dBm", "gauge", -40, 25, "upstream, at the ONU"),
            "olt_rx_dbm": Field("dBm", "gauge", -40, 25, "upstream, at the OLT")},
        "one ONU whose optical level is weak (the profiles keep only those; every ONU counts in ``pon``)"),
    "power": Measurement(
        "probe", ("zone", "probe", "device", "site"), {
            "on_battery": _bool(), "battery_low": _bool(), "battery_minutes": _at_least0("min"),
            "battery_pct": _pct(), "seconds_on_battery": _at_least0("s"),
            "mains_present": _bool("the AC input (mains) is there, by the device's own evidence"),
            "on_bypass": _bool("a UPS feeds its load through its bypass: mains, unprotected"),
            "inverter_mode": _bool("output from the inverter (DC) while the AC input is present: not an outage"),
            "battery_voltage_v": Field("V", "gauge", 0, 1000, "battery (DC bus) voltage as a magnitude; a -48 V "
                                       "plant floats at about 53.5 V"),
            "battery_current_a": Field("A", "gauge", -10000, 10000, "positive: charging, negative: discharging"),
            "load_current_a": Field("A", "gauge", 0, 10000, "the DC load of a rectifier plant"),
            "battery_temp_c": Field("°C", "gauge", -40, 100),
            "rectifiers_installed": Field("rectifiers", "gauge", 0, 1000),
            "rectifiers_failed": Field("rectifiers", "gauge", 0, 1000),
            "alarm_major": _bool("the controller's major (urgent) alarm"),
            "alarm_minor": _bool("the controller's minor (non-urgent) alarm")},
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
            "refused": _count("tests", "tests refused this period for the SIM's data budget"),
            "diagnostic": _bool("the test ran in a diagnostic round the collector asked for (absent otherwise)")},
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
            "present": _bool("false: a link trap about a port that is not there (notPresent: an empty slot or cage)"),
            "depleted": _bool(), "battery_minutes": _at_least0("min"), "seconds_on_battery": _at_least0("s"),
            "varbinds": _count("varbinds"),
            # the probe's report on a configuration from the centre (event ``config``, zonewatch.wire.config_report)
            "version": Field("1", "id", 0, None, "the version of the configuration the report is about"),
            "running_version": Field("1", "id", 0, None, "the version running after it (0: the probe's own file)"),
            "seconds": _at_least0("s", "how long the switch to it took (``update``: from the request to the "
                                       "result)")},
        "a probe's events (traps, link changes) as the collector stores them", extra_tags=True),
    "alert": Measurement(
        "collector", ("alertname", "severity", "zone", "area", "carrier", "site", "device", "port", "link", "group",
                      "probe", "modem"),
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
        "each carrier's coverage of each area (its level by the zone's area rule: the worst probe by default)"),
    "coverage_at_probe": Measurement(
        "collector", ("zone", "area", "probe", "carrier"), {
            "level": Field("1", "state", 0, 4, "0 good, 1 fair, 2 weak, 3 hole, 4 no service"),
            "interference": _bool("SINR or RSRQ under the zone's bound while RSRP is fair or better"),
            "rsrp_dbm": RSRP, "sinr_db": SINR, "rsrq_db": RSRQ},
        "each carrier's coverage at each probe (medians over the coverage window)"),
}

COLLECTOR_WRITTEN: Final = frozenset(name for name, m in CATALOGUE.items() if m.writer == "collector")

# Ownership labels. The collector (never a probe: it drops any such tag a probe sends) labels every series of an
# asset a carrier owns with one label per owner, ``own_<mcc>_<mnc>="1"`` (``own_452_04``), worked out from the
# inventory and the series' tags, first found in this order: ``carrier`` (the series is about that carrier
# alone: its modem, coverage, alert), ``link`` (or the device interface or optical port an inventory link
# names), ``group`` (a redundancy group), ``device``, ``site``, and for ``reach`` the redundancy groups that
# list the probe's traced path. A series with none of these, or of an asset with no owners, carries no owner
# label: the zone authority's alone. One label per owner, rather than one list label: VictoriaMetrics applies
# ``extra_label`` (equality only) as an AND that a caller cannot widen, while ``extra_filters[]`` (which a
# regex over a list would need) is OR-ed with any the caller adds (collector.provision.vmauth).
OWNER_LABEL_PREFIX: Final = "own_"
OWNERSHIP_TAGS: Final = ("carrier", "link", "group", "device", "site")


def owner_label(plmn: str) -> str:
    """Return the label that marks a series as owned by the carrier with PLMN ``plmn``: ``own_452_04``."""
    return OWNER_LABEL_PREFIX + plmn.replace("-", "_")


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
