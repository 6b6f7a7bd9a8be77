"""What each modem family prints, and how the answers of one poll become one cellular reading (pure, stdlib only).

The 3GPP answers (+CSQ, +CESQ, +COPS, +CEREG, +C5GREG) are parsed by ``agent.sources.at``; this module adds the
vendor commands, which know the serving cell far better (band, PCI, SINR, the NR leg of EN-DC), and puts all
the answers of one poll together. The AT source, the ModemManager backend and the ``parse-transcript`` command
all end in ``to_sample``, so a field engineer's transcript gives exactly what the agent would send.

Map::

    detect_vendor(text)          answer to ATI or AT+CGMI                 -> "quectel" | "simcom" | "sierra" | None
    vendor_of_line(line)         "+QENG: ...", "+CPSI: ...", "!GSTATUS:"   -> the vendor that prints it, or None
    poll_commands(vendor, nr)    the commands one poll sends              -> ("AT+CSQ", ...)
    parse_qeng(lines)            Quectel AT+QENG="servingcell" (1-3 lines) -> ServingCell
    parse_qcsq(line)             Quectel AT+QCSQ (one line per RAT)        -> Qcsq
    parse_qnwinfo(line)          Quectel AT+QNWINFO                        -> Qnwinfo
    parse_cpsi(lines)            SIMCom AT+CPSI? (1-2 lines)               -> ServingCell
    gstatus_fields(lines)        Sierra AT!GSTATUS? key table              -> {"PCC RxM RSRP": "-86", ...}
    parse_gstatus(lines)         Sierra AT!GSTATUS?                        -> ServingCell
    interpret(replies, vendor)   the replies of one poll                   -> Interpretation (Reading, problems)
    to_sample(reading, ...)      one Reading                               -> the "cellular" Sample

Unknown values: ``-``, ``--``, ``---``, 65535, -32768 and 32768 (and 255 where the field cannot be 255) become
None, never numbers. A line that does not have the expected shape raises ``at.ATParseError``; so does a number
that is not finite (``1.0e999``) or not within 64 bits, or a decimal field of more than 20 digits.

The sample (``to_sample``); a value the modem did not give is left out, and each field keeps one type whatever
the vendor (InfluxDB rejects a field that changes type)::

    tags    carrier  PLMN "452-04" (from the modem; the configured carrier when it gives none)
            modem    the source name
            rat      lte | nr5g-sa | nr5g-nsa | umts | gsm (nbiot, nr5g when that is all the modem says)
            band     "B3", "n78" (the LTE anchor's band on EN-DC)
            cell     serving cell id in hex (LTE ECI, NR NCI, UMTS/GSM CI)
    fields  rsrp_dbm, rssi_dbm, nr_rsrp_dbm           int, rounded to the nearest dB
            rsrq_db, sinr_db, nr_rsrq_db, nr_sinr_db  float
            registered                                bool: +CEREG or +C5GREG says registered
            pci                                       int
            enb_id, sector                            int: LTE ECI >> 8, ECI & 0xFF
            gnb_id, sector                            int: NR NCI split at gnb_id_bits
    On EN-DC (nr5g-nsa) the main fields are the LTE anchor's and the nr_* fields the NR leg's; on NR SA the main
    fields are NR's. Whatever the backend, a value that is not finite or does not fit in a signed 64-bit integer
    is left out (missing), and so is the cell tag of a cell id beyond 64 bits.

Modules: ``common`` (the vendors, their poll commands, the parsed shapes, the field helpers), one per vendor
(``quectel``, ``simcom``, ``sierra``), ``poll`` (one poll's replies into a Reading) and ``reading`` (the Reading,
``guard``, ``to_sample``: the same for every backend).
A new vendor is a module of its own plus its commands in ``common`` and its prefixes in ``poll``.
"""

from agent.sources.vendors.common import (
    VENDORS,
    NrLeg,
    Qcsq,
    Qnwinfo,
    Scales,
    ServingCell,
    Vendor,
    detect_vendor,
    poll_commands,
    revision_of,
)
from agent.sources.vendors.poll import (
    Interpretation,
    Problem,
    Reply,
    interpret,
    normal_command,
    prefix_of,
    vendor_of_line,
)
from agent.sources.vendors.quectel import parse_qcsq, parse_qeng, parse_qnwinfo
from agent.sources.vendors.reading import Reading, Rejected, guard, to_sample
from agent.sources.vendors.sierra import gstatus_fields, parse_gstatus
from agent.sources.vendors.simcom import parse_cpsi

__all__ = [
    "Vendor",
    "VENDORS",
    "ServingCell",
    "NrLeg",
    "Qcsq",
    "Qnwinfo",
    "Reading",
    "Rejected",
    "Scales",
    "Reply",
    "Problem",
    "Interpretation",
    "detect_vendor",
    "poll_commands",
    "parse_qeng",
    "parse_qcsq",
    "parse_qnwinfo",
    "parse_cpsi",
    "gstatus_fields",
    "parse_gstatus",
    "interpret",
    "to_sample",
    "guard",
    "revision_of",
    "prefix_of",
    "normal_command",
    "vendor_of_line",
]
