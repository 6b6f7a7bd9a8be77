"""Optional packages: a command without its package says in one line which extra to install, and nothing a probe or
``zonewatch-collector run`` imports pulls in the report's or the demo's packages.

A package is made missing the way Python itself reports one: ``sys.modules[name] = None`` makes every import
of it raise ModuleNotFoundError (in this process through monkeypatch, in a child through ``BLOCKED``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import free_port
from zonewatch.extras import EXTRAS, MissingExtra, require

ROOT = Path(__file__).resolve().parents[1]
# argv: the packages to block (comma-separated), then the collector's command line.
BLOCKED = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from collector.cli import main
sys.exit(main(sys.argv[2:]))
"""


def collector_without(packages: str, *argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKED, packages, *map(str, argv)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)


# ------------------------------------------------------------------------------------------------ the helper


def test_a_missing_package_names_the_command_and_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtra) as missing:
        require("matplotlib", "zonewatch-collector report")
    assert str(missing.value) == "zonewatch-collector report needs matplotlib: pip install 'zonewatch[report]'"


def test_a_missing_submodule_names_the_package_and_the_extras_the_caller_gives(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "amqtt.broker", None)
    with pytest.raises(MissingExtra) as missing:
        require("amqtt.broker", "zonewatch-collector demo", "agent,collector,demo")
    assert str(missing.value) == "zonewatch-collector demo needs amqtt: pip install 'zonewatch[agent,collector,demo]'"


def test_a_package_whose_own_dependency_is_missing_says_which(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "zw_half_installed").mkdir()
    (tmp_path / "zw_half_installed/__init__.py").write_text("import zw_never_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(EXTRAS, "zw_half_installed", "demo")
    with pytest.raises(MissingExtra) as missing:
        require("zw_half_installed", "the demo")
    assert str(missing.value) == ("the demo needs zw_half_installed (No module named 'zw_never_installed'): "
                                  "pip install 'zonewatch[demo]'")


def test_an_installed_package_passes() -> None:
    require("rich", "zonewatch-collector demo")


# ------------------------------------------------------------------------------------------------ the commands


def test_report_without_matplotlib_says_so_in_one_line_before_reading_anything(tmp_path: Path) -> None:
    proc = collector_without("matplotlib", "-c", tmp_path / "none.yaml", "report", "--zone", "z", "--month",
                             "2025-11", "--out", tmp_path / "out")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        1, "", "zonewatch-collector report needs matplotlib: pip install 'zonewatch[report]'\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("package", ["snmpsim", "matplotlib", "amqtt"])
def test_the_demo_without_a_package_it_needs_says_so_and_starts_nothing(tmp_path: Path, package: str) -> None:
    proc = collector_without(package, "demo", "--plain", "--seconds", "1", "--workdir", tmp_path / "demo")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        1, "", f"zonewatch-collector demo needs {package}: pip install 'zonewatch[agent,collector,demo]'\n")
    assert not (tmp_path / "demo").exists()


def test_run_with_no_broker_configured_and_no_amqtt_says_so(tmp_path: Path) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text(f"embedded_broker: {{listen: '127.0.0.1:{free_port()}'}}\n"
                      f"storage: {{type: sqlite, path: {tmp_path / 'zonewatch.db'}}}\n"
                      f"queue: {{path: {tmp_path / 'intake.db'}}}\nhttp: {{enabled: false}}\n")
    proc = collector_without("amqtt", "-c", config, "--log-level", "error", "run")
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", (
        "zonewatch-collector run with no `mqtt` section (its embedded broker) needs amqtt: "
        "pip install 'zonewatch[collector]'\n"))


def test_the_simulated_devices_without_snmpsim_say_so(tmp_path: Path) -> None:
    code = "import sys; sys.modules['snmpsim'] = None; from agent.sim.device import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", code, "--data-dir", str(tmp_path), "--cache-dir", str(tmp_path),
                           "--port", "1"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (proc.returncode, proc.stderr) == (
        1, "python -m agent.sim.device needs snmpsim: pip install 'zonewatch[demo]'\n")


# ------------------------------------------------------------------------------------------------ imports

IMPORT_ALL = """
import importlib, pkgutil, sys
for package in sys.argv[1:]:
    for module in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
        if not module.name.endswith(".__main__"):
            importlib.import_module(module.name)
print(" ".join(sorted({name.partition(".")[0] for name in sys.modules})))
"""


def imported_by_every_module_of(*packages: str) -> set[str]:
    """The top-level modules a fresh interpreter holds once it imported every module of ``packages``."""
    proc = subprocess.run([sys.executable, "-c", IMPORT_ALL, *packages], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, check=True)
    return set(proc.stdout.split())


def test_no_collector_module_imports_an_optional_package_when_imported() -> None:
    """What ``zonewatch-collector run`` imports (collector.cli, collector.app and what they wire) is among them,
    so a central collector runs without the report's and the demo's packages (amqtt only when it starts the
    embedded broker)."""
    imported = imported_by_every_module_of("zonewatch", "collector")
    assert {"collector", "zonewatch", "paho"} <= imported   # it did import them
    assert imported & set(EXTRAS) == set()


def test_no_agent_module_imports_a_package_of_the_collector_the_report_or_the_demo() -> None:
    """pysmi is left out of the check: pysnmp takes it when it happens to be installed (agent.snmp_pysnmp)."""
    imported = imported_by_every_module_of("agent")
    assert {"agent", "pysnmp"} <= imported
    assert imported & (set(EXTRAS) - {"pysmi"}) == set()
