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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from agent.transcript import VENDOR_CHOICES, parse_transcript
from zonewatch import httpd, wire
from zonewatch.httpd import BoundedHttpServer
from zonewatch.process import ServiceNotifier, raise_open_files_limit
from zonewatch.strict import ConfigError, load_file, parse_duration

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
  survey --id SURVEY [--gpsd HOST:PORT | --waypoints FILE] [--every 5s] [--readings 3] [--max-age 5s]
                walk survey: read this probe's cellular sources at each position of a walk and send every
                reading with where it was taken (measurement `survey`, under the survey id) through the spool
                and the broker, as `run` sends readings. Positions from gpsd (default 127.0.0.1:2947: a reading
                every --every, each with the GPS fix nearest in time, at most --max-age away) or from a file of
                named waypoints (x/y metres on the zone's plan, or lat/lon: go to each, press Enter; --readings
                readings there). Stop the agent service first (same modems, same broker identity); Ctrl-C ends
  enrol [--timeout 30m]
                with an enrol section: ask the zone's centre to admit this probe (its key fingerprint and
                hardware identity are logged: compare them with `zonewatch-collector probes list`), wait for
                the approval and keep the credentials it gives; 0 once enrolled (or if it was already), 3 if
                rejected, 1 if it could not finish. `run` does the same first when no credentials are kept yet.
  parse-transcript FILE [--vendor auto|generic|quectel|simcom|sierra] [--carrier 452-04]
                read a modem session captured in a terminal (commands such as AT+CSQ or AT+QENG="servingcell",
                the modem's answers, OK/ERROR; echo on or off; or what `mmcli --command` printed, or the JSON
                of mmcli -J, --signal-get -J, --get-cell-info -J) and print, as JSON, the cellular sample(s) the
                agent would send from it and every line that gave nothing, with the reason. Needs no
                configuration file. --vendor auto (default) takes the vendor from an ATI answer in the file;
                --carrier is used when the modem did not say its operator. Exit code 1 if no reading was found.
  discover HOST [--port 161] (--community C | --user U --auth-key A --priv-key P [--auth-protocol SHA]
                [--priv-protocol AES]) [--timeout 2s] [--retries 1] [--profile-dir DIR ...]
                ask an SNMP device who it is, print which poll profiles apply to it and why (the auto-detection
                a device configured without 'profiles' gets), then poll it once with them and print what each
                profile read, as 'once' does; a profile that applies but reads nothing is said so, and so is one
                that another supersedes. --profile-dir adds the site profiles of a folder (as profile_dirs). Needs no
                configuration file; sends nothing. Exit code 1 if the device does not answer. Keys given on a
                command line are visible to other users of the machine: run it on a probe you alone use.
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
    survey = sub.add_parser("survey", help="walk survey: readings with positions from gpsd or waypoints")
    survey.add_argument("--id", required=True, dest="survey_id", help="the survey's id (a tag: lowercase letters, "
                        "digits, - _ .), e.g. dinh-vu-2025-03-walk1")
    where = survey.add_mutually_exclusive_group()
    where.add_argument("--gpsd", metavar="HOST:PORT", default=None, help="gpsd to take positions from (default "
                       "127.0.0.1:2947)")
    where.add_argument("--waypoints", metavar="FILE", default=None, help="a YAML file of named points (points: "
                       "[{name: gate-1, x: 10, y: 20}, ...], or lat/lon) to walk to in turn")
    survey.add_argument("--every", default="5s", help="with gpsd: read the modems this often (default 5s)")
    survey.add_argument("--readings", type=_number(1, 100), default=3, help="with waypoints: readings at each "
                        "point (default 3)")
    survey.add_argument("--max-age", default="5s", help="with gpsd: the farthest in time a fix may be from a "
                        "reading it places (default 5s)")
    enrol = sub.add_parser("enrol", help="ask the centre to admit this probe and keep the credentials it gives")
    enrol.add_argument("--timeout", default=None, help="give up after this long (e.g. 30m; default: wait)")
    transcript = sub.add_parser("parse-transcript", help="print the readings in a captured modem transcript")
    transcript.add_argument("file", metavar="FILE", help="the transcript: text as the modem printed it")
    transcript.add_argument("--vendor", default="auto", choices=VENDOR_CHOICES,
                            help="read the modem as this vendor (default auto: from ATI in the file)")
    transcript.add_argument("--carrier", type=_plmn, default=None,
                            help="PLMN such as 452-04, used when the transcript does not show the operator")
    discover = sub.add_parser("discover", help="show which SNMP poll profiles apply to a device and what they read")
    discover.add_argument("host", metavar="HOST", help="the device's address or name")
    discover.add_argument("--port", type=_number(1, 65535), default=161, help="UDP port (default 161)")
    discover.add_argument("--community", default=None, help="SNMPv2c community")
    discover.add_argument("--user", default=None, help="SNMPv3 user (authPriv)")
    discover.add_argument("--auth-key", default=None, help="SNMPv3 authentication key")
    discover.add_argument("--priv-key", default=None, help="SNMPv3 privacy key")
    discover.add_argument("--auth-protocol", default="SHA", choices=["SHA", "SHA256", "MD5"],
                          help="SNMPv3 authentication protocol (default SHA)")
    discover.add_argument("--priv-protocol", default="AES", choices=["AES", "AES256", "DES"],
                          help="SNMPv3 privacy protocol (default AES)")
    discover.add_argument("--timeout", default="2s", help="wait this long for each answer (default 2s)")
    discover.add_argument("--retries", type=_number(0, 10), default=1, help="retries after a timeout (default 1)")
    discover.add_argument("--profile-dir", action="append", default=[], metavar="DIR", dest="profile_dirs",
                          help="a folder of site profiles (<name>.yaml) to detect with besides the shipped ones; "
                          "may be given more than once")
    return p


def _number(low: int, high: int) -> Callable[[str], int]:
    """Return an argparse type: an integer from ``low`` to ``high``."""
    def check(value: str) -> int:
        if not value.isdigit() or not low <= int(value) <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {value!r}")
        return int(value)

    return check


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
    if args.command == "discover":  # a field tool: no configuration file
        return asyncio.run(_discover(args))
    from agent.config import AgentConfig  # after logging: imports pysnmp and friends

    try:
        cfg = load_file(AgentConfig, args.config)
    except ConfigError as exc:
        print(f"zonewatch-agent: {exc}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(f"{args.config}: ok ({len(cfg.sources)} sources, probe {cfg.probe.zone}/{cfg.probe.id})")
        return 0
    if args.command == "survey":
        return _survey(cfg, args)
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


def _survey(cfg: AgentConfig, args: argparse.Namespace) -> int:
    """Run a walk survey (``agent.survey``); 2 on bad options or a bad waypoint file."""
    from agent import survey

    try:
        every, max_age = parse_duration(args.every), parse_duration(args.max_age)
        if args.gpsd is not None and not re.fullmatch(r"[^\s:]+:\d{1,5}", args.gpsd):
            raise ValueError(f"--gpsd: expected HOST:PORT such as 127.0.0.1:2947, got {args.gpsd!r}")
        if not wire.valid_name(args.survey_id):
            raise ValueError(f"--id {args.survey_id!r}: use lowercase letters, digits, '-', '_' or '.'")
        return asyncio.run(survey.run(cfg, args.survey_id, args.gpsd, args.waypoints, every, args.readings, max_age))
    except (ValueError, ConfigError) as exc:
        print(f"zonewatch-agent survey: {exc}", file=sys.stderr)
        return 2


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


async def _discover(args: argparse.Namespace) -> int:
    """Print which profiles apply to a device and what they read; 1 if it does not answer, 2 on bad options."""
    from agent.discover import discover, report, settings

    try:
        config = settings(args.host, args.port, community=args.community, user=args.user, auth_key=args.auth_key,
                          priv_key=args.priv_key, auth_protocol=args.auth_protocol, priv_protocol=args.priv_protocol,
                          timeout=args.timeout, retries=args.retries, profile_dirs=args.profile_dirs)
    except (ValueError, ConfigError) as exc:
        print(f"zonewatch-agent discover: {exc}", file=sys.stderr)
        return 2
    reading = await discover(config)
    if not reading.answered:
        print(f"zonewatch-agent discover: {config.host}:{config.port} does not answer SNMP ({reading.failure}): "
              "check the address and port, that the device allows this probe, and the community or v3 user and "
              "keys", file=sys.stderr)
        return 1
    print("\n".join(report(config, reading)))
    return 0


async def _once(cfg: object, as_json: bool) -> int:
    from agent.config import AgentConfig
    from agent.discover import sample_line
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
        for note in getattr(agent.sources[result.name][1], "notes", list)():   # an SNMP device's profiles
            print(f"# {result.name}: {note}")
        if as_json:
            batch = wire.Batch(cfg.probe.zone, cfg.probe.id, 0, agent.clock(), tuple(result.samples))
            print(json.dumps(json.loads(wire.encode(batch)), indent=1))
            continue
        for s in result.samples:
            print(sample_line(s))
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
    """Start /metrics for ``registry`` on ``listen``, bounded (``zonewatch.httpd``), counting what it refuses."""
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
