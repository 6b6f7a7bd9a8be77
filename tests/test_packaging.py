"""What the wheel carries: every package, and every file beside the code that a command reads.

Setuptools puts only Python modules in the wheel unless ``[tool.setuptools.package-data]`` names the rest, so a
data file read with a path relative to its module (the demo's device walks, the SNMP profiles) works from a
checkout and is missing once installed. This test finds every such file in the packages and requires a
package-data pattern for it; ``tests/integration/test_install.py`` builds the wheel and runs the commands."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _package_data() -> dict[str, list[str]]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(doc["tool"]["setuptools"]["package-data"])


def _includes() -> list[str]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(doc["tool"]["setuptools"]["packages"]["find"]["include"])


def _packages() -> list[str]:
    return [pattern.rstrip("*") for pattern in _includes()]


def _declared(path: Path, package_data: dict[str, list[str]]) -> bool:
    """True if a package-data pattern of ``path``'s package or of a package above it matches it."""
    relative = path.relative_to(ROOT)
    for depth in range(len(relative.parts) - 1, 0, -1):
        package, rest = ".".join(relative.parts[:depth]), "/".join(relative.parts[depth:])
        if any(fnmatch.fnmatchcase(rest, pattern) for pattern in package_data.get(package, [])):
            return True
    return False


def test_every_data_file_in_the_packages_goes_into_the_wheel() -> None:
    package_data = _package_data()
    data = [p for name in _packages() for p in sorted((ROOT / name).rglob("*"))
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert {p.relative_to(ROOT).as_posix() for p in data} >= {"collector/demo_data/bts-01.snmprec",
                                                              "agent/profiles/if_mib.yaml"}
    missing = [p.relative_to(ROOT).as_posix() for p in data if not _declared(p, package_data)]
    assert missing == [], f"add these to [tool.setuptools.package-data] in pyproject.toml: {missing}"


def test_every_top_level_package_goes_into_the_wheel() -> None:
    found = sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name != "tests")
    missing = [name for name in found if not any(fnmatch.fnmatchcase(name, pattern) for pattern in _includes())]
    assert missing == [], f"add these to [tool.setuptools.packages.find] include in pyproject.toml: {missing}"


def test_the_check_sees_an_undeclared_file() -> None:
    assert not _declared(ROOT / "collector/demo_data/bts-01.snmprec", {"agent.profiles": ["*.yaml"]})
    assert _declared(ROOT / "collector/demo_data/bts-01.snmprec", {"collector": ["demo_data/*.snmprec"]})
    assert _declared(ROOT / "agent/profiles/if_mib.yaml", {"agent.profiles": ["*.yaml"]})
