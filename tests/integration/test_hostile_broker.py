"""A broker that drops the connection in the middle of a PUBLISH: the agent reconnects and loses nothing.

A real agent process polls a simulated modem every 200 ms and publishes through ``DroppingBroker``, a TCP
front for a real mosquitto that, for its first connections, passes the CONNECT and the first publishes and
then cuts both ways in the middle of a PUBLISH packet (the broker sees a truncated packet, the agent a dead
socket). Later connections are passed whole. A subscriber on the real broker reads what arrives.

What a user would notice: every batch the agent spooled arrives (each seq at least once; QoS 1 may deliver a
batch it resent twice, and then both copies are identical, so the collector's seq check keeps one), the
spool drains, each drop is logged as a lost broker with the spool keeping the batches, the agent stays up and
its open file descriptors do not grow with the reconnect cycles.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sim.modem import SimModem
from tests import services
from tests.hostile import BatchSubscriber, DroppingBroker, fd_count

pytestmark = pytest.mark.integration

DROPS = 6


def spool_value(spool: Path, sql: str) -> int:
    db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True)
    try:
        row = db.execute(sql).fetchone()
        return int(row[0]) if row and row[0] is not None else 0
    finally:
        db.close()


@pytest.fixture
def modem() -> Iterator[SimModem]:
    with SimModem() as m:
        m.set_registered(True)
        yield m


def test_connections_cut_mid_publish_lose_nothing_and_leak_nothing(
        tmp_path: Path, mosquitto: services.Service, modem: SimModem) -> None:
    subscriber = BatchSubscriber(mosquitto.port)
    spool = tmp_path / "spool.db"
    with DroppingBroker(mosquitto.port, drops=DROPS, after_bytes=1500) as front:
        config = tmp_path / "agent.yaml"
        config.write_text("probe: {id: p1, zone: hostile}\n"
                          f"mqtt: {{host: 127.0.0.1, port: {front.port}, keepalive: 5s}}\n"
                          f"spool: {{path: '{spool}', coalesce: 0s}}\n"   # a batch a poll: many cuts mid-PUBLISH
                          "metrics: {enabled: false}\nself_interval: 2s\nsources:\n"
                          f"  - {{type: cellular, name: m1, port: {modem.port}, interval: 200ms, timeout: 1s}}\n")
        agent = services.start_zonewatch("agent", ["-c", str(config), "run"], tmp_path / "agent")
        try:
            services.wait_for(lambda: front.dropped >= 1, 30, "the first connection to be cut mid-PUBLISH")
            services.wait_for(lambda: modem.commands.count("AT+CSQ") >= 3, 30, "the modem's port to be open")
            baseline = fd_count(agent.pid)
            # paho's backoff starts again from 1-3 s after each accepted connection: about 2 s a cycle
            services.wait_for(lambda: front.dropped >= DROPS, 90, f"{DROPS} connections cut mid-PUBLISH")
            services.wait_for(lambda: spool_value(spool, "SELECT count(*) FROM entries") == 0, 60,
                              "the agent's spool to drain")
            last = spool_value(spool, "SELECT value FROM meta WHERE key = 'seq'")

            def missing() -> set[int]:
                return set(range(1, last + 1)) - {b.seq for b in subscriber.batches() if b.probe == "p1"}

            services.wait_for(lambda: not missing(), 30, f"every seq up to {last} at the subscriber")
            assert agent.alive(), agent.log_tail(40)
            assert fd_count(agent.pid) <= baseline + 2, f"{baseline} descriptors before, {fd_count(agent.pid)} after"
        finally:
            agent.stop()
            subscriber.close()
    assert agent.proc.returncode == 0, agent.log_tail(40)

    batches = [b for b in subscriber.batches() if b.probe == "p1"]
    copies = Counter(b.seq for b in batches)
    assert set(copies) == set(range(1, max(copies) + 1)), "a seq is missing"
    assert max(copies) >= last > 30  # the test moved data, through every cut
    by_seq: dict[int, object] = {}
    for batch in batches:  # a batch delivered twice (resent after a cut) is the same batch
        assert by_seq.setdefault(batch.seq, batch) == batch, f"seq {batch.seq} arrived with two contents"
    resent = sum(n - 1 for n in copies.values())
    assert resent <= DROPS * 100, resent  # at most what was in flight at each cut (max_inflight 100)

    log = agent.log.read_text()
    assert log.count(f"lost the broker 127.0.0.1:{front.port}") >= DROPS, agent.log_tail(40)
    assert "the spool keeps every batch" in log
    assert "Traceback" not in log, log
