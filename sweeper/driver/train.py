"""`sweeper train`: one trial of a spec in this process, no Ray, no lease, tracked exactly as
under `sweeper run` (for debugging a trial)."""

from __future__ import annotations

from sweeper.core.states import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, FAILED, INTERRUPTED
from sweeper.driver.driver_exit import INTERRUPTED_LINE
from sweeper.driver.context import SweepContext
from sweeper.driver.orchestrate import open_tracking, storage_root
from sweeper.driver.worker import run_tracked_trial
from sweeper.plan.lookup import find_trial
from sweeper.record import tracking
from sweeper.record.store import TrackingStore
from sweeper.record.trial_record import write_end_retried
from sweeper.views import terminal


def train_command(spec_path: str, trial: int | str, *, tracking_uri: str | None = None,
                  storage: str = "./sweeper_results") -> int:
    """One trial of the sweep in this process, no Ray, tracked exactly as under `sweeper run`."""
    import socket

    from sweeper.spec import load_spec

    spec = load_spec(spec_path)
    _, chosen = find_trial(spec, trial)  # an index as `sweeper status` numbers rows, a name or a key
    store = TrackingStore.resolve(tracking_uri, spec.tracking.uri)
    uri = store.uri
    client, experiment_id, parent_id = open_tracking(spec, store, create=True)
    ctx = SweepContext(store=store, experiment_id=experiment_id, parent_run_id=parent_id,
                       trials_root=f"{storage_root(storage)}/{spec.name}/trials",
                       cpus_per_trial=float(spec.resources.cpu))
    terminal.say(f"{chosen.name} ({chosen.key}): training in this process; tracking {uri}")
    try:
        final = run_tracked_trial(ctx, chosen, node_id=f"local:{socket.gethostname()}")
    except KeyboardInterrupt:
        run = tracking.find_child_run(client, experiment_id, chosen.key)
        if run is not None:
            write_end_retried(client, run.info.run_id, INTERRUPTED)
        terminal.say(INTERRUPTED_LINE, err=True)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - a trial that crashed is a result, not a traceback
        run = tracking.find_child_run(client, experiment_id, chosen.key)
        if run is not None:
            write_end_retried(client, run.info.run_id, FAILED)
        terminal.say(f"{chosen.name}: failed: {type(e).__name__}: {e}", err=True)
        return EXIT_FAILED
    terminal.say(f"{chosen.name}: {final['status']}  test_acc={final.get('final_test_acc', float('nan')):.3f}")
    return EXIT_OK


