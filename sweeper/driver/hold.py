"""What `sweeper run` holds while it drives a sweep: the parent run every driver agrees on, the
lease on it (``lease.Lease``), and the promise that the parent run never stays RUNNING."""

from __future__ import annotations

import logging
import time

from sweeper.driver.lease import Lease, LeaseLost, ParentSuperseded
from sweeper.record import names

log = logging.getLogger(__name__)


def made_recently(client, parent_run_id: str) -> bool:
    """A parent run made in the last minute: another driver starting with this one may have made
    its own, not visible yet."""
    return time.time() * 1000 - (client.get_run(parent_run_id).info.start_time or 0) < 60_000


def oldest_parent(client, experiment_id: str) -> str:
    """The parent run every driver agrees on once every creation is visible: the oldest (start
    time, then id)."""
    runs = client.search_runs([experiment_id], filter_string=names.SWEEP_RUNS, max_results=100)
    return min(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)).info.run_id


def drop_duplicate(client, experiment_id: str, parent_run_id: str) -> None:
    """A parent run this driver made next to the oldest one is deleted (it has no children yet)."""
    children = client.search_runs([experiment_id], max_results=1,
                                  filter_string=f"tags.`{names.TAG_PARENT}` = '{parent_run_id}'")
    if not children:
        client.delete_run(parent_run_id)


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
        """Take the sweep's lease; the parent run id every driver agrees on. Both need a settle
        wait after a write (a parent run made, a claim written); for a parent made a moment ago
        the claim goes on it at once and one wait serves both: when the parent the drivers agree
        on turns out to be another, the claim moves there (a settle of its own)."""
        if made_recently(client, parent_run_id):
            try:
                self.lease = Lease(client, parent_run_id, sweep).acquire(
                    agree_on_parent=lambda: oldest_parent(client, experiment_id))
            except ParentSuperseded as other:
                drop_duplicate(client, experiment_id, parent_run_id)
                parent_run_id = other.parent_run_id
                self.lease = Lease(client, parent_run_id, sweep).acquire()
        else:
            self.lease = Lease(client, parent_run_id, sweep).acquire()
        log.info("startup: lease held on parent run %s", parent_run_id)
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
