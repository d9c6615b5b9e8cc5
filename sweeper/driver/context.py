"""What every trial of a sweep carries besides itself: the store, the sweep's parent run, where
checkpoints live, the lease token and the user's settings (plain, picklable)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sweeper.driver.fence import Fence
from sweeper.record.store import TrackingStore

_FENCES: dict[tuple[str, str, str], Fence] = {}  # (store, parent run, token) -> this process's fence


@dataclass(frozen=True)
class SweepContext:
    """What every trial of a sweep needs besides its own configuration (plain, picklable)."""

    store: TrackingStore  # resolved once by the driver; every trial opens its client from it
    experiment_id: str
    parent_run_id: str
    trials_root: str  # <storage>/<sweep>/trials, a path or a URI
    cpus_per_trial: float = 1.0
    # The driver's MLflow credentials (tracking.credentials_from_env). Ray workers inherit their
    # node's environment, not the driver's, so the trials get them here: the context travels in
    # Ray's object store (tune.with_parameters), never in the trial config that Ray writes to
    # disk, and repr=False keeps them out of every log line that prints the context.
    tracking_env: dict = field(default_factory=dict, repr=False)
    # The fencing token: the id of the driver whose lease the trials run under
    # (sweeper.driver.lease); None for `sweeper train`, which takes no lease.
    lease_token: str | None = None
    sweep: str = ""
    # The user's SWEEPER_* settings (core.settings.captured), applied in the trial's process.
    settings: dict = field(default_factory=dict)

    def fence(self) -> Fence | None:
        """This process's fence of the sweep's lease: one per lease, so that the next trial of an
        actor Ray reuses trusts what the last one saw (a new fence waits up to a heartbeat to
        see the driver's heartbeat change, and each would keep a polling thread of its own)."""
        if self.lease_token is None:
            return None
        key = (self.store.uri, self.parent_run_id, self.lease_token)
        if key not in _FENCES:
            _FENCES[key] = Fence(self.store, self.parent_run_id, self.lease_token, self.sweep)
        return _FENCES[key]

    @property
    def tracking_uri(self) -> str:
        return self.store.uri
