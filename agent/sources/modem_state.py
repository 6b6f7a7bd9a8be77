"""A modem's own health: does it answer, is its SIM usable, how is it registered (pure, stdlib only).

One poll stays one reading. A poll the modem answers gives its ``cellular`` sample (``agent.sources.vendors``) two
more fields; a poll it does not answer gives a ``modem`` sample instead, and so does the first poll it answers
after that (the end of the episode). The collector pages ModemDown and SimProblem from them
(``collector.alerting.health``)::

    cellular  sim_state      0 ready, 1 no SIM, 2 PIN required, 3 PUK required, 4 SIM failure (``AT+CPIN?``); absent
                             when not known (ModemManager, a modem without the command, a SIM still starting)
              reg_state      the 3GPP registration <stat> behind ``registered`` (0 not searching, 1 home,
                             2 searching, 3 denied, 4 unknown, 5 roaming, ...): the registered answer's, else
                             +CEREG's, else +C5GREG's
    modem     tags           modem (the source name), carrier (the configured one, else the PLMN last reported)
              answering      false for a poll the modem did not answer (no answer, a flood, its port gone from USB);
                             true for the first it answered after that
              recovery_step  the recovery step run at this poll: 0 none, 1 reopen, 2 cfun, 3 usb_power

``AT+CPIN?`` (3GPP TS 27.007 8.3) answers ``+CPIN: <code>``: ``READY``; ``SIM PIN`` / ``SIM PUK`` (and the
phone and network personalisation locks, ``PH-SIM PIN``, ``PH-NET PIN`` ...: the modem waits for a code before
it may register); ``SIM PIN2`` / ``SIM PUK2`` only guard a few SIM files, not service. Without a SIM most modems
answer ``+CME ERROR: 10`` (verbose: ``SIM not inserted``), some ``+CPIN: NOT INSERTED`` or ``SIM REMOVED``;
``+CME ERROR: 13`` (SIM failure) and ``15`` (SIM wrong) are a SIM that cannot be used; ``14`` (SIM busy) and
``NOT READY`` are a SIM still starting (unknown, not a problem). A plain ``ERROR`` is a modem without the
command: unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from agent.sources import at
from agent.sources.vendors import Reply
from zonewatch.wire import FieldValue, Sample

__all__ = ["CPIN", "SIM_STATES", "parse_cpin", "registration_state", "with_health", "modem_sample"]

CPIN: Final = "AT+CPIN?"
SIM_STATES: Final = ("ready", "absent", "pin", "puk", "failed")   # sim_state 0..4
READY, ABSENT, PIN, PUK, FAILED = range(5)
_CME: Final = {10: ABSENT, 11: PIN, 12: PUK, 13: FAILED, 15: FAILED}   # 14 SIM busy: unknown
_CME_TEXT: Final = {"SIM NOT INSERTED": ABSENT, "SIM PIN REQUIRED": PIN, "SIM PUK REQUIRED": PUK,
                    "SIM FAILURE": FAILED, "SIM WRONG": FAILED}
_CODES: Final = {"READY": READY, "SIM PIN2": READY, "SIM PUK2": READY, "NOT INSERTED": ABSENT,
                 "SIM REMOVED": ABSENT, "NO SIM": ABSENT}


def parse_cpin(reply: Reply) -> int | None:
    """Return the SIM state (``SIM_STATES`` index) an ``AT+CPIN?`` reply gives, or None when it gives none."""
    final = (reply.final or "").strip().upper()
    if final.startswith("+CME ERROR:"):
        code = final.partition(":")[2].strip()
        return _CME.get(int(code)) if code.isdigit() and len(code) <= 3 else _CME_TEXT.get(code)
    if not reply.ok:
        return None
    for line in reply.lines:
        head, sep, rest = line.strip().partition(":")
        if not sep or head.strip().upper() != "+CPIN":
            continue
        code = " ".join(rest.strip().strip('"').upper().split())
        if code in _CODES:
            return _CODES[code]
        if "PUK" in code:
            return PUK
        if "PIN" in code:
            return PIN
        return None   # NOT READY, or a word this module does not know
    return None


def registration_state(replies: Sequence[Reply]) -> int | None:
    """Return the 3GPP registration <stat> of a poll's replies: the first registered answer's, most specific
    first (+C5GREG, +CEREG, +CGREG, +CREG), else the most specific answer's; None without any (or a line that
    does not parse, which the poll reports on its own)."""
    found: dict[str, at.Registration] = {}
    for reply in replies:
        if not reply.ok:
            continue
        for line in reply.lines:
            head = line.strip().partition(":")[0].strip().upper()
            if head in _REGISTRATIONS:
                try:
                    found[head] = at.parse_creg(line)
                except at.ATParseError:
                    continue
    ordered = [found[head] for head in _REGISTRATIONS if head in found]
    on = [r for r in ordered if r.registered]
    if on:
        return on[0].stat
    return ordered[0].stat if ordered else None


_REGISTRATIONS: Final = ("+C5GREG", "+CEREG", "+CGREG", "+CREG")  # most specific first


def with_health(sample: Sample, sim_state: int | None, reg_state: int | None) -> Sample:
    """Return the ``cellular`` sample with the SIM and registration states it does not have yet (when known)."""
    extra: dict[str, FieldValue] = {}
    if sim_state is not None:
        extra["sim_state"] = sim_state
    if reg_state is not None:
        extra["reg_state"] = reg_state
    return Sample(sample.measurement, sample.tags, {**sample.fields, **extra}, sample.time_ns) if extra else sample


def modem_sample(*, now_ns: int, modem: str, carrier: str | None, answering: bool, recovery_step: int = 0) -> Sample:
    """Return the ``modem`` sample of a poll the modem did not answer (or the first it answered after that)."""
    tags = {"modem": modem}
    if carrier:
        tags["carrier"] = carrier
    return Sample("modem", tags, {"answering": answering, "recovery_step": recovery_step}, now_ns)
