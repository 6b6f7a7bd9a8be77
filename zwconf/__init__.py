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
  load time and never printed (``repr`` and ``str`` show ``**********``).
- A model may define ``check_refs(self) -> Iterator[tuple[tuple[str | int, ...], str]]`` yielding the key path
  and message of every dangling cross-reference; the loader reports the first as a ``ConfigError``.

This package imports neither ``agent`` nor ``collector``; both import it.
"""

from __future__ import annotations

import bisect
import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, SecretStr, ValidationError

__all__ = [
    "ConfigError",
    "Strict",
    "Duration",
    "Secret",
    "RefPath",
    "load",
    "load_file",
    "parse_duration",
    "format_duration",
]

M = TypeVar("M", bound=BaseModel)
RefPath = tuple[str | int, ...]


class ConfigError(Exception):
    """A configuration that cannot be used; ``str()`` is the one line to print (``message`` is one line too)."""

    def __init__(self, source: str, line: int | None, path: RefPath, message: str) -> None:
        where = f"{source}:{line}" if line else source
        key = _display(path)
        message = _one_line(message)
        super().__init__(_one_line(f"{where}: {key}: {message}" if key else f"{where}: {message}"))
        self.source, self.line, self.path, self.message = source, line, path, message


def _one_line(text: str) -> str:
    """Return ``text`` with every character that is not printable (line breaks, tabs, control characters) escaped
    as Python would write it in a string (``\\n``, ``\\x08``), so that it prints on one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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


def _read_secret(value: Any) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        return SecretStr(value)
    if isinstance(value, dict) and len(value) == 1:
        ((kind, ref),) = value.items()
        if kind == "env" and isinstance(ref, str):
            if ref not in os.environ:
                raise ValueError(f"environment variable {ref} is not set")
            return SecretStr(os.environ[ref])
        if kind == "file" and isinstance(ref, str):
            try:
                return SecretStr(Path(ref).read_text().rstrip("\r\n"))
            except OSError as exc:
                raise ValueError(f"cannot read secret file {ref}: {exc.strerror}") from None
    raise ValueError("expected {env: VARIABLE}, {file: /path/to/secret} or a string")


Secret = Annotated[SecretStr, BeforeValidator(_read_secret)]


def load(model: type[M], text: str, source: str = "<config>") -> M:
    """Parse, validate and cross-check ``text`` as ``model``; raise ConfigError with one clear line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        line, problem = _yaml_problem(exc, _Lines(text))
        raise ConfigError(source, line, (), f"not valid YAML: {problem}") from None
    except RecursionError:  # PyYAML's composer recurses once per level of nesting
        raise ConfigError(source, None, (), "not valid YAML: nested too deeply") from None
    lines: dict[RefPath, int] = {}
    try:
        data = _to_python(node, (), lines, source, _Lines(text)) if node is not None else {}
    except RecursionError:
        raise ConfigError(source, None, (), "nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(source, 1, (), f"expected a mapping of keys at the top, got {type(data).__name__}")
    try:
        result = model.model_validate(data)
    except ValidationError as exc:
        raise _from_validation(model, exc, lines, source) from None
    check = getattr(result, "check_refs", None)
    if check is not None:
        for path, message in check():
            raise ConfigError(source, _line_of(path, lines), path, message)
    return result


def load_file(model: type[M], path: str | os.PathLike[str]) -> M:
    """Read ``path`` and load it as ``model``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), None, (), f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), None, (), "not UTF-8 text") from None
    return load(model, text, str(path))


_YAML_TAG = "tag:yaml.org,2002:"


class _Lines:
    """Line numbers (from 1) of character positions in one text, counting ``\n`` only: the numbering of
    editors, ``grep -n`` and ``sed``. (YAML also breaks lines at U+0085, U+2028 and U+2029, and its marks count
    those: a file holding one would have the error pointed at a line nobody can find.) The line breaks are
    found once, so numbering every key of a large inventory stays cheap."""

    def __init__(self, text: str) -> None:
        self._breaks = [m.start() for m in re.finditer("\n", text)]

    def at(self, index: int) -> int:
        return bisect.bisect_left(self._breaks, index) + 1

    def of(self, mark: yaml.Mark | None) -> int | None:
        return self.at(mark.index) if mark is not None else None


def _yaml_problem(exc: yaml.YAMLError, lines: _Lines) -> tuple[int | None, str]:
    """Return the line and a one-line account of a PyYAML error (``str(exc)`` spans several lines: marks and a
    snippet of the text, which may hold a secret)."""
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow; no mark, a position
        line = lines.at(exc.position) if isinstance(exc.position, int) else None
        character = exc.character  # the code point (an int) for text; a byte string for undecodable bytes
        shown = f"#x{character:04x}" if isinstance(character, int) else repr(character)
        return line, f"unacceptable character {shown}: {exc.reason}"
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or type(exc).__name__
        if exc.problem and exc.context:
            started = f" started at line {lines.of(exc.context_mark)}" if exc.context_mark is not None else ""
            problem = f"{problem} ({exc.context}{started})"
        return lines.of(mark), problem
    return None, str(exc) or type(exc).__name__


def _to_python(node: yaml.Node, path: RefPath, lines: dict[RefPath, int], source: str, numbers: _Lines) -> Any:
    """Build plain data from a YAML node tree, remembering the line of every key path."""
    constructor = yaml.SafeLoader("")
    open_nodes: set[int] = set()  # the collections being built: an alias to one of them is a cycle

    def line_of(n: yaml.Node) -> int:
        return numbers.at(n.start_mark.index)

    def scalar(n: yaml.Node, where: RefPath) -> Any:
        tag = n.tag.replace(_YAML_TAG, "!!")
        if n.tag == _YAML_TAG + "merge":
            raise ConfigError(source, line_of(n), where, "'<<' (a YAML merge key) is not supported")
        try:
            return constructor.construct_object(n, deep=True)
        except yaml.YAMLError as exc:
            line, problem = _yaml_problem(exc, numbers)
            problem = problem.replace(_YAML_TAG, "!!")
            raise ConfigError(source, line or line_of(n), where, f"bad value: {problem}") from None
        except Exception:  # a constructor's own failure (!!int abc, !!timestamp x); its message may quote a secret
            raise ConfigError(source, line_of(n), where, f"bad value: not a valid {tag}") from None

    def build(n: yaml.Node, where: RefPath) -> Any:
        lines.setdefault(where, line_of(n))
        if isinstance(n, yaml.CollectionNode):
            if id(n) in open_nodes:
                raise ConfigError(source, line_of(n), where,
                                  "recursive alias: the anchored value contains itself")
            open_nodes.add(id(n))
            try:
                return collection(n, where)
            finally:
                open_nodes.discard(id(n))
        return scalar(n, where)

    def collection(n: yaml.CollectionNode, where: RefPath) -> Any:
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in n.value:
                key = scalar(key_node, where)
                line = line_of(key_node)
                if not isinstance(key, str):
                    raise ConfigError(source, line, where, f"key {key!r} must be a string")
                if key in out:
                    raise ConfigError(source, line, where + (key,), "key given twice")
                lines[where + (key,)] = line
                out[key] = build(value_node, where + (key,))
            return out
        return [build(item, where + (i,)) for i, item in enumerate(n.value)]

    return build(node, path)


def _line_of(path: RefPath, lines: dict[RefPath, int]) -> int | None:
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None


def _display(path: RefPath) -> str:
    """Return a key path as ``zones[0].name`` (ConfigError escapes a key's line breaks)."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _from_validation(model: type[BaseModel], exc: ValidationError, lines: dict[RefPath, int],
                     source: str) -> ConfigError:
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
    return ConfigError(source, _line_of(data_path, lines), data_path, message)


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

