"""The probe's part in running the fleet: enrolment, and the configuration the centre sends it.

    config     ``remote_config:`` of the local file: whether and how this probe takes its configuration from the
               centre (dead-man time, where its state lives, which secrets the centre may use)
    desired    validation of a desired configuration with the same strict loader as the local file
    deadman    the dead-man judgement: keep a new configuration, or roll it back (pure)
    apply      applies a desired configuration atomically, keeps the last known-good, reports to the collector
    enrol      asks the zone's centre to admit this probe, and keeps the credentials it is given
    software   ``software:`` (the release to run) and ``update:`` (from where) of the configuration, and the folder
               the agent and its updater share
    update     the agent's part in a software update: asks for the release, says how it runs, reports the result
    updater    the privileged updater (root, started by a path unit): installs the release, keeps it if it comes up
               healthy, rolls it back otherwise
    commands   what the centre asks on the probe's command topic (a diagnostic round): checked, counted, acted on
"""
