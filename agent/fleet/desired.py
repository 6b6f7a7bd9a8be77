"""Validation of a desired configuration (``zonewatch.wire.DesiredConfig``) with the probe's own strict loader.

``effective(desired, local)`` is pure apart from reading the secrets the text refers to: it loads the YAML
text as the local file is loaded (``strict.load``: an unknown key, a wrong type or a dangling reference is a
``ConfigError`` naming the line and the key), under the probe's rules for secrets that come from elsewhere
(``remote_config.secret_dir`` and ``secret_env_prefix``: a plain secret, a file outside that folder or a
variable without that prefix is refused), and returns the configuration the agent then runs::

    from the desired text   sources, self_interval, and mqtt and software (the release to run) when the text has
                            them (else the local file's)
    from the local file     probe (the text must name the same id and zone), spool, metrics, remote_config, enrol,
                            update

A desired text that sets ``spool``, ``metrics``, ``remote_config``, ``enrol`` or ``update`` is refused: those are the
probe's own (where it keeps what it has not sent yet, what it serves locally, what it lets the centre do, how it
asked to be admitted, and where it may take software from).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationInfo, field_validator, model_validator

from agent.config import PROFILE_DIRS, AgentConfig
from zonewatch import wire
from zonewatch.strict import SECRET_POLICY, ConfigError, SubkeyError, load

__all__ = ["DesiredAgentConfig", "effective", "source_name", "LOCAL_ONLY"]

LOCAL_ONLY = ("spool", "metrics", "remote_config", "enrol", "update", "profile_dirs")
_IDENTITY = "agent.fleet.identity"   # context key: (zone, probe id) of the probe reading the text


class DesiredAgentConfig(AgentConfig):
    """An agent configuration as the centre may write it: the local-only sections refused, the probe's own id."""

    @field_validator(*LOCAL_ONLY, mode="before")
    @classmethod
    def _local_only(cls, value: Any, info: ValidationInfo) -> Any:
        raise ValueError(f"{info.field_name} is set in the probe's local configuration file only")

    @model_validator(mode="after")
    def _same_probe(self, info: ValidationInfo) -> DesiredAgentConfig:
        identity = (info.context or {}).get(_IDENTITY)
        if identity is not None:
            zone, probe = identity
            if self.probe.zone != zone:
                raise SubkeyError(("probe", "zone"), f"this probe is in zone {zone!r}, not {self.probe.zone!r}")
            if self.probe.id != probe:
                raise SubkeyError(("probe", "id"), f"this probe is {probe!r}, not {self.probe.id!r}")
        return self


def source_name(desired: wire.DesiredConfig) -> str:
    """Return how errors name a desired configuration: ``desired config v3``."""
    return f"desired config v{desired.version}"


def effective(desired: wire.DesiredConfig, local: AgentConfig) -> AgentConfig:
    """Return the configuration to run for ``desired`` (see the module docstring); raise ConfigError naming
    what is wrong and where (its line in the desired text)."""
    source = source_name(desired)
    if (desired.zone, desired.probe) != (local.probe.zone, local.probe.id):
        raise ConfigError(source, None, (), f"it is addressed to probe {desired.zone}/{desired.probe}, and this is "
                                            f"{local.probe.zone}/{local.probe.id}")
    context = {SECRET_POLICY: local.remote_config.secret_policy(), _IDENTITY: (local.probe.zone, local.probe.id),
               PROFILE_DIRS: local.profile_dirs}
    remote = load(DesiredAgentConfig, desired.yaml, source, context=context)
    update: dict[str, Any] = {"sources": remote.sources, "self_interval": remote.self_interval}
    for key in ("mqtt", "software"):
        if key in remote.model_fields_set:
            update[key] = getattr(remote, key)
    return local.model_copy(update=update)
