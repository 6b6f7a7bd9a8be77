"""The centre's part in running the fleet of probes.

    registry   the enrolment registry (SQLite): every probe that asked to be admitted, and what became of it
    enrol      enrolment: requests received and checked by the running collector, the ``probes`` commands
               (list, approve, reject, retire), the sealed replies, and the broker's users kept in step
"""
