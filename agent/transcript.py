"""Read a captured modem transcript and say what the agent would report from it (pure, no I/O).

A transcript is the raw text a modem printed in a terminal session: commands (when echo was on), their
answers, the final ``OK``/``ERROR`` of each, blank lines, and maybe unsolicited codes::

    AT+CSQ
    +CSQ: 18,99

    OK

The same interpretation as the live source (``agent.sources.vendors.interpret`` and ``to_sample``) turns it into
``cellular`` samples, one per poll: a poll ends when a command, or an answer of a kind already seen, comes again.
Lines that gave nothing are listed with the reason. ``zonewatch-agent parse-transcript FILE`` prints
``TranscriptResult.to_json()``.

Vendor: ``auto`` takes the vendor from an ATI or AT+CGMI answer in the transcript, else from the vendor answers
present (+QENG, +CPSI, !GSTATUS), and reads every vendor's answers; a named vendor reads only its own.

Two more forms are read:

- what ModemManager prints for an AT command, ``mmcli -m 0 --command='AT+QENG="servingcell"'`` (the command
  line, with or without the shell prompt, and with or without ``AT``) followed by ``response: '+QENG: ...'``
  (the answer lines inside the quotes, without a final OK);
- the JSON of ``mmcli -m N -J``, ``mmcli -m N --signal-get -J`` and ``mmcli -m N --get-cell-info -J``, one
  after the other in one file (any of them), read as the ModemManager backend reads them: one sample.

A poll whose answers gave no value at all (every one unknown) gives no sample: it is listed with the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final, Literal

from agent.sources import mmcli, vendors
from agent.sources.vendors import Problem, Reply, Vendor
from zonewatch.wire import Sample

__all__ = ["VendorChoice", "VENDOR_CHOICES", "TranscriptResult", "parse_transcript"]

VendorChoice = Literal["auto", "generic", "quectel", "simcom", "sierra"]
VENDOR_CHOICES: Final[tuple[VendorChoice, ...]] = ("auto", "generic", "quectel", "simcom", "sierra")

_COMMAND = re.compile(r"^AT(?:$|[+!$%*#&^]|[A-Z][0-9]*$)", re.IGNORECASE)
_FINAL = re.compile(r"^(?:OK|ERROR|NO CARRIER|\+CME ERROR:.*|\+CMS ERROR:.*)$", re.IGNORECASE)
_IDENTITY: Final = frozenset({"ATI", "ATI0", "AT+CGMI", "AT+GMI"})
# mmcli -m 0 --command='AT+QENG="servingcell"' (or --command=+qeng=\"servingcell\"), after any shell prompt
_MMCLI_COMMAND = re.compile(r"""mmcli\b.*?--command[= ](?P<q>['"]?)(?P<cmd>.+?)(?P=q)\s*$""")
_RESPONSE = "response: '"


@dataclass(frozen=True)
class TranscriptResult:
    """What a transcript says: the vendor it was read as, one sample per poll, and the lines that gave nothing."""

    vendor: Vendor
    samples: tuple[Sample, ...]
    unparsed: tuple[Problem, ...]

    def to_json(self) -> dict[str, Any]:
        """Return the result as the JSON object the CLI prints."""
        return {
            "vendor": self.vendor,
            "samples": [{"measurement": s.measurement, "tags": s.tags, "fields": s.fields} for s in self.samples],
            "unparsed": [
                {"line": p.line, "text": p.text, "command": p.command, "reason": p.reason} for p in self.unparsed
            ],
        }


def parse_transcript(
    text: str, vendor: VendorChoice = "auto", carrier: str | None = None, gnb_id_bits: int = 24
) -> TranscriptResult:
    """Return the readings in a modem transcript; ``carrier`` is used when the modem gave no PLMN."""
    if text.lstrip().startswith("{"):
        return _parse_mmcli_json(text, carrier, gnb_id_bits)
    replies = _replies(text)
    chosen: Vendor = _detect(replies) if vendor == "auto" else vendor
    gate: Vendor | None = None if vendor == "auto" else vendor
    samples: list[Sample] = []
    problems: list[Problem] = []
    scales = vendors.Scales()  # what this modem's firmware prints, learnt along the transcript
    for poll in _polls(replies):
        result = vendors.interpret(poll, gate, scales)
        problems.extend(result.problems)
        if not result.usable:
            continue
        reading = vendors.guard(result.reading)
        first = next((n for r in poll for n in (*r.numbers, r.final_number) if n is not None), None)
        problems.extend(Problem(r.command, "unparsed", f"{r.field} = {r.value:g}", str(r), first)
                        for r in reading.rejected)
        sample = vendors.to_sample(reading, now_ns=0, carrier=carrier, gnb_id_bits=gnb_id_bits)
        if sample.fields:
            samples.append(sample)
        else:
            problems.append(Problem(None, "missing", "", "a poll whose answers gave no value (every one unknown): "
                                    "no reading", first))
    problems.sort(key=lambda p: p.line or 0)
    return TranscriptResult(chosen, tuple(samples), tuple(problems))


def _parse_mmcli_json(text: str, carrier: str | None, gnb_id_bits: int) -> TranscriptResult:
    """Read the JSON documents mmcli printed (-J, --signal-get -J, --get-cell-info -J) as one reading."""
    decoder = json.JSONDecoder()
    status: mmcli.ModemStatus | None = None
    signal: mmcli.SignalReport | None = None
    cell: mmcli.CellInfo | None = None
    problems: list[Problem] = []
    at = 0
    while at < len(text):
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            break
        line = text.count("\n", 0, at) + 1
        try:
            document, at = decoder.raw_decode(text, at)
            modem = document.get("modem", {}) if isinstance(document, dict) else {}
            if isinstance(modem, dict) and "signal" in modem:
                signal = mmcli.parse_signal(document)
            elif isinstance(modem, dict) and ("cell-info" in modem or "cell-info" in modem.get("generic", {})):
                cell = mmcli.parse_cell_info(document)
            else:
                status = mmcli.parse_status(document)
        except (json.JSONDecodeError, mmcli.MmcliParseError, RecursionError) as exc:
            reason = "JSON nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            problems.append(Problem(None, "unparsed", text[at:at + 80].split("\n")[0], reason, line))
            break
    samples: list[Sample] = []
    if status is not None or signal is not None:
        reading = vendors.guard(mmcli.reading(status or mmcli.ModemStatus(None, None, (), None), signal, cell))
        problems.extend(Problem(r.command, "unparsed", f"{r.field} = {r.value:g}", str(r)) for r in reading.rejected)
        sample = vendors.to_sample(reading, now_ns=0, carrier=carrier, gnb_id_bits=gnb_id_bits)
        if sample.fields:
            samples.append(sample)
        else:
            problems.append(Problem(None, "missing", "", "mmcli gave no value (every one unknown): no reading"))
    return TranscriptResult("generic", tuple(samples), tuple(problems))


def _replies(text: str) -> list[Reply]:
    """Split a transcript into replies: a command (if echoed), its lines, and its final result code."""
    replies: list[Reply] = []
    current: Reply | None = None
    quoted = False  # inside the response: '...' of mmcli --command
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        wrapped = _MMCLI_COMMAND.search(line)
        if wrapped is not None:  # mmcli --command: the AT command it sent; its answer follows as response: '...'
            command = wrapped["cmd"].replace('\\"', '"')
            current = Reply(command if command.upper().startswith("AT") else "AT" + command, final=None)
            replies.append(current)
            continue
        if line.startswith(_RESPONSE) or quoted:
            if line.startswith(_RESPONSE):
                line = line[len(_RESPONSE):]
            quoted = not line.endswith("'")
            line = line[:-1].strip() if line.endswith("'") else line
            if current is None:
                current = Reply(None, final=None)
                replies.append(current)
            if line:
                current.lines.append(line)
                current.numbers.append(number)
            if not quoted:  # mmcli prints no final result code: the closing quote ends the answer
                current.final, current.final_number, current = "OK", number, None
            continue
        if _COMMAND.match(line):
            current = Reply(line, final=None)
            replies.append(current)
        elif _FINAL.match(line):
            if current is None:
                current = Reply(None)
                replies.append(current)
            current.final = line.upper() if line.upper() in ("OK", "ERROR") else line
            current.final_number = number
            current = None
        else:
            if current is None:  # no echo, or an unsolicited code between answers
                current = Reply(None, final=None)
                replies.append(current)
            current.lines.append(line)
            current.numbers.append(number)
    return replies


def _keys(reply: Reply) -> set[str]:
    """Return what identifies a reply within a poll: its command and the prefixes of its answer lines."""
    keys = {p for p in (vendors.prefix_of(line) for line in reply.lines) if p is not None}
    if reply.command is not None:
        keys.add(vendors.normal_command(reply.command))
    return keys


def _polls(replies: list[Reply]) -> list[list[Reply]]:
    """Group replies into polls: a poll ends when a command or answer kind it already has comes again."""
    polls: list[list[Reply]] = []
    seen: set[str] = set()
    for reply in replies:
        keys = _keys(reply)
        if not polls or keys & seen:
            polls.append([])
            seen = set()
        polls[-1].append(reply)
        seen |= keys
    return polls


def _detect(replies: list[Reply]) -> Vendor:
    """Return the vendor an ATI/AT+CGMI answer names, else the owner of the first vendor answer, else generic."""
    for reply in replies:
        if vendors.normal_command(reply.command) in _IDENTITY:
            found = vendors.detect_vendor("\n".join(reply.lines))
            if found is not None:
                return found
    for reply in replies:
        for line in reply.lines:
            owner = vendors.vendor_of_line(line)
            if owner is not None:
                return owner
    return "generic"
