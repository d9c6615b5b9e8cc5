"""`sweeper train`: one trial of a spec in this process, no Ray, no lease, tracked exactly as
under `sweeper run` (for debugging a trial)."""

from __future__ import annotations

from sweeper.core.errors import SpecError
from sweeper.core.states import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, FAILED, INTERRUPTED
from sweeper.driver.driver_exit import INTERRUPTED_LINE
from sweeper.driver.orchestrate import _cpus, _prepare_tracking, _spec_tracking_uri, _storage_root
from sweeper.driver.worker import SweepContext, run_tracked_trial
from sweeper.plan.planning import expected_payloads
from sweeper.record import child_run, tracking
from sweeper.record.trial_record import write_end_retried
from sweeper.views import terminal


def train_command(spec_path: str, index: int, *, tracking_uri: str | None = None,
                  storage: str = "./sweeper_results") -> int:
    """One trial of the sweep in this process, no Ray, tracked exactly as under `sweeper run`."""
    import socket

    from sweeper.spec import load_spec

    spec = load_spec(spec_path)
    trials = expected_payloads(spec)
    if not 0 <= index < len(trials):
        raise SpecError("--trial", None, f"{index} is out of range: the spec has trials 0..{len(trials) - 1}")
    payload = child_run.presented(trials[index], spec.varying_axes())
    uri = tracking.resolve_tracking_uri(tracking_uri, _spec_tracking_uri(spec))
    uri, client, experiment_id, parent_id = _prepare_tracking(spec, uri, create=True)
    ctx = SweepContext(tracking_uri=uri, experiment_id=experiment_id, parent_run_id=parent_id,
                       trials_root=f"{_storage_root(storage)}/{spec.name}/trials",
                       cpus_per_trial=_cpus(spec))
    terminal.say(f"{payload.name} ({payload.key}): training in this process; tracking {uri}")
    try:
        final = run_tracked_trial(ctx, payload, node_id=f"local:{socket.gethostname()}")
    except KeyboardInterrupt:
        run = tracking.find_child_run(client, experiment_id, payload.key)
        if run is not None:
            write_end_retried(client, run.info.run_id, INTERRUPTED)
        terminal.say(INTERRUPTED_LINE, err=True)
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - a trial that crashed is a result, not a traceback
        run = tracking.find_child_run(client, experiment_id, payload.key)
        if run is not None:
            write_end_retried(client, run.info.run_id, FAILED)
        terminal.say(f"{payload.name}: failed: {type(e).__name__}: {e}", err=True)
        return EXIT_FAILED
    terminal.say(f"{payload.name}: {final['status']}  test_acc={final.get('final_test_acc', float('nan')):.3f}")
    return EXIT_OK


