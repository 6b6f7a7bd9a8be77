"""A cellular modem double on a pseudo-terminal: it answers AT commands from a mutable state.

The agent talks to it exactly as to a USB modem: open ``SimModem().port`` with pyserial. Tests change the
state while it runs; a field engineer can try the agent with no hardware::

    python -m agent.sim.modem                          # prints the port, serves until Ctrl-C
    python -m agent.sim.modem --personality quectel-nsa

Personalities (``PERSONALITIES``; every one is registered on Viettel, 452-04, and answers ``AT+CGSN`` with its
IMEI and one vendor's ICCID command with its SIM's ICCID: generic and SIMCom ``AT+CCID``, Quectel ``AT+QCCID``
only, Sierra ``AT!ICCID?`` only; as ``IDENTITIES`` lists)::

    generic        3GPP commands only; ATI names no vendor this project knows
    quectel-lte    EC25 on LTE band 3: AT+QENG="servingcell" (18 fields), AT+QCSQ, AT+QNWINFO
    quectel-nsa    RM500Q on EN-DC: band 3 anchor and an n41 leg (three-line QENG), +C5GREG
    quectel-sa     RM520N on NR SA band n41: QENG NR5G-SA, +C5GREG registered, +CEREG not
    simcom-lte     SIM7600 on LTE band 3: AT+CPSI?
    sierra-lte     EM7455 on LTE band 3: AT!GSTATUS?

Commands (any letter case; each ends with CR)::

    AT, ATE0, ATE1          OK (E0/E1 turn the echo off/on)
    ATI                     <identity lines>                ERROR if identity is None
    AT+CGMI                 <manufacturer>                  ERROR if manufacturer is None
    AT+CSQ                  +CSQ: <csq>                     ERROR if csq is None
    AT+CESQ                 +CESQ: <cesq>                   ERROR if cesq is None
    AT+COPS?                <cops>                          ERROR if cops is None
    AT+COPS=3,<0-2>         OK
    AT+CEREG?               <cereg>                         ERROR if cereg is None
    AT+CEREG=<0-5>          OK
    AT+CREG?, AT+CGREG?     +CREG: 2,<stat> (+CGREG), <stat> as in <cereg>; ERROR if cereg is None
    AT+CREG=<0-5>, AT+CGREG=<0-5>  OK
    AT+CGMR                 the Revision of the identity    ERROR if it has none
    AT+C5GREG?              <c5greg>                        ERROR if c5greg is None (an LTE-only modem)
    AT+C5GREG=<0-5>         OK                              ERROR if c5greg is None
    AT+CPIN?                +CPIN: <sim>                    +CME ERROR: 10 (SIM not inserted) if sim is None
    AT+CFUN=<fun>[,<rst>]   OK (counted in ``resets``)
    a key of ``answers``    its lines                       ERROR if the value is None
    anything else           ERROR

``hang`` makes it swallow input and answer nothing; ``error`` (e.g. ``"+CME ERROR: 10"``) makes every
command answer that. Assigning one attribute is atomic; the methods that change several hold the lock that
the serving thread takes while it answers.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import select
import signal
import threading
import tty
from dataclasses import dataclass, field
from typing import Final

__all__ = ["SimModem", "Personality", "PERSONALITIES", "IDENTITIES", "main"]

_CR: Final = b"\r"
_CRLF: Final = b"\r\n"
_COPS_FORMAT = re.compile(r"AT\+COPS=3,[012]")
_CEREG_MODE = re.compile(r"AT\+C(?:E|G)?REG=[0-5]")
_C5GREG_MODE = re.compile(r"AT\+C5GREG=[0-5]")
_CFUN = re.compile(r"AT\+CFUN=[0-9]{1,3}(,[01])?")
_QENG: Final = 'AT+QENG="SERVINGCELL"'


@dataclass(frozen=True)
class Personality:
    """What one kind of modem answers: its identity, its 3GPP answers and its vendor commands."""

    identity: tuple[str, ...]  # the lines of ATI
    manufacturer: str  # AT+CGMI
    csq: tuple[int, int]
    cesq: tuple[int, int, int, int, int, int]
    cops: str
    cereg: str
    c5greg: str | None = None  # None: the modem has no +C5GREG (LTE only)
    answers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # upper-case command -> information lines


# What each personality answers to the identity commands (enrolment reads them): IMEI, then the ICCID command and
# its line. The numbers are made up, of the right length and form.
IDENTITIES: Final[dict[str, tuple[str, str, str]]] = {
    "generic": ("867962040012345", "AT+CCID", "+CCID: 89840480000012345678"),
    "quectel-lte": ("861536030123456", "AT+QCCID", "+QCCID: 89840480000012345679"),
    "quectel-nsa": ("861536030123464", "AT+QCCID", "+QCCID: 8984048000001234568F"),
    "quectel-sa": ("861536030123472", "AT+QCCID", "+QCCID: 89840480000012345687"),
    "simcom-lte": ("861234567890126", "AT+CCID", "+CCID: 89840480000012345695"),
    "sierra-lte": ("359072061234567", "AT!ICCID?", "!ICCID: 89840480000012345703"),
}

# The vendor lines follow the layouts of the vendors' manuals and of captures from real modems; the numbers are
# made consistent with the 3GPP answers of the same personality (e.g. +CESQ rsrp 46 = -95 dBm = QENG RSRP).
PERSONALITIES: Final[dict[str, Personality]] = {
    "generic": Personality(
        identity=("ZoneWatch SimModem", "Revision: 3GPP"),
        manufacturer="ZoneWatch",
        csq=(18, 99),
        cesq=(99, 99, 255, 255, 20, 80),
        cops='+COPS: 0,2,"45204",7',
        cereg='+CEREG: 2,1,"1A2B","5F1EA15",7',
    ),
    "quectel-lte": Personality(
        identity=("Quectel", "EC25", "Revision: EC25EFAR06A06M4G"),
        manufacturer="Quectel",
        csq=(24, 99),
        cesq=(99, 99, 255, 255, 18, 46),
        cops='+COPS: 0,2,"45204",7',
        cereg='+CEREG: 2,1,"1A2B","5F1EA15",7',
        answers={
            _QENG: ('+QENG: "servingcell","NOCONN","LTE","FDD",452,04,5F1EA15,188,1650,3,5,5,1A2B,-95,-11,-65,14,30',),
            "AT+QCSQ": ('+QCSQ: "LTE",-65,-95,170,-11',),
            "AT+QNWINFO": ('+QNWINFO: "FDD LTE","45204","LTE BAND 3",1650',),
        },
    ),
    "quectel-nsa": Personality(
        identity=("Quectel", "RM500Q-GL", "Revision: RM500QGLABR11A06M4G"),
        manufacturer="Quectel",
        csq=(23, 99),
        cesq=(99, 99, 255, 255, 16, 42),
        cops='+COPS: 0,2,"45204",13',
        cereg='+CEREG: 2,1,"1A2B","5F1EA15",7',
        c5greg="+C5GREG: 2,0",
        answers={
            _QENG: (
                '+QENG: "servingcell","NOCONN"',
                '+QENG: "LTE","FDD",452,04,5F1EA15,12,1650,3,5,5,1A2B,-99,-12,-67,11,9,230,-',
                '+QENG: "NR5G-NSA",452,04,747,-71,13,-11,504990,41,12,1',
            ),
            "AT+QCSQ": ('+QCSQ: "LTE",-67,-99,155,-12', '+QCSQ: "NR5G",-71,13,-11'),
            "AT+QNWINFO": ('+QNWINFO: "FDD LTE","45204","LTE BAND 3",1650',),
        },
    ),
    "quectel-sa": Personality(
        identity=("Quectel", "RM520N-GL", "Revision: RM520NGLAAR01A07M4G"),
        manufacturer="Quectel",
        csq=(99, 99),
        cesq=(99, 99, 255, 255, 255, 255),
        cops='+COPS: 0,2,"45204",11',
        cereg="+CEREG: 2,0",
        c5greg='+C5GREG: 2,1,"46550B","0000000170C23000",11,1,"01"',
        answers={
            _QENG: ('+QENG: "servingcell","NOCONN","NR5G-SA","TDD",452,04,170C23000,901,46550B,504990,41,-,-54,-10,16,'
                    "-,-",),
            "AT+QCSQ": ('+QCSQ: "NR5G",-54,16,-10',),
            "AT+QNWINFO": ('+QNWINFO: "TDD NR5G","45204","NR5G BAND 41",504990',),
        },
    ),
    "simcom-lte": Personality(
        identity=(
            "Manufacturer: SIMCOM INCORPORATED",
            "Model: SIMCOM_SIM7600E-H",
            "Revision: SIM7600M22_V2.0",
            "IMEI: 861234567890126",
            "+GCAP: +CGSM",
        ),
        manufacturer="SIMCOM INCORPORATED",
        csq=(29, 99),
        cesq=(99, 99, 255, 255, 21, 56),
        cops='+COPS: 0,2,"45204",7',
        cereg='+CEREG: 2,1,"1A2B","B28ABBC",7',
        answers={"AT+CPSI?": ("+CPSI: LTE,Online,452-04,0x1A2B,187214780,257,EUTRAN-BAND3,1850,5,5,-94,-850,-553,15",)},
    ),
    "sierra-lte": Personality(
        identity=(
            "Manufacturer: Sierra Wireless, Incorporated",
            "Model: EM7455",
            "Revision: SWI9X30C_02.33.03.00 r8209 CARMD-EV-FRMWR2 2019/08/28 20:59:30",
            "IMEI: 359072061234567",
            "IMEI SV: 22",
            "FSN: LF123456789012",
            "+GCAP: +CGSM",
        ),
        manufacturer="Sierra Wireless, Incorporated",
        csq=(28, 99),
        cesq=(99, 99, 255, 255, 19, 55),
        cops='+COPS: 0,2,"45204",7',
        cereg='+CEREG: 2,1,"8C65","A14666A",7',
        answers={
            "AT!GSTATUS?": (
                "!GSTATUS: ",
                "Current Time:  4527\t\tTemperature: 37",
                "Reset Counter: 1\t\tMode:        ONLINE         ",
                "System mode:   LTE        \tPS state:    Attached     ",
                "LTE band:      B3     \t\tLTE bw:      20 MHz  ",
                "LTE Rx chan:   1300\t\tLTE Tx chan: 19300",
                "LTE CA state:  INACTIVE",
                "EMM state:     Registered     \tNormal Service ",
                "RRC state:     RRC Idle       ",
                "IMS reg state: No Srv  \t\t",
                "",
                "PCC RxM RSSI:  -57\t\tRSRP (dBm):  -86",
                "PCC RxD RSSI:  -61\t\tRSRP (dBm):  -91",
                "Tx Power:      --\t\tTAC:         8C65 (35941)",
                "RSRQ (dB):     -10.5\t\tCell ID:     0A14666A (169109098)",
                "SINR (dB):      13.6",
            ),
        },
    ),
}


class SimModem:
    """An AT modem double on a pty; ``port`` is the path to open, ``start()``/``stop()`` run it."""

    def __init__(self, personality: str = "generic") -> None:
        if personality not in PERSONALITIES:
            raise ValueError(f"unknown personality {personality!r}; known: {', '.join(PERSONALITIES)}")
        p = PERSONALITIES[personality]
        self.personality = personality
        self.echo = True  # real modems echo until ATE0
        self.hang = False
        self.error: str | None = None
        self.identity: tuple[str, ...] | None = p.identity
        self.manufacturer: str | None = p.manufacturer
        self.csq: tuple[int, int] | None = p.csq
        self.cesq: tuple[int, int, int, int, int, int] | None = p.cesq
        self.cops: str | None = p.cops
        self.cereg: str | None = p.cereg
        self.c5greg: str | None = p.c5greg
        self.sim: str | None = "READY"  # AT+CPIN?: READY, SIM PIN, SIM PUK ...; None: no SIM inserted
        self.resets = 0  # AT+CFUN commands taken (a reset, for the agent's recovery ladder)
        self.answers: dict[str, tuple[str, ...] | None] = dict(p.answers)
        imei, iccid_command, iccid_line = IDENTITIES[personality]
        self.answers.setdefault("AT+CGSN", (imei,))
        self.answers.setdefault(iccid_command, (iccid_line,))
        self.commands: list[str] = []  # every command received, in order, as sent
        self._lock = threading.Lock()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo or CR/LF translation by the line discipline: the modem does that
        self.port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name=f"sim-modem {self.port}", daemon=True)
        self._stopped = False

    def __enter__(self) -> SimModem:
        """Start serving."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop serving and release the pty."""
        self.stop()

    def start(self) -> None:
        """Start the thread that answers commands."""
        self._thread.start()

    def stop(self) -> None:
        """Stop answering, join the thread and close the pty (an open client then sees the port vanish)."""
        if self._stopped:
            return
        self._stopped = True
        os.write(self._wake_w, b"x")
        if self._thread.is_alive():
            self._thread.join()
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            os.close(fd)

    def set_signal(self, rsrp_dbm: float | None, rsrq_db: float | None) -> None:
        """Report an LTE cell at this RSRP and RSRQ in +CESQ (None reports 255, unknown)."""
        rsrp = 255 if rsrp_dbm is None else min(max(round(rsrp_dbm + 141), 0), 97)
        rsrq = 255 if rsrq_db is None else min(max(round((rsrq_db + 20) * 2), 0), 34)
        self.cesq = (99, 99, 255, 255, rsrq, rsrp)

    def set_registered(
        self, registered: bool, *, plmn: str = "45204", tac: str = "1A2B", cell: str = "5F1EA15", act: int = 7
    ) -> None:
        """Report the modem registered on ``plmn`` in ``cell``, or searching with no operator."""
        with self._lock:
            if registered:
                self.cops = f'+COPS: 0,2,"{plmn}",{act}'
                self.cereg = f'+CEREG: 2,1,"{tac}","{cell}",{act}'
            else:
                self.cops = "+COPS: 0"
                self.cereg = "+CEREG: 2,2"

    def answer(self, command: str) -> list[str]:
        """Return the lines the modem sends for ``command``, the final result code last."""
        with self._lock:
            if self.error is not None:
                return [self.error]
            name = command.strip().upper()
            if name in ("AT", "ATE0", "ATE1"):
                if name != "AT":
                    self.echo = name == "ATE1"
                return ["OK"]
            if _COPS_FORMAT.fullmatch(name) or _CEREG_MODE.fullmatch(name):
                return ["OK"]
            if _C5GREG_MODE.fullmatch(name):
                return ["ERROR"] if self.c5greg is None else ["OK"]
            if name == "AT+CPIN?":
                return ["+CME ERROR: 10"] if self.sim is None else [f"+CPIN: {self.sim}", "OK"]
            if _CFUN.fullmatch(name):
                self.resets += 1
                return ["OK"]
            info: tuple[str, ...] | str | None = None
            if name == "ATI":
                info = self.identity
            elif name == "AT+CGMI":
                info = self.manufacturer
            elif name == "AT+CSQ" and self.csq is not None:
                info = "+CSQ: " + ",".join(map(str, self.csq))
            elif name == "AT+CESQ" and self.cesq is not None:
                info = "+CESQ: " + ",".join(map(str, self.cesq))
            elif name == "AT+COPS?":
                info = self.cops
            elif name == "AT+CEREG?":
                info = self.cereg
            elif name in ("AT+CREG?", "AT+CGREG?") and self.cereg is not None:
                stat = self.cereg.partition(":")[2].split(",")[1].strip() if "," in self.cereg else "4"
                info = f"+{name[3:-1]}: 2,{stat}"
            elif name == "AT+CGMR":
                info = next((line.partition(":")[2].strip() for line in self.identity or ()
                             if line.lower().startswith("revision:")), None)
            elif name == "AT+C5GREG?":
                info = self.c5greg
            elif name in self.answers:
                info = self.answers[name]
            if info is None:
                return ["ERROR"]
            return [info, "OK"] if isinstance(info, str) else [*info, "OK"]

    def _serve(self) -> None:
        """Read command lines from the pty and write the answers, until stop()."""
        buffer = b""
        while True:
            ready, _, _ = select.select([self._master, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                buffer += os.read(self._master, 1024)
            except OSError:
                return
            while _CR in buffer:
                raw, buffer = buffer.split(_CR, 1)
                command = raw.decode("ascii", errors="replace").strip()
                if not command or self.hang:
                    continue
                self.commands.append(command)
                echo = raw + _CR if self.echo else b""  # echoed before the command takes effect
                lines = self.answer(command)
                out = echo + b"".join(_CRLF + line.encode("ascii") + _CRLF for line in lines)
                try:
                    os.write(self._master, out)
                except OSError:
                    return


def main(argv: list[str] | None = None) -> None:
    """Serve a simulated modem on a new pty until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m agent.sim.modem", description=main.__doc__)
    parser.add_argument("--personality", default="generic", choices=sorted(PERSONALITIES),
                        help="which modem to be (default generic); the options below change only the 3GPP "
                             "answers of the generic one")
    parser.add_argument("--rsrp", type=float, default=-61.0, help="RSRP to report, dBm (default -61)")
    parser.add_argument("--rsrq", type=float, default=-10.0, help="RSRQ to report, dB (default -10)")
    parser.add_argument("--plmn", default="45204", help="operator MCC+MNC to report (default 45204, Viettel)")
    parser.add_argument("--cell", default="5F1EA15", help="LTE cell id (ECI, hex) to report (default 5F1EA15)")
    parser.add_argument("--wander", type=float, default=0.0,
                        help="let RSRP drift up to this many dB around --rsrp, a step every 2 s (default 0: fixed)")
    parser.add_argument("--hole-rsrp", type=float, default=-118.0,
                        help="RSRP reported after SIGUSR1 (a coverage hole) until SIGUSR2 (default -118)")
    args = parser.parse_args(argv)
    modem = SimModem(args.personality)
    generic = args.personality == "generic"
    if generic:
        modem.set_signal(args.rsrp, args.rsrq)
        modem.set_registered(True, plmn=args.plmn, cell=args.cell)
    stop = threading.Event()
    hole = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def enter_hole(*_: object) -> None:
        hole.set()
        modem.set_signal(args.hole_rsrp, -16.0)

    def leave_hole(*_: object) -> None:
        hole.clear()
        modem.set_signal(args.rsrp, args.rsrq)

    if generic:  # a demo or a field engineer can move the modem into a coverage hole and back
        signal.signal(signal.SIGUSR1, enter_hole)
        signal.signal(signal.SIGUSR2, leave_hole)
    rng = random.Random()
    rsrp = args.rsrp
    with modem:
        print(f"simulated {args.personality} modem on {modem.port} (Ctrl-C to stop)", flush=True)
        try:
            while not stop.wait(2.0):
                if args.wander and generic and not hole.is_set():
                    rsrp = min(max(rsrp + rng.uniform(-3, 3), args.rsrp - args.wander), args.rsrp + args.wander)
                    modem.set_signal(rsrp, args.rsrq)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
