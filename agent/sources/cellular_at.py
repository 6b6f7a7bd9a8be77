"""The cellular source's AT backend: one modem's serial port and the conversation on it.

``AtModem`` is what ``CellularSource`` (``agent.sources.cellular``, whose docstring lists the commands and the
failures) reads a modem with when its ``backend`` is ``at``. It opens the port lazily in a worker thread, sets the
modem up (echo off, the vendor picked or the firmware revision asked, numeric operator and locations in the
registrations, 5G registration where the modem has it), sends a poll's commands and hands the replies to
``agent.sources.vendors`` to interpret (and the SIM's and the registration's state to ``modem_state``). What one
answer may hold is bounded (lines and bytes) and so is the wait for it; a timeout, a flood or a serial error
closes the port, so the next poll opens it again. It also runs the recovery steps that act on the port (reopen,
AT+CFUN=1,1) and sends the enrolment's identity commands. ``ModemFailure`` is the ``SourceError`` it raises, with
a kind, so that one failure lasting several polls is reported once.

It logs as ``agent.sources.cellular``, the source's logger, whose name operators' logging settings may use.
"""

from __future__ import annotations

import asyncio
import logging
import termios
import threading
import time
from collections.abc import Sequence
from typing import Any, Final, Literal

import serial

from agent.sources import SourceError, modem_state, vendors
from agent.sources.vendors import Reading, Reply, Vendor
from zonewatch import strict

__all__ = ["AtModem", "ModemFailure"]

log = logging.getLogger("agent.sources.cellular")   # the source's logger

_FINAL_OK: Final = "OK"
_FINAL_ERRORS: Final = ("ERROR", "+CME ERROR", "+CMS ERROR")
_SERIAL_ERRORS: Final = (serial.SerialException, OSError, termios.error)
_DETECT: Final = ("ATI", "AT+CGMI")
# What one answer may hold: the longest the agent asks for (Sierra's AT!GSTATUS?, a chatty ATI) is about 20
# lines of under 100 bytes; more than this is a modem flooding the port, or not a modem.
_MAX_LINES: Final = 256
_MAX_LINE: Final = 4096
_SETUP: Final = ("AT+COPS=3,2", "AT+CREG=2", "AT+CGREG=2", "AT+CEREG=2")
_REVISION: Final = "AT+CGMR"   # 3GPP TS 27.007 5.3: the revision, when ATI is not sent
_NR_SETUP: Final = "AT+C5GREG=2"
_RESET: Final = "AT+CFUN=1,1"   # full functionality, after a reset of the modem (3GPP TS 27.007 8.2)


class ModemFailure(SourceError):
    """A SourceError with a kind, so that one failure lasting several polls is reported with one message."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class AtModem:
    """AT commands over a serial port, in a worker thread; the port is opened lazily and dropped on failure."""

    def __init__(self, *, name: str, port: str, vendor: Vendor | Literal["auto"], baudrate: int,
                 timeout: float) -> None:
        self.name = name
        self._where = port
        self._vendor_setting = vendor  # "auto": detected at each opening
        self._baudrate = baudrate
        self._timeout = timeout  # per command, in seconds
        self._port: Any = None  # serial.Serial while open
        self._lock = threading.Lock()  # one thread at a time touches the port
        self._vendor: Vendor = "generic"  # chosen at each opening
        self._scales = vendors.Scales()  # what this modem's firmware prints; reset when its revision changes
        self._detected: Vendor | None = None  # what auto-detection last found, to log a change only
        self._nr_registration = False  # the modem took AT+C5GREG=2 at this opening
        self._problems: dict[str, str] = {}  # command -> last complaint, to log on change only
        self.sim_state: int | None = None  # what the last poll's AT+CPIN? said (modem_state.SIM_STATES)
        self.reg_state: int | None = None  # the 3GPP registration <stat> of the last poll

    async def read(self) -> Reading:
        """Run one poll's commands and interpret them; called by CellularSource.collect, never concurrently."""
        return await asyncio.to_thread(self._read_blocking)

    async def close(self) -> None:
        """Close the port, waiting for a poll in progress; called once when the agent stops."""
        await asyncio.to_thread(self._close_blocking)

    async def ask(self, commands: Sequence[str]) -> list[Reply]:
        """Send ``commands`` on the port (opened as for a poll) and return their replies; see CellularSource."""
        return await asyncio.to_thread(self._ask_blocking, commands)

    async def recover(self, step: str) -> tuple[bool, str]:
        """Run a recovery step on the port: ``reopen`` (close it, open it again and set the modem up) or ``cfun``
        (AT+CFUN=1,1 on a freshly opened port, which is then closed: the modem resets); return whether it
        worked and what happened. Never concurrently with a poll."""
        return await asyncio.to_thread(self._recover_blocking, step)

    def _recover_blocking(self, step: str) -> tuple[bool, str]:
        """Run one recovery step (in a worker thread)."""
        with self._lock:
            self._drop_port()
            try:
                if step == "reopen":
                    self._open()
                    return True, f"{self._where} opened and the modem answered"
                reply = self._command(self._open_port(), _RESET)
                self._drop_port()   # the modem restarts: its port goes away and comes back
                return reply.ok, f"{_RESET} answered {reply.final}"
            except SourceError as exc:
                self._drop_port()
                return False, str(exc)
            except _SERIAL_ERRORS as exc:
                self._drop_port()
                return False, f"{self._where}: serial error: {exc}"

    def _ask_blocking(self, commands: Sequence[str]) -> list[Reply]:
        """Send ``commands`` and return the replies (in a worker thread)."""
        with self._lock:
            try:
                port = self._port if self._port is not None else self._open()
                return [self._command(port, command) for command in commands]
            except SourceError:
                self._drop_port()
                raise
            except _SERIAL_ERRORS as exc:
                self._drop_port()
                raise ModemFailure(f"modem {self.name} on {self._where}: serial error: {exc}", "port") from exc

    def _close_blocking(self) -> None:
        """Close the port (in a worker thread)."""
        with self._lock:
            self._drop_port()

    def _read_blocking(self) -> Reading:
        """Send the poll's commands and interpret the replies (in a worker thread)."""
        with self._lock:
            try:
                port = self._port if self._port is not None else self._open()
                commands = (*vendors.poll_commands(self._vendor, self._nr_registration), modem_state.CPIN)
                replies = [self._command(port, command) for command in commands]
            except SourceError:
                self._drop_port()
                raise
            except _SERIAL_ERRORS as exc:
                self._drop_port()
                raise ModemFailure(f"modem {self.name} on {self._where}: serial error: {exc}", "port") from exc
        self.sim_state = modem_state.parse_cpin(replies[-1])
        self.reg_state = modem_state.registration_state(replies[:-1])
        return self._interpret(replies[:-1])

    def _interpret(self, replies: list[Reply]) -> Reading:
        """Interpret the replies, logging each command's problem once and its recovery once."""
        result = vendors.interpret(replies, self._vendor, self._scales)
        first: dict[str, str] = {}
        for problem in result.problems:
            if problem.command is None:
                continue
            if problem.kind == "unread":  # an unsolicited line amid an answer: not the command's fault
                log.debug("modem %s on %s: %s: %s", self.name, self._where, problem.command, problem)
                continue
            first.setdefault(problem.command, str(problem))
        for command, complaint in first.items():
            self._note(command, complaint)
        for command in result.answered:
            self._recovered(command)
        if not result.usable:
            said = "; ".join(f"{r.command}: {first.get(r.command or '', f'answered {r.final}')}" for r in replies)
            raise ModemFailure(f"modem {self.name} on {self._where} gave no usable answer ({said})", "unusable")
        return result.reading

    def _open(self) -> Any:
        """Open the port, pick the vendor and put the modem in the mode the parsers expect."""
        port = self._open_port()
        self._setup(port, "ATE0")
        if self._vendor_setting == "auto":
            self._vendor, revision = self._detect(port)
        else:
            self._vendor = self._vendor_setting
            reply = self._command(port, _REVISION)
            revision = reply.lines[0].partition(":")[2].strip() or reply.lines[0] if reply.ok and reply.lines else None
        if revision != self._scales.revision:
            if self._scales.revision is not None:
                log.info("modem %s on %s: firmware %s (was %s)", self.name, self._where, revision,
                         self._scales.revision)
            self._scales = vendors.Scales(revision=revision)
        for command in _SETUP:
            self._setup(port, command)
        reply = self._command(port, _NR_SETUP)
        self._nr_registration = reply.ok
        if not reply.ok:
            log.debug("modem %s on %s: %s answered %s: no 5G registration to read", self.name, self._where,
                      _NR_SETUP, reply.final)
        return port

    def _open_port(self) -> Any:
        """Open the serial port (it becomes ``_port``) and return it."""
        try:
            port = serial.Serial(
                port=self._where,
                baudrate=self._baudrate,
                timeout=self._timeout,
                write_timeout=self._timeout,
                exclusive=True,  # a second reader on the same AT port would steal answers
            )
        except _SERIAL_ERRORS as exc:
            raise ModemFailure(f"modem {self.name}: cannot open {self._where}: {exc}", "port") from exc
        self._port = port
        return port

    def _setup(self, port: Any, command: str) -> None:
        """Send a setup command; an ERROR is logged once, not fatal."""
        reply = self._command(port, command)
        if not reply.ok:
            self._note(command, f"answered {reply.final}")

    def _detect(self, port: Any) -> tuple[Vendor, str | None]:
        """Ask the modem who made it (ATI, then AT+CGMI); return the vendor to read it as and the firmware
        revision ATI gave."""
        said: list[str] = []
        found: Vendor | None = None
        revision: str | None = None
        for command in _DETECT:
            reply = self._command(port, command)
            if reply.ok and reply.lines:
                said.append(" ".join(reply.lines))
                revision = revision or vendors.revision_of("\n".join(reply.lines))
                found = vendors.detect_vendor("\n".join(reply.lines))
                if found is not None:
                    break
        vendor: Vendor = found or "generic"
        if vendor != self._detected:
            answer = "; ".join(said) or "no answer to ATI or AT+CGMI"
            if found is None:
                log.info("modem %s on %s: no known vendor in %r; reading it with 3GPP commands only", self.name,
                         self._where, answer)
            else:
                log.info("modem %s on %s: %s modem (%s); reading it with its vendor commands", self.name,
                         self._where, found, answer)
            self._detected = vendor
        return vendor, revision

    def _drop_port(self) -> None:
        """Close the port if open, ignoring errors from a port that already went away."""
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except _SERIAL_ERRORS as exc:
                log.debug("modem %s: closing %s: %s", self.name, self._where, exc)

    def _command(self, port: Any, command: str) -> Reply:
        """Send one command and read its answer up to the final result code.

        What is held is bounded (``_MAX_LINES`` lines of at most ``_MAX_LINE`` bytes): a modem that floods
        lines or sends bytes without line breaks fails the command at once, not when the timeout ends with
        megabytes read.
        """
        port.reset_input_buffer()  # drop unsolicited codes and late answers from before
        port.write(command.encode("ascii") + b"\r")
        deadline = time.monotonic() + self._timeout
        reply = Reply(command)
        buffer = b""
        where = f"modem {self.name} on {self._where}"
        while True:
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                text = raw.decode("ascii", errors="replace").strip()
                if not text or text.upper() == command.upper():  # blank or our own echo
                    continue
                if text == _FINAL_OK or text.startswith(_FINAL_ERRORS):
                    reply.final = text
                    return reply
                if len(reply.lines) >= _MAX_LINES:
                    raise ModemFailure(f"{where}: {command} answered more than {_MAX_LINES} lines without OK"
                                        f" or ERROR (last: {text[:80]!r}); is it flooding, or the wrong port?",
                                        "flooding")
                reply.lines.append(text)
            if len(buffer) > _MAX_LINE:
                raise ModemFailure(f"{where}: {command} answered more than {_MAX_LINE} bytes without a line break"
                                    f" ({buffer[:16]!r}...); binary data: the wrong port, or the wrong baud rate?",
                                    "no line break")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ModemFailure(
                    f"modem {self.name} on {self._where}: no answer to {command} "
                    f"within {strict.format_duration(self._timeout)}",
                    "no answer",
                )
            port.timeout = remaining
            buffer += port.read(min(max(1, port.in_waiting), _MAX_LINE))

    def _note(self, command: str, problem: str) -> None:
        """Log a command's problem once, when it first appears or changes."""
        if self._problems.get(command) != problem:
            log.warning("modem %s on %s: %s %s", self.name, self._where, command, problem)
        self._problems[command] = problem

    def _recovered(self, command: str) -> None:
        """Log that a command that had a problem answers again."""
        if self._problems.pop(command, None) is not None:
            log.info("modem %s on %s: %s answers again", self.name, self._where, command)
