"""Running a sweep: the one process that holds a sweep's lease and drives Ray Tune, and its trials.

Owns ``sweeper run``/``train`` (``orchestrate``: the sweep's phases; ``train``), Ray set up
(``ray_setup``), Tune's loop (``tune_loop``), what runs inside a Ray trial (``trainable``, ``worker``,
the per-trial protocol ``tracked``, ``checkpoint_store``, ``context``), the driver's Tune callback
(``trial_events``) and its periodic run-index rewrite (``index_refresh``), the lease and the hold
on the parent run (``lease``, ``claims``, ``hold``), how a run ends (``driver_exit``), where
trials run (``cluster_address``, ``ray_client``).
Imports everything below it (``core``, ``spec``, ``record``, ``plan``, ``views``); nothing imports
the driver but the CLI and the Python API.
"""
