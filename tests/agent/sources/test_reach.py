"""ReachSource against FakeReachBackend, and the scapy adapter's reading of answers (no sockets, no sleeps)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from agent.sources import SourceError
from agent.sources import reach as reach_module
from agent.sources.reach import FakeReachBackend, ReachConfig, ReachSource, ScapyBackend, path_hash
from zonewatch import strict, wire
from zonewatch.wire import Sample

NOW = 1_764_290_000_000_000_000
TARGET = "10.250.9.1"
PRIMARY: list[str | None] = ["10.250.1.1", TARGET]
BACKUP: list[str | None] = ["10.250.2.1", TARGET]

ICMP = f"""\
type: reach
name: core
target: {TARGET}
paths:
  primary: [10.250.1.1, {TARGET}]
  backup: [10.250.2.1, {TARGET}]
"""


def load(text: str) -> ReachConfig:
    return strict.load(ReachConfig, text, "agent.yaml")


def poll(source: ReachSource, now_ns: int = NOW) -> Sample:
    (sample,) = asyncio.run(source.collect(now_ns))
    return sample


def source_with(rtts: Sequence[float | None], route: Sequence[str | None],
                text: str = ICMP) -> tuple[ReachSource, FakeReachBackend]:
    fake = FakeReachBackend(rtts, route)
    return ReachSource(load(text), backend=fake), fake


def unknown(*hops: str) -> str:
    return "unknown:" + hashlib.sha256(",".join(hops).encode()).hexdigest()[:8]


# ---------------------------------------------------------------------------------------------- config


def test_defaults() -> None:
    c = load(f"type: reach\nname: core\ntarget: {TARGET}\n")
    assert (c.method, c.port, c.count, c.timeout, c.traceroute, c.max_hops, c.paths, c.interval) == (
        "icmp", None, 3, 1.0, True, 8, {}, 60.0)


def test_tcp_with_port() -> None:
    c = load(f"type: reach\nname: web\ntarget: {TARGET}\nmethod: tcp\nport: 443\ntimeout: 500ms\n")
    assert (c.method, c.port, c.timeout) == ("tcp", 443, 0.5)


@pytest.mark.parametrize(("extra", "error"), [
    ("method: tcp\n", "agent.yaml:1: port: method 'tcp' needs 'port' (the TCP port to send SYNs to)"),
    ("port: 80\n", "agent.yaml:4: port: 'port' is only for method 'tcp'; remove it or set method: tcp"),
    ("method: tcp\nport: 70000\n", "agent.yaml:5: port: expected less than or equal to 65535, got 70000"),
    ("method: udp\n", "agent.yaml:4: method: expected 'icmp' or 'tcp', got 'udp'"),
    ("count: 0\n", "agent.yaml:4: count: expected greater than or equal to 1, got 0"),
    ("max_hop: 4\n", "agent.yaml:4: max_hop: unknown key 'max_hop' (did you mean 'max_hops'?)"),
    ("timeout: 1\n", "agent.yaml:4: timeout: expected a duration string with a unit, like '30s' or '1m30s', got 1"),
    ("timeout: 5s\ninterval: 10s\n",
     "agent.yaml:1: 'timeout' 5s is too long for 'interval' 10s: a poll waits up to 2 x timeout"),
    ("paths: {none: [10.250.1.1]}\n",
     "agent.yaml:4: paths: path name 'none' is reserved (the source reports 'none' and 'unknown:<hash>' itself)"),
    ("paths: {unknown: [10.250.1.1]}\n",
     "agent.yaml:4: paths: path name 'unknown' is reserved (the source reports 'none' and 'unknown:<hash>' itself)"),
    ("paths: {'fibre a': [10.250.1.1]}\n",
     "agent.yaml:4: paths: path name 'fibre a' must be 1 to 64 ASCII letters, digits, '_', '.' or '-'"),
    ("paths: {primary: []}\n", "agent.yaml:4: paths: path 'primary' has no hops; list them as a trace shows them"),
    ("paths: {primary: [10.250.1.1, rA]}\n",
     "agent.yaml:4: paths: path 'primary' hop 2: expected an IPv4 address such as 192.0.2.1, got 'rA' "
     "(or '*' for a silent hop)"),
    ("paths: {a: [10.250.1.1], b: [10.250.1.1]}\n", "agent.yaml:4: paths: paths 'a' and 'b' have the same hops"),
])
def test_config_errors_name_the_key(extra: str, error: str) -> None:
    with pytest.raises(strict.ConfigError) as caught:
        load(f"type: reach\nname: core\ntarget: {TARGET}\n{extra}")
    assert str(caught.value) == error


@pytest.mark.parametrize("target", ["10.250.9", "core.example", "2001:db8::1", "10.250.9.256", ""])
def test_target_must_be_ipv4(target: str) -> None:
    with pytest.raises(strict.ConfigError) as caught:
        load(f"type: reach\nname: core\ntarget: '{target}'\n")
    assert str(caught.value) == f"agent.yaml:3: target: expected an IPv4 address such as 192.0.2.1, got {target!r}"


# ---------------------------------------------------------------------------------------------- rtt and loss


def test_all_answered_gives_median_and_no_loss() -> None:
    source, fake = source_with([3.0, 1.0, 2.5], PRIMARY)
    assert poll(source) == Sample("reach", {"target": "core", "path": "primary"},
                                  {"loss_pct": 0.0, "rtt_ms": 2.5, "hops": 2, "path_changed": False}, NOW)
    assert fake.calls == [("ping", TARGET, 3, 1.0), ("trace", TARGET, 8, 1.0)]


def test_median_of_an_even_number_of_answers_and_partial_loss() -> None:
    source, _ = source_with([1.0, None, 4.0, 2.0, 3.0], PRIMARY, ICMP + "count: 5\n")
    fields = poll(source).fields
    assert (fields["rtt_ms"], fields["loss_pct"]) == (2.5, 20.0)


def test_one_of_three_lost() -> None:
    source, _ = source_with([None, 0.25, 0.75], PRIMARY)
    fields = poll(source).fields
    assert (fields["rtt_ms"], fields["loss_pct"]) == (0.5, 33.333)


def test_no_answer_leaves_rtt_out() -> None:
    source, _ = source_with([None, None, None], [None] * 8)
    sample = poll(source)
    assert sample == Sample("reach", {"target": "core", "path": "none"},
                            {"loss_pct": 100.0, "path_changed": False}, NOW)


def test_a_backend_giving_fewer_answers_than_probes_counts_the_rest_as_lost() -> None:
    source, fake = source_with([], PRIMARY)
    fake.rtts = [5.0]
    fields = poll(source).fields
    assert (fields["rtt_ms"], fields["loss_pct"]) == (5.0, 66.667)


def test_tcp_sends_syns_to_the_port() -> None:
    text = f"type: reach\nname: web\ntarget: {TARGET}\nmethod: tcp\nport: 443\ncount: 2\ntraceroute: false\n"
    source, fake = source_with([0.4, 0.6], PRIMARY, text)
    assert poll(source) == Sample("reach", {"target": "web"}, {"loss_pct": 0.0, "rtt_ms": 0.5}, NOW)
    assert fake.calls == [("tcp_syn", TARGET, 443, 2, 1.0)]


def test_samples_follow_the_wire_contract() -> None:
    source, _ = source_with([1.0, None, 2.0], ["10.250.5.1", None, TARGET])
    sample = poll(source)
    batch = wire.Batch("dinh-vu", "p1", 1, NOW, samples=(sample,))
    assert wire.decode(wire.encode(batch)).samples == (sample,)


def test_backend_failure_is_a_source_error_and_keeps_the_path() -> None:
    source, fake = source_with([1.0], PRIMARY)
    poll(source)
    fake.fail = SourceError("reach needs root or CAP_NET_RAW to open a raw socket")
    with pytest.raises(SourceError):
        poll(source)
    fake.fail = None
    assert poll(source).fields["path_changed"] is False


# ---------------------------------------------------------------------------------------------- paths


def test_known_paths_are_named() -> None:
    source, fake = source_with([1.0], BACKUP)
    sample = poll(source)
    assert (sample.tags["path"], sample.fields["hops"]) == ("backup", 2)


def test_an_unnamed_route_gets_the_hash_of_its_hops() -> None:
    source, _ = source_with([1.0], ["10.250.5.1", "10.250.6.1", TARGET])
    sample = poll(source)
    assert sample.tags["path"] == unknown("10.250.5.1", "10.250.6.1", TARGET)
    assert sample.fields["hops"] == 3


def test_a_silent_hop_is_a_star_in_the_hash() -> None:
    route: list[str | None] = ["10.250.5.1", None, TARGET]
    assert path_hash(route) == unknown("10.250.5.1", "*", TARGET)[len("unknown:"):]
    assert path_hash(route) != path_hash(["10.250.5.1", TARGET])


def test_no_paths_configured_gives_unknown() -> None:
    source, _ = source_with([1.0], PRIMARY, f"type: reach\nname: core\ntarget: {TARGET}\n")
    assert poll(source).tags["path"] == unknown("10.250.1.1", TARGET)


def test_a_blackholed_route_ends_at_the_last_hop_that_answered() -> None:
    source, _ = source_with([None, None, None], ["10.250.1.1", None, None, None, None, None, None, None])
    sample = poll(source)
    assert sample.tags["path"] == unknown("10.250.1.1")
    assert "hops" not in sample.fields and "rtt_ms" not in sample.fields


def test_a_known_path_that_stops_short_of_the_target_is_named_without_hops() -> None:
    text = ICMP + "  firewalled: [10.250.1.1, 10.250.3.2]\n"
    source, _ = source_with([1.0], ["10.250.1.1", "10.250.3.2", None, None], text)
    sample = poll(source)
    assert sample.tags["path"] == "firewalled"
    assert "hops" not in sample.fields


def test_star_in_a_known_path_matches_any_hop() -> None:
    text = f"type: reach\nname: core\ntarget: {TARGET}\npaths: {{via-a: ['10.250.1.1', '*', {TARGET}]}}\n"
    source, fake = source_with([1.0], ["10.250.1.1", "10.250.3.2", TARGET], text)
    assert poll(source).tags["path"] == "via-a"
    fake.route = ["10.250.1.1", "10.250.7.7", TARGET]
    assert poll(source).tags["path"] == "via-a"
    fake.route = ["10.250.2.1", "10.250.7.7", TARGET]
    assert poll(source).tags["path"].startswith("unknown:")


def test_a_silent_hop_matching_several_paths_keeps_the_current_one() -> None:
    source, fake = source_with([1.0], BACKUP)
    assert poll(source).tags["path"] == "backup"
    fake.route = [None, TARGET]  # fits primary and backup alike
    sample = poll(source)
    assert (sample.tags["path"], sample.fields["path_changed"]) == ("backup", False)


def test_a_silent_hop_matching_several_paths_without_a_current_one_is_unknown() -> None:
    source, _ = source_with([1.0], [None, TARGET])
    assert poll(source).tags["path"] == unknown("*", TARGET)


def test_a_silent_hop_matching_one_path_names_it() -> None:
    text = f"type: reach\nname: core\ntarget: {TARGET}\npaths: {{primary: [10.250.1.1, {TARGET}]}}\n"
    source, _ = source_with([1.0], [None, TARGET], text)
    assert poll(source).tags["path"] == "primary"


def test_a_target_that_did_not_answer_the_trace_is_not_a_known_path() -> None:
    source, _ = source_with([1.0], ["10.250.2.1", None])
    sample = poll(source)
    assert sample.tags["path"] == unknown("10.250.2.1")
    assert "hops" not in sample.fields


def test_traceroute_off_leaves_path_out() -> None:
    source, fake = source_with([1.0, 1.0, 1.0], PRIMARY, ICMP + "traceroute: false\n")
    assert poll(source) == Sample("reach", {"target": "core"}, {"loss_pct": 0.0, "rtt_ms": 1.0}, NOW)
    assert [call[0] for call in fake.calls] == ["ping"]


def test_path_changed_across_polls_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agent.sources.reach")
    source, fake = source_with([1.0], PRIMARY)
    seen = []
    for route in (PRIMARY, PRIMARY, BACKUP, BACKUP, BACKUP, [None] * 8, PRIMARY, PRIMARY):
        fake.route = list(route)
        sample = poll(source)
        seen.append((sample.tags["path"], sample.fields["path_changed"]))
    assert seen == [("primary", False), ("primary", False), ("backup", True), ("backup", False), ("backup", False),
                    ("none", True), ("primary", True), ("primary", False)]
    assert [r.getMessage() for r in caplog.records] == [
        "reach core (10.250.9.1): path changed from primary to backup (10.250.2.1 > 10.250.9.1)",
        "reach core (10.250.9.1): path changed from backup to none (no hop answered)",
        "reach core (10.250.9.1): path changed from none to primary (10.250.1.1 > 10.250.9.1)",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_first_poll_on_the_backup_is_not_a_change(caplog: pytest.LogCaptureFixture) -> None:
    source, _ = source_with([1.0], BACKUP)
    assert poll(source).fields["path_changed"] is False
    assert caplog.records == []


def test_sources_keep_their_own_previous_path() -> None:
    a, fake_a = source_with([1.0], PRIMARY)
    b, fake_b = source_with([1.0], BACKUP)
    poll(a), poll(b)
    fake_a.route = BACKUP
    assert (poll(a).fields["path_changed"], poll(b).fields["path_changed"]) == (True, False)


def test_constructing_does_no_io_and_picks_scapy_by_default() -> None:
    source = ReachSource(load(ICMP))
    assert isinstance(source._backend, ScapyBackend)
    assert repr(source) == "ReachSource('core', icmp 10.250.9.1)"
    asyncio.run(source.close())


# ---------------------------------------------------------------------------------------------- scapy adapter


def test_scapy_imports_without_warnings() -> None:
    """Import the adapter's scapy names under pytest's warnings-are-errors (CryptographyDeprecationWarning...)."""
    s = reach_module._scapy()
    assert s.IP(dst=TARGET).dst == TARGET


def test_missing_scapy_is_a_clear_source_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "scapy.layers.inet", None)
    with pytest.raises(SourceError, match=r"reach needs scapy .*install the agent extra, zonewatch\[agent\]"):
        reach_module._scapy()


class Wire:
    """Stands in for the raw socket: answers the probes the adapter builds with packets made by a callback."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, answer: Any, src: str | None = "10.250.1.2") -> None:
        self.s = reach_module._scapy()
        self.sent: list[Any] = []
        monkeypatch.setattr(reach_module, "_source_address", lambda target: src)
        monkeypatch.setattr(reach_module, "_exchange", self._exchange)
        self.answer = answer

    def _exchange(self, s: Any, probes: list[Any], timeout: float) -> list[tuple[Any, Any]]:
        pairs = []
        for i, probe in enumerate(probes):
            self.sent.append(probe)
            probe.sent_time = 100.0 + i
            got = self.answer(self.s, probe)
            if got is not None:
                got.time = probe.sent_time + 0.002 * (i + 1)
                pairs.append((probe, got))
        return pairs


def test_adapter_ping_reads_echo_replies_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(s: Any, probe: Any) -> Any:
        seq = probe[s.ICMP].seq
        if seq == 0:
            return s.IP(src=TARGET) / s.ICMP(type=0, id=probe[s.ICMP].id, seq=seq)
        if seq == 1:
            return s.IP(src="10.250.1.1") / s.ICMP(type=3, code=1)  # host unreachable: not an answer
        return None

    wire_ = Wire(monkeypatch, answer)
    rtts = asyncio.run(ScapyBackend().ping(TARGET, 3, 1.0))
    assert [None if r is None else round(r, 6) for r in rtts] == [2.0, None, None]
    assert [(p[wire_.s.IP].src, p[wire_.s.IP].dst, p[wire_.s.ICMP].seq) for p in wire_.sent] == [
        ("10.250.1.2", TARGET, 0), ("10.250.1.2", TARGET, 1), ("10.250.1.2", TARGET, 2)]


def test_adapter_tcp_counts_syn_ack_and_rst(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = ["SA", "RA", "A", None]

    def answer(s: Any, probe: Any) -> Any:
        i = len(wire_.sent) - 1
        if flags[i] is None:
            return None
        return s.IP(src=TARGET) / s.TCP(sport=probe[s.TCP].dport, dport=probe[s.TCP].sport, flags=flags[i])

    wire_ = Wire(monkeypatch, answer)
    rtts = asyncio.run(ScapyBackend().tcp_syn(TARGET, 8080, 4, 1.0))
    assert [None if r is None else round(r, 6) for r in rtts] == [2.0, 4.0, None, None]
    assert {str(p[wire_.s.TCP].flags) for p in wire_.sent} == {"S"}
    assert {p[wire_.s.TCP].dport for p in wire_.sent} == {8080}


def test_adapter_trace_stops_at_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(s: Any, probe: Any) -> Any:
        ttl = probe[s.IP].ttl
        if ttl == 1:
            return s.IP(src="10.250.1.1") / s.ICMP(type=11)
        if ttl == 2:
            return None  # a silent router
        return s.IP(src=TARGET) / s.ICMP(type=0)

    Wire(monkeypatch, answer)
    assert asyncio.run(ScapyBackend().trace(TARGET, 8, 1.0)) == ["10.250.1.1", None, TARGET]


def test_adapter_trace_stops_at_an_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(s: Any, probe: Any) -> Any:
        ttl = probe[s.IP].ttl
        return s.IP(src="10.250.1.1") / s.ICMP(type=11 if ttl == 1 else 3, code=0)

    Wire(monkeypatch, answer)
    assert asyncio.run(ScapyBackend().trace(TARGET, 8, 1.0)) == ["10.250.1.1", "10.250.1.1"]


def test_adapter_trace_without_the_target_gives_every_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    Wire(monkeypatch, lambda s, probe: s.IP(src="10.250.1.1") / s.ICMP(type=11) if probe[s.IP].ttl == 1 else None)
    assert asyncio.run(ScapyBackend().trace(TARGET, 4, 1.0)) == ["10.250.1.1", None, None, None]


def test_adapter_without_a_route_reports_everything_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    wire_ = Wire(monkeypatch, lambda s, probe: None, src=None)
    backend = ScapyBackend()
    assert asyncio.run(backend.ping(TARGET, 3, 1.0)) == [None, None, None]
    assert asyncio.run(backend.tcp_syn(TARGET, 80, 2, 1.0)) == [None, None]
    assert asyncio.run(backend.trace(TARGET, 8, 1.0)) == []
    assert wire_.sent == []


def test_adapter_without_privilege_is_a_source_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoRaw:
        def __init__(self) -> None:
            raise PermissionError(1, "Operation not permitted")

    s = reach_module._scapy()
    s.L3RawSocket = NoRaw
    monkeypatch.setattr(reach_module, "_scapy", lambda: s)
    monkeypatch.setattr(reach_module, "_source_address", lambda target: "10.250.1.2")
    with pytest.raises(SourceError, match="reach needs root or CAP_NET_RAW to open a raw socket"):
        asyncio.run(ScapyBackend().ping(TARGET, 1, 1.0))

