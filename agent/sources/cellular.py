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
registration state: ``agent.sources.modem_state``). The AT backend is ``agent.sources.cellular_at``, the
ModemManager backend ``agent.sources.mmcli``.

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

import logging
import math
import re
from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from agent.sources import SourceError, modem_state, vendors
from agent.sources.cellular_at import AtModem, ModemFailure
from agent.sources.mmcli import MmcliModem
from agent.sources.modem_recovery import STEP_NUMBER, Recovery, RecoveryConfig
from agent.sources.vendors import Reading, Reply
from zonewatch import strict
from zonewatch.wire import Sample

__all__ = ["CellularConfig", "CellularSource", "ModemDown"]

log = logging.getLogger(__name__)

_PLMN = re.compile(r"^\d{3}-\d{2,3}$")


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
            assert config.port is not None  # the config validator requires it
            self._backend = AtModem(name=config.name, port=config.port, vendor=config.vendor,
                                    baudrate=config.baudrate, timeout=config.timeout)
        self._failing: tuple[str, str] | None = None  # (kind, first message) while polls fail
        self._recovery = Recovery(config.name, config.recovery, port_steps=isinstance(self._backend, AtModem))
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
            kind = exc.kind if isinstance(exc, ModemFailure) else str(exc)
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
            if isinstance(self._backend, AtModem):
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
        assert isinstance(self._backend, AtModem)   # the ladder has port steps only then
        return await self._backend.recover(step)

    async def close(self) -> None:
        """Close the port or stop mmcli; called once when the agent stops, safe if it was never opened."""
        await self._backend.close()

    async def ask(self, commands: Sequence[str]) -> list[Reply]:
        """Send AT ``commands`` once each and return the modem's replies, with the port handling, bounds and
        timeout of a poll. For the hardware identity at enrolment (``agent.fleet.enrol``), before the runner
        polls; never concurrently with ``collect``. SourceError for a modem ModemManager owns."""
        if not isinstance(self._backend, AtModem):
            raise SourceError(f"modem {self.name}: ModemManager owns it; the agent sends it no AT commands")
        return await self._backend.ask(commands)
