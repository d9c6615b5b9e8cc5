"""What `sweeper run` holds while it drives a sweep: the parent run every driver agrees on, the
lease on it (``lease.Lease``), and the promise that the parent run never stays RUNNING."""

from __future__ import annotations

import time

from sweeper.core import settings
from sweeper.driver.lease import Lease, LeaseLost
from sweeper.record import names


def canonical_parent(client, experiment_id: str, parent_run_id: str) -> str:
    """Two drivers that start together on a new sweep may each create a parent run. All agree on
    the oldest (start time, then id) once every creation is visible, which a settle wait after a
    recent creation ensures; a duplicate this driver made is deleted (it has no children yet)."""

    mine = client.get_run(parent_run_id)
    if time.time() * 1000 - (mine.info.start_time or 0) < 60_000:
        time.sleep(settings.LEASE_SETTLE_S.get())
    runs = client.search_runs([experiment_id], filter_string=names.SWEEP_RUNS,
                              max_results=100)
    oldest = min(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))
    if oldest.info.run_id != parent_run_id:
        children = client.search_runs([experiment_id], max_results=1,
                                      filter_string=f"tags.`{names.TAG_PARENT}` = '{parent_run_id}'")
        if not children:
            client.delete_run(parent_run_id)
    return oldest.info.run_id


class DriverHold:
    """What `sweeper run` holds while it drives a sweep: the lease, and the parent run it must
    not leave RUNNING. On any exception after taking the lease the parent run ends as FAILED
    (KILLED for an interrupt), unless the lease was lost (the new holder owns the run then), and
    the lease is released whatever happened."""

    def __init__(self) -> None:
        self.lease: Lease | None = None
        self.client = None
        self.parent_run_id: str | None = None

    def take(self, client, experiment_id: str, parent_run_id: str, sweep: str) -> str:
        """Take the sweep's lease; the parent run id every driver agrees on."""
        parent_run_id = canonical_parent(client, experiment_id, parent_run_id)
        self.lease = Lease(client, parent_run_id, sweep).acquire()
        self.client, self.parent_run_id = client, parent_run_id
        return parent_run_id

    @property
    def token(self) -> str | None:
        """The fencing token the trials carry (None: no lease, as in `sweeper train`)."""
        return self.lease.driver if self.lease is not None else None

    @property
    def lost(self) -> LeaseLost | None:
        return self.lease.lost if self.lease is not None else None

    def holds(self) -> bool:
        return self.lease is None or self.lease.holds()

    def __enter__(self) -> "DriverHold":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is not None and self.lease is not None and self.lease.holds():
                status = "KILLED" if issubclass(exc_type, (KeyboardInterrupt, SystemExit)) else "FAILED"
                try:
                    self.client.set_terminated(self.parent_run_id, status)
                except Exception:  # noqa: BLE001 - the original error is the one to show
                    pass
        finally:
            if self.lease is not None:
                try:
                    self.lease.release()
                except Exception:  # noqa: BLE001 - a claim left behind goes stale (SWEEPER_LEASE_STALE_S)
                    pass
        return False
