"""Process-wide settings that each program applies once, when it starts.

- ``raise_open_files_limit``: the soft limit on open files goes up to the hard limit. Systemd starts a service
  with a soft limit of 1,024 and a hard one of 524,288 unless its unit sets ``LimitNOFILE`` (the units in
  ``config/systemd/`` set both, deliberately). The headroom is for surges, not for normal running: paho's
  network loop uses select(), which cannot watch a descriptor numbered 1,024 or more, so an MQTT connection
  made while over a thousand descriptors are open fails (and is retried). Every HTTP endpoint is bounded
  besides (``zwconf.httpd``), so no caller can push a program there.

Standard library only; imports neither ``agent`` nor ``collector``.
"""

from __future__ import annotations

import logging
import resource
from collections.abc import Callable

__all__ = ["raise_open_files_limit"]

log = logging.getLogger(__name__)

Limits = tuple[int, int]


def _show(limit: int) -> str:
    return "unlimited" if limit == resource.RLIM_INFINITY else str(limit)


def raise_open_files_limit(getrlimit: Callable[[int], Limits] = resource.getrlimit,
                           setrlimit: Callable[[int, Limits], None] = resource.setrlimit) -> Limits:
    """Raise this process's soft limit on open files to its hard limit, log the figure and return the limits
    in force (soft, hard). A hard limit the kernel will not grant as a soft one (``unlimited`` over
    ``fs.nr_open``) leaves the soft limit as it was, with a warning."""
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        log.info("open files: at most %s (soft limit = hard limit)", _show(soft))
        return soft, hard
    try:
        setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:
        log.warning("open files: at most %s; could not raise it to the hard limit %s: %s (set LimitNOFILE in the "
                    "service's unit)", _show(soft), _show(hard), exc)
        return soft, hard
    log.info("open files: at most %s (raised from %s to the hard limit)", _show(hard), _show(soft))
    return hard, hard
