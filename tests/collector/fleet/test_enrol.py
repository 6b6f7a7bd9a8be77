"""Enrolment at the centre, without a broker: requests checked and bounded, the registry's transitions, the sealed
reply, the running service's rounds (with a fake broker link), the broker's users and ACL, the ``probes``
commands."""

from __future__ import annotations

import argparse
import base64
import json
import stat
from pathlib import Path

import pytest
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, SealedBox
from prometheus_client import CollectorRegistry

from agent.fleet.enrol import open_reply
from collector import mosquitto
from collector.config import CollectorConfig
from collector.fleet import enrol, enrol_cli
from collector.fleet.enrol import EnrolConfig, RateLimit, Refused, check_request
from collector.fleet.enrol_service import EnrolMetrics, EnrolService
from collector.fleet.registry import Registry, RegistryError
from collector.inventory import Inventory
from collector.mosquitto.bundle import write_access, write_bundle
from collector.mosquitto.listener import ListenerTls
from collector.mosquitto.passwd import hash_password, parse_passwd
from collector.scope import Scope
from zonewatch import wire
from zonewatch.strict import ConfigError, load

S = 10**9
T0 = 1_764_000_000 * S
ZONE = "ez"
INVENTORY = f"""\
zones:
  {ZONE}: {{name: Enrol Park, areas: [gate-a, gate-b]}}
  other: {{name: Other Park}}
carriers:
  viettel: {{plmn: 452-04, name: Viettel}}
probes:
  p1: {{zone: {ZONE}, area: gate-a, modems: [{{name: vt, carrier: viettel}}]}}
  far: {{zone: other}}
"""


def inventory() -> Inventory:
    return load(Inventory, INVENTORY, "inventory.yaml")


def request(key: PrivateKey | None = None, zone: str = ZONE, probe: str | None = "p7") -> tuple[PrivateKey,
                                                                                                wire.EnrolRequest]:
    key = key or PrivateKey.generate()
    modems = (wire.ModemIdentity("vt", "867962040012345", "89840480000012345678"),)
    return key, wire.EnrolRequest(zone, bytes(key.public_key), probe, "0123456789abcdef0123456789abcdef", modems,
                                  T0)


def topic(req: wire.EnrolRequest) -> str:
    return wire.enrol_topic(req.zone, req.request_id, "request")


# ---------------------------------------------------------------------------------------------- requests


GOLDEN = Path(__file__).resolve().parent.parent.parent / "golden" / "enrol"


def test_the_golden_v1_request_keeps_decoding_to_these_values() -> None:
    payload = (GOLDEN / "v1-request.json").read_bytes()
    req = wire.decode_enrol_request(payload)
    assert req == wire.EnrolRequest("dinh-vu", bytes(range(32)), "p7", "0123456789abcdef0123456789abcdef",
                                    (wire.ModemIdentity("viettel", "867962040012345", "89840480000012345678"),
                                     wire.ModemIdentity("vinaphone", None, "8984048000001234568F")),
                                    1764290000000000000)
    assert (req.request_id, wire.enrol_fingerprint(req.key)) == ("630dcd2966c4336691125448bbb25b4f",
                                                                 "630d cd29 66c4 3366 9112 5448 bbb2 5b4f")
    assert json.loads(wire.encode_enrol_request(req)) == json.loads(payload)


def test_a_request_round_trips_through_the_contract() -> None:
    key, req = request()
    got = check_request(topic(req), wire.encode_enrol_request(req), [ZONE], 4096)
    assert got == req
    assert got.request_id == wire.enrol_request_id(bytes(key.public_key))
    assert wire.enrol_fingerprint(got.key).replace(" ", "") == got.request_id
    assert len(wire.enrol_fingerprint(got.key).split()) == 8


@pytest.mark.parametrize(("mangle", "reason"), [
    (lambda doc: b"{not json", "not_json"),
    (lambda doc: json.dumps({**doc, "extra": 1}).encode(), "bad_schema"),
    (lambda doc: json.dumps({**doc, "v": True}).encode(), "bad_version"),
    (lambda doc: json.dumps({**doc, "key": "AAAA"}).encode(), "bad_key"),
    (lambda doc: json.dumps({**doc, "key": "!!!"}).encode(), "bad_key"),
    (lambda doc: json.dumps({**doc, "zone": "Bad Zone"}).encode(), "bad_name"),
    (lambda doc: json.dumps({**doc, "zone": "elsewhere"}).encode(), "identity_mismatch"),
    (lambda doc: json.dumps({**doc, "machine_id": "x" * 32}).encode(), "bad_identity"),
    (lambda doc: json.dumps({**doc, "modems": [{"name": "vt", "imei": "12"}]}).encode(), "bad_identity"),
    (lambda doc: json.dumps({**doc, "modems": [{"name": "m"}] * 9}).encode(), "bad_identity"),
    (lambda doc: json.dumps({**doc, "sent_ns": -1}).encode(), "bad_time"),
    (lambda doc: json.dumps({**doc, "probe": "x" * 2000}).encode(), "too_large"),
])
def test_a_malformed_request_is_refused_with_its_reason(mangle: object, reason: str) -> None:
    _, req = request()
    doc = json.loads(wire.encode_enrol_request(req))
    payload = mangle(doc)  # type: ignore[operator]
    with pytest.raises(Refused) as refused:
        check_request(topic(req), payload, [ZONE], 2048)
    assert refused.value.reason == reason, refused.value.detail


def test_a_request_must_name_its_own_key_and_an_open_zone() -> None:
    _, req = request()
    _, other = request()
    payload = wire.encode_enrol_request(req)
    with pytest.raises(Refused) as mismatch:   # another probe's request id: not this key's
        check_request(topic(other), payload, [ZONE], 4096)
    assert mismatch.value.reason == "identity_mismatch"
    with pytest.raises(Refused) as closed:
        check_request(topic(req), payload, ["other"], 4096)
    assert closed.value.reason == "zone_closed"
    with pytest.raises(Refused) as reply:
        check_request(wire.enrol_topic(ZONE, req.request_id, "reply"), payload, [ZONE], 4096)
    assert reply.value.reason == "bad_topic"


def test_enrolment_topics_never_match_the_ingest_filters() -> None:
    import paho.mqtt.client as mqtt

    _, req = request()
    for kind in ("request", "reply"):
        name = wire.enrol_topic(ZONE, req.request_id, kind)  # type: ignore[arg-type]
        assert not any(mqtt.topic_matches_sub(wire.subscription(k), name) for k in wire.KINDS)
    with pytest.raises(wire.WireError):
        wire.enrol_topic(wire.ENROL_ZONE, req.request_id, "request")


def test_the_rate_limit_lets_a_burst_through_then_one_per_share_of_a_minute() -> None:
    rate = RateLimit(3)
    assert [rate.allow(ZONE, T0) for _ in range(4)] == [True, True, True, False]
    assert rate.allow("other", T0)                     # per zone
    assert not rate.allow(ZONE, T0 + 19 * S)          # a token takes 20 s to come back
    assert rate.allow(ZONE, T0 + 21 * S)
    assert not rate.allow(ZONE, T0 + 22 * S)


# ---------------------------------------------------------------------------------------------- registry


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "enrol.db")
    yield reg  # type: ignore[misc]
    reg.close()


def test_registry_file_is_private(registry: Registry) -> None:
    assert stat.S_IMODE(registry.path.stat().st_mode) == 0o600


def test_a_request_sent_again_is_the_same_request(registry: Registry) -> None:
    key, req = request()
    assert registry.receive(req, T0, 10) == "new"
    _, again = request(key, probe="p8")
    assert registry.receive(again, T0 + 5 * S, 10) == "repeat"
    (entry,) = registry.entries()
    assert (entry.state, entry.requests, entry.asked_id, entry.last_seen_ns) == ("pending", 2, "p8", T0 + 5 * S)
    assert entry.modems[0].imei == "867962040012345"
    _, elsewhere = request(key, zone="other")
    assert registry.receive(elsewhere, T0, 10) == "zone_mismatch"


def test_pending_requests_are_bounded_per_zone_and_forgotten_when_silent(registry: Registry) -> None:
    for _ in range(3):
        assert registry.receive(request()[1], T0, 3) == "new"
    assert registry.receive(request()[1], T0, 3) == "too_many_pending"
    assert registry.receive(request(zone="other")[1], T0, 3) == "new"
    assert registry.forget_stale(T0 + 10 * S, 10 * S) == 4
    assert registry.entries() == []


def test_approval_keeps_the_hash_and_the_sealed_reply_until_the_probe_logs_in(registry: Registry) -> None:
    key, req = request()
    registry.receive(req, T0, 10)
    entry = registry.approve(req.request_id[:8], "p7", "gate-a", "$7$101$c2FsdA==$ZGlnZXN0", b"sealed", T0 + S)
    assert (entry.state, entry.probe, entry.area, entry.reply) == ("approved", "p7", "gate-a", b"sealed")
    assert [e.request for e in registry.to_publish()] == [req.request_id]
    registry.published(req.request_id, T0 + 2 * S)
    assert registry.to_publish() == []
    assert registry.awaiting_login() == {f"{ZONE}/p7": req.request_id}
    assert registry.receive(req, T0 + 3 * S, 10) == "repeat"        # the reply is on the broker: it gets it there
    assert registry.to_publish() == []
    assert registry.to_clear(T0 + 5 * S, 3600 * S) == []
    assert registry.logged_in(ZONE, "p7", T0 + 6 * S)
    assert not registry.logged_in(ZONE, "p7", T0 + 7 * S)             # news once
    assert [e.request for e in registry.to_clear(T0 + 7 * S, 3600 * S)] == [req.request_id]
    registry.cleared(req.request_id, T0 + 7 * S)
    assert registry.to_clear(T0 + 8 * S, 3600 * S) == []
    assert registry.receive(req, T0 + 9 * S, 10) == "replayed"       # its credentials are in use: no second reply
    assert registry.approved() == {"p7": (ZONE, "$7$101$c2FsdA==$ZGlnZXN0")}


def test_a_reply_nobody_picks_up_leaves_the_broker_after_its_time_and_comes_back_when_asked(
        registry: Registry) -> None:
    _, req = request()
    registry.receive(req, T0, 10)
    registry.approve(req.request_id, "p7", None, "$7$101$c2FsdA==$ZGlnZXN0", b"sealed", T0)
    registry.published(req.request_id, T0)
    assert registry.to_clear(T0 + 59 * S, 60 * S) == []
    assert [e.request for e in registry.to_clear(T0 + 60 * S, 60 * S)] == [req.request_id]
    registry.cleared(req.request_id, T0 + 60 * S)
    assert registry.receive(req, T0 + 90 * S, 10) == "resend"        # the probe asks again: published again
    assert [e.request for e in registry.to_publish()] == [req.request_id]


def test_decisions_are_refused_when_they_cannot_hold(registry: Registry) -> None:
    _, first = request()
    _, second = request()
    for req in (first, second):
        registry.receive(req, T0, 10)
    with pytest.raises(RegistryError, match="at least 6"):
        registry.find("ab")
    with pytest.raises(RegistryError, match="no request"):
        registry.find("ffffffffffff" if not first.request_id.startswith("ffff") else "000000000000")
    registry.approve(first.request_id, "p7", None, "$7$1$a$b", b"r", T0)
    with pytest.raises(RegistryError, match="approved already, as p7"):
        registry.approve(first.request_id, "p9", None, "$7$1$a$b", b"r", T0)
    with pytest.raises(RegistryError, match="enrolled already"):
        registry.approve(second.request_id, "p7", None, "$7$1$a$b", b"r", T0)
    with pytest.raises(RegistryError, match="no enrolled probe 'p8'"):
        registry.retire("p8", T0)

    def broken(_: Registry) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError):
        registry.approve(second.request_id, "p8", None, "$7$1$a$b", b"r", T0, then=broken)
    assert registry.find(second.request_id).state == "pending"   # the files could not be written: no approval


def test_fingerprint_as_printed_selects_the_request(registry: Registry) -> None:
    _, req = request()
    registry.receive(req, T0, 10)
    assert registry.find(wire.enrol_fingerprint(req.key)[:14]).request == req.request_id


def test_rejected_and_retired_requests(registry: Registry) -> None:
    _, bad = request()
    registry.receive(bad, T0, 10)
    entry = registry.reject(bad.request_id, "not ours", b"no", T0 + S)
    assert (entry.state, entry.reason) == ("rejected", "not ours")
    assert registry.receive(bad, T0 + 2 * S, 10) == "repeat"          # the rejection waits on the broker
    _, good = request()
    registry.receive(good, T0, 10)
    registry.approve(good.request_id, "p7", None, "$7$1$a$b", b"r", T0)
    registry.published(good.request_id, T0)
    registry.retire("p7", T0 + 3 * S)
    assert registry.retired() == frozenset({"p7"})
    assert registry.retired_names() == frozenset({f"{ZONE}/p7"})
    assert registry.receive(good, T0 + 4 * S, 10) == "replayed"
    assert [e.request for e in registry.to_clear(T0 + 4 * S, 3600 * S)] == [good.request_id]  # its reply goes
    _, new_hardware = request()                                           # the id may serve new hardware
    registry.receive(new_hardware, T0 + 5 * S, 10)
    registry.approve(new_hardware.request_id, "p7", None, "$7$1$a$b", b"r", T0 + 6 * S)
    assert registry.retired() == frozenset()
    assert registry.retired_names() == frozenset()


def test_refusals_are_counted_across_restarts(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "enrol.db")
    reg.count("not_json", T0, "first")
    reg.count("not_json", T0 + S, "second")
    reg.close()
    again = Registry(tmp_path / "enrol.db", create=False)
    assert again.refusals() == {"not_json": (2, T0 + S, "second")}
    again.close()
    with pytest.raises(RegistryError, match="no enrolment registry"):
        Registry(tmp_path / "missing.db", create=False)


# ---------------------------------------------------------------------------------------------- sealed replies


def test_only_the_asking_probe_can_open_its_reply() -> None:
    key, req = request()
    answer = wire.EnrolAnswer(req.request_id, "approved", ZONE, "p7", "p7", "a-long-enough-password-1234")
    reply = enrol.sealed_reply(req.key, answer)
    assert b"a-long-enough-password" not in reply
    assert open_reply(key, req.request_id, reply) == answer
    _, sealed = wire.decode_enrol_reply(reply)
    with pytest.raises(CryptoError):   # another holder of the bootstrap credential, with a key of its own
        SealedBox(PrivateKey.generate()).decrypt(sealed)


# ---------------------------------------------------------------------------------------------- the service


class FakeLink:
    """Records what the service publishes and watches; ``up`` says whether the broker takes it."""

    def __init__(self) -> None:
        self.up = True
        self.published: list[tuple[str, bytes]] = []
        self.watched: set[str] = set()

    def publish(self, topic: str, payload: bytes) -> bool:
        if self.up:
            self.published.append((topic, payload))
        return self.up

    def watch(self, topics: set[str]) -> None:
        self.watched = set(topics)


def service(tmp_path: Path, **settings: object) -> tuple[EnrolService, FakeLink, Scope, CollectorRegistry]:
    cfg = EnrolConfig(zones=[ZONE], broker_dir=str(tmp_path), **settings)  # type: ignore[arg-type]
    link, scope, metrics = FakeLink(), Scope(inventory()), CollectorRegistry()
    return EnrolService(cfg, Registry(tmp_path / "enrol.db"), EnrolMetrics(metrics), [scope], link), link, scope, \
        metrics


def count(metrics: CollectorRegistry, result: str) -> float:
    return metrics.get_sample_value("zonewatch_enrol_requests_total", {"result": result}) or 0.0


def test_the_service_takes_requests_publishes_replies_and_clears_them_after_login(tmp_path: Path) -> None:
    svc, link, scope, metrics = service(tmp_path)
    key, req = request()
    svc.offer(topic(req), wire.encode_enrol_request(req))
    svc.offer(topic(req), wire.encode_enrol_request(req))
    svc.offer(topic(req), b"garbage")
    svc.step(T0)
    assert [e.state for e in svc.registry.entries()] == ["pending"]
    assert (count(metrics, "new"), count(metrics, "repeat"), count(metrics, "identity_mismatch")) == (1, 1, 0)
    assert count(metrics, "not_json") == 1
    assert svc.registry.refusals()["not_json"][0] == 1
    assert metrics.get_sample_value("zonewatch_enrol_pending") == 1
    answer = wire.EnrolAnswer(req.request_id, "approved", ZONE, "p7", "p7", "a-long-enough-password-1234")
    svc.registry.approve(req.request_id, "p7", None, hash_password("x"), enrol.sealed_reply(req.key, answer),
                         T0 + S)
    link.up = False
    svc.step(T0 + 2 * S)                       # the broker is away: nothing marked published
    assert svc.registry.to_publish() != []
    link.up = True
    svc.step(T0 + 3 * S)
    reply_topic = wire.enrol_topic(ZONE, req.request_id, "reply")
    assert link.watched == {wire.topic(ZONE, "p7", "status")}
    assert [t for t, _ in link.published] == [reply_topic]
    assert open_reply(key, req.request_id, link.published[0][1]) == answer
    svc.offer(wire.topic(ZONE, "p7", "status"), wire.STATUS_ONLINE)
    svc.step(T0 + 4 * S)
    assert link.published[-1] == (reply_topic, b"")        # cleared once the probe logged in as itself
    assert link.watched == set()
    svc.offer(topic(req), wire.encode_enrol_request(req))
    svc.step(T0 + 5 * S)
    assert count(metrics, "replayed") == 1
    svc.registry.retire("p7", T0 + 6 * S)
    svc.step(T0 + 7 * S)
    assert scope.retired == frozenset({f"{ZONE}/p7"})
    assert scope.why(ZONE, "p7", "probe", {}) == ("retired", f"probe {ZONE}/p7")
    assert scope.why(ZONE, "p1", "probe", {}) is None
    svc.registry.close()


def test_the_service_bounds_the_rate_of_requests_before_reading_them(tmp_path: Path) -> None:
    svc, _, _, metrics = service(tmp_path, rate=2)
    for _ in range(5):
        _, req = request()
        svc.offer(topic(req), wire.encode_enrol_request(req))
    svc.offer(topic(req), b"garbage")                # over the rate: not even read
    svc.offer(wire.enrol_topic("other", req.request_id, "request"), b"garbage")   # a zone not open: no bucket
    svc.step(T0)
    assert (count(metrics, "new"), count(metrics, "rate_limited"), count(metrics, "not_json")) == (2, 4, 0)
    assert count(metrics, "zone_closed") == 1
    assert svc.registry.refusals()["rate_limited"][0] == 4
    svc.step(T0 + 30 * S)                            # a minute's share later, one more is taken
    _, late = request()
    svc.offer(topic(late), wire.encode_enrol_request(late))
    svc.step(T0 + 31 * S)
    assert count(metrics, "new") == 3
    svc.registry.close()


def test_a_flood_faster_than_the_service_is_dropped_and_counted(tmp_path: Path) -> None:
    cfg = EnrolConfig(zones=[ZONE], broker_dir=str(tmp_path))
    metrics = CollectorRegistry()
    svc = EnrolService(cfg, Registry(tmp_path / "enrol.db"), EnrolMetrics(metrics), inbox=3)
    for _ in range(10):
        svc.offer(topic(request()[1]), b"garbage")
    svc.step(T0)
    assert (count(metrics, "not_json"), count(metrics, "overflow")) == (3, 7)
    assert svc.registry.refusals()["overflow"][0] == 7
    svc.registry.close()


# ---------------------------------------------------------------------------------------------- the broker's users


def access(approved: dict[str, tuple[str, str]] | None = None, retired: frozenset[str] = frozenset()
           ) -> mosquitto.Enrolment:
    return mosquitto.Enrolment((ZONE,), approved or {}, retired)


def test_acl_with_enrolment_has_the_bootstrap_and_enrolment_users_and_no_retired_probe() -> None:
    acl = mosquitto.render_acl(inventory(), enrolment=access({"p7": (ZONE, "$7$1$a$b")}, frozenset({"p1"})))
    blocks: dict[str, str] = {}
    for block in acl.split("\n\n"):
        user = next((line for line in block.splitlines() if line.startswith("user ")), None)
        if user is not None:
            blocks[user] = block
    assert blocks["user enrol-ez"].splitlines()[-2:] == ["topic write zw/v1/enrol/ez/+/request",
                                                         "topic read zw/v1/enrol/ez/+/reply"]
    assert blocks["user collector-enrol"].splitlines()[-3:] == ["topic read zw/v1/enrol/ez/+/request",
                                                                "topic write zw/v1/enrol/ez/+/reply",
                                                                "topic read zw/v1/+/+/status"]
    assert "topic write zw/v1/ez/p7/data" in blocks["user p7"] and "not in the inventory" in blocks["user p7"]
    assert "user p1" not in blocks          # retired: no user, though the inventory lists it
    assert "user far" in blocks
    assert mosquitto.render_acl(inventory()) == mosquitto.render_acl(inventory(), enrolment=None)
    assert "enrol" not in mosquitto.render_acl(inventory())


@pytest.mark.parametrize(("enrolment", "message"), [
    (mosquitto.Enrolment((ZONE,), {"far": (ZONE, "$7$1$a$b")}), "inventory puts it in zone 'other'"),
    (mosquitto.Enrolment((ZONE,), {"enrol-ez": (ZONE, "$7$1$a$b")}), "bootstrap user of zone 'ez'"),
    (mosquitto.Enrolment((ZONE,), {"collector-enrol": (ZONE, "$7$1$a$b")}), "is also a probe id"),
])
def test_enrolment_users_that_would_clash_are_refused(enrolment: mosquitto.Enrolment, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mosquitto.usernames(inventory(), enrolment=enrolment)


def test_write_access_keeps_other_users_hashes_adds_the_approved_and_drops_the_retired(tmp_path: Path) -> None:
    tls = ListenerTls("/ca", "/crt", "/key")
    write_bundle(inventory(), tmp_path, tls, enrolment=access())
    before = parse_passwd((tmp_path / "passwd").read_text())
    assert set(before) == {"collector", "collector-urgent", "collector-enrol", "p1", "far", "enrol-ez"}
    assert (tmp_path / "secrets" / "enrol-ez").is_file()          # the bootstrap password, like every other
    write_access(tmp_path, inventory(), access({"p7": (ZONE, "$7$101$c2FsdA==$ZGlnZXN0")},
                                                         frozenset({"p1"})))
    after = parse_passwd((tmp_path / "passwd").read_text())
    assert after["p7"] == "$7$101$c2FsdA==$ZGlnZXN0"
    assert "p1" not in after
    assert {u: after[u] for u in before if u != "p1"} == {u: h for u, h in before.items() if u != "p1"}
    assert stat.S_IMODE((tmp_path / "passwd").stat().st_mode) == 0o600
    assert "user p7" in (tmp_path / "acl").read_text()
    with pytest.raises(ValueError, match="run `zonewatch-collector render-mosquitto"):
        write_access(tmp_path / "nowhere", inventory(), access())


def test_render_with_approved_probes_needs_no_password_file_for_them(tmp_path: Path) -> None:
    tls = ListenerTls("/ca", "/crt", "/key")
    write_bundle(inventory(), tmp_path, tls, enrolment=access({"p7": (ZONE, "$7$101$c2FsdA==$ZGlnZXN0")}))
    assert not (tmp_path / "secrets" / "p7").exists()
    assert parse_passwd((tmp_path / "passwd").read_text())["p7"] == "$7$101$c2FsdA==$ZGlnZXN0"


def test_inventory_refuses_the_enrol_zone_with_its_line() -> None:
    with pytest.raises(ConfigError) as err:
        load(Inventory, "zones:\n  a: {name: A}\n  enrol: {name: E}\n", "inventory.yaml")
    assert str(err.value).startswith("inventory.yaml:3: zones.enrol: zone id 'enrol' is reserved")


def test_collector_config_names_what_enrolment_lacks() -> None:
    with pytest.raises(ConfigError) as err:
        load(CollectorConfig, "inventory: i.yaml\nenrol:\n  zones: [ez]\n  broker_dir: /b\n", "collector.yaml")
    assert str(err.value).startswith("collector.yaml:2: enrol: enrolment needs an external broker")
    with pytest.raises(ConfigError) as typo:
        load(CollectorConfig, "mqtt: {host: b}\ninventory: i.yaml\nenrol:\n  zones: [ez]\n  broker_dir: /b\n"
                              "  max_pendin: 3\n", "collector.yaml")
    assert str(typo.value) == ("collector.yaml:6: enrol.max_pendin: unknown key 'max_pendin' (did you mean "
                               "'max_pending'?)")


# ---------------------------------------------------------------------------------------------- the commands


def setup_centre(tmp_path: Path, reload: list[str]) -> tuple[CollectorConfig, Inventory]:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    cfg = load(CollectorConfig, f"mqtt: {{host: 127.0.0.1}}\ninventory: inventory.yaml\n"
                                f"queue: {{path: '{tmp_path / 'intake.db'}'}}\n"
                                f"enrol: {{zones: [{ZONE}], broker_dir: '{tmp_path / 'broker'}', "
                                f"reload_command: {json.dumps(reload)}}}\n", "collector.yaml")
    inv = inventory()
    write_bundle(inv, tmp_path / "broker", ListenerTls("/ca", "/crt", "/key"),
                           enrolment=enrol.current_access(cfg))
    return cfg, inv


def args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    enrol_cli.add_parser(parser.add_subparsers(dest="command"))
    ns = parser.parse_args(["probes", *argv])
    ns.config = "collector.yaml"
    return ns


def test_approve_writes_the_broker_files_reloads_and_seals_the_password(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg, inv = setup_centre(tmp_path, ["true"])
    reg = Registry(enrol.registry_path(cfg))
    key, req = request()
    reg.receive(req, T0, 10)
    assert enrol_cli.run_command(args("approve", req.request_id[:8], "--area", "gate-b"), cfg, inv, T0) == 0
    out = capsys.readouterr().out
    assert f"as probe {ZONE}/p7; the inventory does not list it yet" in out and "broker reloaded (true)" in out
    entry = reg.find(req.request_id)
    assert (entry.state, entry.area) == ("approved", "gate-b")
    answer = open_reply(key, req.request_id, entry.reply or b"")
    assert answer is not None and answer.username == "p7" and answer.password is not None
    hashed = parse_passwd((tmp_path / "broker" / "passwd").read_text())["p7"]
    salt = base64.b64decode(hashed.split("$")[3])
    assert hash_password(answer.password, salt) == hashed == entry.password_hash
    assert answer.password not in (tmp_path / "broker" / "passwd").read_text()
    assert answer.password.encode() not in enrol.registry_path(cfg).read_bytes()
    assert enrol_cli.run_command(args("list", "--json"), cfg, inv, T0) == 0
    listed = json.loads(capsys.readouterr().out)["requests"][0]
    assert (listed["state"], listed["probe"], listed["in_inventory"], listed["fingerprint"]) == (
        "approved", "p7", False, wire.enrol_fingerprint(req.key))
    assert enrol_cli.run_command(args("list"), cfg, inv, T0) == 0
    text = capsys.readouterr().out
    assert "not in the inventory: it may publish about itself, and watches nothing" in text
    assert wire.enrol_fingerprint(req.key) in text and "IMEI 867962040012345" in text
    assert enrol_cli.run_command(args("retire", "p7"), cfg, inv, T0) == 0
    assert "p7" not in parse_passwd((tmp_path / "broker" / "passwd").read_text())
    reg.close()


@pytest.mark.parametrize(("argv", "message"), [
    (("approve", "REQ", "--area", "nowhere"), "--area 'nowhere' is not an area of zone 'ez'"),
    (("approve", "REQ", "--id", "far"), "the inventory puts probe 'far' in zone 'other'"),
    (("approve", "REQ", "--id", "Bad Id"), "is not a probe id"),
    (("approve", "abc"), "give at least 6"),
    (("retire", "p1"), "a probe only the inventory lists is retired by taking it out"),
])
def test_bad_decisions_exit_2_naming_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    argv: tuple[str, ...], message: str) -> None:
    cfg, inv = setup_centre(tmp_path, ["true"])
    reg = Registry(enrol.registry_path(cfg))
    _, req = request()
    reg.receive(req, T0, 10)
    argv = tuple(req.request_id if a == "REQ" else a for a in argv)
    assert enrol_cli.run_command(args(*argv), cfg, inv, T0) == 2
    assert message in capsys.readouterr().err
    assert reg.find(req.request_id).state == "pending"
    reg.close()


def test_a_broker_that_does_not_reload_exits_1_and_says_what_to_run(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    cfg, inv = setup_centre(tmp_path, ["false"])
    reg = Registry(enrol.registry_path(cfg))
    _, req = request()
    reg.receive(req, T0, 10)
    assert enrol_cli.run_command(args("approve", req.request_id), cfg, inv, T0) == 1
    assert "the broker did not reload: false exited with 1" in capsys.readouterr().err
    assert reg.find(req.request_id).state == "approved"   # decided; the files are written
    reg.close()
