"""`sweeper status NAME --watch`: the live view of `sweeper run`, redrawn from MLflow.

For a sweep whose driver runs elsewhere (a cluster job, another terminal). The rows come from
``sweeper.views.status.sweep_status`` as they are; what only the driver measures (epochs per trial,
images/s, seconds per epoch for the ETA) comes from the state it last wrote on the parent run
(sweeper.record.dashboard). The view ends when no trial runs and no live driver has trials left to
start, or on Ctrl-C.
"""

from __future__ import annotations

import time

import click

from sweeper.record import dashboard, links, tracking
from sweeper.record.preflight import store_exists
from sweeper.record.store import TrackingStore
from sweeper.views.progress import LiveView, PlainView
from sweeper.core.states import DONE, EXIT_OK, FAILED, PENDING, RUNNING
from sweeper.views.status import sweep_status
from sweeper.record.claims import ClaimWatch
from sweeper.record.live import SweepState, TrialLine


def _open(rows, driver_live: bool) -> bool:
    """Something may still change: a trial runs under a live driver, or a live driver has trials
    left to start. (A sweep stopped with trials pending, or whose driver is gone, waits for the
    next `sweeper run`, not for this view.)"""
    if any(r.driver_gone_since is not None for r in rows):
        return False
    return any(r.state == RUNNING for r in rows) or (driver_live and any(r.state == PENDING for r in rows))


def state_from(name: str, rows, snapshot: SweepState | None) -> SweepState:
    """Counts and running trials from the status rows (what MLflow holds now); the driver's
    measurements from its last snapshot."""
    state = SweepState(name, len(rows))
    if snapshot is not None:
        state.started, state.mean_epochs = snapshot.started, snapshot.mean_epochs
        state.epoch_s_sum, state.epoch_s_n = snapshot.epoch_s_sum, snapshot.epoch_s_n
        state.concurrency, state.total = snapshot.concurrency, max(len(rows), snapshot.total)
        state.ended, state.updated = snapshot.ended, snapshot.updated
    measured = {line.name: line for line in (snapshot.running.values() if snapshot else ())}
    for row in rows:
        if row.state == RUNNING:
            seen = measured.get(row.name)
            shown = row.name if row.driver_gone_since is None else f"{row.name}: {row.shown_state}"
            state.running[row.key] = TrialLine(shown, epoch=row.epoch or 0,
                                               epochs=seen.epochs if seen else None, test_acc=row.test_acc,
                                               images_per_s=seen.images_per_s if seen else None)
        elif row.state in DONE or row.state == FAILED:
            state.end(row.key, row.name, row.state, row.test_acc)
    return state


def read(spec_or_name: str, tracking_uri: str | None, client_cache: dict) -> tuple[SweepState, list, str]:
    # the driver's heartbeat watched across redraws: gone once it stood still for the stale time
    name, uri, rows = sweep_status(spec_or_name, tracking_uri, watch=client_cache.setdefault("watch", ClaimWatch()))
    experiment = parent = None
    if store_exists(uri):  # a spec's trials before any run: watching must not create the store
        client = client_cache.get(uri) or client_cache.setdefault(uri, TrackingStore.parse(uri).client())
        experiment = client.get_experiment_by_name(name)
        parent = tracking.find_parent_run(client, experiment.experiment_id) if experiment else None
    snapshot = dashboard.read_state(parent)
    state = state_from(name, rows, snapshot)
    client_cache["driver_live"] = snapshot is not None and not snapshot.ended
    client_cache["links"] = links.lines(uri, experiment.experiment_id if experiment else None,
                                        parent.info.run_id if parent else None)
    return state, rows, uri


def watch_command(spec_or_name: str, tracking_uri: str | None = None, every_s: float = 5.0) -> int:
    from sweeper.views import terminal

    cache: dict = {}
    state, rows, _ = read(spec_or_name, tracking_uri, cache)
    for line in cache["links"]:
        click.echo(line)
    stream = terminal.terminal()
    view = LiveView(stream, state) if terminal.is_terminal(stream) else PlainView(stream, every_s=0)
    try:
        while True:
            view.refresh(state, force=True)
            if not _open(rows, cache["driver_live"]):
                break
            time.sleep(every_s)
            state, rows, _ = read(spec_or_name, tracking_uri, cache)
    except KeyboardInterrupt:
        pass
    finally:
        if isinstance(view, LiveView):
            view.close(state)
    return EXIT_OK
