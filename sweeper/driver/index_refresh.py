"""The driver's periodic rewrite of the run index (sweeper.record.run_index) while a sweep runs.

The index is written as the driver starts and as it ends (orchestrate); in between, every
``SWEEPER_INDEX_EVERY_S`` seconds (default 600), so that `status` and `report` on a sweep that
runs for hours read only the runs that changed since the last rewrite. Only the lease holder
writes it: a driver that lost the sweep (``holds`` false) writes nothing. Called from the Tune
loop (trial_events), so it never raises: a tracking hiccup leaves the last index in place, which
readers complete by reading what changed since (slower, never wrong).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from sweeper.core import settings
from sweeper.core.logs import cause

log = logging.getLogger(__name__)


class IndexRefresh:
    def __init__(self, client, experiment_id: str, parent_run_id: str, holds: Callable[[], bool] | None = None,
                 every_s: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.client, self.experiment_id, self.parent_run_id = client, experiment_id, parent_run_id
        self.holds = holds
        self.every_s = settings.INDEX_EVERY_S.get() if every_s is None else every_s
        self.clock = clock
        self.last = clock()  # the driver wrote one as it started

    def maybe_write(self) -> bool:
        """Rewrite the index when ``every_s`` has passed since the last try; True when written."""
        now = self.clock()
        if now - self.last < self.every_s:
            return False
        self.last = now  # a failed try waits a whole period too: no retry storm on a store that is down
        if self.holds is not None and not self.holds():
            return False
        from sweeper.record import run_index, tracking

        try:
            with tracking.fast_fail_http():
                run_index.write_index(self.client, self.experiment_id, self.parent_run_id)
        except Exception as e:  # noqa: BLE001 - readers complete an older index by reading what changed (logged)
            log.warning("could not rewrite the run index on parent run %s (%s); trying again in %.0fs",
                        self.parent_run_id, cause(e), self.every_s)
            return False
        return True
