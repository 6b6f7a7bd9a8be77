"""One poll: the replies of every command put together into one Reading (``interpret``), each value chosen from
the answers that give it in order of trust, the first within its field's physical bounds; what gave nothing is a
``Problem``. The Reading itself, its check and its sample are ``reading``'s."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from agent.sources import at
from agent.sources.at import ATParseError
from agent.sources.vendors.common import _LTE_RATS, NrLeg, Qcsq, Qnwinfo, Scales, ServingCell, Vendor
from agent.sources.vendors.quectel import _QCSQ_LTE_KINDS, parse_qcsq, parse_qeng, parse_qnwinfo
from agent.sources.vendors.reading import Reading, Rejected, within
from agent.sources.vendors.sierra import parse_gstatus
from agent.sources.vendors.simcom import parse_cpsi


@dataclass
class Reply:
    """What a modem printed for one command: information lines and the final result code."""

    command: str | None  # as sent or echoed; None for lines whose command is unknown (a transcript without echo)
    lines: list[str] = field(default_factory=list)
    final: str | None = "OK"  # OK, ERROR, +CME ERROR: <n>; None if the transcript ends before one
    numbers: list[int] = field(default_factory=list)  # transcript line number of each entry of ``lines``
    final_number: int | None = None

    @property
    def ok(self) -> bool:
        """Return True unless the command ended in an error."""
        return self.final is None or self.final == "OK"

    def number(self, index: int) -> int | None:
        """Return the transcript line number of ``lines[index]``, if known."""
        return self.numbers[index] if index < len(self.numbers) else None


@dataclass(frozen=True, slots=True)
class Problem:
    """A reply or line that gave no value: ``kind`` says why."""

    command: str | None
    kind: Literal["error", "missing", "unparsed", "unread"]  # ERROR answer, no answer line, bad line, not ours
    text: str  # the line as printed, or the final result code
    reason: str
    line: int | None = None  # transcript line number

    def __str__(self) -> str:
        """Return the problem as one phrase, quoting the line when it is one that failed to parse."""
        return f"cannot parse {self.text!r}: {self.reason}" if self.kind == "unparsed" else self.reason


@dataclass(frozen=True, slots=True)
class Interpretation:
    """What one poll's replies say: the reading, what gave nothing, and which commands answered usefully."""

    reading: Reading
    problems: tuple[Problem, ...]
    answered: frozenset[str]  # commands (as sent) whose reply had no problem
    usable: bool  # False if no reply gave any value


_IDENTITY: Final = frozenset({"ATI", "ATI0", "AT+CGMI", "AT+GMI", "AT+CGMM", "AT+GMM", "AT+CGMR", "AT+GMR"})
# Command (upper case, no spaces) -> the prefix of the line that answers it.
_EXPECTED: Final = {
    "AT+CSQ": "+CSQ",
    "AT+CESQ": "+CESQ",
    "AT+COPS?": "+COPS",
    "AT+CREG?": "+CREG",
    "AT+CGREG?": "+CGREG",
    "AT+CEREG?": "+CEREG",
    "AT+C5GREG?": "+C5GREG",
    'AT+QENG="SERVINGCELL"': "+QENG",
    "AT+QCSQ": "+QCSQ",
    "AT+QNWINFO": "+QNWINFO",
    "AT+CPSI?": "+CPSI",
    "AT!GSTATUS?": "!GSTATUS",
}
_OWNER: Final[dict[str, Vendor]] = {
    "+QENG": "quectel",
    "+QCSQ": "quectel",
    "+QNWINFO": "quectel",
    "+CPSI": "simcom",
    "!GSTATUS": "sierra",
}
_PREFIX = re.compile(r"^\s*([+!$^*#%][A-Za-z0-9]+)\s*:")


def prefix_of(line: str) -> str | None:
    """Return the answer prefix of a line (``"+CSQ"``, ``"!GSTATUS"``), or None for a line without one."""
    match = _PREFIX.match(line)
    return None if match is None else match[1].upper()


def vendor_of_line(line: str) -> Vendor | None:
    """Return the vendor whose command prints a line like this one (``+QENG:`` is Quectel's), None if 3GPP."""
    return _OWNER.get(prefix_of(line) or "")


def normal_command(command: str | None) -> str:
    """Return a command in the form used as a key: upper case, no spaces."""
    return "" if command is None else "".join(command.split()).upper()


@dataclass
class _Answers:
    """The parsed answers of one poll, filled as the replies are read."""

    csq: at.Csq | None = None
    cesq: at.Cesq | None = None
    cops: at.Cops | None = None
    creg: at.Registration | None = None
    cgreg: at.Registration | None = None
    cereg: at.Registration | None = None
    c5greg: at.Registration | None = None
    qeng: ServingCell | None = None
    cpsi: ServingCell | None = None
    gstatus: ServingCell | None = None
    qcsq: list[Qcsq] = field(default_factory=list)
    qnwinfo: Qnwinfo | None = None
    any: bool = False
    scales: Scales | None = None


def interpret(replies: Sequence[Reply], vendor: Vendor | None = None, scales: Scales | None = None) -> Interpretation:
    """Read the replies of one poll; ``vendor`` None accepts every vendor's answers, otherwise only its own.
    ``scales`` is what this modem's firmware was seen to print (kept by the caller from poll to poll)."""
    found = _Answers(scales=scales)
    problems: list[Problem] = []
    answered: set[str] = set()
    for reply in replies:
        before = len(problems)
        _read_reply(reply, vendor, found, problems)
        if len(problems) == before and reply.command is not None:
            answered.add(reply.command)
    return Interpretation(_reading(found), tuple(problems), frozenset(answered), found.any)


def _read_reply(reply: Reply, vendor: Vendor | None, found: _Answers, problems: list[Problem]) -> None:
    """Parse one reply into ``found``, adding a Problem for every line or answer that gave nothing."""
    command = normal_command(reply.command)
    if not reply.ok:
        problems.append(Problem(reply.command, "error", reply.final or "", f"answered {reply.final}",
                                reply.final_number))
        return
    if command in _IDENTITY:
        return  # read by detect_vendor, not here
    expected = _EXPECTED.get(command)
    if command == "AT!GSTATUS?" or (reply.lines and prefix_of(reply.lines[0]) == "!GSTATUS"):
        if not reply.lines:
            problems.append(Problem(reply.command, "missing", reply.final or "", "answered without a status table",
                                    reply.final_number))
        elif _allowed("!GSTATUS", reply, 0, vendor, problems):
            try:
                found.gstatus = parse_gstatus(reply.lines)
            except ATParseError as exc:
                problems.append(Problem(reply.command, "unparsed", exc.line, f"expected {exc.expected}",
                                        reply.number(0)))
            else:
                found.any = True
        return

    groups: dict[str, list[int]] = {}  # multi-line answers: prefix -> indexes of its lines
    for index, line in enumerate(reply.lines):
        prefix = prefix_of(line)
        if prefix is not None and not _allowed(prefix, reply, index, vendor, problems):
            continue
        if prefix in ("+QENG", "+CPSI"):
            groups.setdefault(prefix, []).append(index)
            continue
        try:
            known = prefix is not None and _read_line(prefix, line, found)
        except ATParseError as exc:
            problems.append(Problem(reply.command, "unparsed", line, f"expected {exc.expected}", reply.number(index)))
            continue
        if known:
            found.any = True
        else:
            what = f"an answer to {reply.command}" if reply.command else "a line"
            problems.append(Problem(reply.command, "unread", line, f"{what} that is not read (not a signal, "
                                    "operator or registration answer)", reply.number(index)))
    for prefix, indexes in groups.items():
        lines = [reply.lines[i] for i in indexes]
        try:
            cell = parse_qeng(lines, found.scales) if prefix == "+QENG" else parse_cpsi(lines)
        except ATParseError as exc:
            at_index = next((i for i in indexes if reply.lines[i] == exc.line), indexes[0])
            problems.append(Problem(reply.command, "unparsed", exc.line or lines[0], f"expected {exc.expected}",
                                    reply.number(at_index)))
            continue
        if prefix == "+QENG":
            found.qeng = cell
        else:
            found.cpsi = cell
        found.any = True

    if expected is not None and not any(prefix_of(line) == expected for line in reply.lines):
        problems.append(Problem(reply.command, "missing", reply.final or "", f"answered without a {expected}: line",
                                reply.final_number))


def _allowed(prefix: str, reply: Reply, index: int, vendor: Vendor | None, problems: list[Problem]) -> bool:
    """Return True unless the line is another vendor's answer than the one the modem is read as."""
    owner = _OWNER.get(prefix)
    if owner is None or vendor is None or owner == vendor:
        return True
    line = reply.lines[index] if index < len(reply.lines) else ""
    problems.append(Problem(reply.command, "unread", line, f"a {owner} answer, but the modem is read as {vendor}",
                            reply.number(index)))
    return False


def _read_line(prefix: str, line: str, found: _Answers) -> bool:
    """Parse a one-line answer into ``found``; return False for a prefix that is not read."""
    if prefix == "+CSQ":
        found.csq = at.parse_csq(line)
    elif prefix == "+CESQ":
        found.cesq = at.parse_cesq(line)
    elif prefix == "+COPS":
        found.cops = at.parse_cops(line)
    elif prefix == "+CEREG":
        found.cereg = at.parse_creg(line)
    elif prefix == "+C5GREG":
        found.c5greg = at.parse_creg(line)
    elif prefix == "+CREG":
        found.creg = at.parse_creg(line)
    elif prefix == "+CGREG":
        found.cgreg = at.parse_creg(line)
    elif prefix == "+QCSQ":
        found.qcsq.append(parse_qcsq(line))
    elif prefix == "+QNWINFO":
        found.qnwinfo = parse_qnwinfo(line)
    else:
        return False
    return True


_COMMAND_OF: Final = {"qeng": 'AT+QENG="servingcell"', "cpsi": "AT+CPSI?", "gstatus": "AT!GSTATUS?"}


class _Picker:
    """Chooses each field's value from the answers that give it, in order of trust: the first within the
    field's physical bounds wins, the ones before it that are not are rejected (and reported)."""

    def __init__(self) -> None:
        self.origin: dict[str, str] = {}
        self.rejected: list[Rejected] = []

    def pick(self, name: str, *candidates: tuple[float | None, str]) -> float | None:
        """Return the first candidate value within bounds for field ``name`` (see ``reading.guard``)."""
        for value, command in candidates:
            if value is None:
                continue
            if within(name, value):
                self.origin[name] = command
                return value
            self.rejected.append(Rejected(name, command, value))
        return None


def _reading(found: _Answers) -> Reading:
    """Put the answers of one poll together: vendor answers first, 3GPP answers where they say nothing."""
    serving = found.qeng or found.cpsi or found.gstatus
    source = "qeng" if found.qeng else "cpsi" if found.cpsi else "gstatus"
    scmd = _COMMAND_OF[source]
    cops, cesq, csq, info = found.cops, found.cesq, found.csq, found.qnwinfo
    # most specific first: 5GS, EPS, GPRS, CS; whichever answered
    regs = [r for r in (found.c5greg, found.cereg, found.cgreg, found.creg) if r is not None]
    on = [r for r in regs if r.registered]

    if regs:
        registered: bool | None = bool(on)
    else:
        registered = serving.registered if serving is not None else None

    rat = next((r for r in (
        serving.rat if serving is not None else None,
        cops.rat if cops is not None else None,
        *(r.rat for r in on),
        *(r.rat for r in regs),
        info.rat if info is not None else None,
    ) if r), None)  # fmt: skip

    cell_id: int | None = None
    cell_kind: Literal["lte", "nr"] | None = None
    if serving is not None and serving.cell_id is not None:
        cell_id = serving.cell_id
        if serving.rat in _LTE_RATS:
            cell_kind = "lte"
        elif serving.rat == "nr5g-sa":
            cell_kind = "nr"
    else:
        reg = next((r for r in on + regs if r.cell_id is not None), None)
        if reg is not None:
            cell_id = reg.cell_id
            if reg.command == "C5GREG":
                cell_kind = "nr"
            elif reg.command == "CEREG" or reg.rat in _LTE_RATS:
                cell_kind = "lte"
    if rat in ("umts", "gsm"):
        cell_kind = None

    lte_qcsq = next((q for q in found.qcsq if q.sysmode in _QCSQ_LTE_KINDS), None)
    nr_qcsq = next((q for q in found.qcsq if q.sysmode == "NR5G"), None) or Qcsq(sysmode="")
    other_qcsq = next((q for q in found.qcsq if q.sysmode in ("WCDMA", "GSM")), None) or Qcsq(sysmode="")
    anchor_is_lte = serving is None or serving.rat in _LTE_RATS
    sv = serving if serving is not None else ServingCell(rat=None)
    ql = lte_qcsq if anchor_is_lte and lte_qcsq is not None else Qcsq(sysmode="")
    nr = sv.nr or NrLeg()
    ce = cesq if cesq is not None else at.Cesq(None, None, None, None, None, None)
    # +CESQ's NR fields (Rel-15): the serving cell's on NR SA, the NR leg's on EN-DC
    nr_main = rat == "nr5g-sa" or (rat in (None, "nr5g") and ce.rsrp_dbm is None and ce.ss_rsrp_dbm is not None)
    main_nr = (ce.ss_rsrp_dbm, ce.ss_rsrq_db, ce.ss_sinr_db) if nr_main else (None, None, None)
    leg_nr = (None, None, None) if nr_main else (ce.ss_rsrp_dbm, ce.ss_rsrq_db, ce.ss_sinr_db)
    q_main = (nr_qcsq.rsrp_dbm, nr_qcsq.rsrq_db) if rat == "nr5g-sa" else (None, None)
    q_leg = (nr_qcsq.rsrp_dbm, nr_qcsq.rsrq_db) if rat == "nr5g-nsa" else (None, None)
    c = _Picker()
    reading = Reading(
        rat=rat,
        # a PLMN printed as a string (+COPS numeric, +QNWINFO, +CPSI) before one printed as two integers (+QENG)
        plmn=((cops.plmn if cops is not None else None) or (info.plmn if info is not None else None)
              or sv.plmn),
        band=sv.band or (info.band if info is not None else None),
        cell_id=cell_id,
        cell_kind=cell_kind,
        pci=sv.pci if sv.pci is None or within("pci", sv.pci) else None,
        registered=registered,
        rsrp_dbm=c.pick("rsrp_dbm", (sv.rsrp_dbm, scmd), (ql.rsrp_dbm, "AT+QCSQ"), (q_main[0], "AT+QCSQ"),
                        (ce.rsrp_dbm, "AT+CESQ"), (main_nr[0], "AT+CESQ")),
        rsrq_db=c.pick("rsrq_db", (sv.rsrq_db, scmd), (ql.rsrq_db, "AT+QCSQ"), (q_main[1], "AT+QCSQ"),
                       (ce.rsrq_db, "AT+CESQ"), (main_nr[1], "AT+CESQ")),
        # AT+QCSQ's SINR code is documented; QENG's is firmware-dependent, so QCSQ wins on LTE.
        sinr_db=c.pick("sinr_db", (ql.sinr_db, "AT+QCSQ"), (sv.sinr_db, scmd), (main_nr[2], "AT+CESQ")),
        rssi_dbm=c.pick("rssi_dbm", (sv.rssi_dbm, scmd), (ql.rssi_dbm, "AT+QCSQ"), (other_qcsq.rssi_dbm, "AT+QCSQ"),
                        (csq.rssi_dbm if csq is not None else None, "AT+CSQ"), (ce.rxlev_dbm, "AT+CESQ")),
        nr_rsrp_dbm=c.pick("nr_rsrp_dbm", (nr.rsrp_dbm, scmd), (q_leg[0], "AT+QCSQ"), (leg_nr[0], "AT+CESQ")),
        nr_rsrq_db=c.pick("nr_rsrq_db", (nr.rsrq_db, scmd), (q_leg[1], "AT+QCSQ"), (leg_nr[1], "AT+CESQ")),
        nr_sinr_db=c.pick("nr_sinr_db", (nr.sinr_db, scmd), (leg_nr[2], "AT+CESQ")),
        rscp_dbm=c.pick("rscp_dbm", (sv.rscp_dbm, scmd), (other_qcsq.rscp_dbm, "AT+QCSQ"), (ce.rscp_dbm, "AT+CESQ")),
        ecio_db=c.pick("ecio_db", (sv.ecio_db, scmd), (other_qcsq.ecio_db, "AT+QCSQ"), (ce.ecno_db, "AT+CESQ")),
    )
    if sv.pci is not None and reading.pci is None:
        c.rejected.append(Rejected("pci", scmd, sv.pci))
    return replace(reading, origin=tuple(c.origin.items()), rejected=tuple(c.rejected))
