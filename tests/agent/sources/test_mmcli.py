"""The ModemManager backend: mmcli JSON parsing, and CellularSource running a stand-in mmcli.

ModemManager cannot run where these tests run: there is no modem and no system D-Bus. So the tests point
``mmcli_path`` at a small executable script written to tmp_path, which prints JSON recorded by hand from the key
lists mmcli's JSON output uses (``testdata/cellular/mmcli/<case>/modem.json`` and ``signal.json``: every value
a string, ``--`` for unknown), logs each call with its arguments and LC_ALL, and can hang or fail.
Expected values are worked out by hand in the comments.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent.sources import SourceError
from agent.sources.cellular import CellularConfig, CellularSource
from agent.sources.mmcli import (
    CellInfo,
    MmcliParseError,
    ModemStatus,
    SignalReport,
    parse_cell_info,
    parse_number,
    parse_signal,
    parse_status,
    reading,
)
from agent.sources.vendors import Reading
from tests.agent.sources.test_vendors import assert_field_types
from zonewatch import strict

NOW = 1_764_289_990_000_000_000
DATA = Path(__file__).parent / "testdata" / "cellular" / "mmcli"

FAKE_MMCLI = '''\
#!{python}
"""Stand-in for mmcli: prints the recorded JSON next to it and logs every call."""
import json, os, pathlib, signal, sys

here = pathlib.Path(__file__).resolve().parent
args = sys.argv[1:]
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps({{"args": args, "LC_ALL": os.environ.get("LC_ALL")}}) + "\\n")
if (here / "hang").exists():
    signal.pause()  # never answers; killed by the caller's timeout
if (here / "fail").exists():
    print("error: couldn't find modem", file=sys.stderr)
    sys.exit(1)
if args == ["-L", "-J"]:
    name = "list.json"
elif args[2:] == ["-J"]:
    name = f"modem-{{args[1]}}.json" if (here / f"modem-{{args[1]}}.json").exists() else "modem.json"
elif args[2:] == ["--get-cell-info", "-J"] and (here / "cell-info.json").exists():
    name = "cell-info.json"
elif args[2:] == ["--signal-get", "-J"]:
    after = here / "signal-after-setup.json"
    name = after.name if (here / "setup-done").exists() and after.exists() else "signal.json"
elif len(args) == 3 and args[2].startswith("--signal-setup="):
    (here / "setup-done").touch()
    print("successfully setup signal quality information polling")
    sys.exit(0)
else:
    print("error: unexpected arguments", args, file=sys.stderr)
    sys.exit(64)
sys.stdout.write((here / name).read_text())
'''


class FakeMmcli:
    """A stand-in mmcli in a directory of its own, serving one recorded case."""

    def __init__(self, root: Path, case: str) -> None:
        self.dir = root / "fake-mmcli"
        self.dir.mkdir()
        for file in (DATA / case).iterdir():
            shutil.copy(file, self.dir / file.name)
        self.path = self.dir / "mmcli"
        self.path.write_text(FAKE_MMCLI.format(python=sys.executable))
        self.path.chmod(0o755)

    def calls(self) -> list[dict[str, Any]]:
        """Return every call so far: its arguments and the LC_ALL it saw."""
        log = self.dir / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def set(self, flag: str, on: bool = True) -> None:
        """Turn a behaviour on or off: "hang" or "fail"."""
        path = self.dir / flag
        if on:
            path.touch()
        else:
            path.unlink(missing_ok=True)


def make_source(fake: FakeMmcli, extra: str = "", timeout: str = "5s") -> CellularSource:
    text = (f"type: cellular\nname: viettel\nbackend: mmcli\nmodem_index: 0\nmmcli_path: {fake.path}\n"
            f"interval: 30s\ntimeout: {timeout}\n{extra}")
    return CellularSource(strict.load(CellularConfig, text, "agent.yaml"))


def collect(source: CellularSource) -> Any:
    return asyncio.run(source.collect(NOW))


def fields_and_tags(case: str, tmp_path: Path, extra: str = "") -> tuple[dict[str, Any], dict[str, str]]:
    (sample,) = collect(make_source(FakeMmcli(tmp_path, case), extra))
    assert_field_types(sample.fields)
    return sample.fields, sample.tags


# --- through CellularSource --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "tags", "fields"),
    [
        # LTE, home: lte.rsrp "-95.00", rsrq "-11.00", rssi "-65.00", snr "13.20"; operator-code 45204
        ("lte-home", {"carrier": "452-04", "modem": "viettel", "rat": "lte"},
         {"rsrp_dbm": -95, "rsrq_db": -11.0, "sinr_db": 13.2, "rssi_dbm": -65, "registered": True}),
        # EN-DC: access technologies lte + 5gnr; the main fields are LTE's, the 5g block is the NR leg
        ("nsa", {"carrier": "452-04", "modem": "viettel", "rat": "nr5g-nsa"},
         {"rsrp_dbm": -99, "rsrq_db": -12.0, "sinr_db": 11.0, "rssi_dbm": -67, "registered": True,
          "nr_rsrp_dbm": -71, "nr_rsrq_db": -11.0, "nr_sinr_db": 13.0}),
        # SA: 5gnr only; the main fields are the 5g block's (which has no rssi value)
        ("sa", {"carrier": "452-04", "modem": "viettel", "rat": "nr5g-sa"},
         {"rsrp_dbm": -54, "rsrq_db": -10.0, "sinr_db": 16.0, "registered": True}),
        # an older ModemManager: no refresh or threshold block and no 5g.rssi key; roaming on 45201 is service
        ("older-mm", {"carrier": "452-01", "modem": "viettel", "rat": "lte"},
         {"rsrp_dbm": -95, "rsrq_db": -11.0, "sinr_db": 13.2, "rssi_dbm": -65, "registered": True}),
        # printed in a locale with a decimal comma: "-95,00", "-11,50", "-67,00", "13,20"
        ("comma-decimal", {"carrier": "452-04", "modem": "viettel", "rat": "lte"},
         {"rsrp_dbm": -95, "rsrq_db": -11.5, "sinr_db": 13.2, "rssi_dbm": -67, "registered": True}),
        # searching: no technology, operator "--", every signal value "--"; the configured carrier is used
        ("searching", {"carrier": "452-04", "modem": "viettel"}, {"registered": False}),
        # HSPA+: umts.rssi "-71.00", rscp "-85.00" dBm, ecio "-6.50" dB (kept: WCDMA's coverage and quality)
        ("umts", {"carrier": "452-02", "modem": "viettel", "rat": "umts"},
         {"rssi_dbm": -71, "rscp_dbm": -85, "ecio_db": -6.5, "registered": True}),
    ],
)  # fmt: skip
def test_mmcli_sample(case: str, tags: dict[str, str], fields: dict[str, Any], tmp_path: Path) -> None:
    assert fields_and_tags(case, tmp_path, 'carrier: "452-04"\n') == (fields, tags)


def test_mmcli_runs_with_lc_all_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "vi_VN.UTF-8")  # a locale with a decimal comma
    fake = FakeMmcli(tmp_path, "lte-home")

    collect(make_source(fake))

    assert fake.calls() == [
        {"args": ["-m", "0", "-J"], "LC_ALL": "C"},
        {"args": ["-m", "0", "--signal-get", "-J"], "LC_ALL": "C"},
        {"args": ["-m", "0", "--get-cell-info", "-J"], "LC_ALL": "C"},  # refused: this ModemManager is older
    ]


def test_signal_refresh_is_switched_on_when_every_value_reads_unknown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # After ModemManager restarts, signal polling is off (refresh rate "0") and every value reads "--".
    fake = FakeMmcli(tmp_path, "refresh-off")
    source = make_source(fake)

    with caplog.at_level(logging.INFO, logger="agent.sources.mmcli"):
        (first,) = collect(source)
        (second,) = collect(source)

    # The first poll still reports what it knows; the next one has the values ModemManager now polls.
    assert first.fields == {"registered": True}
    assert first.tags == {"carrier": "452-04", "modem": "viettel", "rat": "lte"}
    assert second.fields == {"rsrp_dbm": -95, "rsrq_db": -11.0, "sinr_db": 13.2, "rssi_dbm": -65, "registered": True}
    assert [c["args"] for c in fake.calls()] == [
        ["-m", "0", "-J"], ["-m", "0", "--signal-get", "-J"], ["-m", "0", "--signal-setup=30"],  # interval 30s
        ["-m", "0", "--get-cell-info", "-J"],  # refused once: not asked again
        ["-m", "0", "-J"], ["-m", "0", "--signal-get", "-J"],
    ]  # fmt: skip
    messages = [r.getMessage() for r in caplog.records
                if r.name == "agent.sources.mmcli" and "signal" in r.getMessage()]
    assert len(messages) == 1 and "enabled it every 30s" in messages[0]


def test_signal_setup_is_logged_once_while_values_stay_unknown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeMmcli(tmp_path, "refresh-off")
    (fake.dir / "signal-after-setup.json").unlink()  # ModemManager keeps printing "--"
    source = make_source(fake)

    with caplog.at_level(logging.INFO, logger="agent.sources.mmcli"):
        for _ in range(3):
            collect(source)

    setups = [c for c in fake.calls() if c["args"][2].startswith("--signal-setup")]
    assert len(setups) == 3  # tried again each poll while the refresh rate reads 0 ...
    assert len([r for r in caplog.records if r.name == "agent.sources.mmcli" and "signal" in r.getMessage()]) == 1


def test_no_signal_setup_when_polling_is_on_but_there_is_no_signal(tmp_path: Path) -> None:
    fake = FakeMmcli(tmp_path, "searching")  # every value "--", refresh rate "30": no cell, not a restart

    collect(make_source(fake))

    assert not any(c["args"][2].startswith("--signal-setup") for c in fake.calls())


def test_mmcli_that_hangs_fails_within_the_timeout(tmp_path: Path) -> None:
    fake = FakeMmcli(tmp_path, "lte-home")
    fake.set("hang")
    source = make_source(fake, timeout="300ms")

    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        collect(source)
    elapsed = time.monotonic() - started

    assert str(caught.value) == "modem viettel: mmcli -m 0 -J gave no answer within 300ms (is ModemManager running?)"
    assert elapsed < 3.0

    fake.set("hang", on=False)
    sample, back = collect(source)  # the next poll works again, and says the modem answers again
    assert sample.fields["rsrp_dbm"] == -95
    assert (back.measurement, back.fields) == ("modem", {"answering": True, "recovery_step": 0})


def test_mmcli_failing_names_the_command_and_its_message(tmp_path: Path) -> None:
    fake = FakeMmcli(tmp_path, "lte-home")
    fake.set("fail")

    with pytest.raises(SourceError) as caught:
        collect(make_source(fake))

    assert str(caught.value) == "modem viettel: mmcli -m 0 -J failed (exit 1): error: couldn't find modem"


def test_missing_mmcli_says_what_to_check(tmp_path: Path) -> None:
    config = strict.load(CellularConfig, f"type: cellular\nname: viettel\nbackend: mmcli\nmodem_index: 0\n"
                                         f"mmcli_path: {tmp_path / 'no-mmcli'}\n")  # fmt: skip

    with pytest.raises(SourceError) as caught:
        collect(CellularSource(config))

    assert str(caught.value).startswith(f"modem viettel: cannot run {tmp_path / 'no-mmcli'}: ")
    assert str(caught.value).endswith("(is ModemManager installed? mmcli_path sets where mmcli is)")


def test_mmcli_printing_no_json_is_an_error(tmp_path: Path) -> None:
    fake = FakeMmcli(tmp_path, "lte-home")
    (fake.dir / "modem.json").write_text("error: modem is not enabled yet\n")

    with pytest.raises(SourceError, match=r"^modem viettel: mmcli -m 0 -J printed no JSON: "):
        collect(make_source(fake))


def test_mmcli_printing_json_nested_too_deeply_is_an_error(tmp_path: Path) -> None:
    fake = FakeMmcli(tmp_path, "lte-home")
    (fake.dir / "modem.json").write_text("[" * 100_000)

    with pytest.raises(SourceError, match=r"^modem viettel: mmcli -m 0 -J printed JSON nested too deeply$"):
        collect(make_source(fake))


def test_a_signal_value_beyond_64_bits_is_left_out_of_the_sample() -> None:
    status = parse_status({"modem": {"generic": {"access-technologies": ["lte"]}}})
    signal = parse_signal({"modem": {"signal": {"lte": {"rsrp": "20000000000000000000", "rsrq": "-11.00"}}}})
    assert signal.get("lte", "rsrp") is None
    assert reading(status, signal) == Reading(rat="lte", rsrq_db=-11.0, origin=(("rsrq_db", "mmcli --signal-get"),))


# --- pure parsing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("-104.00", -104.0),
        ("2.00", 2.0),
        ("-67,00", -67.0),  # decimal comma from a non-C locale
        ("-11,50", -11.5),
        ("10", 10.0),
        ("--", None),
        ("", None),
        (None, None),  # key missing
        ("20000000000000000000", None),  # beyond 64 bits: no reading, and no field may hold it
        ("-" + "9" * 400 + ".00", None),  # float() would make it -inf
    ],
)
def test_parse_number(text: str | None, value: float | None) -> None:
    assert parse_number(text) == value


@pytest.mark.parametrize("text", ["n/a", "-1.2.3", "1,000.5", -104])
def test_parse_number_rejects(text: object) -> None:
    with pytest.raises(MmcliParseError):
        parse_number(text)


@pytest.mark.parametrize(
    ("registration", "registered"),
    [
        ("home", True), ("roaming", True), ("home-sms-only", True), ("roaming-sms-only", True),
        ("home-csfb-not-preferred", True), ("roaming-csfb-not-preferred", True),
        ("idle", False), ("searching", False), ("denied", False), ("unknown", False), ("emergency-only", False),
        ("attached-rlos", False),
        (None, None),
    ],
)  # fmt: skip
def test_registration_state(registration: str | None, registered: bool | None) -> None:
    assert ModemStatus(None, registration, (), None).registered is registered


@pytest.mark.parametrize(
    ("techs", "rat"),
    [
        (("lte",), "lte"), (("lte", "5gnr"), "nr5g-nsa"), (("5gnr",), "nr5g-sa"),
        (("umts", "hsdpa"), "umts"), (("hspa-plus",), "umts"), (("edge",), "gsm"), (("gsm",), "gsm"),
        (("lte-nb-iot",), "nbiot"), ((), None),
    ],
)  # fmt: skip
def test_access_technologies(techs: tuple[str, ...], rat: str | None) -> None:
    assert ModemStatus(None, None, techs, None).rat == rat


def test_parse_status_of_a_connected_modem() -> None:
    status = parse_status(json.loads((DATA / "nsa" / "modem.json").read_text()))

    assert status == ModemStatus(state="connected", registration="home", access_technologies=("lte", "5gnr"),
                                 plmn="452-04", manufacturer="QUALCOMM INCORPORATED", model="RM500Q-GL",
                                 imei="867962040012345")


def test_parse_status_tolerates_missing_keys() -> None:
    status = parse_status({"modem": {"generic": {"state": "enabled"}}})

    assert status == ModemStatus(state="enabled", registration=None, access_technologies=(), plmn=None)
    assert (status.registered, status.rat) == (None, None)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected a JSON object with a 'modem' object"),
        ({"modem": {"generic": {"access-technologies": "lte"}, "3gpp": []}}, "modem.3gpp: expected a JSON object"),
        ({"modem": {"generic": {"access-technologies": [7]}}}, "modem.generic.access-technologies"),
        ({"modem": {"generic": {"state": 3}}}, "modem.generic.state: expected a string, got 3"),
    ],
)
def test_parse_status_rejects(document: Any, message: str) -> None:
    with pytest.raises(MmcliParseError, match=message):
        parse_status(document)


def test_parse_signal_reads_each_rat_and_the_refresh_rate() -> None:
    report = parse_signal(json.loads((DATA / "nsa" / "signal.json").read_text()))

    assert report.refresh_rate_s == 30.0
    assert report.values["lte"] == {"rssi": -67.0, "rsrp": -99.0, "rsrq": -12.0, "snr": 11.0}
    assert report.values["5g"] == {"rssi": None, "rsrp": -71.0, "rsrq": -11.0, "snr": 13.0}
    assert not report.all_unknown


def test_parse_signal_of_an_older_modemmanager() -> None:
    report = parse_signal(json.loads((DATA / "older-mm" / "signal.json").read_text()))

    assert report.refresh_rate_s is None
    assert "rssi" not in report.values["5g"]
    assert report.get("5g", "rssi") is None


def test_parse_signal_names_a_bad_value() -> None:
    with pytest.raises(MmcliParseError, match=r"^modem.signal.lte.rsrp: expected a number or '--', got 'weak'$"):
        parse_signal({"modem": {"signal": {"lte": {"rsrp": "weak"}}}})


def test_reading_without_signal_still_says_registration() -> None:
    status = ModemStatus("registered", "roaming", ("lte",), "452-05")

    assert reading(status, None) == Reading(rat="lte", plmn="452-05", registered=True)
    assert reading(status, SignalReport(refresh_rate_s=0.0)) == Reading(rat="lte", plmn="452-05", registered=True)


# --- the modem by its IMEI, and the serving cell -------------------------------------------------------------

# what mmcli --get-cell-info -J prints (ModemManager 1.20+): one string per cell, the serving one marked;
# written from the key names of libmm-glib's MMCellInfoLte
CELL_INFO = {"modem": {"generic": {"cell-info": [
    "cell type: lte, serving: yes, operator id: 45204, tac: 1A2B, ci: 5F1EA15, physical ci: 188, earfcn: 1650, "
    "rsrp: -95.00, rsrq: -11.00",
    "cell type: lte, serving: no, physical ci: 301, earfcn: 1650, rsrp: -104.00, rsrq: -15.00",
]}}}


def test_the_modem_is_found_by_its_imei_after_a_usb_reset_renumbers_it(tmp_path: Path) -> None:
    fake = FakeMmcli(tmp_path, "lte-home")
    other = json.loads((fake.dir / "modem.json").read_text())
    other["modem"]["3gpp"]["imei"] = "861111111111111"  # another carrier's modem
    (fake.dir / "modem-0.json").write_text(json.dumps(other))
    (fake.dir / "modem-1.json").write_text((fake.dir / "modem.json").read_text())
    (fake.dir / "list.json").write_text(json.dumps({"modem-list": [
        "/org/freedesktop/ModemManager1/Modem/0", "/org/freedesktop/ModemManager1/Modem/1"]}))
    text = (f"type: cellular\nname: viettel\nbackend: mmcli\nimei: '867962040012345'\nmmcli_path: {fake.path}\n"
            "interval: 30s\ntimeout: 5s\n")
    source = CellularSource(strict.load(CellularConfig, text, "agent.yaml"))

    (sample,) = collect(source)
    assert sample.tags["carrier"] == "452-04" and sample.fields["rsrp_dbm"] == -95
    # after a USB reset ModemManager numbers it 0 and the other 1: the next poll finds it again
    (fake.dir / "modem-0.json").write_text((fake.dir / "modem-1.json").read_text())
    (fake.dir / "modem-1.json").write_text(json.dumps(other))
    (again,) = collect(source)
    assert again.fields["rsrp_dbm"] == -95
    args = [c["args"] for c in fake.calls()]
    assert args[:3] == [["-L", "-J"], ["-m", "0", "-J"], ["-m", "1", "-J"]]
    assert args[-4:] == [["-m", "1", "-J"], ["-L", "-J"], ["-m", "0", "-J"], ["-m", "0", "--signal-get", "-J"]]


def test_no_modem_with_the_imei_is_a_failed_poll(tmp_path: Path) -> None:
    fake = FakeMmcli(tmp_path, "lte-home")
    (fake.dir / "list.json").write_text(json.dumps({"modem-list": ["/org/freedesktop/ModemManager1/Modem/0"]}))
    text = (f"type: cellular\nname: viettel\nbackend: mmcli\nimei: '861111111111111'\nmmcli_path: {fake.path}\n")
    with pytest.raises(SourceError, match="no modem with IMEI 861111111111111 among the 1"):
        collect(CellularSource(strict.load(CellularConfig, text, "agent.yaml")))


def test_the_serving_cell_comes_from_get_cell_info(tmp_path: Path) -> None:
    fake = FakeMmcli(tmp_path, "lte-home")
    (fake.dir / "cell-info.json").write_text(json.dumps(CELL_INFO))

    (sample,) = collect(make_source(fake))

    # ci 5F1EA15: eNB 0x5F1EA = 389610, sector 0x15 = 21; PCI 188
    assert sample.tags["cell"] == "5F1EA15"
    assert (sample.fields["pci"], sample.fields["enb_id"], sample.fields["sector"]) == (188, 389610, 21)


def test_parse_cell_info() -> None:
    assert parse_cell_info(CELL_INFO) == CellInfo(kind="lte", plmn="452-04", cell_id=0x5F1EA15, pci=188, area=0x1A2B)
    assert parse_cell_info({"modem": {"generic": {"cell-info": []}}}) is None
    with pytest.raises(MmcliParseError, match="cell-info"):
        parse_cell_info({"modem": {"generic": {"cell-info": [7]}}})
