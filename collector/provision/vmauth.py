"""``render-vmauth``: VictoriaMetrics' vmauth in front of the store, one user per carrier, each seeing only its own.

Grafana OSS will not filter by label per organisation, so the filter is forced below it. vmauth (Debian's
victoria-metrics package, 1.79) checks the caller's basic-auth user and proxies to VictoriaMetrics with
``extra_label=own_<plmn>=1`` added, for that carrier's user, to every request. VictoriaMetrics applies
``extra_label`` to queries, range queries, export, series, label names and label values as one more label
matcher AND-ed to every selector: a caller's own ``extra_label`` only narrows it further, and vmauth replaces a
query-string argument of the same name with its own. ``extra_filters[]`` is not used: VictoriaMetrics OR-s the
filters it is given, so a caller adding ``extra_filters={__name__=~".+"}`` (in the query string, or the
``[]`` form in a POST body) would see everything (checked against the real binary; hence one label per owner,
``zonewatch.measurements.owner_label``, instead of a list label matched by a regex).

Only the read API Grafana and a carrier's scripts need is routed (``READ_PATHS``, anchored regexes); anything
else (writes, /api/v1/import, /api/v1/admin/..., /api/v1/status/tsdb which names label values, /federate,
/metrics, the UI) has no route and vmauth refuses it. The zone authority's user has the same paths and no
filter. The collector keeps writing to VictoriaMetrics directly, which should listen on loopback only.

Files written into ``--out``::

    auth.yml        vmauth's -auth.config: the users, with their passwords (vmauth 1.79 reads them from this
                    file only), mode 0600
    vmauth.env      vmauth's flags as environment variables (``vmauth -envflag.enable``): the config path, the
                    listen address, and an admin key for vmauth's own /metrics, /debug/pprof, /-/reload and
                    /flags (without it /metrics lists every user's name to anyone), mode 0600
    secrets/<user>  each user's password, mode 0600: kept when rendered again, generated when missing (with
                    ``--secrets DIR`` they are read from there and none is generated)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from collector.inventory import Inventory
from collector.mosquitto.bundle import Written, read_password, write_file
from collector.mosquitto.passwd import new_password
from zonewatch.measurements import owner_label

__all__ = ["AUTHORITY", "ADMIN_KEY", "READ_PATHS", "User", "users", "render", "render_env", "write"]

AUTHORITY: Final = "zone-authority"     # the zone authority's user: unfiltered, read-only
ADMIN_KEY: Final = "vmauth-admin-key"   # the secret file of vmauth's own endpoints' key
SECRETS_DIR: Final = "secrets"
CONFIG_FILE: Final = "auth.yml"
ENV_FILE: Final = "vmauth.env"
# What Grafana's Prometheus datasource and a carrier's scripts read: each an anchored regex over the path.
READ_PATHS: Final = ("/api/v1/query", "/api/v1/query_range", "/api/v1/series", "/api/v1/labels",
                     "/api/v1/label/[^/]+/values", "/api/v1/export", "/api/v1/status/buildinfo")
_USER: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class User:
    """One vmauth user: a carrier (its key, its PLMN) or the zone authority (``plmn`` None: no filter)."""

    name: str
    plmn: str | None

    @property
    def filter(self) -> str | None:
        """Return the ``extra_label`` argument forced on every request (None: the authority's, unfiltered)."""
        return None if self.plmn is None else f"{owner_label(self.plmn)}=1"


def users(inventory: Inventory) -> list[User]:
    """Return the zone authority's user, then one per carrier of the inventory, by carrier key."""
    out = [User(AUTHORITY, None)]
    for key in sorted(inventory.carriers):
        if key in (AUTHORITY, ADMIN_KEY):
            raise ValueError(f"carriers.{key}: {key!r} is reserved for vmauth (the zone authority's user, the admin "
                             "key's file): give the carrier another key")
        if not _USER.match(key):   # inventory ids follow this already; a user name must never need quoting
            raise ValueError(f"carriers.{key}: not usable as a vmauth user name")
        out.append(User(key, inventory.carriers[key].plmn))
    return out


def _check_url(url: str) -> str:
    if not re.match(r"^https?://[^/\s?#]+/?$", url):
        raise ValueError(f"--vm-url: expected VictoriaMetrics' base URL like http://127.0.0.1:8428, got {url!r}")
    return url.rstrip("/")


def render(all_users: Sequence[User], vm_url: str, passwords: Mapping[str, str]) -> str:
    """Return vmauth's -auth.config for ``all_users`` (their passwords from ``passwords``), proxying to ``vm_url``."""
    base = _check_url(vm_url)
    entries = []
    for user in all_users:
        prefix = f"{base}/" if user.filter is None else f"{base}/?extra_label={user.filter}"
        entries.append({"username": user.name, "password": passwords[user.name],
                        "url_map": [{"src_paths": list(READ_PATHS), "url_prefix": prefix}]})
    head = ("# vmauth -auth.config written by `zonewatch-collector render-vmauth`: one user per carrier, each with\n"
            "# its owner label forced on every read (extra_label), and the zone authority's (unfiltered); read\n"
            "# paths only. It holds passwords: keep it mode 0600. Rendered again, it keeps them (secrets/).\n")
    return head + yaml.safe_dump({"users": entries}, sort_keys=False, default_flow_style=False)


def render_env(config_path: str, listen: str, admin_key: str) -> str:
    """Return vmauth's flags as environment variables, for ``vmauth -envflag.enable``."""
    return ("# vmauth's flags for `vmauth -envflag.enable` (systemd: EnvironmentFile=). Written by render-vmauth.\n"
            f"auth_config={config_path}\nhttpListenAddr={listen}\n"
            + "".join(f"{flag}={admin_key}\n" for flag in ("metricsAuthKey", "pprofAuthKey", "reloadAuthKey",
                                                           "flagsAuthKey")))


def _check_listen(listen: str) -> str:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen: expected host:port like 127.0.0.1:8427, got {listen!r}")
    return listen


def passwords_for(names: Sequence[str], out: Path, secrets_dir: Path | None) -> tuple[dict[str, str], list[Written]]:
    """Return each name's secret (from ``secrets_dir``, else ``out/secrets``, generating the missing ones there)
    and the files generated."""
    if secrets_dir is not None:
        missing = [n for n in names if not (secrets_dir / n).is_file()]
        if missing:
            raise ValueError(f"{secrets_dir}: no password file for {', '.join(missing)}")
        return {n: read_password(secrets_dir, n) for n in names}, []
    own = out / SECRETS_DIR
    own.mkdir(parents=True, exist_ok=True, mode=0o700)
    found: dict[str, str] = {}
    written: list[Written] = []
    for name in names:
        if (own / name).is_file():
            found[name] = read_password(own, name)
            continue
        found[name] = new_password()
        write_file(own / name, found[name] + "\n", 0o600)
        written.append(Written(own / name, f"new password of {name} (mode 0600)"))
    return found, written


def write(inventory: Inventory, out: Path, vm_url: str, *, secrets_dir: Path | None = None,
          listen: str = "127.0.0.1:8427", config_dir: str | None = None) -> list[Written]:
    """Write auth.yml, vmauth.env and any new passwords into ``out``; return what was written. ``config_dir`` is
    where vmauth will read auth.yml (default: ``out``)."""
    all_users = users(inventory)
    _check_url(vm_url)
    _check_listen(listen)
    out.mkdir(parents=True, exist_ok=True)
    secrets, written = passwords_for([u.name for u in all_users] + [ADMIN_KEY], out, secrets_dir)
    write_file(out / CONFIG_FILE, render(all_users, vm_url, secrets), 0o600)
    where = config_dir.rstrip("/") if config_dir else str(out.resolve())
    write_file(out / ENV_FILE, render_env(f"{where}/{CONFIG_FILE}", listen, secrets[ADMIN_KEY]), 0o600)
    carriers = len(all_users) - 1
    return [*written,
            Written(out / CONFIG_FILE, f"vmauth users: {AUTHORITY} (unfiltered) and {carriers} carrier(s), each "
                                       f"filtered to its own series; read paths only (mode 0600)"),
            Written(out / ENV_FILE, f"vmauth's flags (vmauth -envflag.enable): listen {listen}, admin key on its own "
                                    "endpoints (mode 0600)")]
