"""A sample's or event's field read as the facts keep it: a bool or a number, None when it is absent."""

from __future__ import annotations

from zonewatch import wire


def _bool(value: wire.FieldValue | None) -> bool | None:
    return None if value is None else bool(value)


def _number(value: wire.FieldValue | None) -> float | None:
    return None if value is None or isinstance(value, bool) else float(value)
