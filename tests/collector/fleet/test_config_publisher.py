"""The collector's side, turn by turn (no broker, no thread, no sleep: ``turn(now_ns)``): what it publishes and
when, the probes' reports, the audit, the alert engine's view, and the ``fleet`` commands that read its files."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from collector import cli
from collector.alerting.config import RuleSettings
from collector.alerting.facts import ConfigView, Facts
from collector.alerting.rules import evaluate
from collector.fleet import audit
from collector.fleet.config_publisher import SETTLE, ConfigPublisher
from collector.fleet.config_state import fleet_dir
from collector.inventory import load_inventory
from collector.scope import Scope
from collector.secrets import NAMES_ONLY
from zonewatch import wire

S = 10**9
T0 = 1_800_000_000 * S

INVENTORY = """\
zones: {z: {name: Zone}}
probes:
  p1:
    zone: z
    config:
      sources: [{type: reach, name: core, target: 10.0.0.1}]
  p2: {zone: z}
"""


class Centre:
    """A publisher over files in ``tmp``, publishing into a list."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.inventory_path = tmp / "inventory.yaml"
        self.inventory_path.write_text(INVENTORY)
        (tmp / "collector.yaml").write_text(f"queue: {{path: '{tmp / 'intake.db'}'}}\ninventory: inventory.yaml\n")
        self.folder = fleet_dir(str(tmp / "intake.db"))
        self.published: list[tuple[str, bytes]] = []
        self.acknowledge = True
        self.views: list[dict[str, ConfigView]] = []
        self.connected = threading.Event()
        self.connected.set()
        self.publisher = self.make()

    def make(self) -> ConfigPublisher:
        return ConfigPublisher(load_inventory(self.inventory_path, NAMES_ONLY), self.inventory_path, NAMES_ONLY,
                               self.folder, self.publish, self.connected, self.views.append)

    def publish(self, topic: str, payload: bytes) -> bool:
        if self.acknowledge:
            self.published.append((topic, payload))
        return self.acknowledge

    def desired(self, index: int = -1) -> wire.DesiredConfig:
        return wire.decode_config(self.published[index][1])

    def report(self, result: str, desired: wire.DesiredConfig, error: str = "", probe: str = "p1",
               running: str | None = None, now_ns: int = T0) -> None:
        run = running or (desired.hash if result == "applied" else wire.LOCAL_CONFIG)
        event = wire.config_report(wire.ConfigReport(result, desired.hash, desired.version, run,
                                                     desired.version if run == desired.hash else 0, error, 0.1, now_ns))
        payload = wire.encode(wire.Batch("z", probe, 9, now_ns, events=(event,)))
        self.publisher.offer([("zw/v1/z/p1/data", b"{}"), (f"zw/v1/z/{probe}/events", payload)], now_ns)

    def audit(self) -> list[tuple[str, str, str, int]]:
        return [(e["by"], e["action"], e["probe"], e.get("version", 0))
                for e in audit.read(self.folder / "audit.jsonl")]

    def fleet(self, *args: str) -> int:
        return cli.main(["-c", str(self.tmp / "collector.yaml"), "fleet", *args])


@pytest.fixture
def centre(tmp_path: Path) -> Centre:
    return Centre(tmp_path)


def test_it_publishes_each_managed_probe_once_retained_and_audits_it(centre: Centre) -> None:
    centre.publisher.turn(T0)
    ((topic, _),) = centre.published
    desired = centre.desired()
    assert topic == "zw/v1/z/p1/config" and (desired.probe, desired.version, desired.issued_ns) == ("p1", 1, T0)
    assert "name: core" in desired.yaml
    centre.publisher.turn(T0 + S)
    assert len(centre.published) == 1
    assert centre.audit() == [("inventory change", "publish", "p1", 1)]
    # a restarted collector publishes nothing it published before
    centre.publisher = centre.make()
    centre.publisher.turn(T0 + 2 * S)
    assert len(centre.published) == 1


def test_it_waits_for_the_broker_session_and_tries_again_until_acknowledged(centre: Centre) -> None:
    centre.connected.clear()
    centre.publisher.turn(T0)
    assert centre.published == []
    centre.connected.set()
    centre.acknowledge = False
    centre.publisher.turn(T0 + S)
    centre.acknowledge = True
    centre.publisher.turn(T0 + 2 * S)
    assert centre.published == []   # the next try is 5 s after the failed one
    centre.publisher.turn(T0 + 6 * S)
    assert len(centre.published) == 1 and centre.desired().version == 1


def test_reports_are_recorded_audited_and_handed_to_the_alert_engine(centre: Centre) -> None:
    centre.publisher.turn(T0)
    desired = centre.desired()
    centre.report("rejected", desired, "desired config v1:7: sources[0].timout: unknown key 'timout'")
    centre.publisher.turn(T0 + S)
    view = centre.views[-1]["p1"]
    assert (view.result, view.report_hash, view.desired_hash, view.error) == \
        ("rejected", desired.hash, desired.hash, "desired config v1:7: sources[0].timout: unknown key 'timout'")
    assert centre.audit()[-1] == ("probe p1", "rejected", "p1", 1)
    facts = Facts()
    facts.observe_configs(centre.views[-1])
    inventory = load_inventory(centre.inventory_path, NAMES_ONLY)
    (finding,) = [f for f in evaluate(facts, inventory, RuleSettings(), T0 + 2 * S).findings
                  if f.alertname == "ProbeConfigRejected"]
    assert dict(finding.labels) == {"alertname": "ProbeConfigRejected", "severity": "warning", "zone": "z",
                                    "probe": "p1"}
    assert "sources[0].timout: unknown key 'timout'" in finding.annotations["description"]
    centre.report("applied", desired, now_ns=T0 + 3 * S)
    centre.publisher.turn(T0 + 3 * S)
    facts.observe_configs(centre.views[-1])
    evaluation = evaluate(facts, inventory, RuleSettings(), T0 + 4 * S)
    assert not [f for f in evaluation.findings if f.alertname == "ProbeConfigRejected"]
    assert ({"alertname": "ProbeConfigRejected", "probe": "p1"}, T0 + 3 * S) in evaluation.clear


def test_a_report_about_another_desired_hash_is_not_an_alert(centre: Centre) -> None:
    centre.publisher.turn(T0)
    old = centre.desired()
    centre.inventory_path.write_text(INVENTORY.replace("10.0.0.1", "10.0.0.2"))
    centre.publisher.turn(T0 + S)
    centre.publisher.turn(T0 + S + int(SETTLE * S))
    centre.report("rolled_back", old, "the broker was not reached within 120s of applying it")
    centre.publisher.turn(T0 + 5 * S)
    facts = Facts()
    facts.observe_configs(centre.views[-1])
    inventory = load_inventory(centre.inventory_path, NAMES_ONLY)
    assert not [f for f in evaluate(facts, inventory, RuleSettings(), T0 + 6 * S).findings
                if f.alertname == "ProbeConfigRejected"]


def test_an_edited_inventory_is_published_after_it_settles_and_a_bad_one_is_not(centre: Centre) -> None:
    centre.publisher.turn(T0)
    centre.inventory_path.write_text(INVENTORY.replace("10.0.0.1", "10.0.0.2"))
    centre.publisher.turn(T0 + S)
    assert len(centre.published) == 1
    centre.publisher.turn(T0 + S + int(SETTLE * S))
    assert len(centre.published) == 2 and centre.desired().version == 2 and "10.0.0.2" in centre.desired().yaml
    centre.inventory_path.write_text(INVENTORY.replace("10.0.0.1", "10.0.0.3").replace("name: core", "nme: core"))
    for second in range(5, 10):
        centre.publisher.turn(T0 + second * S)
    assert len(centre.published) == 2


def test_a_push_publishes_at_once_in_the_pushers_name_and_can_issue_a_config_again(
        centre: Centre, capsys: pytest.CaptureFixture[str]) -> None:
    centre.publisher.turn(T0)
    assert centre.fleet("push", "--by", "alice", "--again", "p1") == 0
    assert "p1: v1 sha256:" in capsys.readouterr().out
    centre.publisher.turn(T0 + S)
    assert [d.version for d in map(wire.decode_config, (p for _, p in centre.published))] == [1, 2]
    assert centre.desired(0).hash == centre.desired(1).hash
    assert centre.audit()[-1] == ("alice", "publish", "p1", 2)
    assert centre.fleet("push", "--again", "p2") == 2   # not managed from the centre


def test_a_probe_no_longer_managed_gets_its_config_cleared(centre: Centre) -> None:
    centre.publisher.turn(T0)
    centre.inventory_path.write_text(INVENTORY.replace("    config:\n      sources: [{type: reach, name: core, "
                                                       "target: 10.0.0.1}]\n", ""))
    centre.publisher.turn(T0 + S)
    centre.publisher.turn(T0 + S + int(SETTLE * S))
    assert centre.published[-1] == ("zw/v1/z/p1/config", b"")
    assert centre.audit()[-1][:3] == ("inventory change", "clear", "p1")


def test_fleet_status_render_and_audit_read_what_the_running_collector_wrote(
        centre: Centre, capsys: pytest.CaptureFixture[str]) -> None:
    centre.publisher.turn(T0)
    desired = centre.desired()
    assert centre.fleet("status") == 0
    assert capsys.readouterr().out.startswith(f"p1 (z): pending; desired v1 {desired.hash[:15]} (published ")
    centre.report("rolled_back", desired, "the broker was not reached within 120s of applying it")
    centre.publisher.turn(T0 + S)
    assert centre.fleet("status", "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["status"], row["drift"], row["report"]["error"]) == \
        ("rolled_back", True, "the broker was not reached within 120s of applying it")
    assert centre.fleet("render", "p1") == 0
    assert capsys.readouterr().out == desired.yaml
    assert centre.fleet("render", "p2") == 2
    assert centre.fleet("audit", "--probe", "p1") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f"inventory change: publish p1 v1 {desired.hash[:15]} inventory="
                             f"{json.loads((centre.folder / 'audit.jsonl').read_text().splitlines()[0])['inventory']}")
    assert lines[1].endswith("probe p1: rolled_back p1 v1 " + desired.hash[:15] + " running=local: the broker was not "
                             "reached within 120s of applying it")


def test_a_report_the_scope_check_refuses_is_not_taken(centre: Centre) -> None:
    scope = Scope(load_inventory(centre.inventory_path, NAMES_ONLY))
    centre.publisher = ConfigPublisher(load_inventory(centre.inventory_path, NAMES_ONLY), centre.inventory_path,
                                       NAMES_ONLY, centre.folder, centre.publish, centre.connected,
                                       centre.views.append, scope=scope)
    centre.publisher.turn(T0)
    scope.retired = frozenset({"z/p1"})   # retired (collector.fleet.enrol): whatever it still sends is refused
    centre.report("rejected", centre.desired(), "made up")
    centre.publisher.turn(T0 + S)
    assert centre.publisher.state.probes["p1"].report is None
    assert [a for _, a, _, _ in centre.audit()] == ["publish"]
