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
"""

from __future__ import annotations

import bisect
import difflib
import errno
import logging
import os
import re
import stat
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    SecretStr,
    ValidationError,
    ValidationInfo,
)

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
RefPath = tuple[str | int, ...]

MAX_CONFIG_BYTES = 4 * 2**20  # a configuration or inventory file
MAX_ALIAS_VALUES = 100_000  # values built again through aliases, in one document
MAX_SECRET_BYTES = 64 * 2**10  # a secret file

log = logging.getLogger(__name__)


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


class SubkeyError(ValueError):
    """Raised by a validator about a key below the value it validates: ``path`` is relative to that value."""

    def __init__(self, path: RefPath, message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


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


SECRET_POLICY = "zonewatch.strict.secret_policy"  # the context key of a SecretPolicy (see the module docstring)


@dataclass(frozen=True)
class SecretPolicy:
    """Where the secrets of a configuration written elsewhere may come from (its reader's own rules).

    ``folder``: ``{file: NAME}`` is a name inside this folder, read without following links
    (``read_secret_file(NAME, root=folder)``); None refuses files. ``env_prefix``: ``{env: NAME}`` must start
    with it. A plain string is always refused. ``folder_setting`` and ``prefix_setting`` name, in errors, the
    settings that decide them."""

    folder: str | None
    env_prefix: str
    folder_setting: str = "the reader's configuration"
    prefix_setting: str = "the reader's configuration"


def _read_secret(value: Any, info: ValidationInfo) -> SecretStr:
    if isinstance(value, SecretStr):
        return value
    policy = (info.context or {}).get(SECRET_POLICY)
    if isinstance(policy, SecretPolicy):
        return _read_secret_under(value, policy)
    if isinstance(value, str):
        return SecretStr(value)
    if isinstance(value, dict) and len(value) == 1:
        ((kind, ref),) = value.items()
        if kind == "env" and isinstance(ref, str):
            if ref not in os.environ:
                raise ValueError(f"environment variable {ref} is not set")
            return SecretStr(os.environ[ref])
        if kind == "file" and isinstance(ref, str):
            return SecretStr(read_secret_file(ref))
    raise ValueError("expected {env: VARIABLE}, {file: /path/to/secret} or a string")


def _read_secret_under(value: Any, policy: SecretPolicy) -> SecretStr:
    """Read a secret reference of a configuration written elsewhere, as ``policy`` allows; never echo a value."""
    if isinstance(value, str):
        raise ValueError("a secret may not be written out here: give {env: NAME} or {file: NAME}, read where the "
                         "configuration is used")
    if isinstance(value, dict) and len(value) == 1:
        ((kind, ref),) = value.items()
        if kind == "env" and isinstance(ref, str):
            if not policy.env_prefix or not ref.startswith(policy.env_prefix):
                raise ValueError(f"environment variable {ref} may not be read here: its name must start with "
                                 f"{policy.env_prefix!r} (set by {policy.prefix_setting})")
            if ref not in os.environ:
                raise ValueError(f"environment variable {ref} is not set")
            return SecretStr(os.environ[ref])
        if kind == "file" and isinstance(ref, str):
            if policy.folder is None:
                raise ValueError(f"no secret file may be read here: {policy.folder_setting} names no folder")
            return SecretStr(read_secret_file(ref, root=policy.folder))
    raise ValueError("expected {env: VARIABLE} or {file: NAME}")


_READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK  # NONBLOCK: a FIFO must not hang the open
_FOLDER = os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY


def read_secret_file(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> str:
    """Return the secret held in a file, without its trailing line break; raise ValueError naming the file.

    Refused: anything but a regular file (a device such as ``/dev/zero``, a FIFO, a folder: checked on the open
    file, so it cannot be swapped after the check), a file its group or others may write (they could choose the
    secret), a file larger than ``MAX_SECRET_BYTES`` and one that is not UTF-8. A file every user may read is
    taken, with a warning logged: the secret is out already, and refusing would not take it back.

    With ``root``, ``path`` is a name relative to that folder and must stay inside it: no leading ``/``, no
    ``..``, and no symbolic link on the way (each step is opened with ``O_NOFOLLOW`` from the one before, so a
    link planted in the folder, or a step swapped for one, cannot send the read elsewhere). The folders on the
    way may not be writable by group or others either.
    """
    name = os.fspath(path)
    shown = os.path.join(os.fspath(root), name) if root is not None else name
    try:
        fd = os.open(name, _READ) if root is None else _open_beneath(os.fspath(root), name)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and root is not None:
            raise ValueError(f"cannot read secret file {shown}: it, or a folder on the way, is a symbolic link "
                             f"(it must be a file inside {os.fspath(root)} itself)") from None
        raise ValueError(f"cannot read secret file {shown}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        _check_secret_mode(info, shown)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_SECRET_BYTES:
            chunk = os.read(fd, MAX_SECRET_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ValueError(f"cannot read secret file {shown}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_SECRET_BYTES:
        raise ValueError(f"secret file {shown} is larger than {MAX_SECRET_BYTES // 1024} KiB")
    try:
        return b"".join(chunks).decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError(f"secret file {shown} is not UTF-8 text") from None


def _open_beneath(root: str, name: str) -> int:
    """Open ``name`` inside the folder ``root``, one step at a time and following no symbolic link."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in name:
        raise ValueError(f"secret file {name!r} must be a name inside {root} (no leading '/', no '.' or '..')")
    fd = os.open(root, _FOLDER)
    try:
        _check_folder(os.fstat(fd), root)
        for i, part in enumerate(parts[:-1]):
            step = os.open(part, _FOLDER | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = step
            _check_folder(os.fstat(fd), os.path.join(root, *parts[: i + 1]))
        return os.open(parts[-1], _READ | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


def _check_folder(info: os.stat_result, shown: str) -> None:
    if info.st_mode & 0o022:
        raise ValueError(f"secret folder {shown} may be written by {_writers(info.st_mode)} (mode "
                         f"{stat.S_IMODE(info.st_mode):04o}): anyone who may write it may plant a secret; "
                         "make it writable by its owner only (chmod go-w)")


def _check_secret_mode(info: os.stat_result, shown: str) -> None:
    mode = info.st_mode
    if not stat.S_ISREG(mode):
        raise ValueError(f"secret file {shown} is not a regular file (it is {_kind(mode)})")
    if mode & 0o022:
        raise ValueError(f"secret file {shown} may be written by {_writers(mode)} (mode {stat.S_IMODE(mode):04o}): "
                         "make it writable by its owner only (chmod go-w)")
    if mode & 0o004:
        log.warning("secret file %s may be read by every user (mode %04o): chmod o-r", shown, stat.S_IMODE(mode))


def _writers(mode: int) -> str:
    return {0o020: "its group", 0o002: "every user"}.get(mode & 0o022, "its group and every user")


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a file"


Secret = Annotated[SecretStr, BeforeValidator(_read_secret)]


def load(model: type[M], text: str, source: str = "<config>", *, context: Mapping[str, Any] | None = None) -> M:
    """Parse, validate and cross-check ``text`` as ``model``; raise ConfigError with one clear line.

    ``context`` is handed to the model's validators (pydantic's validation context).
    """
    if len(text) > MAX_CONFIG_BYTES // 4 and len(text.encode("utf-8", "surrogatepass")) > MAX_CONFIG_BYTES:
        raise ConfigError(source, None, (), _too_large())
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
        result = model.model_validate(data, context=dict(context) if context is not None else None)
    except ValidationError as exc:
        raise _from_validation(model, exc, lines, source) from None
    check = getattr(result, "check_refs", None)
    if check is not None:
        for path, message in check():
            raise ConfigError(source, _line_of(path, lines), path, message)
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
    """Build plain data from a YAML node tree, remembering the line of every key path.

    An alias is the node of its anchor, met again: each time it is met, what is under it is built again. Those
    values built again are counted, and past MAX_ALIAS_VALUES the document is refused (ten aliases to a list of
    ten aliases to ... : 10**9 values from a few hundred bytes). What is built once is bounded by the file size.
    """
    constructor = yaml.SafeLoader("")
    open_nodes: set[int] = set()  # the collections being built: an alias to one of them is a cycle
    seen: set[int] = set()  # every node built at least once
    built = 0
    alias_at: list[RefPath] = []  # where the outermost alias being built again is used

    def line_of(n: yaml.Node) -> int:
        return numbers.at(n.start_mark.index)

    def count(n: yaml.Node, where: RefPath) -> None:
        nonlocal built
        built += 1
        seen.add(id(n))
        if built - len(seen) > MAX_ALIAS_VALUES:
            at = alias_at[0] if alias_at else where
            line = lines.get(at) if at and isinstance(at[-1], str) else _line_of(at[:-1], lines)  # a list item
            raise ConfigError(source, line, at, f"aliases expand to more than {MAX_ALIAS_VALUES:,} values "
                              "(each use of an alias builds everything under its anchor again): write the values "
                              "out, or use fewer aliases")

    def scalar(n: yaml.Node, where: RefPath) -> Any:
        count(n, where)
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
            again = id(n) in seen and not alias_at
            if again:
                alias_at.append(where)
            count(n, where)
            open_nodes.add(id(n))
            try:
                return collection(n, where)
            finally:
                open_nodes.discard(id(n))
                if again:
                    alias_at.clear()
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

