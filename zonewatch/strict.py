"""Strict YAML configuration shared by the agent and the collector.

Every configuration file is read the same way:

- ``load(Model, text, source)`` is pure: it parses, validates and cross-checks, and either returns the
  model or raises ``ConfigError`` whose message is one line: ``<file>:<line>: <key path>: <what was expected>``.
  A line break or other control character in a key or value it quotes is shown escaped (``\\n``), and a
  YAML error is told in one line too (what PyYAML found, without its marks and snippets).
- ``load_file(Model, path)`` reads the file and calls ``load``.
- Models derive from ``Strict``: an unknown key is an error (with a "did you mean" hint), types are not
  coerced (``"5"`` is not a number), and values are frozen.
- ``Duration`` takes strings with units (``"500ms"``, ``"30s"``, ``"1m30s"``, ``"2h"``) and gives seconds.
- ``Secret`` takes ``{env: NAME}``, ``{file: /path}`` or, for a lab, a literal string; the value is read at
  load time and never printed (``repr`` and ``str`` show ``**********``). A secret file is read by
  ``read_secret_file``: a regular file of at most 64 KiB that only its owner may write.
- A validator whose complaint is about a key below the one it validates raises ``SubkeyError`` with that key's
  path (relative to the value validated); the error then names the key and its line.
- A model's validators may read ``context``, passed to ``load`` and ``load_file`` (pydantic's validation
  context): how the collector hands the inventory the secrets its receivers may use.
- A configuration that comes from elsewhere (a probe's desired configuration, sent by the collector) is
  loaded with a ``SecretPolicy`` in its context (``SECRET_POLICY``): its secrets are then references only
  (never a plain string), ``{file: NAME}`` a name inside the policy's folder, ``{env: NAME}`` a variable with
  the policy's prefix; what its author may not make the reader open or send is refused with the key and line.
- Bounds: a file larger than ``MAX_CONFIG_BYTES`` (4 MiB) is refused unread, and so is a document whose aliases
  expand to more than ``MAX_ALIAS_VALUES`` (100,000) values built again (a "billion laughs" alias bomb).
- A model may define ``check_refs(self) -> Iterator[tuple[tuple[str | int, ...], str]]`` yielding the key path
  and message of every dangling cross-reference; the loader reports the first as a ``ConfigError``.

This package imports neither ``agent`` nor ``collector``; both import it.

This module is the loader's public surface (``__all__``: import every name from here) with the models' base, the
durations and ``load``; its parts live beside it: ``strict_yaml`` (YAML text to plain data with the line of every
key, the alias bound), ``strict_errors`` (``ConfigError``, ``SubkeyError``, a pydantic error turned into one
line naming the key) and ``strict_secrets`` (``Secret``'s sources, ``SecretPolicy``, ``read_secret_file``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    SecretStr,
    ValidationError,
)

from zonewatch.strict_errors import ConfigError, RefPath, SubkeyError, from_validation, key_line
from zonewatch.strict_secrets import (
    MAX_SECRET_BYTES,
    SECRET_POLICY,
    SecretPolicy,
    read_secret,
    read_secret_file,
)
from zonewatch.strict_yaml import MAX_ALIAS_VALUES, Lines, to_python, yaml_problem

__all__ = [
    "ConfigError",
    "Strict",
    "Duration",
    "Secret",
    "RefPath",
    "SubkeyError",
    "MAX_CONFIG_BYTES",
    "MAX_ALIAS_VALUES",
    "MAX_SECRET_BYTES",
    "load",
    "load_file",
    "read_secret_file",
    "SecretPolicy",
    "SECRET_POLICY",
    "parse_duration",
    "format_duration",
    "PositiveDuration",
]

M = TypeVar("M", bound=BaseModel)

MAX_CONFIG_BYTES = 4 * 2**20  # a configuration or inventory file


class Strict(BaseModel):
    """Base of every configuration model: unknown keys and coercions are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: Any) -> float:
    """Return the seconds in a duration string such as ``"1m30s"``."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"expected a duration string with a unit, like '30s' or '1m30s', got {value!r}")
    text = value.strip()
    if not _DURATION.match(text):
        raise ValueError(f"expected a duration like '500ms', '30s', '1m30s' or '2h', got {value!r}")
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Return the shortest duration string for ``seconds`` (inverse of parse_duration)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)]


def _longer_than_zero(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    return seconds


# A duration that must not be zero: an interval, a timeout, a wait.
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_longer_than_zero),
                             PlainSerializer(format_duration, return_type=str)]


Secret = Annotated[SecretStr, BeforeValidator(read_secret)]


def load(model: type[M], text: str, source: str = "<config>", *, context: Mapping[str, Any] | None = None) -> M:
    """Parse, validate and cross-check ``text`` as ``model``; raise ConfigError with one clear line.

    ``context`` is handed to the model's validators (pydantic's validation context).
    """
    if len(text) > MAX_CONFIG_BYTES // 4 and len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ConfigError(source, None, (), _too_large())
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        line, problem = yaml_problem(exc, Lines(text))
        raise ConfigError(source, line, (), f"not valid YAML: {problem}") from None
    except RecursionError:  # PyYAML's composer recurses once per level of nesting
        raise ConfigError(source, None, (), "not valid YAML: nested too deeply") from None
    lines: dict[RefPath, int] = {}
    try:
        data = to_python(node, (), lines, source, Lines(text)) if node is not None else {}
    except RecursionError:
        raise ConfigError(source, None, (), "nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(source, 1, (), f"expected a mapping of keys at the top, got {type(data).__name__}")
    try:
        result = model.model_validate(data, context=dict(context) if context is not None else None)
    except ValidationError as exc:
        raise from_validation(model, exc, lines, source) from None
    check = getattr(result, "check_refs", None)
    if check is not None:
        for path, message in check():
            raise ConfigError(source, key_line(path, lines), path, message)
    return result


def load_file(model: type[M], path: str | os.PathLike[str], *, context: Mapping[str, Any] | None = None) -> M:
    """Read ``path`` (at most MAX_CONFIG_BYTES of it) and load it as ``model``."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(str(path), None, (), f"cannot read: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(str(path), None, (), _too_large())
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(str(path), None, (), "not UTF-8 text") from None
    return load(model, text, str(path), context=context)


def _too_large() -> str:
    return f"larger than {MAX_CONFIG_BYTES // 2**20} MiB, the most a configuration file may hold"
