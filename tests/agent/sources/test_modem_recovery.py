"""The modem recovery ladder (pure, time as an argument, no sleeps), its configuration, and the USB step's command.

What an operator relies on: the steps come in order (reopen, cfun, the USB power cycle), one per failed poll at
most and ``wait`` apart (longer each round); no step runs more than ``max_per_hour`` times in an hour, nor the
USB cycle more often than ``usb.min_interval``, however often the modem falls over; the ladder starts from the
first step once the modem answers; and a bad configuration names the key and the line.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest

from agent.sources.modem_recovery import HOUR_NS, Ladder, Recovery, RecoveryConfig, UsbPowerConfig, power_cycle
from zonewatch import strict

S = 1_000_000_000
T0 = 1_764_288_000 * S


def config(text: str = "") -> RecoveryConfig:
    return strict.load(RecoveryConfig, text or "{}", "agent.yaml")


USB = "usb: {hub: '1-1.3', port: 2}\n"


def run(ladder: Ladder, failures_at: list[float]) -> list[tuple[float, str]]:
    """Fail a poll at each time (seconds from T0); return (time, step) of every step the ladder gave."""
    out = []
    for at in failures_at:
        step = ladder.failed(T0 + int(at * S))
        if step is not None:
            out.append((at, step))
    return out


def test_the_steps_come_in_order_one_a_wait_apart_and_longer_each_round() -> None:
    cfg = config("wait: 10s\nmax_wait: 40s\nmax_per_hour: 10\n" + USB)
    ladder = Ladder(cfg.steps(port_steps=True), cfg)
    # a poll every 5 s, failing: reopen at once, cfun 10 s later, usb 10 s after that; the round is over, so the
    # next steps wait 20 s; in the second round the USB cycle is passed over (its min_interval is 30m), which ends
    # that round too, and the third waits 40 s (max_wait)
    steps = run(ladder, [5.0 * i for i in range(40)])
    assert steps == [(0, "reopen"), (10, "cfun"), (20, "usb_power"), (40, "reopen"), (60, "cfun"),
                     (120, "reopen"), (160, "cfun")]
    again = Ladder(cfg.steps(port_steps=True), cfg)
    run(again, [0, 10, 20, 40, 60, 80])
    assert again.held == "usb_power ran 1m ago (recovery.usb.min_interval 30m)"


def test_a_step_runs_at_most_max_per_hour_and_the_usb_cycle_not_before_its_interval() -> None:
    cfg = config("wait: 1s\nmax_wait: 1s\nmax_per_hour: 2\nusb: {hub: '1-1', port: 1, min_interval: 20m}\n")
    ladder = Ladder(cfg.steps(port_steps=True), cfg)
    steps = run(ladder, [float(i) for i in range(0, 3600, 5)])   # an hour of failed polls every 5 s
    by_step = {name: [at for at, s in steps if s == name] for name in ("reopen", "cfun", "usb_power")}
    assert len(by_step["reopen"]) == 2 and len(by_step["cfun"]) == 2
    assert by_step["usb_power"] == [10.0, 1210.0]   # 20 minutes apart (min_interval), then max_per_hour
    assert "reopen ran 2 times in the last hour (recovery.max_per_hour)" in ladder.held
    # an hour after their first runs, the port steps are allowed again
    assert ladder.failed(T0 + HOUR_NS + 5 * S) == "reopen"


def test_the_limits_hold_across_episodes_and_answering_starts_the_ladder_over() -> None:
    cfg = config("wait: 10s\nmax_per_hour: 2\n")
    ladder = Ladder(cfg.steps(port_steps=True), cfg)
    assert run(ladder, [0, 5, 10]) == [(0, "reopen"), (10, "cfun")]
    ladder.answered()
    assert (ladder.failures, ladder.since_ns) == (0, None)
    assert run(ladder, [100, 110]) == [(100, "reopen"), (110, "cfun")]   # from the first step, at once
    ladder.answered()
    assert run(ladder, [200, 300, 400]) == []                        # both ran twice within the hour
    assert "reopen ran 2 times" in ladder.held and "cfun ran 2 times" in ladder.held


def test_after_failures_and_disabled() -> None:
    cfg = config("after_failures: 3\nwait: 1s\n")
    assert run(Ladder(cfg.steps(True), cfg), [0, 1, 2, 3]) == [(2, "reopen"), (3, "cfun")]
    off = config("enabled: false\n")
    assert run(Ladder(off.steps(True), off), [0, 100, 200]) == []


def test_which_steps_a_backend_has() -> None:
    assert config().steps(port_steps=True) == ("reopen", "cfun")
    assert config("cfun: false\n" + USB).steps(port_steps=True) == ("reopen", "usb_power")
    assert config(USB).steps(port_steps=False) == ("usb_power",)    # ModemManager owns the port
    assert config().steps(port_steps=False) == ()


@pytest.mark.parametrize(("text", "message"), [
    ("usb: {hub: 'usb1', port: 2}\n", "agent.yaml:1: usb.hub: expected a hub location as `uhubctl` lists it"),
    ("usb: {hub: '1-1', port: 0}\n", "agent.yaml:1: usb.port: expected the hub's port number, 1 to 255, got 0"),
    ("usb: {hub: '1-1', port: 2, command: [uhubctl, '{bus}']}\n",
     "usb.command: argument '{bus}' names {bus}: only {hub} and {port} are filled in"),
    ("usb: {hub: '1-1', port: 2, command: []}\n", "usb.command: expected the program and its arguments"),
    ("wait: 10m\nmax_wait: 1m\n", "max_wait (1m) is shorter than wait (10m)"),
    ("max_per_hour: 0\n", "agent.yaml:1: max_per_hour"),
    ("wiat: 1m\n", "unknown key 'wiat' (did you mean 'wait'?)"),
])
def test_a_bad_recovery_config_names_the_key_and_the_line(text: str, message: str) -> None:
    with pytest.raises(strict.ConfigError) as raised:
        config(text)
    assert message in str(raised.value)


def test_the_usb_command_is_filled_in() -> None:
    usb = UsbPowerConfig(hub="1-1.3", port=4)
    assert usb.argv() == ["uhubctl", "--location", "1-1.3", "--ports", "4", "--action", "cycle"]


def stand_in(tmp_path: Path, body: str) -> list[str]:
    """A command in place of uhubctl: a Python script that records its arguments, then runs ``body``."""
    script = tmp_path / "uhubctl-stand-in.py"
    script.write_text(f"import sys\nopen({str(tmp_path / 'calls')!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
                      + body)
    return [sys.executable, str(script), "{hub}", "{port}"]


def test_the_usb_step_runs_the_command_and_says_how_it_ended(tmp_path: Path) -> None:
    ok = UsbPowerConfig(hub="1-1", port=2, command=stand_in(tmp_path, "print('Sent power cycle request')\n"))
    assert asyncio.run(power_cycle(ok)) == (True, f"{' '.join(ok.argv())} exited with 0: Sent power cycle request")
    assert (tmp_path / "calls").read_text() == "1-1 2\n"

    failing = UsbPowerConfig(hub="1-1", port=2, command=stand_in(tmp_path, "print('No compatible hubs');sys.exit(1)"))
    done, said = asyncio.run(power_cycle(failing))
    assert not done and said.endswith("exited with 1: No compatible hubs")

    slow = UsbPowerConfig(hub="1-1", port=2, timeout="300ms",
                          command=stand_in(tmp_path, "import time\ntime.sleep(30)\n"))
    done, said = asyncio.run(power_cycle(slow))
    assert not done and "did not finish within 300ms (killed)" in said

    missing = UsbPowerConfig(hub="1-1", port=2, command=[str(tmp_path / "no-such-uhubctl")])
    done, said = asyncio.run(power_cycle(missing))
    assert not done and said.startswith(f"cannot run {tmp_path / 'no-such-uhubctl'}") and "apt install uhubctl" in said


def test_recovery_runs_each_due_step_at_the_next_poll_logs_and_counts_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(f"wait: 10s\nusb: {{hub: '1-1', port: 2, command: {stand_in(tmp_path, '')!r}}}\n".replace("'", '"'))
    recovery = Recovery("vt", cfg, port_steps=True)
    ran: list[str] = []

    async def port_step(step: str) -> tuple[bool, str]:
        ran.append(step)
        return False, "no answer to ATE0 within 200ms"

    def poll(at: int) -> int:
        """One poll every 5 s: the step that is due, or else a read, which fails."""
        number, _ = asyncio.run(recovery.run_due(T0 + at * S, port_step))
        if not number:
            recovery.failed(T0 + at * S)
        return number

    caplog.set_level(logging.WARNING, "agent.sources.modem_recovery")
    assert [poll(at) for at in range(0, 30, 5)] == [0, 1, 0, 2, 0, 3]   # a read, then a step, ... wait apart
    assert ran == ["reopen", "cfun"] and (tmp_path / "calls").read_text() == "1-1 2\n"
    assert recovery.take() == [("reopen", "failed"), ("cfun", "failed"), ("usb_power", "ok")]
    assert recovery.take() == []
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == ("modem vt not answering for 5s (1 reads): recovery step 1 of 3, reopen: failed: no answer to "
                        "ATE0 within 200ms")
    assert lines[1].startswith("modem vt not answering for 15s (2 reads): recovery step 2 of 3, cfun: failed")
    assert lines[2].startswith("modem vt not answering for 25s (3 reads): recovery step 3 of 3, usb_power: ok: ")
    recovery.answered(T0 + 42 * S)
    assert caplog.records[-1].getMessage() == ("modem vt answers again, 42s after it stopped; recovery steps: "
                                               "reopen failed, cfun failed, usb_power ok")
    assert [poll(at) for at in (50, 55)] == [0, 1]   # a new episode starts from the first step
