"""Releases rolled out in waves, at the collector, turn by turn (no broker, no thread, no sleep): ``fleet update``
asks, the fleet thread publishes the release in the desired configuration of the first wave, takes what the
probes say (their status, the ``probe`` version sample, their ``update`` and ``config`` reports), begins the next
wave only once the first ran the release healthy for the soak, stops and pages at a failure, and audits it all."""

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
from collector.fleet.config_publisher import ConfigPublisher
from collector.fleet.config_state import fleet_dir
from collector.fleet.software import with_software
from collector.inventory import load_inventory
from collector.secrets import NAMES_ONLY
from zonewatch import wire

S = 10**9
T0 = 1_800_000_000 * S
OLD, NEW = "0.1.0", "0.2.0"

INVENTORY = """\
zones: {z: {name: Zone, areas: [a]}}
probes:
  p1: {zone: z, area: a, config: {sources: [{type: reach, name: core, target: 10.0.0.1}]}}
  p2: {zone: z, area: a, config: {sources: [{type: reach, name: core, target: 10.0.0.1}]}}
  p3: {zone: z}
"""


class Centre:
    """A publisher over files in ``tmp``, publishing into a list; probes speak through ``offer``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.inventory_path = tmp / "inventory.yaml"
        self.inventory_path.write_text(INVENTORY)
        (tmp / "collector.yaml").write_text(f"queue: {{path: '{tmp / 'intake.db'}'}}\ninventory: inventory.yaml\n")
        self.folder = fleet_dir(str(tmp / "intake.db"))
        self.published: list[tuple[str, bytes]] = []
        self.views: list[dict[str, ConfigView]] = []
        connected = threading.Event()
        connected.set()
        self.publisher = ConfigPublisher(load_inventory(self.inventory_path, NAMES_ONLY), self.inventory_path,
                                         NAMES_ONLY, self.folder, self.publish, connected, self.views.append)
        self.seq = 0

    def publish(self, topic: str, payload: bytes) -> bool:
        self.published.append((topic, payload))
        return True

    def desired(self, probe: str) -> wire.DesiredConfig:
        return wire.decode_config(next(p for t, p in reversed(self.published) if t == f"zw/v1/z/{probe}/config"))

    def release(self, probe: str) -> str | None:
        """The release the newest desired configuration of ``probe`` asks for."""
        text = self.desired(probe).yaml
        return text.split("software:\n  version: ", 1)[1].split("\n")[0] if "software:" in text else None

    def say(self, probe: str, now_ns: int, status: bytes | None = None, version: str | None = None,
            config: str | None = None, update: tuple[str, str, str] | None = None) -> None:
        """What ``probe`` publishes at ``now_ns``: its status, its version sample, a config or update report."""
        messages: list[tuple[str, bytes]] = []
        if status is not None:
            messages.append((f"zw/v1/z/{probe}/status", status))
        self.seq += 1
        if version is not None:
            sample = wire.Sample("probe", {"version": version}, {"info": 1}, now_ns)
            messages.append((f"zw/v1/z/{probe}/data", wire.encode(wire.Batch("z", probe, self.seq, now_ns,
                                                                             (sample,)))))
        events = []
        if config is not None:
            d = self.desired(probe)
            run = d.hash if config == "applied" else "sha256:" + "0" * 64
            events.append(wire.config_report(wire.ConfigReport(config, d.hash, d.version, run, d.version, "", 0.1,
                                                               now_ns)))
        if update is not None:
            result, wanted, error = update
            events.append(wire.update_report(wire.UpdateReport(result, wanted, OLD, error, 12.5, now_ns)))
        if events:
            messages.append((f"zw/v1/z/{probe}/events", wire.encode(wire.Batch("z", probe, self.seq + 1000, now_ns,
                                                                                events=tuple(events)))))
        self.publisher.offer(messages, now_ns)

    def fleet(self, *args: str) -> int:
        return cli.main(["-c", str(self.tmp / "collector.yaml"), "fleet", *args])

    def audit(self) -> list[tuple[str, str, str]]:
        return [(e["by"], e["action"], e.get("probe", "")) for e in audit.read(self.folder / "audit.jsonl")]

    def alerts(self, now_ns: int) -> list[str]:
        facts = Facts()
        facts.observe_configs(self.views[-1])
        inventory = load_inventory(self.inventory_path, NAMES_ONLY)
        return [f"{f.labels['probe']}: {f.annotations['summary']}" for f in
                evaluate(facts, inventory, RuleSettings(), now_ns).findings if f.alertname == "ProbeUpdateFailed"]


@pytest.fixture
def centre(tmp_path: Path) -> Centre:
    c = Centre(tmp_path)
    c.publisher.turn(T0)                       # v1 of both managed probes, no release said
    for probe in ("p1", "p2"):
        c.say(probe, T0, status=b"online", version=OLD, config="applied")
    c.publisher.turn(T0 + S)
    return c


def test_the_second_wave_waits_until_the_first_runs_the_release_healthy_for_the_soak(
        centre: Centre, capsys: pytest.CaptureFixture[str]) -> None:
    assert centre.release("p1") is None
    assert centre.fleet("update", "--version", NEW, "--first", "1", "--soak", "1m", "--by", "alice") == 0
    out = capsys.readouterr().out
    assert "wave 1: p1 (now)\nwave 2: p2 (once wave 1 is healthy for 1m)\n" in out, out
    centre.publisher.turn(T0 + 2 * S)
    assert (centre.release("p1"), centre.release("p2")) == (NEW, None)
    assert centre.desired("p1").version == 2
    assert ("alice", "rollout", "") in centre.audit()
    assert ("alice (fleet update 0.2.0, wave 1 of 2)", "publish", "p1") in centre.audit()

    # p1 applies the configuration, asks its updater, restarts on the new release
    centre.say("p1", T0 + 3 * S, config="applied", update=("requested", NEW, ""))
    centre.say("p1", T0 + 20 * S, status=b"stopping")
    centre.say("p1", T0 + 30 * S, status=b"online", version=NEW, update=("installed", NEW, ""))
    centre.publisher.turn(T0 + 31 * S)
    centre.publisher.turn(T0 + 89 * S)
    assert centre.release("p2") is None            # 59 s healthy: not yet
    centre.publisher.turn(T0 + 90 * S)
    assert centre.release("p2") == NEW             # 60 s: the rest begins
    assert ("alice (fleet update 0.2.0)", "wave", "") in centre.audit()
    assert ("probe p1", "update_installed", "p1") in centre.audit()

    assert centre.fleet("status") == 0
    out = capsys.readouterr().out
    assert "rollout of 0.2.0 by alice" in out and "wave 2 of 2 (p2)" in out, out
    assert "release: desired 0.2.0, runs 0.2.0 (since" in next(x for x in out.splitlines() if x.startswith("p1 "))
    assert "release: desired 0.2.0, runs 0.1.0" in next(x for x in out.splitlines() if x.startswith("p2 "))
    assert centre.fleet("status", "--probe", "p2") == 0
    assert "; release: desired 0.2.0" in capsys.readouterr().out   # and not "not published yet": it is

    centre.say("p2", T0 + 100 * S, config="applied")
    centre.say("p2", T0 + 110 * S, status=b"online", version=NEW)
    centre.say("p2", T0 + 110 * S, status=b"stopping")
    centre.say("p2", T0 + 120 * S, status=b"online")
    centre.publisher.turn(T0 + 179 * S)
    assert json.loads((centre.folder / "software-state.json").read_text())["rollout"]["state"] == "running"
    centre.publisher.turn(T0 + 180 * S)
    assert json.loads((centre.folder / "software-state.json").read_text())["rollout"]["state"] == "done"
    assert centre.audit()[-1] == ("alice (fleet update 0.2.0)", "rollout_done", "")


def test_a_probe_that_rolls_back_stops_the_rollout_and_pages_the_noc_until_aborted(
        centre: Centre, capsys: pytest.CaptureFixture[str]) -> None:
    assert centre.fleet("update", "--version", NEW, "--by", "alice") == 0
    centre.publisher.turn(T0 + 2 * S)
    centre.say("p1", T0 + 3 * S, config="applied", update=("requested", NEW, ""))
    why = "release 0.2.0 did not start, or did not say so, within 120s; rolled back to the release before"
    centre.say("p1", T0 + 130 * S, status=b"online", version=OLD, update=("rolled_back", NEW, why))
    centre.publisher.turn(T0 + 131 * S)
    assert centre.alerts(T0 + 132 * S) == ["p1: Probe p1 did not come up healthy on release 0.2.0"]
    (row,) = [r for r in centre.views[-1].values() if r.update_failed]
    assert row.update_failed == f"it reported the update to 0.2.0 rolled back: {why}"
    for second in range(132, 3000, 300):
        centre.publisher.turn(T0 + second * S)
    assert centre.release("p2") is None            # no further wave, ever
    assert centre.fleet("status") == 0
    out = capsys.readouterr().out
    assert "FAILED at wave 1 of 2" in out and f"  p1: it reported the update to 0.2.0 rolled back: {why}" in out
    # another rollout is refused while ... no: a failed one is over; but an abort is what the NOC does first
    assert centre.fleet("update", "--abort", "--by", "noc") == 0
    centre.publisher.turn(T0 + 3001 * S)
    assert centre.release("p1") is None            # back to no release said: what it had
    assert centre.alerts(T0 + 3002 * S) == []
    assert centre.audit()[-3:] == [("alice (fleet update 0.2.0)", "rollout_failed", ""),
                                    ("noc", "rollout_aborted", ""), ("noc", "publish", "p1")]


def test_a_rollout_of_the_release_again_asks_the_failed_probe_again(centre: Centre) -> None:
    assert centre.fleet("update", "--version", NEW) == 0
    centre.publisher.turn(T0 + 2 * S)
    first = centre.desired("p1")
    centre.say("p1", T0 + 3 * S, update=("failed", NEW, "install.sh: no zonewatch 0.2.0 in the index"))
    centre.publisher.turn(T0 + 4 * S)
    assert centre.fleet("update", "--version", NEW, "--probes", "p1") == 0
    centre.publisher.turn(T0 + 5 * S)
    again = centre.desired("p1")
    assert (again.hash, again.version) == (first.hash, first.version + 1)   # the same text, issued again
    assert centre.alerts(T0 + 6 * S) == []


def test_what_the_operator_may_not_ask_is_refused_with_the_reason(
        centre: Centre, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        centre.fleet("update", "--version", "../../etc")
    assert exited.value.code == 2 and "'../../etc' is not a release version" in capsys.readouterr().err
    assert centre.fleet("update", "--version", NEW, "--probes", "p3") == 2   # p3 is not managed from the centre
    assert "--probes p3: not managed from the centre (managed: p1, p2)" in capsys.readouterr().err
    assert centre.fleet("update", "--abort") == 2
    assert centre.fleet("update", "--version", NEW) == 0
    assert centre.fleet("update", "--version", "0.3.0") == 0   # the collector has not taken the first yet
    centre.publisher.turn(T0 + 2 * S)
    assert centre.release("p1") == NEW   # the second was refused: one rollout at a time
    assert centre.fleet("update", "--version", "0.3.0") == 2
    assert "the rollout of 0.2.0 is under way (wave 1 of 2)" in capsys.readouterr().err


def test_the_inventory_cannot_say_a_release(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(INVENTORY.replace("config: {sources:", "config: {software: {version: 0.2.0}, sources:", 1))
    with pytest.raises(Exception, match=r"probes\.p1\.config\.software: the release a probe runs is set with "):
        load_inventory(path, NAMES_ONLY)


def test_reports_from_a_backlog_do_not_take_the_present_back_and_a_repeat_is_taken_once(centre: Centre) -> None:
    centre.say("p1", T0 + 50 * S, version=NEW)
    centre.say("p1", T0 + 40 * S, version=OLD)    # sent later from the spool, measured earlier
    centre.publisher.turn(T0 + 60 * S)
    assert centre.publisher.software.state.seen["p1"].running == NEW
    for _ in range(2):   # the same report sent again (its acknowledgement was lost): taken, and audited, once
        centre.say("p1", T0 + 61 * S, update=("installed", NEW, ""))
    centre.publisher.turn(T0 + 62 * S)
    assert [a for a in centre.audit() if a[1] == "update_installed"] == [("probe p1", "update_installed", "p1")]


def test_with_software_appends_the_release_and_rehashes() -> None:
    from collector.fleet.desired import Rendered
    r = Rendered("p1", "z", "probe: {id: p1, zone: z}\n", wire.config_hash("probe: {id: p1, zone: z}\n"))
    assert with_software(r, None) is r
    out = with_software(r, NEW)
    assert out.yaml.endswith("software:\n  version: 0.2.0\n") and out.hash == wire.config_hash(out.yaml) != r.hash
