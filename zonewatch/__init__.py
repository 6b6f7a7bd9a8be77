"""What the probe and the central side share, beyond either: standard library only, imports neither ``agent``
nor ``collector``.

- ``zonewatch.wire``: the MQTT contract (topics, batches and their encoding, limits; the desired configuration,
  software updates and enrolment).
- ``zonewatch.measurements``: the measurement catalogue (every measurement, its tags and fields, their units
  and physical bounds, and who writes it).

Strict configuration (``zwconf``) and the durable queue (``zwqueue``) are shared the same way and belong here
too; they move in a step of their own.
"""
