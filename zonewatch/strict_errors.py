"""The loader's errors, and how pydantic's first validation error becomes one that names the key and its line.

Exceptions::

    ConfigError      a configuration that cannot be used; ``str()`` is the one line to print:
                     ``<file>:<line>: <key path>: <what was expected>``
    ValueError
     └─ SubkeyError  raised by a validator about a key below the value it validates (``path`` relative to it)

A value is never echoed where the key holds a ``Secret``. ``zonewatch.strict`` gives these names.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, ValidationError

RefPath = tuple[str | int, ...]


class ConfigError(Exception):
    """A configuration that cannot be used; ``str()`` is the one line to print (``message`` is one line too)."""

    def __init__(self, source: str, line: int | None, path: RefPath, message: str) -> None:
        where = f"{source}:{line}" if line else source
        key = display(path)
        message = _one_line(message)
        super().__init__(_one_line(f"{where}: {key}: {message}" if key else f"{where}: {message}"))
        self.source, self.line, self.path, self.message = source, line, path, message


def _one_line(text: str) -> str:
    """Return ``text`` with every character that is not printable (line breaks, tabs, control characters) escaped
    as Python would write it in a string (``\\n``, ``\\x08``), so that it prints on one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class SubkeyError(ValueError):
    """Raised by a validator about a key below the value it validates: ``path`` is relative to that value."""

    def __init__(self, path: RefPath, message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


def key_line(path: RefPath, lines: dict[RefPath, int]) -> int | None:
    """Return the line of ``path``, or of the nearest key above it that has one."""
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None


def display(path: RefPath) -> str:
    """Return a key path as ``zones[0].name`` (ConfigError escapes a key's line breaks)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def from_validation(model: type[BaseModel], exc: ValidationError, lines: dict[RefPath, int],
                     source: str) -> ConfigError:
    """Return the ConfigError for pydantic's first complaint, naming the key, its line and what was expected."""
    err = exc.errors(include_url=False)[0]
    data_path, leaf = _walk(model, err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        name = str(data_path[-1])
        known = sorted(leaf.model_fields) if isinstance(leaf, type) and issubclass(leaf, BaseModel) else []
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else (f"; known keys: {', '.join(known)}" if known else "")
        message = f"unknown key {name!r}{hint}"
    elif kind == "missing":
        message = "missing (required)"
    elif kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        key = str(ctx.get("discriminator", "type")).strip("'")
        message = f"{key} {ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
        data_path = data_path + (key,)
    elif isinstance(err.get("ctx", {}).get("error"), SubkeyError):
        error: SubkeyError = err["ctx"]["error"]
        data_path, message = data_path + error.path, error.message
    else:
        text = err["msg"]
        if text.startswith("Value error, "):
            text = text[len("Value error, ") :]
        else:
            text = text.replace("Input should be", "expected")
            if "input" in err and not isinstance(err["input"], dict | list):
                shown = err["input"]
                if _holds_secret(leaf, data_path):  # never echo what may be a secret
                    text = f"{text}, got a {type(shown).__name__}"
                else:
                    text = f"{text}, got {shown!r}"
        message = text
    return ConfigError(source, key_line(data_path, lines), data_path, message)


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[RefPath, Any]:
    """Follow a pydantic error location through the models; return the data path and the last model."""
    path: list[str | int] = []
    current: Any = model
    parent_model: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, str) and _is_union(current):
            member = _union_member(current, part)
            if member is not None:  # a discriminator tag: not a key in the data
                current = member
                parent_model = member
                continue
        path.append(part)
        if isinstance(current, type) and issubclass(current, BaseModel):
            parent_model = current
            info = current.model_fields.get(str(part))
            current = info.annotation if info is not None else None
        elif typing.get_origin(current) in (list, tuple):
            current = (typing.get_args(current) or (None,))[0]
        elif typing.get_origin(current) is dict:
            current = (typing.get_args(current) or (None, None))[1]
        else:
            current = None
    final = _unwrap(current)
    leaf = final if isinstance(final, type) and issubclass(final, BaseModel) else parent_model
    return tuple(path), leaf


def _holds_secret(model: Any, path: RefPath) -> bool:
    """Return True if the key at the end of ``path`` in ``model`` is, or contains, a Secret."""
    key = next((p for p in reversed(path) if isinstance(p, str)), None)
    if key is None or not (isinstance(model, type) and issubclass(model, BaseModel)):
        return False
    info = model.model_fields.get(key)
    return info is not None and "SecretStr" in repr(info.annotation)


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _union_member(tp: Any, tag: str) -> Any:
    for arg in typing.get_args(tp):
        arg = _unwrap(arg)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            field = arg.model_fields.get("type")
            if field is not None and tag in typing.get_args(field.annotation):
                return arg
    return None
