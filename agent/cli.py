"""``zonewatch-agent``: the probe's command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent.transcript import VENDOR_CHOICES, parse_transcript
from zonewatch import wire
from zwconf import ConfigError, httpd, load_file, parse_duration
from zwconf.httpd import BoundedHttpServer
from zwconf.process import ServiceNotifier, raise_open_files_limit

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from agent.config import AgentConfig

DEFAULT_CONFIG = "/etc/zonewatch/agent.yaml"

DESCRIPTION = """\
ZoneWatch probe agent: reads this probe's modems and the zone's equipment, keeps every reading on disk
until the broker has it, and publishes it to the collector over MQTT.

commands:
  run           poll every source on its interval, spool and publish until stopped (SIGTERM or Ctrl-C)
  once          poll every source once and print what would be sent; sends nothing, spools nothing.
                Use it on a freshly installed probe: a source that fails is printed with the reason,
                and the exit code is 1 if any failed.
  check-config  validate the configuration file and exit (0 if it is usable)
  enrol [--timeout 30m]
                with an enrol section: ask the zone's centre to admit this probe (its key fingerprint and
                hardware identity are logged: compare them with `zonewatch-collector probes list`), wait for
                the approval and keep the credentials it gives; 0 once enrolled (or if it was already), 3 if
                rejected, 1 if it could not finish. `run` does the same first when no credentials are kept yet.
  parse-transcript FILE [--vendor auto|generic|quectel|simcom|sierra] [--carrier 452-04]
                read a modem session captured in a terminal (commands such as AT+CSQ or AT+QENG="servingcell",
                the modem's answers, OK/ERROR; echo on or off) and print, as JSON, the cellular sample(s) the
                agent would send from it and every line that gave nothing, with the reason. Needs no
                configuration file. --vendor auto (default) takes the vendor from an ATI answer in the file;
                --carrier is used when the modem did not say its operator. Exit code 1 if no reading was found.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zonewatch-agent", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", default=DEFAULT_CONFIG,
                   help=f"agent configuration file (default {DEFAULT_CONFIG})")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="how much to log to stderr (default info)")
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    sub.add_parser("run", help="poll, spool and publish until stopped")
    once = sub.add_parser("once", help="poll every source once and print what would be sent")
    once.add_argument("--json", action="store_true", help="print the exact MQTT payload instead of a readable list")
    sub.add_parser("check-config", help="validate the configuration and exit")
    enrol = sub.add_parser("enrol", help="ask the centre to admit this probe and keep the credentials it gives")
    enrol.add_argument("--timeout", default=None, help="give up after this long (e.g. 30m; default: wait)")
    transcript = sub.add_parser("parse-transcript", help="print the readings in a captured modem transcript")
    transcript.add_argument("file", metavar="FILE", help="the transcript: text as the modem printed it")
    transcript.add_argument("--vendor", default="auto", choices=VENDOR_CHOICES,
                            help="read the modem as this vendor (default auto: from ATI in the file)")
    transcript.add_argument("--carrier", type=_plmn, default=None,
                            help="PLMN such as 452-04, used when the transcript does not show the operator")
    return p


def _plmn(value: str) -> str:
    """Return ``value`` if it is a PLMN "MCC-MNC"."""
    if not re.fullmatch(r"\d{3}-\d{2,3}", value):
        raise argparse.ArgumentTypeError(f"expected a PLMN like 452-04 (MCC-MNC), got {value!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent command line; return the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.command == "parse-transcript":  # a field tool: no configuration file
        return _parse_transcript(args.file, args.vendor, args.carrier)
    from agent.config import AgentConfig  # after logging: imports pysnmp and friends

    try:
        cfg = load_file(AgentConfig, args.config)
    except ConfigError as exc:
        print(f"zonewatch-agent: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"{args.config}: ok ({len(cfg.sources)} sources, probe {cfg.probe.zone}/{cfg.probe.id})")
        return 0
    if args.command == "once":
        return asyncio.run(_once(cfg, args.json))
    if args.command == "enrol" or cfg.enrol is not None:   # enrolment first (agent.fleet.enrol)
        enrolled = _enrol(cfg, args.config, getattr(args, "timeout", None))
        if isinstance(enrolled, int):
            return enrolled
        cfg = enrolled
        if args.command == "enrol":
            kept = cfg.enrol.state_dir if cfg.enrol is not None else "?"
            print(f"enrolled: probe {cfg.probe.zone}/{cfg.probe.id}, credentials in {kept}")
            return 0
    return asyncio.run(_run(cfg))


def _enrol(cfg: AgentConfig, path: str, timeout: str | None) -> AgentConfig | int:
    """Return the configuration as the enrolled probe runs it, enrolling first if need be; or the exit code."""
    from agent.fleet.enrol import EnrolError, Rejected, ensure

    if cfg.enrol is None:
        print(f"zonewatch-agent: {path} has no enrol section: nothing to enrol with", file=sys.stderr)
        return 2
    try:
        seconds = parse_duration(timeout) if timeout is not None else None
    except ValueError as exc:
        print(f"zonewatch-agent: --timeout: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        return ensure(cfg, stop, seconds, ServiceNotifier.from_environment())
    except Rejected as exc:
        print(f"zonewatch-agent: enrolment: {exc}", file=sys.stderr)
        return 3
    except EnrolError as exc:
        print(f"zonewatch-agent: enrolment: {exc}", file=sys.stderr)
        return 0 if stop.is_set() else 1   # asked to stop (SIGTERM, Ctrl-C): not a failure


def _parse_transcript(path: str, vendor: str, carrier: str | None) -> int:
    """Print the readings in a transcript file as JSON; 1 if there are none, 2 if the file cannot be read."""
    choice = next(v for v in VENDOR_CHOICES if v == vendor)  # argparse checked it is one of them
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            text = file.read()
    except OSError as exc:
        print(f"zonewatch-agent: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    result = parse_transcript(text, choice, carrier)
    print(json.dumps(result.to_json(), indent=2))
    return 0 if result.samples else 1


async def _once(cfg: object, as_json: bool) -> int:
    from agent.config import AgentConfig
    from agent.fleet.apply import running_config
    from agent.runner import Agent

    assert isinstance(cfg, AgentConfig)
    cfg = running_config(cfg)   # what ``run`` starts with: the configuration from the centre, if one runs
    agent = Agent(cfg)
    failed = 0
    for name, (config, _) in agent.listeners.items():
        print(f"# {name} ({config.type}): listens; not polled by 'once' (use 'run' and watch its log)")
    for result in await agent.once():
        if result.error is not None:
            failed += 1
            print(f"# {result.name} ({result.type}): FAILED after {result.seconds:.2f}s: {result.error}")
            continue
        print(f"# {result.name} ({result.type}): {len(result.samples)} samples in {result.seconds:.2f}s")
        if as_json:
            batch = wire.Batch(cfg.probe.zone, cfg.probe.id, 0, agent.clock(), tuple(result.samples))
            print(json.dumps(json.loads(wire.encode(batch)), indent=1))
            continue
        for s in result.samples:
            tags = ",".join(f"{k}={v}" for k, v in sorted(s.tags.items()))
            fields = " ".join(f"{k}={json.dumps(v)}" for k, v in s.fields.items())
            print(f"{s.measurement}{',' if tags else ''}{tags} {fields}")
    return 1 if failed else 0


async def _run(cfg: object) -> int:
    from agent.config import AgentConfig
    from agent.runner import Agent

    assert isinstance(cfg, AgentConfig)
    agent = Agent(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    raise_open_files_limit()
    server = _serve_metrics(cfg.metrics.listen, agent.metrics.registry) if cfg.metrics.enabled else None
    try:
        await agent.run(stop)
    finally:
        if server is not None:
            server.stop()
    return 0


def _serve_metrics(listen: str, registry: CollectorRegistry) -> BoundedHttpServer:
    """Start /metrics for ``registry`` on ``listen``, bounded (``zwconf.httpd``), counting what it refuses."""
    from prometheus_client import Counter, ProcessCollector, make_wsgi_app

    dropped = Counter(httpd.DROPPED_METRIC, httpd.DROPPED_HELP, ["reason"], registry=registry)
    for reason in httpd.DROP_REASONS:
        dropped.labels(reason)
    ProcessCollector(registry=registry)  # process_open_fds beside process_max_fds
    server = BoundedHttpServer(listen, make_wsgi_app(registry), on_drop=lambda reason: dropped.labels(reason).inc())
    server.start()
    return server


if __name__ == "__main__":
    sys.exit(main())
