"""Alerting: from what the probes report to the carrier that owns the fault.

::

    model.py     Finding, Evaluation, Notification, the alert names and their severities (the contract)
    facts/       Facts: the latest known state of every probe, device, link, path and modem, fed batch by batch;
                 one module per family of records and their observers (probes, devices, cellular, power, events)
    rules/       evaluate(facts, inventory, settings, now) -> Evaluation: pure, no clock, no I/O; one module
                 per family of alerts (probes, devices, equipment, fleet, service) over ``base``
    tracker.py   AlertTracker: pending / firing / resolved with hold-down, keep-firing, flap control and
                 dependency muting; persisted so that a restart neither pages again nor forgets
    notify/      notifiers (Alertmanager API v2, webhook, email, MQTT), routing by owner carrier, the outbox
    amconfig.py  an Alertmanager configuration rendered from the inventory
    maintenance.py  maintenance windows applied between the rules and the tracker: muted, overrun, co-owners told
    engine.py    the thread that ties them together in the collector (the only place that reads a clock);
                 beside it stored.py (the derived and ``alert`` points each evaluation stores) and
                 engine_metrics.py (the engine's own health in /metrics)
    acks.py      AckStore: paged alerts (incidents), acknowledgements and escalation steps, with times (SQLite)
    ackconfig.py the ``alerting.acks`` section: the store's path, the HTTP API's tokens
    escalation.py  pure: which escalation step of which carrier falls due at ``now``
    responder.py Responder: between engine and dispatcher: ack annotations, incidents, escalation delivery
    ackapi.py    the acknowledgement API beside /metrics; ack_cli.py: ``zonewatch-collector alerts`` and ``ack``
"""
