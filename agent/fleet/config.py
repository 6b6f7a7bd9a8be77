"""``remote_config:`` in the probe's local configuration file: how it takes its configuration from the centre.

The local file (``/etc/zonewatch/agent.yaml``) is the bootstrap: it says who the probe is, where its broker
and its spool are, and this section. What the collector sends (``zonewatch.wire.DesiredConfig``) replaces the
probe's ``sources``, ``self_interval`` and, when it has one, ``mqtt``; ``probe``, ``spool``, ``metrics`` and
``remote_config`` stay the local file's.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, field_validator

from zonewatch.strict import Duration, SecretPolicy, Strict

__all__ = ["RemoteConfigSettings", "STATE_FILE"]

STATE_FILE = "remote-config.json"   # in ``state_dir``: the configuration running, the last known-good, the trial


class RemoteConfigSettings(Strict):
    """Whether this probe takes its configuration from the centre, and on what terms."""

    enabled: bool = True
    # After a new configuration is applied: if in this time the broker is not reached, or more than half of the
    # sources fail their last poll, the probe goes back to the last known-good configuration by itself.
    deadman: Duration = Field(default=120.0, gt=0)
    state_dir: str | None = None            # default: the spool's folder
    secret_dir: str | None = None           # {file: NAME} of a desired configuration: a name in this folder
    secret_env_prefix: str = "ZW_"          # {env: NAME} of a desired configuration: NAME starts with this

    @field_validator("secret_dir")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isabs(value):
            raise ValueError(f"expected an absolute path, got {value!r}")
        return value

    def state_path(self, spool_path: str) -> Path:
        """Return the state file: in ``state_dir``, else beside the spool."""
        folder = Path(self.state_dir) if self.state_dir is not None else Path(spool_path).parent
        return folder / STATE_FILE

    def secret_policy(self) -> SecretPolicy:
        """Return the rules a desired configuration's secrets are read under."""
        return SecretPolicy(self.secret_dir, self.secret_env_prefix,
                            folder_setting="remote_config.secret_dir in the probe's local file",
                            prefix_setting="remote_config.secret_env_prefix in the probe's local file")
