"""Optional packages: which extra of ``zonewatch`` brings each, and one clear line when a command lacks one.

A probe installs ``zonewatch[agent]`` and the centre ``zonewatch[collector]`` (and ``report`` where the monthly
report is written), so a package only one command uses is imported inside that command, never at module level,
and the command asks for it first::

    require("matplotlib", "zonewatch-collector report")
    # MissingExtra: zonewatch-collector report needs matplotlib: pip install 'zonewatch[report]'

The program prints the message as it stands and exits 1, instead of a traceback from deep inside the command.
``EXTRAS`` is the one table of these packages; ``tests/test_packaging.py`` checks it against pyproject.toml.

Standard library only; imports neither ``agent`` nor ``collector``.
"""

from __future__ import annotations

import importlib
from typing import Final

__all__ = ["EXTRAS", "MissingExtra", "require"]

# Top-level module -> the extra that declares its distribution (each module here is its distribution's name).
EXTRAS: Final[dict[str, str]] = {
    "amqtt": "collector",     # the embedded MQTT broker (`run` with no `mqtt` section, and the demo)
    "matplotlib": "report",   # the monthly report's plots
    "snmpsim": "demo",        # the demo's simulated SNMP devices (agent.sim.device)
    "pysmi": "demo",          # snmpsim imports it without declaring it
    "rich": "demo",           # the demo's live table
}


class MissingExtra(Exception):
    """A command needs a package this installation left out; the message names the extra that brings it."""


def require(module: str, needed_by: str, extras: str | None = None) -> None:
    """Import ``module`` for ``needed_by`` (the command as typed); raise MissingExtra naming ``extras`` to install
    (default: the module's own extra in ``EXTRAS``)."""
    top = module.partition(".")[0]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or ""
        detail = "" if missing == top or missing.startswith(f"{top}.") else f" ({exc})"   # it, or what it needs
        raise MissingExtra(f"{needed_by} needs {top}{detail}: pip install 'zonewatch[{extras or EXTRAS[top]}]'") \
            from None
