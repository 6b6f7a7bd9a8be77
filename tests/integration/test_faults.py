"""Nothing lost: the seven faults of the store-and-forward issue, each against real parts.

Every test runs a small zone: two simulated modems on ptys polled every 250 ms by a real agent process,
real mosquitto (persistence on), a real collector process with its intake queue, and real VictoriaMetrics.
It then breaks one part and asserts, by counting, that every sample the agent committed to its spool
arrives in VictoriaMetrics exactly once, and nothing else:

    expected = samples the agent committed (its spool's ``appended_samples`` counter, read from the file)
               - samples the spool's bounds dropped (counted by the agent, and seen as gaps by the collector)
    stored   = count_over_time of cellular_registered + probe_spool_depth + probe_info (a field each agent
               sample has, and that only agent samples have) over the whole run, after the pipeline drained

VictoriaMetrics runs as production should (-dedup.minScrapeInterval=1ms): a batch replayed after a crash is
the same point again, not a second one. Faults are scaled for CI (seconds, not minutes).
"""

from __future__ import annotations

import random
import re
import signal
import sqlite3
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sim.modem import SimModem
from tests import services

pytestmark = pytest.mark.integration

POLL = "250ms"


class Zone:
    """Broker, VictoriaMetrics, collector and agent, each stoppable and restartable on the same ports."""

    def __init__(self, tmp: Path, spool_max_bytes: int = 64 * 2**20, coalesce: str = "0s") -> None:
        """``coalesce``: the agent's ``spool.coalesce``. One batch a poll by default: most tests here count
        batches (a spool's depth, what its bounds drop); test 8 joins polls as the agent does by default."""
        self.joins = coalesce != "0s"
        self.tmp = tmp
        self.modems = [SimModem(), SimModem()]
        for m, plmn in zip(self.modems, ("45204", "45202"), strict=True):
            m.set_registered(True, plmn=plmn)
            m.start()
        self.broker = services.start_mosquitto(tmp / "mosquitto")
        self.vm = services.start_victoriametrics(tmp / "vm")  # started last of the three: see close()
        self.spool = tmp / "spool.db"
        (tmp / "agent.yaml").write_text(
            "probe: {id: p1, zone: fault-zone}\n"
            f"mqtt: {{host: 127.0.0.1, port: {self.broker.port}, keepalive: 5s}}\n"
            f"spool: {{path: '{self.spool}', max_bytes: {spool_max_bytes}, coalesce: {coalesce}}}\n"
            "metrics: {enabled: false}\nself_interval: 5s\nsources:\n"
            + "".join(f"  - {{type: cellular, name: m{i}, port: {m.port}, interval: {POLL}, timeout: 1s}}\n"
                      for i, m in enumerate(self.modems)))
        (tmp / "collector.yaml").write_text(
            f"mqtt: {{host: 127.0.0.1, port: {self.broker.port}, client_id: zw-faults}}\n"
            f"storage: {{type: victoriametrics, url: '{self.vm.url}'}}\n"
            f"queue: {{path: '{tmp / 'intake.db'}'}}\nhttp: {{enabled: false}}\n")
        self.collector: services.Service | None = None
        self.agent: services.Service | None = None
        try:
            self.start_collector()
            self.start_agent()
        except BaseException:
            self.close()
            raise

    def start_collector(self) -> None:
        # Ready once subscribed: before its first subscription a broker has nowhere to keep the messages.
        log = self.tmp / "collector" / "collector.log"
        seen = log.read_text().count("collector subscribed") if log.exists() else 0
        self.collector = services.start_zonewatch(
            "collector", ["-c", str(self.tmp / "collector.yaml"), "run"], self.tmp / "collector",
            ready=lambda: log.read_text().count("collector subscribed") > seen)

    def start_agent(self) -> None:
        # Ready once this start logs "running" (its signal handlers are in place by then); on a restart the
        # spool already exists, so the spool alone says nothing.
        log = self.tmp / "agent" / "agent.log"
        seen = log.read_text().count(" running ") if log.exists() else 0
        self.agent = services.start_zonewatch("agent", ["-c", str(self.tmp / "agent.yaml"), "run"], self.tmp / "agent",
                                              ready=lambda: log.read_text().count(" running ") > seen)

    def restart_broker(self) -> None:
        self.broker = services.start_mosquitto(self.tmp / "mosquitto", port=self.broker.port)

    def restart_vm(self) -> None:
        self.vm = services.start_victoriametrics(self.tmp / "vm", port=self.vm.port)

    def _open_spool(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.spool}?mode=ro", uri=True)  # never creates the file

    def spool_meta(self, key: str) -> int:
        db = self._open_spool()
        try:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return int(row[0]) if row else 0
        finally:
            db.close()

    def spool_depth(self) -> int:
        db = self._open_spool()
        try:
            return int(db.execute("SELECT count(*) FROM entries").fetchone()[0])
        finally:
            db.close()

    def stored(self) -> int:
        urllib.request.urlopen(urllib.request.Request(f"{self.vm.url}/internal/force_flush"), timeout=5).close()
        total = 0
        for metric in ("cellular_registered", "probe_spool_depth", "probe_info"):
            for row in services.vm_query(self.vm.url, f'sum(count_over_time({metric}{{zone="fault-zone"}}[1h]))'):
                total += int(float(row["value"][1]))  # type: ignore[index]
        return total

    def wait_until_polled(self, batches: int) -> None:
        start = self.spool_meta("seq")
        services.wait_for(lambda: self.spool_meta("seq") >= start + batches, 30, f"{batches} more polls")

    def wait_until_appended(self, samples: int) -> None:
        start = self.spool_meta("appended_samples")
        services.wait_for(lambda: self.spool_meta("appended_samples") >= start + samples, 30,
                          f"{samples} more samples spooled")

    def stop_agent_and_drain(self, expected_drops: int = 0) -> int:
        """Stop the agent cleanly, wait for everything to arrive; return the samples expected in the store."""
        assert self.agent is not None
        # joining polls, a running agent always has the batch it joins them in: its clean stop sends it
        services.wait_for(lambda: self.spool_depth() <= self.joins, 90, "the agent's spool to drain")
        self.agent.stop()
        assert self.agent.proc.returncode == 0, self.agent.log_tail(30)
        assert self.spool_depth() == 0  # a clean stop hands the broker what was still spooled
        expected = self.spool_meta("appended_samples") - self.spool_meta("dropped") - expected_drops
        services.wait_for(lambda: self.stored() == expected, 90,
                          f"VictoriaMetrics to hold {expected} samples (has {self.stored()})")
        return expected

    def close(self) -> None:
        for svc in (self.agent, self.collector, self.broker, self.vm):
            if svc is not None:
                svc.stop()
        for m in self.modems:
            m.stop()


@pytest.fixture
def zone(tmp_path: Path) -> Iterator[Zone]:
    z = Zone(tmp_path)
    try:
        yield z
    finally:
        z.close()


def assert_exactly_once(z: Zone, expected_drops: int = 0) -> None:
    """Stop the agent, let everything drain, and count (each batch here holds one sample, so each batch the
    spool's bounds dropped is one sample fewer; ``expected_drops`` are other losses the test caused)."""
    expected = z.stop_agent_and_drain(expected_drops)
    assert z.collector is not None
    z.collector.stop()  # finishes writing what it holds: nothing more may appear after this
    assert z.stored() == expected
    assert expected > 20  # the test really moved data


def test_1_broker_down_while_the_agent_keeps_polling(zone: Zone) -> None:
    zone.wait_until_polled(8)
    zone.broker.stop()
    zone.wait_until_polled(40)  # about 10 s of polls with no broker
    assert zone.spool_depth() >= 30  # they wait in the spool
    zone.restart_broker()
    assert_exactly_once(zone)


def test_2_broker_restarted_with_persistence_while_the_collector_is_down(zone: Zone) -> None:
    zone.wait_until_polled(8)
    assert zone.collector is not None
    zone.collector.stop()
    zone.wait_until_polled(20)  # the broker queues them for the collector's persistent session
    services.wait_for(lambda: zone.spool_depth() == 0, 30, "the broker to take the agent's batches")
    zone.broker.stop()  # saves its persistence file on the way down
    zone.restart_broker()
    zone.wait_until_polled(8)
    zone.start_collector()
    assert_exactly_once(zone)


def test_3_agent_killed_in_the_middle_of_sending(zone: Zone) -> None:
    zone.wait_until_polled(4)
    zone.broker.stop()
    zone.wait_until_polled(60)  # a backlog
    zone.restart_broker()
    assert zone.agent is not None
    backlog = zone.spool_depth()
    services.wait_for(lambda: zone.spool_depth() < backlog - 5, 30, "the agent to start sending its backlog")
    zone.agent.stop(signal.SIGKILL)  # mid-send: some published, some acknowledged, some neither
    zone.start_agent()
    assert_exactly_once(zone)


def test_4_collector_killed_under_load(zone: Zone) -> None:
    zone.wait_until_polled(4)
    assert zone.collector is not None
    zone.collector.stop()
    zone.wait_until_polled(60)  # a load waiting at the broker
    for _ in range(3):  # killed three times while writing, each time as soon as it has written something
        before = zone.stored()
        zone.start_collector()
        services.wait_for(lambda: zone.stored() > before, 30, "the collector to write")  # noqa: B023
        zone.collector.stop(signal.SIGKILL)
        zone.wait_until_polled(10)
    zone.start_collector()
    assert_exactly_once(zone)


def test_5_victoriametrics_down_for_a_while(zone: Zone) -> None:
    zone.wait_until_polled(8)
    zone.vm.stop()
    zone.wait_until_polled(40)
    zone.restart_vm()
    assert_exactly_once(zone)


def test_6_spool_full_drops_oldest_counts_it_and_stays_healthy(tmp_path: Path) -> None:
    z = Zone(tmp_path, spool_max_bytes=12_000)  # room for about 40 batches
    try:
        z.wait_until_polled(4)
        z.broker.stop()
        z.wait_until_polled(120)  # three times what fits
        assert z.spool_meta("dropped") > 40  # the oldest went, and were counted
        assert z.agent is not None and z.agent.alive()  # still healthy, still polling
        z.wait_until_polled(4)
        z.restart_broker()
        assert_exactly_once(z)  # everything the bounds did not drop, exactly once
        assert "over its bounds" in z.agent.log.read_text()  # reported, not silent
        dropped = z.spool_meta("dropped")

        def gaps() -> int:
            z.stored()  # flushes VictoriaMetrics' buffers
            rows = services.vm_query(z.vm.url, 'last_over_time(probe_seq_gaps{probe="p1"}[1h])')
            return int(float(rows[0]["value"][1]))  # type: ignore[index]

        try:
            services.wait_for(lambda: gaps() == dropped, 30, f"the collector's gap count to equal the {dropped} drops")
        except TimeoutError:
            series = services.vm_query(z.vm.url, 'probe_seq_gaps{probe="p1"}[1h]')
            raise AssertionError(f"the gap count in VictoriaMetrics is {gaps()}, the drops {dropped}; "
                                 f"the series: {series}") from None
    finally:
        z.close()


def test_7_spool_file_cut_at_a_random_byte(zone: Zone) -> None:
    zone.wait_until_polled(4)
    zone.broker.stop()
    zone.wait_until_polled(80)
    assert zone.agent is not None
    zone.agent.stop(signal.SIGKILL)  # the power goes
    appended = zone.spool_meta("appended_samples")
    waiting = zone.spool_depth()
    db = sqlite3.connect(zone.spool)  # fold the write-ahead log into the file: one disk image ...
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = zone.spool.read_bytes()  # ... which the dying SD card cuts short
    zone.spool.write_bytes(data[: random.Random(7).randrange(len(data) // 3, len(data) - 1)])
    zone.restart_broker()
    zone.start_agent()  # it starts, keeps what is intact, and reports what it lost
    services.wait_for(lambda: "was damaged" in zone.agent.log.read_text(), 20, "the agent to report the damage")
    report = re.search(r"kept (\d+) batches", zone.agent.log.read_text())
    assert report is not None
    kept = int(report.group(1))
    lost = waiting - kept  # only what was still waiting could be lost
    assert 0 < kept <= waiting
    zone.wait_until_polled(4)
    services.wait_for(lambda: zone.spool_depth() == 0, 90, "the agent's spool to drain")
    zone.agent.stop()
    assert zone.spool_depth() == 0
    new = zone.spool_meta("appended_samples") - appended  # polled after the restart
    expected = appended - lost + new
    services.wait_for(lambda: zone.stored() == expected, 90, f"VictoriaMetrics to hold {expected} samples")
    # The collector saw the lost batches as gaps in the probe's seq: the NOC can see what went missing.
    gaps = services.vm_query(zone.vm.url, 'last_over_time(probe_seq_gaps{probe="p1"}[1h])')
    assert int(float(gaps[0]["value"][1])) == lost  # type: ignore[index]


def test_8_agent_killed_while_it_joins_polls_in_one_batch(tmp_path: Path) -> None:
    """With ``spool.coalesce`` the open batch is rewritten on disk at each poll: an agent killed (SIGKILL) between
    two polls or in the middle of a rewrite, or cut off from the broker meanwhile, loses nothing it committed and
    sends nothing twice."""
    z = Zone(tmp_path, coalesce="2s")
    try:
        for _ in range(3):
            z.wait_until_appended(20)
            assert z.agent is not None
            z.agent.stop(signal.SIGKILL)
            z.start_agent()
        z.broker.stop()
        z.wait_until_appended(40)
        z.restart_broker()
        z.wait_until_appended(20)
        joined = z.spool_meta("appended_samples") / z.spool_meta("seq")
        assert joined > 3, f"{joined:.1f} samples a batch: the polls were not joined"
        assert_exactly_once(z)
    finally:
        z.close()
