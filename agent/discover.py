"""``zonewatch-agent discover HOST``: which poll profiles apply to a device, why, and what each would read.

An engineer runs it before adding a device to the configuration. It asks the device what auto-detection
asks (``agent.sources.detect``), polls it once with every profile that applies, exactly as the agent would,
and prints, per profile, the test that selected it and the samples it gave, in the format of
``zonewatch-agent once``. Nothing is spooled or sent.

    settings(...)       an SnmpConfig for the device from the command line's options (raises ValueError)
    discover(config)    the Reading of one poll with auto-detected profiles
    report(...)         the lines printed
    sample_line(s)      one sample as ``once`` prints it
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from agent import profiles
from agent.snmpclient import SnmpClient, SnmpTarget, default_client_factory
from agent.sources.snmp import Reading, SnmpConfig, SnmpSource
from zonewatch.wire import Sample

__all__ = ["settings", "discover", "report", "sample_line"]


def settings(host: str, port: int = 161, *, community: str | None = None, user: str | None = None,
             auth_key: str | None = None, priv_key: str | None = None, auth_protocol: str = "SHA",
             priv_protocol: str = "AES", timeout: str = "2s", retries: int = 1,
             profile_dirs: Sequence[str] = ()) -> SnmpConfig:
    """Return the configuration ``discover`` polls with; raise ValueError with a message for people (and
    strict.ConfigError for a site profile file in ``profile_dirs`` that is no usable profile)."""
    v3 = {"--user": user, "--auth-key": auth_key, "--priv-key": priv_key}
    given = [option for option, value in v3.items() if value is not None]
    if community is not None and given:
        raise ValueError(f"--community is SNMPv2c and {given[0]} is SNMPv3: give one or the other")
    if community is None and not given:
        raise ValueError("give --community (SNMPv2c) or --user, --auth-key and --priv-key (SNMPv3 authPriv)")
    if given and len(given) < 3:
        missing = ", ".join(option for option, value in v3.items() if value is None)
        raise ValueError(f"SNMPv3 (authPriv) needs --user, --auth-key and --priv-key; missing: {missing}")
    keys: dict[str, object] = {"type": "snmp", "name": host, "host": host, "port": port, "timeout": timeout,
                               "retries": retries, "profile_dirs": list(profile_dirs)}
    if community is not None:
        keys.update(version="v2c", community=community)
    else:
        keys.update(version="v3", user=user, auth_key=auth_key, priv_key=priv_key, auth_protocol=auth_protocol,
                    priv_protocol=priv_protocol)
    try:
        return SnmpConfig.model_validate(keys)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = str(error["msg"]).removeprefix("Value error, ")
        where = "--" + "-".join(str(part) for part in error["loc"][:1]).replace("_", "-")
        where = "--profile-dir" if where == "--profile-dirs" else where
        raise ValueError(f"{where}: {message}" if error["loc"] else message) from None


async def discover(config: SnmpConfig, now_ns: int | None = None,
                   client_factory: Callable[[SnmpTarget], SnmpClient] = default_client_factory) -> Reading:
    """Poll the device once with the profiles auto-detection picks; return what the poll gave."""
    if config.profiles is not None:
        config = config.model_copy(update={"profiles": None})
    source = SnmpSource(config, client_factory=client_factory)
    try:
        return await source.read(time.time_ns() if now_ns is None else now_ns)
    finally:
        await source.close()


def report(config: SnmpConfig, reading: Reading) -> list[str]:
    """Return the lines ``discover`` prints for a device that answered."""
    where = f"{config.host}:{config.port}"
    detection = reading.detection
    identity = detection.identity if detection is not None else None
    lines = [f"# {where} answers; sysObjectID {identity.sys_object_id if identity else None}"]
    descr = " ".join((identity.sys_descr if identity else "").split())
    lines.append(f"# sysDescr: {descr[:200] or '(none)'}")
    if reading.failure is not None:
        lines.append(f"# WARNING: the device {reading.failure}; what follows may be incomplete")
    matches = detection.matches if detection is not None else ()
    if matches:
        lines.append("# profiles that apply (a device configured without 'profiles' is polled with these):")
        lines += [f"#   {m.profile}: {m.test}" for m in matches if m.superseded_by is None]
        dropped = [m for m in matches if m.superseded_by is not None]
        if dropped:
            lines.append("# profiles that apply too but are superseded (they would read the same again): not polled")
            lines += [f"#   {m.profile}: {m.test}; superseded by {m.superseded_by}" for m in dropped]
    else:
        lines.append("# no profile applies to this device: it would be polled for 'up' only")
    chosen = {m.profile for m in matches}
    others = [name for name in profiles.catalogue(config.profile_dirs) if name not in chosen]
    if others:
        lines.append(f"# profiles that do not apply: {', '.join(others)}")
    for match in (m for m in matches if m.superseded_by is None):
        samples = reading.by_profile.get(match.profile, [])
        if match.profile in reading.empty:
            lines.append(f"## {match.profile}: READ NOTHING (no rows, or no usable value): the agent reports this")
            continue
        lines.append(f"## {match.profile}: {len(samples)} samples")
        lines += [sample_line(s) for s in samples]
    return lines


def sample_line(sample: Sample) -> str:
    """Return one sample as ``once`` prints it: measurement,tag=value,... field=value ..."""
    tags = ",".join(f"{k}={v}" for k, v in sorted(sample.tags.items()))
    fields = " ".join(f"{k}={json.dumps(v)}" for k, v in sample.fields.items())
    return f"{sample.measurement}{',' if tags else ''}{tags} {fields}"
