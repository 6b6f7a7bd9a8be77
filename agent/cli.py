"""``zonewatch-agent``: the probe's command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence

from agent import wire
from zwconf import ConfigError, load_file

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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent command line; return the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, logging.getLogger().level))
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
    return asyncio.run(_run(cfg))


async def _once(cfg: object, as_json: bool) -> int:
    from agent.config import AgentConfig
    from agent.runner import Agent

    assert isinstance(cfg, AgentConfig)
    agent = Agent(cfg)
    failed = 0
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
    from prometheus_client import start_http_server

    from agent.config import AgentConfig
    from agent.runner import Agent

    assert isinstance(cfg, AgentConfig)
    agent = Agent(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = None
    if cfg.metrics.enabled:
        host, _, port = cfg.metrics.listen.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host, registry=agent.metrics.registry)
    try:
        await agent.run(stop)
    finally:
        if server is not None:
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
