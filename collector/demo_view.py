"""What the demo shows: the live tables (rich), the plain lines without a terminal, and where its log goes.

Output to a pipe or terminal that went away is dropped, not fatal (``Say``); log records go to the work folder's
``collector.log`` and, from warning up, to the screen above the live view (``StderrNow``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any


def who(labels: dict[str, Any]) -> str:
    return " ".join(f"{k}={labels[k]}" for k in ("carrier", "area", "site", "device", "link", "group", "probe")
                    if labels.get(k))


def _fmt(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def tables(data: dict[str, list[dict[str, Any]]], counters: dict[str, float], elapsed: float,
            alerts: list[dict[str, Any]], notes: list[tuple[float, dict[str, Any]]], step: str) -> Any:
    from rich.console import Group
    from rich.table import Table

    cell = Table(title="Coverage by carrier (cellular)", expand=True)
    for col in ("carrier", "modem", "rat", "cell", "RSRP dBm", "RSRQ dB", "RSSI dBm", "registered", "age s"):
        cell.add_column(col)
    for r in data["cellular"]:
        rsrp = r.get("rsrp_dbm")
        colour = "red" if rsrp is None or rsrp < -110 else "yellow" if rsrp < -95 else "green"
        cell.add_row(r.get("carrier"), r.get("modem"), r.get("rat"), r.get("cell"), f"[{colour}]{_fmt(rsrp)}[/]",
                     _fmt(r.get("rsrq_db")), _fmt(r.get("rssi_dbm")), "yes" if r.get("registered") else "[red]no[/]",
                     _fmt(r["_age"], ".0f"))
    iface = Table(title="Equipment interfaces (SNMP)", expand=True)
    for col in ("device", "ifname", "oper", "in Mbit/s", "out Mbit/s", "speed Mbit/s"):
        iface.add_column(col)
    for r in data["interface"]:
        iface.add_row(r.get("device"), r.get("ifname"), "[green]up[/]" if r.get("oper_up") else "[red]down[/]",
                      _fmt(r.get("in_mbps"), ".1f"), _fmt(r.get("out_mbps"), ".1f"), _fmt(r.get("speed_mbps")))
    devs = ", ".join(f"{r.get('device')} {'up' if r.get('up') else 'DOWN'} (uptime {_fmt(r.get('uptime_s'), '.0f')} s)"
                     for r in data["device"])
    probes = ", ".join(f"{r.get('probe')} {'online' if r.get('up') else 'OFFLINE'}, spool {_fmt(r.get('spool_depth'))}"
                       for r in data["probe"])
    summary = (f"[b]ZoneWatch demo[/b] {elapsed:.0f} s | collector: {counters['received']:.0f} messages, "
               f"{counters['written']:.0f} samples stored | devices: {devs or '-'} | probes: {probes or '-'}")
    active = Table(title="Alerts (what the collector tracks now)", expand=True)
    for col in ("alert", "severity", "state", "who", "summary"):
        active.add_column(col)
    for a in sorted(alerts, key=lambda a: a["_since"]):
        state = "muted" if a["_muted"] else a["_state"]
        colour = {"firing": "red", "pending": "yellow"}.get(state, "dim")
        active.add_row(a["alertname"], a["severity"], f"[{colour}]{state}[/]", who(a), a["_summary"])
    sent = Table(title="Notifications the NOC's webhook received (newest last)", expand=True)
    for col in ("time", "status", "alert", "who"):
        sent.add_column(col)
    for at, a in notes:
        colour = "red" if a["status"] == "firing" else "green"
        sent.add_row(time.strftime("%H:%M:%S", time.localtime(at)), f"[{colour}]{a['status']}[/]",
                     a["labels"].get("alertname", ""), who(a["labels"]))
    return Group(summary, f"scenario: {step}", cell, iface, active, sent, "Ctrl-C stops the demo.")


def plain_lines(data: dict[str, list[dict[str, Any]]], counters: dict[str, float], elapsed: float) -> str:
    parts = [f"t={elapsed:.0f}s messages={counters['received']:.0f} samples={counters['written']:.0f}"]
    parts += [f"cellular {r.get('carrier')} {r.get('modem')} rsrp={_fmt(r.get('rsrp_dbm'))} dBm "
              f"registered={bool(r.get('registered'))}" for r in data["cellular"]]
    parts += [f"interface {r.get('device')} {r.get('ifname')} oper_up={bool(r.get('oper_up'))} "
              f"in_octets={_fmt(r.get('in_octets'))} in_mbps={_fmt(r.get('in_mbps'), '.1f')} "
              f"out_mbps={_fmt(r.get('out_mbps'), '.1f')}" for r in data["interface"]]
    parts += [f"device {r.get('device')} up={bool(r.get('up'))}" for r in data["device"]]
    return "\n".join(parts)


class Say:
    """Print to the user, and go on without them once the output is gone (a pipe whose reader died, as ``| tee``
    does on Ctrl-C, or a terminal that hung up): stopping the zone and writing the report never depend on it."""

    def __init__(self) -> None:
        self.gone: set[int] = set()

    def __call__(self, text: str, err: bool = False) -> None:
        stream = sys.stderr if err else sys.stdout
        fd = 2 if err else 1
        if fd in self.gone:
            return
        try:
            print(text, file=stream, flush=True)
        except OSError:   # BrokenPipeError, EIO
            self.lost(fd)

    def lost(self, fd: int) -> None:
        """Point ``fd`` at /dev/null, so that nothing later (the interpreter's last flush) fails on it."""
        self.gone.add(fd)
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
        except OSError:
            pass


class StderrNow(logging.Handler):
    """Write each record to ``sys.stderr`` as it is at that moment: while the live view runs that is rich's
    proxy, which prints the line above the view instead of through it (a handler holding the real stderr
    writes into the view and leaves old copies of it behind)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except OSError:
            pass


def quietly_stop(live: Any) -> bool:
    """Stop rich's live view (it puts stdout and stderr back); False if the terminal was gone."""
    try:
        live.stop()
    except OSError:
        return False
    return True


def log_to(folder: Path, level: str | None) -> None:
    """Log everything at ``level`` (info by default) to ``collector.log`` in the demo's folder, and to the
    screen only warnings (or ``level`` when one is given): the live view is the demo's screen. Third-party
    chatter (amqtt and its ``transitions`` state machine, APScheduler) stays at warning unless ``debug``."""
    wanted = logging.getLevelName((level or "info").upper())
    shown = logging.getLevelName(level.upper()) if level else logging.WARNING
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    to_file = logging.FileHandler(folder / "collector.log")
    to_file.setLevel(wanted)
    to_screen = StderrNow(shown)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for handler in (to_file, to_screen):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel(min(wanted, shown))
    for name in ("amqtt", "transitions", "apscheduler"):
        logging.getLogger(name).setLevel(logging.DEBUG if wanted == logging.DEBUG else logging.WARNING)
