"""Cellular coverage from one modem per carrier, read with 3GPP AT commands over a serial port.

Config (one entry per modem)::

    - type: cellular
      name: viettel              # modem tag; one modem per carrier
      port: /dev/serial/by-id/usb-Quectel_EG25-G-if02-port0
      carrier: "452-04"          # used when the modem does not report its PLMN (optional)
      baudrate: 115200
      interval: 30s
      timeout: 2s                # per AT command

Each ``collect`` sends, on a port it opens lazily::

    ATE0, AT+COPS=3,2, AT+CEREG=2   once per opening: no echo, numeric operator, location in +CEREG
    AT+CSQ, AT+CESQ, AT+COPS?, AT+CEREG?

and returns one ``cellular`` sample. A command that answers ``ERROR`` only leaves its values out; a modem
that does not answer within ``timeout``, a serial error, or a modem that answered nothing usable raises
``SourceError``. On a timeout or serial error the port is closed, so the next ``collect`` reopens it: that
is how the source recovers from a USB reset.
"""

from __future__ import annotations

import asyncio
import logging
import re
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

import serial
from pydantic import field_validator

import zwconf
from agent.sources import SourceError, at
from agent.wire import FieldValue, Sample

__all__ = ["CellularConfig", "CellularSource"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_SETUP: Final = ("ATE0", "AT+COPS=3,2", "AT+CEREG=2")
_POLL: Final = ("AT+CSQ", "AT+CESQ", "AT+COPS?", "AT+CEREG?")
_FINAL_OK: Final = "OK"
_FINAL_ERRORS: Final = ("ERROR", "+CME ERROR", "+CMS ERROR")
_SERIAL_ERRORS: Final = (serial.SerialException, OSError, termios.error)
_PLMN = re.compile(r"^\d{3}-\d{2,3}$")


class CellularConfig(zwconf.Strict):
    """One modem read over AT commands on a serial port."""

    type: Literal["cellular"]
    name: str
    port: str
    baudrate: int = 115200
    carrier: str | None = None
    interval: zwconf.Duration = 30.0
    timeout: zwconf.Duration = 2.0

    @field_validator("name", "port")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        """Reject an empty name or port."""
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("baudrate")
    @classmethod
    def _positive_baudrate(cls, value: int) -> int:
        """Reject a baud rate that is not positive."""
        if value <= 0:
            raise ValueError(f"expected a positive baud rate such as 115200, got {value}")
        return value

    @field_validator("carrier")
    @classmethod
    def _plmn(cls, value: str | None) -> str | None:
        """Require the carrier as a PLMN "MCC-MNC"."""
        if value is not None and not _PLMN.match(value):
            raise ValueError(f"expected a PLMN like '452-04' (MCC-MNC), got {value!r}")
        return value

    @field_validator("interval", "timeout")
    @classmethod
    def _positive_duration(cls, value: float) -> float:
        """Reject a zero duration."""
        if value <= 0:
            raise ValueError("must be longer than 0s")
        return value


@dataclass
class _Reply:
    """What the modem said to one command: its information lines and the final result code."""

    command: str
    lines: list[str] = field(default_factory=list)
    final: str = _FINAL_OK

    @property
    def ok(self) -> bool:
        """Return True if the command ended with OK."""
        return self.final == _FINAL_OK

    def line(self, prefix: str) -> str | None:
        """Return the first information line starting with ``prefix``."""
        return next((x for x in self.lines if x.upper().startswith(prefix)), None)


class CellularSource:
    """Read one modem's signal, operator and registration over AT commands."""

    def __init__(self, config: CellularConfig) -> None:
        self.name = config.name
        self._config = config
        self._port: Any = None  # serial.Serial while open
        self._lock = threading.Lock()  # one thread at a time touches the port
        self._problems: dict[str, str] = {}  # command -> last complaint, to log on change only

    async def collect(self, now_ns: int) -> list[Sample]:
        """Poll the modem once; called by the runner, never concurrently with itself."""
        return await asyncio.to_thread(self._collect_blocking, now_ns)

    async def close(self) -> None:
        """Close the serial port; called once when the agent stops, safe if it was never opened."""
        await asyncio.to_thread(self._close_blocking)

    def _close_blocking(self) -> None:
        """Close the port, waiting for a poll in progress to finish."""
        with self._lock:
            self._drop_port()

    def _collect_blocking(self, now_ns: int) -> list[Sample]:
        """Run the AT commands and build the sample (in a worker thread)."""
        with self._lock:
            try:
                port = self._port if self._port is not None else self._open()
                replies = {command: self._command(port, command) for command in _POLL}
            except SourceError:
                self._drop_port()
                raise
            except _SERIAL_ERRORS as exc:
                self._drop_port()
                raise SourceError(f"modem {self.name} on {self._config.port}: serial error: {exc}") from exc
        return [self._sample(replies, now_ns)]

    def _open(self) -> Any:
        """Open the port and put the modem in the mode the parsers expect."""
        cfg = self._config
        try:
            port = serial.Serial(
                port=cfg.port,
                baudrate=cfg.baudrate,
                timeout=cfg.timeout,
                write_timeout=cfg.timeout,
                exclusive=True,  # a second reader on the same AT port would steal answers
            )
        except _SERIAL_ERRORS as exc:
            raise SourceError(f"modem {self.name}: cannot open {cfg.port}: {exc}") from exc
        self._port = port
        for command in _SETUP:
            reply = self._command(port, command)
            if not reply.ok:
                self._note(command, f"answered {reply.final}")
        return port

    def _drop_port(self) -> None:
        """Close the port if open, ignoring errors from a port that already went away."""
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except _SERIAL_ERRORS as exc:
                log.debug("modem %s: closing %s: %s", self.name, self._config.port, exc)

    def _command(self, port: Any, command: str) -> _Reply:
        """Send one command and read its answer up to the final result code."""
        port.reset_input_buffer()  # drop unsolicited codes and late answers from before
        port.write(command.encode("ascii") + b"\r")
        deadline = time.monotonic() + self._config.timeout
        reply = _Reply(command)
        buffer = b""
        while True:
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                text = raw.decode("ascii", errors="replace").strip()
                if not text or text.upper() == command.upper():  # blank or our own echo
                    continue
                if text == _FINAL_OK or text.startswith(_FINAL_ERRORS):
                    reply.final = text
                    return reply
                reply.lines.append(text)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SourceError(
                    f"modem {self.name} on {self._config.port}: no answer to {command} "
                    f"within {zwconf.format_duration(self._config.timeout)}"
                )
            port.timeout = remaining
            buffer += port.read(max(1, port.in_waiting))

    def _sample(self, replies: dict[str, _Reply], now_ns: int) -> Sample:
        """Build the cellular sample from the answers; unknown values stay out."""
        csq = self._parse(replies["AT+CSQ"], "+CSQ:", at.parse_csq)
        cesq = self._parse(replies["AT+CESQ"], "+CESQ:", at.parse_cesq)
        cops = self._parse(replies["AT+COPS?"], "+COPS:", at.parse_cops)
        reg = self._parse(replies["AT+CEREG?"], "+CEREG:", at.parse_creg)
        if csq is None and cesq is None and cops is None and reg is None:
            said = "; ".join(f"{c}: {self._problems.get(c, r.final)}" for c, r in replies.items())
            raise SourceError(f"modem {self.name} on {self._config.port} gave no usable answer ({said})")

        tags: dict[str, str] = {"modem": self.name}
        fields: dict[str, FieldValue] = {}
        carrier = cops.plmn if cops is not None and cops.plmn else self._config.carrier
        if carrier:
            tags["carrier"] = carrier
        rat = (cops.rat if cops is not None else None) or (reg.rat if reg is not None else None)
        if rat:
            tags["rat"] = rat
        if csq is not None and csq.rssi_dbm is not None:
            fields["rssi_dbm"] = csq.rssi_dbm
        if cesq is not None and cesq.rsrp_dbm is not None:
            fields["rsrp_dbm"] = cesq.rsrp_dbm
        if cesq is not None and cesq.rsrq_db is not None:
            fields["rsrq_db"] = cesq.rsrq_db
        if reg is not None:
            fields["registered"] = reg.registered
            if reg.cell_id is not None:
                tags["cell"] = f"{reg.cell_id:X}"
                if reg.cell_id < 1 << 28:  # an LTE ECI; anything wider is not one
                    cell = at.split_cell_id(reg.cell_id)
                    fields["enb_id"] = cell.enb_id
                    fields["sector"] = cell.sector
        return Sample(measurement="cellular", tags=tags, fields=fields, time_ns=now_ns)

    def _parse(self, reply: _Reply, prefix: str, parser: Callable[[str], T]) -> T | None:
        """Return the parsed answer to one command, or None (logged on change) if it gave none."""
        line = reply.line(prefix)
        if not reply.ok:
            problem = f"answered {reply.final}"
        elif line is None:
            problem = f"answered without a {prefix} line"
        else:
            try:
                parsed = parser(line)
            except at.ATParseError as exc:
                problem = str(exc)
            else:
                self._recovered(reply.command)
                return parsed
        self._note(reply.command, problem)
        return None

    def _note(self, command: str, problem: str) -> None:
        """Log a command's problem once, when it first appears or changes."""
        if self._problems.get(command) != problem:
            log.warning("modem %s on %s: %s %s", self.name, self._config.port, command, problem)
        self._problems[command] = problem

    def _recovered(self, command: str) -> None:
        """Log that a command that had a problem answers again."""
        if self._problems.pop(command, None) is not None:
            log.info("modem %s on %s: %s answers again", self.name, self._config.port, command)
