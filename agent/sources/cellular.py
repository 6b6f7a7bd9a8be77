"""Cellular coverage from one modem per carrier: AT commands over its serial port, or ModemManager's mmcli.

Config (one entry per modem)::

    - type: cellular
      name: viettel              # modem tag; one modem per carrier
      port: /dev/serial/by-id/usb-Quectel_EG25-G-if02-port0
      carrier: "452-04"          # used when the modem does not report its PLMN (optional)
      vendor: auto               # auto | generic | quectel | simcom | sierra: which vendor commands to send
      baudrate: 115200
      interval: 30s
      timeout: 2s                # per AT command, or per mmcli call
      gnb_id_bits: 24            # NR SA: how many bits of the NCI are the gNB id (operator setting, 22..32)
      recovery:                  # when it stops answering (agent.sources.modem_recovery); defaults shown
        wait: 1m                 # between two steps (doubling each round of the ladder, up to max_wait: 30m)
        max_per_hour: 3          # each step at most this often in any hour
        cfun: true               # AT+CFUN=1,1 after reopening the port
        usb: {hub: "1-1", port: 2}   # the USB power cycle (uhubctl) as the last step; none by default

    - type: cellular             # a modem that ModemManager owns
      name: vinaphone
      backend: mmcli
      imei: "861234567890126"    # which modem (ModemManager renumbers them after a USB reset); or modem_index: 0
      mmcli_path: mmcli

AT backend: on a port it opens lazily, ``collect`` sends::

    once per opening   ATE0; when vendor is auto, ATI (and AT+CGMI if ATI names no vendor) to pick the vendor,
                       else AT+CGMR: the firmware revision (what a firmware prints is learnt per revision,
                       vendors.Scales); AT+COPS=3,2, AT+CREG=2, AT+CGREG=2, AT+CEREG=2 (numeric operator, location
                       in the registrations) and AT+C5GREG=2 (a modem that answers ERROR has no 5G registration,
                       and +C5GREG? is not asked)
    every poll         AT+CSQ, AT+CESQ, AT+COPS?, AT+CREG?, AT+CGREG?, AT+CEREG?, [AT+C5GREG?], then the vendor's:
                       quectel AT+QENG="servingcell", AT+QCSQ, AT+QNWINFO; simcom AT+CPSI?; sierra AT!GSTATUS?;
                       last AT+CPIN? (the SIM's state)

and returns one ``cellular`` sample (fields and tags: ``agent.sources.vendors``, with the SIM's state and the
registration state: ``agent.sources.modem_state``). The ModemManager backend is ``agent.sources.mmcli``.

Every reading, whatever the backend, is checked against the catalogue's physical bounds (``vendors.guard``) before
it is published: a value outside them (a scale or a sign the firmware got wrong) is dropped, logged with the
modem, the command and the field (a warning the first time, then at debug level), and counted
(``take_dropped``). A poll whose answers gave no value at all (every one unknown) publishes no ``cellular``
sample: it is logged once and counted (``take_empty``).

A failed poll raises ``ModemDown``, which carries the ``modem`` sample saying ``answering`` false (the runner
spools it; the first poll answered after it adds one saying true). The recovery step a failed read makes due
(``agent.sources.modem_recovery``: reopen the port, AT+CFUN=1,1, the USB power cycle) runs at the next poll,
instead of the read, logged and counted for ``/metrics`` (``take_recoveries``).

Failures: a command that answers ``ERROR`` only leaves its values out (logged once, and once when it answers
again). A modem that does not answer within ``timeout``, one that answers more than 256 lines or a line of more
than 4 KiB (it floods the port, or sends binary data: what is read is bounded), a serial error, a port that
cannot be opened, or a modem that answered nothing usable raises ``SourceError``; on a timeout, a flood or a
serial error the port is closed, so the next ``collect`` reopens it and picks the vendor again: that is how the
source recovers from a USB reset.
While a failure lasts, every poll raises the message of its first poll, so the runner logs it once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import termios
import threading
import time
from collections.abc import Sequence
from typing import Any, Final, Literal, Protocol

import serial
from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from agent.sources import SourceError, modem_state, vendors
from agent.sources.mmcli import MmcliModem
from agent.sources.modem_recovery import STEP_NUMBER, Recovery, RecoveryConfig
from agent.sources.vendors import Reading, Reply, Vendor
from zonewatch import strict
from zonewatch.wire import Sample

__all__ = ["CellularConfig", "CellularSource", "ModemDown"]

log = logging.getLogger(__name__)

_FINAL_OK: Final = "OK"
_FINAL_ERRORS: Final = ("ERROR", "+CME ERROR", "+CMS ERROR")
_SERIAL_ERRORS: Final = (serial.SerialException, OSError, termios.error)
_PLMN = re.compile(r"^\d{3}-\d{2,3}$")
_DETECT: Final = ("ATI", "AT+CGMI")
# What one answer may hold: the longest the agent asks for (Sierra's AT!GSTATUS?, a chatty ATI) is about 20
# lines of under 100 bytes; more than this is a modem flooding the port, or not a modem.
_MAX_LINES: Final = 256
_MAX_LINE: Final = 4096
_SETUP: Final = ("AT+COPS=3,2", "AT+CREG=2", "AT+CGREG=2", "AT+CEREG=2")
_REVISION: Final = "AT+CGMR"   # 3GPP TS 27.007 5.3: the revision, when ATI is not sent
_NR_SETUP: Final = "AT+C5GREG=2"
_RESET: Final = "AT+CFUN=1,1"   # full functionality, after a reset of the modem (3GPP TS 27.007 8.2)


class CellularConfig(strict.Strict):
    """One modem, read over AT commands on a serial port or through ModemManager."""

    type: Literal["cellular"]
    name: str
    backend: Literal["at", "mmcli"] = "at"
    port: str | None = Field(default=None, validate_default=True)
    vendor: Literal["auto", "generic", "quectel", "simcom", "sierra"] = "auto"
    baudrate: int = 115200
    modem_index: int | None = None
    imei: str | None = Field(default=None, validate_default=True)
    mmcli_path: str = "mmcli"
    carrier: str | None = None
    interval: strict.Duration = 30.0
    timeout: strict.Duration = 2.0
    gnb_id_bits: int = 24
    recovery: RecoveryConfig = RecoveryConfig()

    @field_validator("name", "mmcli_path")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        """Reject an empty name or mmcli path."""
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("port")
    @classmethod
    def _port_for_at(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Require the port with backend at, and refuse it with backend mmcli."""
        backend = info.data.get("backend")
        if value is None and backend == "at":
            raise PydanticCustomError("missing", "required with backend 'at'")
        if value is not None and backend == "mmcli":
            raise ValueError("only used with backend 'at'; ModemManager finds the port (remove it, or set backend: at)")
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("modem_index")
    @classmethod
    def _index_for_mmcli(cls, value: int | None, info: ValidationInfo) -> int | None:
        """Refuse the modem index with backend at, and a negative one."""
        if value is not None and info.data.get("backend") == "at":
            raise ValueError("only used with backend 'mmcli' (set backend: mmcli, or remove it)")
        if value is not None and value < 0:
            raise ValueError(f"expected the modem's index in 'mmcli -L' (0 or more), got {value}")
        return value

    @field_validator("imei")
    @classmethod
    def _imei_or_index(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Require the IMEI or the index with backend mmcli (not both), and refuse the IMEI with backend at."""
        backend = info.data.get("backend")
        index = info.data.get("modem_index")
        if value is not None and backend == "at":
            raise ValueError("only used with backend 'mmcli' (set backend: mmcli, or remove it)")
        if value is not None and not re.fullmatch(r"[0-9]{14,16}", value):
            raise ValueError(f"expected the modem's IMEI (15 digits, as 'mmcli -m N' shows it), got {value!r}")
        if backend == "mmcli" and value is None and index is None and "modem_index" not in info.data:
            return value   # modem_index failed its own check: that error is reported
        if backend == "mmcli" and value is None and index is None:
            raise ValueError("missing (required with backend 'mmcli': the modem's IMEI, or modem_index, the N of "
                             "'mmcli -m N'; the IMEI survives the renumbering after a USB reset)")
        if value is not None and index is not None:
            raise ValueError("set imei or modem_index, not both (imei is the one that survives a USB reset)")
        return value

    @field_validator("vendor")
    @classmethod
    def _vendor_for_at(cls, value: str, info: ValidationInfo) -> str:
        """Refuse a vendor with backend mmcli, where ModemManager speaks to the modem."""
        if value != "auto" and info.data.get("backend") == "mmcli":
            raise ValueError("only used with backend 'at'; ModemManager knows the vendor itself")
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

    @field_validator("recovery")
    @classmethod
    def _usb_within_a_poll(cls, value: RecoveryConfig, info: ValidationInfo) -> RecoveryConfig:
        """Require the USB power cycle to fit in the poll that runs it."""
        interval = info.data.get("interval")
        if value.usb is not None and interval is not None and value.usb.timeout >= interval:
            raise ValueError(f"usb.timeout ({strict.format_duration(value.usb.timeout)}) must be shorter than the "
                             f"source's interval ({strict.format_duration(interval)}): the poll that runs it is "
                             "cancelled at its interval")
        return value

    @field_validator("gnb_id_bits")
    @classmethod
    def _gnb_bits(cls, value: int) -> int:
        """Require a gNB id length that 3GPP allows."""
        if not 22 <= value <= 32:
            raise ValueError(f"expected 22 to 32 (the operator's gNB id length; 24 is common), got {value}")
        return value


class _Backend(Protocol):
    async def read(self) -> Reading:
        """Read the modem once; called by CellularSource.collect, never concurrently with itself."""
        ...

    async def close(self) -> None:
        """Release what read opened; called once when the agent stops, safe if read never ran."""
        ...


class _ModemFailure(SourceError):
    """A SourceError with a kind, so that one failure lasting several polls is reported with one message."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class ModemDown(SourceError):
    """A failed poll, with what it says itself: the ``modem`` sample with ``answering`` false (``samples``,
    which the runner spools)."""

    def __init__(self, message: str, samples: list[Sample]) -> None:
        super().__init__(message)
        self.samples = samples


class CellularSource:
    """Read one modem's signal, serving cell, operator and registration."""

    def __init__(self, config: CellularConfig) -> None:
        self.name = config.name
        self._config = config
        self._backend: _Backend
        if config.backend == "mmcli":
            self._backend = MmcliModem(
                name=config.name,
                index=config.modem_index,
                imei=config.imei,
                path=config.mmcli_path,
                timeout=config.timeout,
                refresh_s=max(1, math.ceil(config.interval)),
            )
        else:
            self._backend = _AtModem(config)
        self._failing: tuple[str, str] | None = None  # (kind, first message) while polls fail
        self._recovery = Recovery(config.name, config.recovery, port_steps=isinstance(self._backend, _AtModem))
        self._carrier = config.carrier  # the modem sample's carrier tag: configured, else the PLMN last read
        self._dropped: list[tuple[str, str]] = []  # (command, field) of each value dropped since take_dropped
        self._dropped_seen: set[tuple[str, str]] = set()  # logged as a warning already
        self._empty = 0  # polls that gave no value, since take_empty
        self._empty_logged = False

    async def collect(self, now_ns: int) -> list[Sample]:
        """Poll the modem once; called by the runner, never concurrently with itself. A poll after a failed read
        runs the recovery step that is due instead of reading (and reads too after a reopen that worked)."""
        step, ok = await self._recovery.run_due(now_ns, self._port_step)
        if step and not (ok and step == STEP_NUMBER["reopen"]) and self._failing is not None:
            raise self._down(now_ns, self._failing[1], step)
        try:
            reading = await self._backend.read()
        except SourceError as exc:
            kind = exc.kind if isinstance(exc, _ModemFailure) else str(exc)
            if self._failing is not None and self._failing[0] == kind:
                log.debug("modem %s still failing: %s", self.name, exc)
            else:
                self._failing = (kind, str(exc))
            self._recovery.failed(now_ns)
            # one failure lasting several polls keeps the message of its first
            raise self._down(now_ns, self._failing[1], step) from exc
        back, self._failing = self._failing is not None, None
        self._recovery.answered(now_ns)
        cfg = self._config
        reading = vendors.guard(reading)
        self._report_dropped(reading)
        cellular = vendors.to_sample(reading, now_ns=now_ns, modem=self.name, carrier=cfg.carrier,
                                     gnb_id_bits=cfg.gnb_id_bits)
        self._carrier = cfg.carrier or reading.plmn or self._carrier
        out: list[Sample] = []
        if cellular.fields:
            self._empty_logged = False
            if isinstance(self._backend, _AtModem):
                cellular = modem_state.with_health(cellular, self._backend.sim_state, self._backend.reg_state)
            out.append(cellular)
        else:   # every value unknown: no reading, not a reading of nothing
            self._empty += 1
            if not self._empty_logged:
                log.warning("modem %s answered, but every value it gave is unknown or impossible: no cellular "
                            "reading published (counted until it gives one)", self.name)
                self._empty_logged = True
        if back:
            out.append(modem_state.modem_sample(now_ns=now_ns, modem=self.name, carrier=self._carrier,
                                                answering=True, recovery_step=step))   # the end of the episode
        return out

    def _report_dropped(self, reading: Reading) -> None:
        """Log and count the values the bounds check dropped (a warning the first time per command and field)."""
        for rejected in reading.rejected:
            key = (rejected.command, rejected.field)
            self._dropped.append(key)
            level = logging.DEBUG if key in self._dropped_seen else logging.WARNING
            self._dropped_seen.add(key)
            log.log(level, "modem %s: %s", self.name, rejected)

    def take_dropped(self) -> list[tuple[str, str]]:
        """Return the (command, field) of each value dropped as physically impossible since the last call."""
        dropped, self._dropped = self._dropped, []
        return dropped

    def take_empty(self) -> int:
        """Return how many polls gave no value at all since the last call (none was published for them)."""
        empty, self._empty = self._empty, 0
        return empty

    def _down(self, now_ns: int, message: str, step: int) -> ModemDown:
        """Return the failure of a poll the modem did not answer, with its ``modem`` sample."""
        return ModemDown(message, [modem_state.modem_sample(now_ns=now_ns, modem=self.name, carrier=self._carrier,
                                                            answering=False, recovery_step=step)])

    def unanswered(self, now_ns: int) -> list[Sample]:
        """Return what a poll the runner cancelled past its interval says: the modem did not answer."""
        return [modem_state.modem_sample(now_ns=now_ns, modem=self.name, carrier=self._carrier, answering=False)]

    def take_recoveries(self) -> list[tuple[str, str]]:
        """Return the (step, result) of the recovery steps run since the last call (the runner's /metrics)."""
        return self._recovery.take()

    async def _port_step(self, step: str) -> tuple[bool, str]:
        """Run a recovery step on the modem's port (reopen, cfun); the AT backend only has them."""
        assert isinstance(self._backend, _AtModem)   # the ladder has port steps only then
        return await self._backend.recover(step)

    async def close(self) -> None:
        """Close the port or stop mmcli; called once when the agent stops, safe if it was never opened."""
        await self._backend.close()

    async def ask(self, commands: Sequence[str]) -> list[Reply]:
        """Send AT ``commands`` once each and return the modem's replies, with the port handling, bounds and
        timeout of a poll. For the hardware identity at enrolment (``agent.fleet.enrol``), before the runner
        polls; never concurrently with ``collect``. SourceError for a modem ModemManager owns."""
        if not isinstance(self._backend, _AtModem):
            raise SourceError(f"modem {self.name}: ModemManager owns it; the agent sends it no AT commands")
        return await self._backend.ask(commands)


class _AtModem:
    """AT commands over a serial port, in a worker thread; the port is opened lazily and dropped on failure."""

    def __init__(self, config: CellularConfig) -> None:
        assert config.port is not None  # the config validator requires it
        self.name = config.name
        self._config = config
        self._where = config.port
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
                raise _ModemFailure(f"modem {self.name} on {self._where}: serial error: {exc}", "port") from exc

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
                raise _ModemFailure(f"modem {self.name} on {self._where}: serial error: {exc}", "port") from exc
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
            raise _ModemFailure(f"modem {self.name} on {self._where} gave no usable answer ({said})", "unusable")
        return result.reading

    def _open(self) -> Any:
        """Open the port, pick the vendor and put the modem in the mode the parsers expect."""
        cfg = self._config
        port = self._open_port()
        self._setup(port, "ATE0")
        if cfg.vendor == "auto":
            self._vendor, revision = self._detect(port)
        else:
            self._vendor = cfg.vendor
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
            raise _ModemFailure(f"modem {self.name}: cannot open {cfg.port}: {exc}", "port") from exc
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
        deadline = time.monotonic() + self._config.timeout
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
                    raise _ModemFailure(f"{where}: {command} answered more than {_MAX_LINES} lines without OK"
                                        f" or ERROR (last: {text[:80]!r}); is it flooding, or the wrong port?",
                                        "flooding")
                reply.lines.append(text)
            if len(buffer) > _MAX_LINE:
                raise _ModemFailure(f"{where}: {command} answered more than {_MAX_LINE} bytes without a line break"
                                    f" ({buffer[:16]!r}...); binary data: the wrong port, or the wrong baud rate?",
                                    "no line break")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _ModemFailure(
                    f"modem {self.name} on {self._where}: no answer to {command} "
                    f"within {strict.format_duration(self._config.timeout)}",
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
