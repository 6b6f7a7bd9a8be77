"""The telemetry source's messages: its subscriptions and how one MQTT message becomes samples (pure).

``Subscription`` is one ``subscriptions`` entry of a ``telemetry`` source (``agent.sources.telemetry``, whose
docstring gives the configuration and the rules), checked at load: a topic filter MQTT accepts, names
``zonewatch.wire`` accepts, topic tags at levels the filter has, and two words for each boolean field.
``map_message`` turns one message (topic, payload, receive time) into the samples of the subscriptions whose
filters match it, and says what it skipped and why (``Problem``, counted by the source). Nothing here touches the
network: the source's listener hands every message it receives to ``map_message`` on the event loop's thread.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal

import paho.mqtt.client as mqtt
from pydantic import Field, ValidationInfo, field_validator

from zonewatch import strict
from zonewatch.wire import FieldValue, Sample

__all__ = ["Subscription", "Mapped", "Problem", "map_message", "DEFAULT_MAX_PAYLOAD", "MAX_TAG"]

DEFAULT_MAX_PAYLOAD: Final = 65536
_IDENT: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,62}$")  # zonewatch.wire's rule for measurement/tag/field names
MAX_TAG: Final = 256
_WHOLE: Final = "$"
_EARLIEST_NS: Final = 946_684_800 * 10**9  # 2000-01-01T00:00:00Z
_MAX_AHEAD_NS: Final = 600 * 10**9
_JSON_KINDS: Final[dict[type, str]] = {dict: "an object", list: "a list", str: "a string", type(None): "null",
                                        int: "a number", float: "a number"}


def _check_name(what: str, name: str) -> None:
    if not _IDENT.match(name):
        raise ValueError(f"{what} {name!r} must match {_IDENT.pattern} (letters, digits, _; not starting with a "
                         f"digit)")


def _check_filter(topic: str) -> str:
    """Return ``topic`` if it is a valid MQTT topic filter; raise ValueError saying why not."""
    if not topic:
        raise ValueError("topic filter is empty")
    if len(topic.encode()) > 65535 or "\0" in topic:
        raise ValueError(f"topic filter {topic!r} is too long or contains NUL")
    if topic.startswith("$share/"):
        raise ValueError(f"topic filter {topic!r}: shared subscriptions are not supported here")
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if ("+" in level or "#" in level) and len(level) > 1:
            raise ValueError(f"topic filter {topic!r}: level {level!r} mixes a wildcard with text; + and # must "
                             f"stand alone between slashes")
        if level == "#" and i != len(levels) - 1:
            raise ValueError(f"topic filter {topic!r}: # must be the last level")
    return topic


def _check_path(path: str) -> None:
    if path == _WHOLE:
        return
    if not path or any(not part for part in path.split(".")):
        raise ValueError(f"path {path!r} must be '$' (the whole payload) or dotted keys like 'battery.voltage'")


class Subscription(strict.Strict):
    """One topic filter and how its JSON payloads become samples of one measurement."""

    topic: str
    measurement: str
    qos: Literal[0, 1, 2] = 0
    tags: dict[str, str] = Field(default_factory=dict)
    topic_tags: dict[str, int] = Field(default_factory=dict)
    fields: dict[str, str]
    booleans: dict[str, list[str]] = Field(default_factory=dict)
    time: str | None = None

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        """Check that the topic is a valid MQTT topic filter."""
        return _check_filter(value)

    @field_validator("measurement")
    @classmethod
    def _measurement(cls, value: str) -> str:
        """Check the measurement name."""
        _check_name("measurement name", value)
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        """Check tag names and values."""
        for name, tag in value.items():
            _check_name("tag name", name)
            if not tag or len(tag) > MAX_TAG:
                raise ValueError(f"tag {name!r} must be a non-empty string of at most {MAX_TAG} characters")
        return value

    @field_validator("topic_tags")
    @classmethod
    def _topic_tags(cls, value: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        """Check topic tag names, that they do not repeat a fixed tag, and that each level exists."""
        topic, fixed = info.data.get("topic"), info.data.get("tags", {})
        for name, index in value.items():
            _check_name("tag name", name)
            if name in fixed:
                raise ValueError(f"tag {name!r} is given both in tags and in topic_tags")
            if topic is None:
                continue
            levels = topic.split("/")
            if levels[-1] == "#":
                continue  # the actual topic may be longer; checked per message
            if not -len(levels) <= index < len(levels):
                raise ValueError(f"tag {name!r}: topic {topic!r} has {len(levels)} levels (0..{len(levels) - 1}), "
                                 f"so there is no level {index}")
        return value

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, str]) -> dict[str, str]:
        """Check field names and payload paths."""
        if not value:
            raise ValueError("give at least one field (name: path in the payload)")
        for name, path in value.items():
            _check_name("field name", name)
            try:
                _check_path(path)
            except ValueError as exc:
                raise ValueError(f"field {name!r}: {exc}") from None
        return value

    @field_validator("booleans", mode="before")
    @classmethod
    def _yaml_booleans(cls, value: Any) -> Any:
        """Point out words YAML has already turned into booleans."""
        if isinstance(value, dict):
            for name, words in value.items():
                if isinstance(words, list) and any(isinstance(w, bool) for w in words):
                    raise ValueError(f"{name!r}: YAML reads on, off, yes, no, true and false without quotes as "
                                     f"booleans; quote the words, e.g. ['on', 'off']")
        return value

    @field_validator("booleans")
    @classmethod
    def _booleans(cls, value: dict[str, list[str]], info: ValidationInfo) -> dict[str, list[str]]:
        """Check that each entry names a field and gives two different words: true first, then false."""
        fields = info.data.get("fields")
        for name, words in value.items():
            if fields is not None and name not in fields:
                raise ValueError(f"{name!r} is not one of the fields ({', '.join(sorted(fields))})")
            if len(words) != 2 or words[0] == words[1]:
                raise ValueError(f"{name!r} must be two different words: [meaning true, meaning false], "
                                 f"e.g. [open, closed]")
        return value

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        """Check the time path."""
        if value is not None:
            _check_path(value)
        return value


@dataclass(frozen=True, slots=True)
class Problem:
    """Something in a message that could not be used; ``reason`` is a stable token for counting."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Mapped:
    """What one message gave: its samples, and what was skipped and why."""

    samples: list[Sample] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class _Missing(Exception):
    pass


def _resolve(doc: Any, path: str) -> Any:
    """Return the value at a dotted ``path`` in ``doc``; raise _Missing if it is not there."""
    if path == _WHOLE:
        return doc
    node = doc
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise _Missing(part)
    return node


def _to_ns(value: Any) -> int | None:
    """Return epoch nanoseconds from seconds, ms, us or ns told apart by magnitude; None if not a time."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    magnitude = abs(value)
    if magnitude < 1e11:
        scale = 10**9
    elif magnitude < 1e14:
        scale = 10**6
    elif magnitude < 1e17:
        scale = 10**3
    else:
        scale = 1
    exact = Decimal(value) if isinstance(value, int) else Decimal(repr(value))  # 1764290000.123 stays .123
    return int(exact * scale)


def _field_value(sub: Subscription, name: str, value: Any) -> FieldValue | Problem:
    kind = _JSON_KINDS.get(type(value), type(value).__name__)
    if isinstance(value, bool):
        return value
    if name in sub.booleans:  # a booleans field stays boolean: numbers are not taken
        true_word, false_word = sub.booleans[name]
        if value == true_word:
            return True
        if value == false_word:
            return False
        if isinstance(value, str):
            return Problem("unknown_string", f"field {name!r} is {value[:64]!r}, expected {true_word!r} or "
                                             f"{false_word!r}")
        return Problem("wrong_type", f"field {name!r} at {sub.fields[name]!r} is {kind}, expected a boolean, "
                                     f"{true_word!r} or {false_word!r}")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return Problem("bad_number", f"field {name!r}: {value} does not fit a float")
        if not math.isfinite(number):
            return Problem("bad_number", f"field {name!r} is {value}")
        return number
    return Problem("wrong_type", f"field {name!r} at {sub.fields[name]!r} is {kind}, expected a number or boolean")


def _topic_tags(sub: Subscription, topic: str) -> dict[str, str] | Problem:
    levels = topic.split("/")
    tags: dict[str, str] = {}
    for name, index in sub.topic_tags.items():
        if not -len(levels) <= index < len(levels):
            return Problem("bad_topic_tag", f"tag {name!r}: the topic has no level {index}")
        value = levels[index]
        if not value or len(value) > MAX_TAG:
            return Problem("bad_topic_tag", f"tag {name!r}: topic level {index} is empty or longer than {MAX_TAG}")
        tags[name] = value
    return tags


def _time(sub: Subscription, doc: Any, received_ns: int) -> tuple[int, Problem | None]:
    if sub.time is None:
        return received_ns, None
    try:
        raw = _resolve(doc, sub.time)
    except _Missing:
        return received_ns, Problem("bad_time", f"time {sub.time!r} is missing; used the receive time")
    ns = _to_ns(raw)
    if ns is None or not _EARLIEST_NS <= ns <= received_ns + _MAX_AHEAD_NS:
        shown = repr(raw)[:64]
        return received_ns, Problem("bad_time", f"time {sub.time!r} = {shown} is not a plausible epoch time in s, ms, "
                                                f"us or ns; used the receive time")
    return ns, None


def map_message(subscriptions: Sequence[Subscription], topic: str, payload: bytes, received_ns: int,
                max_payload_bytes: int = DEFAULT_MAX_PAYLOAD) -> Mapped:
    """Turn one MQTT message into samples of the subscriptions whose filters match its topic."""
    matching = [s for s in subscriptions if mqtt.topic_matches_sub(s.topic, topic)]
    if not matching:
        return Mapped(problems=[Problem("no_subscription", "no subscription's topic filter matches")])
    if len(payload) > max_payload_bytes:
        return Mapped(problems=[Problem("oversize", f"{len(payload)} bytes; the limit is {max_payload_bytes}")])
    try:
        doc = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Mapped(problems=[Problem("bad_json", f"not UTF-8: {exc.reason} at byte {exc.start}")])
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, too many digits, too deep
        return Mapped(problems=[Problem("bad_json", str(exc)[:200])])
    out = Mapped()
    for sub in matching:
        tags = _topic_tags(sub, topic)
        if isinstance(tags, Problem):
            out.problems.append(tags)
            continue
        fields: dict[str, FieldValue] = {}
        for name, path in sub.fields.items():
            try:
                raw = _resolve(doc, path)
            except _Missing as missing:
                out.problems.append(Problem("missing_field", f"field {name!r}: no {str(missing)!r} at {path!r}"))
                continue
            value = _field_value(sub, name, raw)
            if isinstance(value, Problem):
                out.problems.append(value)
            else:
                fields[name] = value
        if not fields:
            continue
        time_ns, problem = _time(sub, doc, received_ns)
        if problem is not None:
            out.problems.append(problem)
        out.samples.append(Sample(sub.measurement, {**sub.tags, **tags}, fields, time_ns))
    return out
