"""The technical indicators of QCVN 81:2019/BTTTT (Vietnam's regulation on the quality of Internet access on land
mobile networks, section 2.1) per carrier, from what the probes measured, against the regulation's limits.

Pure apart from reading the source it is given. Every indicator counts samples, as the regulation does (not
time): each is a share or a mean of measurements the probes took in the zone over the period.

=========================  ==================================================  ============================
indicator (QCVN 81 2.1.x)  how ZoneWatch measures it                           limit (default)
=========================  ==================================================  ============================
radio network              ``cellular`` readings of the carrier's modems: the  >= 95 % (2.1.1)
availability               share that were registered with an RSRP at or
                           above the zone's hole threshold for the technology
                           (the regulation counts samples at or above a
                           minimum received level)
failed service access      ``qos`` access tests (dns, tcp, http, download,     <= 10 % (2.1.2)
rate                       upload): the share that failed to reach the
                           service (a transfer that started and then broke is
                           a drop, not a failed access)
average access latency     mean ``time_ms`` of the access tests that reached   <= 10 s (2.1.3)
                           the service
dropped data transfer      transfers (download, upload) that started: the      <= 10 % (2.1.4)
rate                       share that did not finish
average download speed     mean ``down_mbps`` of completed downloads (bytes x   >= the carrier's declared
                           8 over the time from request to last byte)           average (2.1.5)
downloads at the minimum   share of completed downloads at or above the         >= 95 % at the declared
speed                      minimum download speed                               minimum (2.1.5)
=========================  ==================================================  ============================

The limits are the collector's ``alerting.settings.qos`` (``collector.alerting.qos.QosSettings``), the same the
DataAccessFailure and ThroughputBelowTarget alerts judge against, so the report and the alerts agree; the speed
targets are what each carrier declared for its service area (``carriers`` there), with the default minimum
of 5 Mbit/s until a carrier's own figure is set. The availability limit (95 %) is the regulation's.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from collector.alerting.qos import QosSettings, Result, judge_access, judge_transfers
from collector.report.period import Period
from collector.report.source import PointSource, Series

if TYPE_CHECKING:
    from collector.inventory import Inventory

__all__ = ["KpiRow", "KPIS", "AVAILABILITY_MIN_PCT", "compute", "table", "section", "NOTE"]

AVAILABILITY_MIN_PCT: Final = 95.0
# key -> (name, QCVN 81:2019 section, unit)
KPIS: Final = {
    "availability": ("radio network availability", "2.1.1", "%"),
    "failed_access": ("failed service access rate", "2.1.2", "%"),
    "access_latency": ("average access latency", "2.1.3", "s"),
    "dropped_transfers": ("dropped data transfer rate", "2.1.4", "%"),
    "download_speed": ("average download speed", "2.1.5", "Mbit/s"),
    "download_at_min": ("downloads at or above the minimum speed", "2.1.5", "%"),
}
NOTE: Final = ("The technical indicators of QCVN 81:2019/BTTTT, section 2.1, per carrier, from the probes' own "
               "measurements in the zone over the period (counted in samples, as the regulation counts them): "
               "availability from each modem's readings (registered, RSRP at or above the hole threshold); the "
               "others from the active service tests the probes run through each carrier's modem against the "
               "zone's test server. A figure with no samples is shown empty and judged neither way.")


@dataclass(frozen=True)
class KpiRow:
    """One indicator of one carrier: its value (None: nothing measured), how many samples, the limit, the verdict."""

    carrier: str
    kpi: str
    value: float | None
    samples: int
    limit: str          # as the report says it: ">= 95 %", "<= 10 s", "" when the carrier declared none
    meets: bool | None  # None: no samples, or no limit to judge against

    @property
    def name(self) -> str:
        return KPIS[self.kpi][0]


def _joined(found: dict[str, list[Series]]) -> dict[tuple[tuple[str, ...], int], dict[str, float]]:
    """Return the fields of each sample: points of several fields of one measurement joined on (tags, time)."""
    out: dict[tuple[tuple[str, ...], int], dict[str, float]] = {}
    for field_name, series in found.items():
        for s in series:
            key = tuple(sorted(f"{k}={v}" for k, v in s.tags.items()))
            for t, v in s.points:
                out.setdefault((key, t), {})[field_name] = v
    return out


def _tags(key: tuple[str, ...]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in key)


def availability_samples(registered: Iterable[Series], rsrp: Iterable[Series],
                         hole_dbm: dict[str | None, float]) -> dict[str, tuple[int, int]]:
    """Return carrier -> (readings, readings available) from the ``cellular`` series: a reading is available when
    the modem is registered (or says nothing of it) and its RSRP, if given, is at or above the hole threshold of
    its technology (``hole_dbm`` by rat; None: the zone's default). A reading with neither field is not counted."""
    joined = _joined({"registered": list(registered), "rsrp_dbm": list(rsrp)})
    out: dict[str, list[int]] = {}
    for (key, _), fields in joined.items():
        tags = _tags(key)
        carrier = tags.get("carrier")
        if not carrier:
            continue
        reg, level = fields.get("registered"), fields.get("rsrp_dbm")
        hole = hole_dbm.get(tags.get("rat"), hole_dbm[None])
        ok = (reg is None or reg >= 1) and (level is None or level >= hole)
        counts = out.setdefault(carrier, [0, 0])
        counts[0] += 1
        counts[1] += ok
    return {c: (n, ok) for c, (n, ok) in out.items()}


def qos_results(found: dict[str, list[Series]]) -> dict[str, list[Result]]:
    """Return carrier -> its test results, from the ``qos`` fields success, dropped, time_ms, down_mbps, up_mbps."""
    out: dict[str, list[Result]] = {}
    for (key, t), f in sorted(_joined(found).items(), key=lambda item: item[0][1]):
        tags = _tags(key)
        if "success" not in f or not tags.get("carrier") or not tags.get("test"):
            continue

        def num(name: str, f: dict[str, float] = f) -> float | None:
            value = f.get(name)
            return value if value is not None and value >= 0 else None

        dropped = f.get("dropped")
        out.setdefault(tags["carrier"], []).append(Result(
            t, tags["test"], f["success"] >= 1, None if dropped is None else dropped >= 1, num("time_ms"),
            num("down_mbps"), num("up_mbps")))
    return out


def rows_for(carrier: str, available: tuple[int, int], results: Sequence[Result],
             settings: QosSettings) -> list[KpiRow]:
    """Return the indicators of one carrier from its availability counts and its test results."""
    n, ok = available
    targets = settings.targets(carrier)
    assert targets.down_min_mbps is not None and targets.down_share_pct is not None
    assert targets.max_dropped_pct is not None
    access = judge_access(results)
    transfers = judge_transfers(results, targets.down_min_mbps)
    rows = [KpiRow(carrier, "availability", 100.0 * ok / n if n else None, n, f">= {AVAILABILITY_MIN_PCT:g} %",
                   None if not n else 100.0 * ok / n >= AVAILABILITY_MIN_PCT)]
    failed = access.failed_pct if access.tests else None
    rows.append(KpiRow(carrier, "failed_access", failed, access.tests, f"<= {settings.max_failed_pct:g} %",
                       None if failed is None else failed <= settings.max_failed_pct))
    latency = access.mean_ms / 1000 if access.mean_ms is not None else None
    reached = access.tests - access.failed
    rows.append(KpiRow(carrier, "access_latency", latency, reached if latency is not None else 0,
                       f"<= {settings.max_access_ms / 1000:g} s",
                       None if latency is None else latency * 1000 <= settings.max_access_ms))
    dropped = transfers.dropped_pct if transfers.started else None
    rows.append(KpiRow(carrier, "dropped_transfers", dropped, transfers.started, f"<= {targets.max_dropped_pct:g} %",
                       None if dropped is None else dropped <= targets.max_dropped_pct))
    speed = transfers.mean_down
    declared = targets.down_avg_mbps
    rows.append(KpiRow(carrier, "download_speed", speed, transfers.downloads,
                       f">= {declared:g} Mbit/s" if declared is not None else "declared by the carrier: not set",
                       None if speed is None or declared is None else speed >= declared))
    share = transfers.share_at_min_pct if transfers.downloads else None
    rows.append(KpiRow(carrier, "download_at_min", share, transfers.downloads,
                       f">= {targets.down_share_pct:g} % at {targets.down_min_mbps:g} Mbit/s",
                       None if share is None else share >= targets.down_share_pct))
    return rows


def compute(source: PointSource, zone: str, period: Period, settings: QosSettings,
            inventory: Inventory | None = None, carriers: Iterable[str] = ()) -> list[KpiRow]:
    """Read the zone's ``cellular`` and ``qos`` points of ``period`` and return every carrier's indicators, in
    carrier order: the carriers measured, and ``carriers`` (PLMNs) even when nothing of them was."""
    def read(measurement: str, field_name: str) -> list[Series]:
        return source.series(measurement, field_name, zone, period.start_ns, period.end_ns)

    hole: dict[str | None, float] = {None: -110.0}
    if inventory is not None and zone in inventory.zones:
        z = inventory.zones[zone]
        hole = {None: z.threshold(None).hole_dbm, **{rat: t.hole_dbm for rat, t in z.thresholds.items()}}
    available = availability_samples(read("cellular", "registered"), read("cellular", "rsrp_dbm"), hole)
    results = qos_results({f: read("qos", f) for f in ("success", "dropped", "time_ms", "down_mbps", "up_mbps")})
    out: list[KpiRow] = []
    for carrier in sorted(set(available) | set(results) | set(carriers)):
        out += rows_for(carrier, available.get(carrier, (0, 0)), results.get(carrier, []), settings)
    return out


def _value(row: KpiRow) -> str:
    if row.value is None:
        return ""
    return f"{row.value:.2f}" if KPIS[row.kpi][2] == "s" else f"{row.value:.1f}" if row.kpi == "download_speed" \
        else f"{row.value:.2f}"


def _verdict(row: KpiRow) -> str:
    return "" if row.meets is None else "yes" if row.meets else "no"


def table(zone: str, rows: Sequence[KpiRow], names: dict[str, str]) -> tuple[list[str], list[list[str]]]:
    """Return the KPI table (header, rows of text) as kpi.csv and the HTML show it."""
    body = [[zone, r.carrier, names.get(r.carrier, ""), r.kpi, KPIS[r.kpi][1], r.name, _value(r), KPIS[r.kpi][2],
             str(r.samples), r.limit, _verdict(r)] for r in rows]
    return (["zone", "carrier", "carrier_name", "kpi", "qcvn_81_2019", "indicator", "value", "unit", "samples",
             "limit", "meets"], body)


def section(rows: Sequence[KpiRow], names: dict[str, str]) -> str:
    """Return the report's HTML section: the note, then one table of indicators against limits per carrier."""
    parts = ["<h2>QCVN 81:2019/BTTTT indicators per carrier</h2>", f"<p class=note>{html.escape(NOTE)}</p>"]
    if not rows:
        return "".join(parts) + "<p class=note>No carrier was measured.</p>"
    head = "".join(f"<th>{h}</th>" for h in ("carrier", "indicator (QCVN 81:2019)", "value", "samples", "limit",
                                             "meets"))
    body = []
    for r in rows:
        label = f"{names[r.carrier]} ({r.carrier})" if names.get(r.carrier) else r.carrier
        colour = {True: "#1a9850", False: "#d73027", None: "#555"}[r.meets]
        value = f"{_value(r)} {KPIS[r.kpi][2]}" if r.value is not None else "no samples"
        body.append(f"<tr><td class=t>{html.escape(label)}</td><td class=t>{html.escape(r.name)} "
                    f"({KPIS[r.kpi][1]})</td><td>{html.escape(value)}</td><td>{r.samples}</td>"
                    f"<td class=t>{html.escape(r.limit)}</td><td style=\"color:{colour}\">"
                    f"{html.escape(_verdict(r) or '-')}</td></tr>")
    return "".join(parts) + f"<table><tr>{head}</tr>{''.join(body)}</table>"
