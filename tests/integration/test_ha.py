"""An HA pair of collectors and an Alertmanager cluster of two, through outages and kills (README: High
availability). The set-up is ``hapair.Centre``: real mosquitto (TLS, the rendered ACL with both collectors'
users), VictoriaMetrics with the dedup flag, two Alertmanager peers gossiping on loopback, two collector
processes, a probe publishing a poll every 100 ms, and the carrier's webhook, the NOC's and the carrier's
MQTT topic (sent by Alertmanager through the relay of the collector beside the peer that sends).

The tests run in order on one centre (each phase starts where the one before left it):

1. an outage: both collectors judge the same alerts at the same moment, and every receiver is paged once;
2. collector A killed (SIGKILL) during it; the outage ends while A is down: the resolve arrives once at every
   receiver (the MQTT one through B's relay if A's peer tried first); A comes back, catches up and pages nothing;
3. a second outage, Alertmanager peer 1 killed, the outage ends: once each; the peer comes back: nothing more;
4. every sample the probe published is in VictoriaMetrics once, and each collector counted the one lost seq.

The second outage is on another switch, so that its alerts make new groups at both Alertmanager peers at the same
moment. An existing group keeps its timer, and the first phase leaves the two peers' timers apart (the peer whose
relay was down kept its group while the other one's was made again): a peer that sends at its timer just as the
other's wait ends sends what the other sends too (its cluster delivers at least once; README: High availability).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import services
from tests.integration.hapair import ZONE, Centre

pytestmark = pytest.mark.integration

WAIT = 30.0
QUIET = 3.5       # seconds with no new notification that count as "nothing more comes": past peer_timeout (1 s)
RETRY_WINDOW = 12.0   # Alertmanager retries a failed webhook for max(group_interval, 10 s) + its peer wait
FIRING = {("firing", "LinkDown"): 1, ("firing", "RedundancyLost"): 1}
RESOLVED = {("resolved", "LinkDown"): 1, ("resolved", "RedundancyLost"): 1}


@pytest.fixture(scope="module")
def centre(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Centre]:
    c = Centre(tmp_path_factory.mktemp("ha"))
    try:
        c.start_polling()
        yield c
    finally:
        c.close()


def wait_notified(c: Centre, expected: dict[tuple[str, str], int], what: str) -> None:
    """Wait until every receiver has ``expected`` (and nothing else), then check nothing more arrives."""
    want = collections.Counter(expected)
    try:
        services.wait_for(lambda: all(n == want for n in c.notified().values()), WAIT, f"{what} once at every receiver")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: have {c.notified()}") from None
    time.sleep(QUIET)   # a second peer would send after its peer_timeout: it must not
    assert all(n == want for n in c.notified().values()), f"{what}: {c.notified()}"


def firing(c: Centre, i: int) -> set[tuple[tuple[str, str], ...]]:
    return {labels for state, labels in c.alert_state(i) if state == "firing"}


def test_1_both_collectors_judge_alike_and_each_receiver_is_paged_once(centre: Centre) -> None:
    c = centre
    services.wait_for(lambda: all((c.metric(i, "zonewatch_ingest_messages_total") or 0) > 0 for i in (0, 1)), WAIT,
                      "both collectors to take the first polls")
    c.links[("sw-a", "xe-1")] = False   # Viettel's first fibre route goes down: LinkDown and RedundancyLost
    cut = time.monotonic()
    seen: dict[int, float] = {}

    def both_firing() -> bool:
        for i in (0, 1):
            if i not in seen and len(firing(c, i)) == 2:
                seen[i] = time.monotonic() - cut
        return len(seen) == 2

    services.wait_for(both_firing, WAIT, "both collectors to fire LinkDown and RedundancyLost", interval=0.02)
    assert firing(c, 0) == firing(c, 1), "the two collectors judge differently"
    assert {dict(labels)["alertname"] for labels in firing(c, 0)} == {"LinkDown", "RedundancyLost"}
    assert abs(seen[0] - seen[1]) < 1.0, f"they fired {seen} s after the cut: not at the same time"
    for i in (0, 1):
        assert c.metric(i, "zonewatch_alerts", alertname="LinkDown", state="firing") == 1.0
    wait_notified(c, FIRING, "the firing notifications")


def test_2_a_collector_killed_during_the_outage_neither_loses_nor_repeats_a_page(centre: Centre) -> None:
    c = centre
    c.collectors[0].kill()   # SIGKILL: no goodbye, its session stays at the broker
    c.links[("sw-a", "xe-1")] = True   # the route comes back while A is down
    services.wait_for(lambda: not firing(c, 1), WAIT, "collector B to resolve")
    expected = FIRING | RESOLVED
    wait_notified(c, expected, "the resolved notifications, with collector A down")
    # Alertmanager's peer beside A may still retry its relay (A is down): let its retries end before A comes back,
    # or that retry may publish what B's relay already did (Alertmanager clustering is at least once).
    time.sleep(max(0.0, RETRY_WINDOW - 2 * QUIET))
    c.collectors[0] = c.start_collector(0)
    services.wait_for(lambda: not firing(c, 0), WAIT, "collector A, back, to resolve from what the broker kept")
    assert c.alert_state(0) == c.alert_state(1)
    time.sleep(QUIET)
    assert all(n == collections.Counter(expected) for n in c.notified().values()), \
        f"collector A paged again when it came back: {c.notified()}"


def test_3_an_alertmanager_peer_killed_neither_loses_nor_repeats_a_page(centre: Centre) -> None:
    c = centre
    c.links[("sw-b", "xe-1")] = False   # a route of the other switch: groups of their own at Alertmanager
    expected = collections.Counter(FIRING) + collections.Counter(RESOLVED) + collections.Counter(FIRING)
    wait_notified(c, dict(expected), "the second outage's firing notifications")
    c.am[1].kill()
    c.links[("sw-b", "xe-1")] = True
    expected += collections.Counter(RESOLVED)
    wait_notified(c, dict(expected), "the second outage's resolved notifications, with one Alertmanager peer down")
    c.am[1] = c.start_am(1)   # back: it gossips the notification log in, and the collectors' outboxes deliver
    time.sleep(QUIET)
    assert all(n == expected for n in c.notified().values()), f"a page came twice: {c.notified()}"
    assert firing(c, 0) == firing(c, 1) == set()


def test_4_every_sample_is_stored_once_and_each_collector_counts_the_lost_seq(centre: Centre) -> None:
    c = centre
    c._stop.set()   # the probe stops publishing
    assert c._poller is not None
    c._poller.join(10)
    published = c.published
    services.wait_for(lambda: c.stored() == published, WAIT,
                      f"VictoriaMetrics to hold every one of the {published} samples (has {c.stored()})")
    time.sleep(1.0)
    assert c.stored() == published, "a sample written by both collectors was stored twice"
    for i in (0, 1):
        gaps = c.metric(i, "zonewatch_probe_seq_gaps", probe=f"{ZONE}/p1")
        assert gaps == 1.0, f"collector {i} counted {gaps} lost seqs, not the one never published"
    assert c.alert_state(0) == c.alert_state(1)


def test_the_secondary_publishes_no_probe_configuration(centre: Centre, tmp_path: Path) -> None:
    """What must happen once is the primary's: the secondary started no fleet thread."""
    log = (centre.tmp / "collector-b" / "run" / "collector.log").read_text()
    assert "HA secondary: the probes' configurations are published by the primary" in log
