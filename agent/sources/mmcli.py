"""Cellular readings through ModemManager: ``mmcli -m N -J``, ``--signal-get -J`` and ``--get-cell-info -J``.

Use it when ModemManager owns the modem (it holds the AT port). Each read runs, with ``LC_ALL=C`` (otherwise
mmcli may print ``-67,00``) and the configured timeout per call::

    mmcli -L -J                    with ``imei`` configured: the modems, to find the one with that IMEI (ModemManager
                                   renumbers them after a USB reset); again whenever the one found stops being it
    mmcli -m N -J                  state, access technologies, operator code, registration state, IMEI
    mmcli -m N --signal-get -J     extended signal per RAT: lte, 5g, umts (rscp, ecio), gsm
    mmcli -m N --get-cell-info -J  the serving cell (id, PCI, TAC, EARFCN/NR-ARFCN): ModemManager 1.20 and later,
                                   and a plugin that has it; a ModemManager that refuses it is not asked again
    mmcli -m N --signal-setup=S    only when every signal value reads "--" and the refresh rate is off:
                                   ModemManager forgets the setting when it restarts or re-probes the modem

What mmcli prints is parsed, and made a ``vendors.Reading``, by ``agent.sources.mmcli_parse`` (pure, with the
formats; its names are importable from here too); this module runs mmcli.

Map::

    MmcliModem                  runs mmcli and returns a Reading (the backend of CellularSource)
    parse_status, parse_signal, parse_cell_info, parse_modem_list, parse_number, reading, MmcliParseError
                                ``agent.sources.mmcli_parse``
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from agent.sources import SourceError
from agent.sources.mmcli_parse import (
    CellInfo,
    MmcliParseError,
    ModemStatus,
    SignalReport,
    parse_cell_info,
    parse_modem_list,
    parse_number,
    parse_signal,
    parse_status,
    reading,
)
from agent.sources.vendors import Reading
from zonewatch import strict

__all__ = [
    "MmcliParseError",
    "ModemStatus",
    "SignalReport",
    "CellInfo",
    "MmcliModem",
    "parse_cell_info",
    "parse_modem_list",
    "parse_number",
    "parse_status",
    "parse_signal",
    "reading",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


class MmcliModem:
    """One modem read through mmcli; the ModemManager backend of CellularSource. ``index`` is mmcli's N; with
    ``imei`` the modem is found by its IMEI instead (and found again when N comes to name another modem)."""

    def __init__(self, *, name: str, index: int | None = None, imei: str | None = None, path: str = "mmcli",
                 timeout: float = 2.0, refresh_s: int = 30):
        if index is None and imei is None:
            raise ValueError("MmcliModem needs the modem's index or its IMEI")
        self.name = name
        self._index = index
        self._imei = imei
        self._path = path
        self._timeout = timeout
        self._refresh_s = refresh_s
        self._env = {**os.environ, "LC_ALL": "C"}
        self._setup_logged = False  # the signal refresh was switched on and that was logged; reset by values
        self._cell_info = True  # ModemManager answers --get-cell-info (until it refuses once)

    async def read(self) -> Reading:
        """Run mmcli for the status, the signal and the serving cell; called by CellularSource.collect, never
        concurrently."""
        status = await self._status()
        signal = self._parse(await self._run("--signal-get", "-J"), parse_signal, "--signal-get -J")
        if signal.all_unknown and not (signal.refresh_rate_s or 0) > 0:
            await self._enable_refresh()
        elif not signal.all_unknown:
            self._setup_logged = False
        return reading(status, signal, await self._cell())

    async def _status(self) -> ModemStatus:
        """Return ``mmcli -m N -J`` of this modem, finding N by the IMEI first when it is configured."""
        if self._imei is None:
            return self._parse(await self._run("-J"), parse_status, "-J")
        if self._index is not None:
            try:
                status = self._parse(await self._run("-J"), parse_status, "-J")
            except SourceError as exc:
                log.info("modem %s: %s; looking for IMEI %s again", self.name, exc, self._imei)
            else:
                if status.imei == self._imei:
                    return status
                log.info("modem %s: mmcli -m %s is now IMEI %s; looking for IMEI %s", self.name, self._index,
                         status.imei, self._imei)
            self._index = None
        return await self._find()

    async def _find(self) -> ModemStatus:
        """Find the modem with the configured IMEI among those ``mmcli -L`` lists; SourceError if none has it."""
        listed = self._parse(await self._run("-L", "-J", modem=False), parse_modem_list, "-L -J")
        for index in listed:
            self._index = index
            try:
                status = self._parse(await self._run("-J"), parse_status, "-J")
            except SourceError:
                continue
            if status.imei == self._imei:
                log.info("modem %s: IMEI %s is mmcli -m %d", self.name, self._imei, index)
                return status
        self._index = None
        raise SourceError(f"modem {self.name}: no modem with IMEI {self._imei} among the {len(listed)} that "
                          "ModemManager lists (mmcli -L)")

    async def _cell(self) -> CellInfo | None:
        """Return the serving cell from --get-cell-info, None if ModemManager cannot tell (asked no more then)."""
        if not self._cell_info:
            return None
        try:
            return parse_cell_info(json.loads(await self._run("--get-cell-info", "-J")))
        except SourceError as exc:
            log.info("modem %s: no cell info from ModemManager (%s); not asked again", self.name, exc)
            self._cell_info = False
        except (json.JSONDecodeError, MmcliParseError, RecursionError) as exc:
            log.debug("modem %s: mmcli --get-cell-info: %s", self.name, exc)
        return None

    async def close(self) -> None:
        """Nothing stays open between reads; called once when the agent stops."""

    async def _enable_refresh(self) -> None:
        """Switch ModemManager's signal polling on (it is off after ModemManager restarts), logging that once."""
        try:
            await self._run(f"--signal-setup={self._refresh_s}")
        except SourceError as exc:
            if not self._setup_logged:
                log.warning("modem %s: every signal value reads '--' and enabling the refresh failed: %s",
                            self.name, exc)
                self._setup_logged = True
            return
        if not self._setup_logged:
            log.info("modem %s: every ModemManager signal value read '--' (signal polling off, as after "
                     "ModemManager restarts); enabled it every %ds, values come with the next polls",
                     self.name, self._refresh_s)
            self._setup_logged = True

    def _parse(self, text: str, parser: Callable[[Any], T], args: str) -> T:
        """Return ``parser`` applied to mmcli's JSON output; SourceError saying what was wrong with it."""
        try:
            return parser(json.loads(text))
        except json.JSONDecodeError as exc:
            raise SourceError(f"modem {self.name}: {self._shown((args,))} printed no JSON: {exc}") from None
        except MmcliParseError as exc:
            raise SourceError(f"modem {self.name}: {self._shown((args,))}: {exc}") from None
        except RecursionError:  # json.loads (or a message quoting the value) on JSON nested thousands deep
            raise SourceError(f"modem {self.name}: {self._shown((args,))} printed JSON nested too deeply") from None

    def _shown(self, args: tuple[str, ...], modem: bool = True) -> str:
        """Return the command line as a message shows it."""
        return " ".join(["mmcli", *(["-m", str(self._index)] if modem else []), *args])

    async def _run(self, *args: str, modem: bool = True) -> str:
        """Run ``mmcli -m N <args>`` (``mmcli <args>`` with ``modem`` False) with LC_ALL=C and return its output;
        SourceError if it fails or hangs."""
        shown = self._shown(args, modem)
        where = ["-m", str(self._index)] if modem else []
        try:
            proc = await asyncio.create_subprocess_exec(
                self._path, *where, *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._env,
            )  # fmt: skip
        except OSError as exc:
            raise SourceError(
                f"modem {self.name}: cannot run {self._path}: {exc.strerror or exc} "
                "(is ModemManager installed? mmcli_path sets where mmcli is)"
            ) from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self._timeout)
        except TimeoutError:
            proc.kill()
            await proc.communicate()
            raise SourceError(
                f"modem {self.name}: {shown} gave no answer within {strict.format_duration(self._timeout)} "
                "(is ModemManager running?)"
            ) from None
        except asyncio.CancelledError:
            proc.kill()
            raise
        if proc.returncode != 0:
            said = (err or out).decode("utf-8", errors="replace").strip().splitlines()
            raise SourceError(f"modem {self.name}: {shown} failed (exit {proc.returncode}): "
                              f"{said[0] if said else 'no message'}")
        return out.decode("utf-8", errors="replace")

