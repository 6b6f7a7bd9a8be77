"""What the wheel carries: every package, and every file beside the code that a command reads.

Setuptools puts only Python modules in the wheel unless ``[tool.setuptools.package-data]`` names the rest, so a
data file read with a path relative to its module (the demo's device walks, the SNMP profiles) works from a
checkout and is missing once installed. This test finds every such file in the packages and requires a
package-data pattern for it; ``tests/integration/test_install.py`` builds the wheel and runs the commands.

And what each extra brings: a probe and a collector nothing of the report or the demo, the demo all it asks for,
each optional package the extra its error names (``zonewatch.extras``)."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from zonewatch.extras import EXTRAS

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


def _extras() -> dict[str, list[str]]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(doc["project"]["optional-dependencies"])


def _installs(extras: str) -> set[str]:
    """The distributions (lower case) ``pip install 'zonewatch[extras]'`` asks for, through ``zonewatch[...]`` too."""
    declared, names = _extras(), set()
    for extra in extras.split(","):
        for requirement in declared[extra]:
            found = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[([^]]*)\])?", requirement)
            assert found is not None, requirement
            name, inner = found.group(1).lower(), found.group(2)
            names |= _installs(inner) if name == "zonewatch" and inner else {name}
    return names


def test_each_optional_package_is_in_the_extra_its_error_names() -> None:
    for module, extra in EXTRAS.items():
        assert module in _installs(extra), f"zonewatch.extras.EXTRAS says {module} comes with [{extra}]"


def test_a_probe_and_a_collector_install_no_package_of_the_report_or_the_demo() -> None:
    assert _installs("agent") & set(EXTRAS) == set()
    assert _installs("collector") & set(EXTRAS) == {"amqtt"}   # `run` with no mqtt section embeds a broker
    assert "matplotlib" not in _installs("collector") and "matplotlib" in _installs("collector,report")


def test_the_demo_install_brings_every_package_the_demo_asks_for() -> None:
    from collector.demo import DEMO_EXTRAS, NEEDS

    assert set(NEEDS) | {"rich"} <= _installs(DEMO_EXTRAS)
    assert set(_extras()) == {"agent", "collector", "report", "demo", "dev"}
    assert _installs("dev") >= _installs("agent,collector,report,demo")
