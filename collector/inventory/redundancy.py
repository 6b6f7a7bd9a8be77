"""The inventory's redundancy groups: the routes that carry one service and how many of them it needs.

``redundancy_groups.<id>`` is a ``RedundancyGroup``; each ``Member`` is a link, a device or a traced path
(``PathRef``), and ``MinUp`` says what the service and its redundancy need (ServiceOutage, RedundancyLost).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from zonewatch.strict import Strict


class PathRef(Strict):
    """A traced path: probe ``probe`` tracing ``target`` sees the route it knows as ``name``."""

    probe: str
    target: str
    name: str


class Member(Strict):
    """One member of a redundancy group: exactly one of a link, a device or a traced path."""

    link: str | None = None
    device: str | None = None
    path: PathRef | None = None

    @model_validator(mode="after")
    def _one(self) -> Member:
        given = [k for k in ("link", "device", "path") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a member is exactly one of link, device or path, got {given or 'none'}")
        return self

    @property
    def key(self) -> str:
        """Return a stable name for the member (``link:viettel-primary``, ``path:p1/10.0.0.1/primary``)."""
        if self.link is not None:
            return f"link:{self.link}"
        if self.device is not None:
            return f"device:{self.device}"
        assert self.path is not None
        return f"path:{self.path.probe}/{self.path.target}/{self.path.name}"


class MinUp(Strict):
    """How many members of a redundancy group must be up, said apart for the service and for its redundancy."""

    service: Annotated[int, Field(ge=1)] = 1        # fewer up: ServiceOutage
    redundancy: Annotated[int, Field(ge=1)] | None = None   # fewer up: RedundancyLost (default: every member)

    @model_validator(mode="before")
    @classmethod
    def _not_a_number(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(f"min_up is a mapping now, not a number ({value}): say what the service needs and "
                             f"what redundancy needs, e.g. {{service: 1, redundancy: {value}}} (fewer than service "
                             "up: ServiceOutage; fewer than redundancy up: RedundancyLost)")
        return value


class RedundancyGroup(Strict):
    """Routes (links, devices or paths) that carry one service, and how many of them it needs.

    Fewer than ``min_up.service`` members up (default 1): ServiceOutage (critical). Fewer than
    ``min_up.redundancy`` (default: all of them) but at least the service's need: RedundancyLost (warning);
    ServiceOutage mutes RedundancyLost. ``site`` and ``area`` label its alerts (default: the site and area
    every link and device member shares, if they share one).
    """

    zone: str
    carriers: list[str] = Field(min_length=1)
    members: list[Member] = Field(min_length=2)
    min_up: MinUp = MinUp()
    site: str | None = None
    area: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _min_up(self) -> RedundancyGroup:
        total = len(self.members)
        redundancy = self.redundant_needs
        if not 1 <= redundancy <= total:
            raise ValueError(f"min_up.redundancy must be between 1 and the number of members ({total}), "
                             f"got {redundancy}")
        if self.min_up.service > redundancy:
            raise ValueError(f"min_up.service ({self.min_up.service}) cannot be more than min_up.redundancy "
                             f"({redundancy}{'' if self.min_up.redundancy else ': every member'})")
        return self

    @property
    def redundant_needs(self) -> int:
        """Return how many members must be up for the service to be redundant (all unless said otherwise)."""
        return self.min_up.redundancy if self.min_up.redundancy is not None else len(self.members)

    @property
    def service_needs(self) -> int:
        """Return how many members must be up for the service to run at all."""
        return self.min_up.service
