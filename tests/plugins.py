"""Helpers for the registry tests: the types the configuration accepts (read from its discriminated unions, so a
type added there and not registered fails a test) and a receiver type the configuration does not ship."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from zonewatch import strict


def accepted_types(model: type[BaseModel], field: str) -> set[str]:
    """Return every ``type`` the discriminated unions under ``model.field`` accept, from the JSON schema."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            discriminator = node.get("discriminator")
            if isinstance(discriminator, dict) and discriminator.get("propertyName") == "type":
                found.update(discriminator["mapping"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(model.model_json_schema()["properties"][field])
    return found


class PagerReceiver(strict.Strict):
    """A receiver type the configuration does not ship, as a new plugin would add one."""

    type: Literal["pager"]
    number: str
