"""YAML text to plain data, with the line of every key: the first half of ``zonewatch.strict.load``.

Lines are counted as editors count them (line feeds only); a PyYAML error becomes one line without its snippet
(which may hold a secret); aliases that expand past ``MAX_ALIAS_VALUES`` values built again are refused (an
alias bomb), and so are merge keys, keys that are not strings, a key given twice and a recursive alias.
"""

from __future__ import annotations

import bisect
import re
from typing import Any

import yaml

from zonewatch.strict_errors import ConfigError, RefPath, key_line

MAX_ALIAS_VALUES = 100_000  # values built again through aliases, in one document

YAML_TAG = "tag:yaml.org,2002:"


class Lines:
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


def yaml_problem(exc: yaml.YAMLError, lines: Lines) -> tuple[int | None, str]:
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


def to_python(node: yaml.Node, path: RefPath, lines: dict[RefPath, int], source: str, numbers: Lines) -> Any:
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
            line = lines.get(at) if at and isinstance(at[-1], str) else key_line(at[:-1], lines)  # a list item
            raise ConfigError(source, line, at, f"aliases expand to more than {MAX_ALIAS_VALUES:,} values "
                              "(each use of an alias builds everything under its anchor again): write the values "
                              "out, or use fewer aliases")

    def scalar(n: yaml.Node, where: RefPath) -> Any:
        count(n, where)
        tag = n.tag.replace(YAML_TAG, "!!")
        if n.tag == YAML_TAG + "merge":
            raise ConfigError(source, line_of(n), where, "'<<' (a YAML merge key) is not supported")
        try:
            return constructor.construct_object(n, deep=True)
        except yaml.YAMLError as exc:
            line, problem = yaml_problem(exc, numbers)
            problem = problem.replace(YAML_TAG, "!!")
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
