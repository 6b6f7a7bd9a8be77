"""What the probe and the central side share, beyond either: standard library only, imports neither ``agent``
nor ``collector``.

- ``zonewatch.wire``: the MQTT contract (topics, batches and their encoding, limits; the desired configuration,
  software updates and enrolment).
- ``zonewatch.measurements``: the measurement catalogue (every measurement, its tags and fields, their units
  and physical bounds, and who writes it).
- ``zonewatch.queue``: the durable, bounded, ordered SQLite queue (the probe's spool, the collector's intake).
- ``zonewatch.backoff``: the exponential back-off schedule every retry loop uses (pure: attempts and randomness
  come from the caller).
- ``zonewatch.extras``: the optional packages, the extra that brings each, and the one-line error a command gives
  when its package is not installed.

Strict configuration (``zonewatch.strict``) is shared the same way and belongs here too; it moves in a step of its own.
"""
