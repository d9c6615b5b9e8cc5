"""Running a sweep: the one process that holds a sweep's lease and drives Ray Tune, and its trials.

Owns ``sweeper run``/``train`` (``orchestrate``), what runs inside a Ray trial (``worker``), the
driver's Tune callback (``trial_events``), the lease and the hold on the parent run (``lease``,
``hold``), how a run ends (``driver_exit``), where trials run (``cluster_address``, ``ray_client``).
Imports everything below it (``core``, ``spec``, ``record``, ``plan``, ``views``); nothing imports
the driver but the CLI and the Python API.
"""
