"""A cellular modem double on a pseudo-terminal: it answers 3GPP AT commands from a mutable state.

The agent talks to it exactly as to a USB modem: open ``SimModem().port`` with pyserial. Tests change the
state while it runs; a field engineer can try the agent with no hardware::

    python -m agent.sim.modem            # prints the port, serves until Ctrl-C

Commands (any letter case; each ends with CR)::

    AT, ATE0, ATE1          OK (E0/E1 turn the echo off/on)
    AT+CSQ                  +CSQ: <csq>                     ERROR if csq is None
    AT+CESQ                 +CESQ: <cesq>                   ERROR if cesq is None
    AT+COPS?                <cops>                          ERROR if cops is None
    AT+COPS=3,<0-2>         OK
    AT+CEREG?               <cereg>                         ERROR if cereg is None
    AT+CEREG=<0-5>          OK
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
from typing import Final

__all__ = ["SimModem", "main"]

_CR: Final = b"\r"
_CRLF: Final = b"\r\n"
_COPS_FORMAT = re.compile(r"AT\+COPS=3,[012]")
_CEREG_MODE = re.compile(r"AT\+CEREG=[0-5]")


class SimModem:
    """An AT modem double on a pty; ``port`` is the path to open, ``start()``/``stop()`` run it."""

    def __init__(self) -> None:
        self.echo = True  # real modems echo until ATE0
        self.hang = False
        self.error: str | None = None
        self.csq: tuple[int, int] | None = (18, 99)
        self.cesq: tuple[int, int, int, int, int, int] | None = (99, 99, 255, 255, 20, 80)
        self.cops: str | None = '+COPS: 0,2,"45204",7'
        self.cereg: str | None = '+CEREG: 2,1,"1A2B","5F1EA15",7'
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
            info: str | None = None
            if name == "AT+CSQ" and self.csq is not None:
                info = "+CSQ: " + ",".join(map(str, self.csq))
            elif name == "AT+CESQ" and self.cesq is not None:
                info = "+CESQ: " + ",".join(map(str, self.cesq))
            elif name == "AT+COPS?":
                info = self.cops
            elif name == "AT+CEREG?":
                info = self.cereg
            return ["ERROR"] if info is None else [info, "OK"]

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
    parser.add_argument("--rsrp", type=float, default=-61.0, help="RSRP to report, dBm (default -61)")
    parser.add_argument("--rsrq", type=float, default=-10.0, help="RSRQ to report, dB (default -10)")
    parser.add_argument("--plmn", default="45204", help="operator MCC+MNC to report (default 45204, Viettel)")
    parser.add_argument("--cell", default="5F1EA15", help="LTE cell id (ECI, hex) to report (default 5F1EA15)")
    parser.add_argument("--wander", type=float, default=0.0,
                        help="let RSRP drift up to this many dB around --rsrp, a step every 2 s (default 0: fixed)")
    args = parser.parse_args(argv)
    modem = SimModem()
    modem.set_signal(args.rsrp, args.rsrq)
    modem.set_registered(True, plmn=args.plmn, cell=args.cell)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rng = random.Random()
    rsrp = args.rsrp
    with modem:
        print(f"simulated modem on {modem.port} (Ctrl-C to stop)", flush=True)
        try:
            while not stop.wait(2.0):
                if args.wander:
                    rsrp = min(max(rsrp + rng.uniform(-3, 3), args.rsrp - args.wander), args.rsrp + args.wander)
                    modem.set_signal(rsrp, args.rsrq)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
