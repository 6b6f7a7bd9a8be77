"""Meta-tests: the package boundaries and the source registry stay as the architecture says."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _imports(package: str) -> dict[str, set[str]]:
    """Map each module file of ``package`` to the absolute module names it imports."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
        out[str(path.relative_to(ROOT))] = names
    return out


def test_collector_imports_nothing_from_agent_but_the_wire_contract() -> None:
    offenders = {
        f: sorted(n for n in names if n.split(".")[0] == "agent" and n not in ("agent", "zonewatch.wire"))
        for f, names in _imports("collector").items()
    }
    assert {f: n for f, n in offenders.items() if n} == {}


def test_agent_imports_nothing_from_collector() -> None:
    offenders = {f: sorted(n for n in names if n.split(".")[0] == "collector")
                 for f, names in _imports("agent").items()}
    assert {f: n for f, n in offenders.items() if n} == {}


def test_wire_uses_the_standard_library_only() -> None:
    import sys

    for path, names in _imports("zonewatch/wire").items():
        third_party = {n.split(".")[0] for n in names} - set(sys.stdlib_module_names) - {"__future__", "zonewatch"}
        assert third_party == set(), path


@pytest.mark.parametrize("shared", ["zonewatch", "zonewatch.strict"])
def test_shared_packages_import_neither_side(shared: str) -> None:
    offenders = {f: sorted(n for n in names if n.split(".")[0] in ("agent", "collector"))
                 for f, names in _imports(shared).items()}
    assert {f: n for f, n in offenders.items() if n} == {}


def test_every_source_has_its_module_test_and_example() -> None:
    from agent.sources.registry import SOURCES

    example = yaml.safe_load((ROOT / "config" / "agent.example.yaml").read_text())
    in_example = {s["type"] for s in example["sources"]}
    for name, (config_cls, source_cls) in SOURCES.items():
        assert (ROOT / "agent" / "sources" / f"{name}.py").exists(), name
        assert (ROOT / "tests" / "agent" / "sources" / f"test_{name}.py").exists(), name
        assert source_cls.__module__ == f"agent.sources.{name}"
        assert config_cls.model_fields["type"].annotation.__args__ == (name,)
        assert name in in_example, f"config/agent.example.yaml has no source of type {name}"


@pytest.mark.parametrize("name", ["agent", "collector"])
def test_help_explains_every_command(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    cli = importlib.import_module(f"{name}.cli")
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    parser = cli._parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for command in commands:
        assert f"  {command} " in out, f"{name} --help does not explain {command!r}"
