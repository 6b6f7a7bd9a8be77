"""The ``alerting.acks`` section: where acknowledgements are kept, and who may make them over HTTP.

::

    alerting:
      acks:
        path: /var/lib/zonewatch/acks.db      # default: acks.db beside alerting.state_path
        keep: 400d                            # resolved incidents kept this long (the monthly report reads them)
        tokens:                               # the HTTP API (beside /metrics on http.listen) takes these only
          noc: {token: {file: /etc/zonewatch/secrets/ack-noc}}               # any alert
          viettel: {token: {env: ZW_ACK_VIETTEL}, carrier: 452-04}          # only alerts labelled carrier=452-04

Tokens are read as every other secret of the collector configuration is (``strict.Secret``: a file writable by
its owner only, or an environment variable); ``collector.alerting.ackapi`` serves the API.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from pydantic import field_validator, model_validator

from zonewatch.strict import Duration, Secret, Strict, SubkeyError

__all__ = ["AckConfig", "AckToken", "FILE_NAME", "MIN_TOKEN", "default_path"]

FILE_NAME: Final = "acks.db"
MIN_TOKEN: Final = 16
_PLMN = re.compile(r"^\d{3}-\d{2,3}$")


class AckToken(Strict):
    """One bearer token of the acknowledgement API: an operator's (any alert) or a carrier's (its own only)."""

    token: Secret
    carrier: str | None = None   # a PLMN: this token may acknowledge only the alerts labelled with it

    @field_validator("carrier")
    @classmethod
    def _carrier(cls, value: str | None) -> str | None:
        if value is not None and not _PLMN.match(value):
            raise ValueError(f"expected a PLMN like '452-04' (MCC-MNC), got {value!r}")
        return value


class AckConfig(Strict):
    """The ``alerting.acks`` section."""

    path: str | None = None                 # default: acks.db beside alerting.state_path
    keep: Duration = 400 * 86400.0          # resolved incidents older than this are forgotten (reports read them)
    tokens: dict[str, AckToken] = {}        # name -> token; the API refuses every request without one of them

    @model_validator(mode="after")
    def _distinct(self) -> AckConfig:
        seen: dict[str, str] = {}
        for name, entry in self.tokens.items():
            value = entry.token.get_secret_value()
            if len(value) < MIN_TOKEN:
                raise SubkeyError(("tokens", name, "token"), f"a token needs at least {MIN_TOKEN} characters (it is "
                                  "all that stands between the network and acknowledging alerts)")
            if value in seen:
                raise SubkeyError(("tokens", name, "token"), f"the same token as tokens.{seen[value]}: each holder "
                                  "needs a token of its own, or an ack cannot say who made it")
            seen[value] = name
        return self


def default_path(state_path: str, cfg: AckConfig) -> str:
    """Return where the store is: ``cfg.path``, else ``acks.db`` beside the tracker's ``state_path``."""
    return cfg.path or str(Path(state_path).parent / FILE_NAME)
