"""Arrays grouped by progress, from the record: the epochs each trial has done are read from its
child run as the driver's plan reads it (a real sqlite MLflow store, logged as a worker logs its
epochs), and `sweeper run` hands them to the grouping, so a trial resumed at epoch 1 never shares
an array with a fresh one. No Ray: the Tune loop is stopped where it would start."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest

from sweeper.driver import orchestrate, ray_setup, tune_loop
from sweeper.driver import preflight as cluster_preflight
from sweeper.plan import arrays
from sweeper.record import names, readback, run_index, tracking
from sweeper.spec import parse_spec

pytestmark = pytest.mark.skipif(arrays.array_support() is None, reason="this tree has no trainables.array")

SPEC = """\
name: progress
dataset: {name: digits, image_size: 8, train_size: 256, test_size: 400}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 2, batch_size: 64, lr: 0.05, augment: false}
grid: {mode: [bn_only, full, output_only, random_params], seed: [0, 1]}
resources: {cpu: 1, array: 4}
"""


class TuneNotStarted(Exception):
    """Raised where the plan is made, before Tune starts."""


def log_epochs(client, run_id: str, epochs: int, with_epoch_metric: bool = True) -> None:
    """Epochs 1..epochs as the worker logs them (``sweeper.driver.tracked``); without the
    ``sweeper.epoch`` metric, as a run logged before it existed."""
    logger = tracking.TrialLogger(client, run_id)
    for epoch in range(1, epochs + 1):
        extra = {names.METRIC_EPOCH: epoch} if with_epoch_metric else {}
        logger.log_metrics({"test_acc": 0.1 * epoch, "train_loss": 2.0 / epoch, **extra}, step=epoch)
    assert logger.flush(wait_s=10)


def test_epochs_done_are_what_each_child_run_reported(mlflow_client, tracking_uri):
    experiment = tracking.ensure_experiment(mlflow_client, "progress", tracking_uri)
    parent = tracking.ensure_parent_run(mlflow_client, experiment, "progress", SPEC, "h")
    run_ids = {key: tracking.ensure_child_run(mlflow_client, experiment, parent, key, f"t-{key}", {})
               for key in ("resumed", "one", "old", "fresh")}
    log_epochs(mlflow_client, run_ids["resumed"], 3)
    log_epochs(mlflow_client, run_ids["one"], 1)
    log_epochs(mlflow_client, run_ids["old"], 2, with_epoch_metric=False)  # the test_acc step says it

    runs = run_index.by_trial_key(run_index.child_runs(mlflow_client, experiment, parent))  # as Sweep.plan reads
    assert readback.epochs_done(runs) == {"resumed": 3, "one": 1, "old": 2}  # fresh: absent, i.e. 0
    assert readback.epochs_done({}) == {}


def stop_at_the_plan(monkeypatch) -> list[dict]:
    """plan_units as the Tune loop calls it, recorded, its real answer kept; Tune never starts."""
    real, seen = arrays.plan_units, []

    def recorded(spec, remaining, echo, **kwargs):
        units = real(spec, remaining, echo, **kwargs)
        seen.append({"remaining": [t.key for t in remaining], "kwargs": kwargs, "units": units})
        raise TuneNotStarted

    monkeypatch.setattr(arrays, "plan_units", recorded)
    return seen


def test_sweeper_run_groups_only_trials_at_the_same_epochs_done(workdir, tracking_uri, mlflow_client, monkeypatch):
    spec_path = workdir / "progress.yaml"
    spec_path.write_text(SPEC)
    storage = str(workdir / "results")
    monkeypatch.setattr(ray_setup, "init_ray", lambda *a, **k: False)
    monkeypatch.setattr(ray_setup, "starts_with_lease", lambda *a, **k: False)
    monkeypatch.setattr(cluster_preflight, "before_trials", lambda *a, **k: None)  # it asks Ray, not started here
    fit = tune_loop.fit_here_or_on_head
    monkeypatch.setattr(tune_loop, "fit_here_or_on_head", lambda *a, **k: (set(), False))
    orchestrate.run_command(str(spec_path), tracking_uri=tracking_uri, storage=storage,
                            handle_signals=False, ray_log=False)  # the sweep's experiment and parent run

    trials = parse_spec(SPEC).trials()
    experiment = mlflow_client.get_experiment_by_name("progress").experiment_id
    parent = tracking.find_parent_run(mlflow_client, experiment).info.run_id
    resumed = {t.key for t in trials[:2]}
    for trial in trials:  # a killed driver's trials: two had finished epoch 1, the rest none
        run_id = tracking.ensure_child_run(mlflow_client, experiment, parent, trial.key, trial.name, {})
        if trial.key in resumed:
            log_epochs(mlflow_client, run_id, 1)
        mlflow_client.set_terminated(run_id, "KILLED")

    monkeypatch.setattr(tune_loop, "fit_here_or_on_head", fit)
    seen = stop_at_the_plan(monkeypatch)
    with pytest.raises(TuneNotStarted):
        orchestrate.run_command(str(spec_path), tracking_uri=tracking_uri, storage=storage,
                                handle_signals=False, ray_log=False)
    (planned,) = seen
    assert sorted(planned["remaining"]) == sorted(t.key for t in trials)
    assert planned["kwargs"]["progress"] == {key: 1 for key in resumed}
    by_members = sorted(sorted(m.key for m in u.members) for u in planned["units"])
    assert sorted(len(m) for m in by_members) == [2, 2, 4]  # [4, 4] were every trial fresh
    assert sorted(resumed) in by_members  # the two at epoch 1 together, no fresh trial with them


def test_the_tune_loop_on_a_ray_client_head_gets_the_epochs_done(tracking_uri):
    """ray_client._fit_task, what runs on the head, hands them to fit as a local driver does."""
    from sweeper.driver import ray_client
    from sweeper.record.store import TrackingStore

    class NoStop:
        def get(self, timeout=None):
            raise RuntimeError("no queue here")  # the watcher thread ends at once

    ctx = SimpleNamespace(store=TrackingStore.parse(tracking_uri), tracking_env={}, settings={})
    seen = {}

    def fit(*args, **kwargs):
        seen.update(kwargs)
        return set(), False

    lines = SimpleNamespace(put_nowait=lambda item: None)
    usr1 = signal.getsignal(signal.SIGUSR1)  # the task sets it as it would on the head
    try:
        ray_client._fit_task(fit, None, ctx, [], 0, "/nowhere", [], lines, NoStop(), {"k": 3})
    finally:
        signal.signal(signal.SIGUSR1, usr1)
    assert seen["epochs_done"] == {"k": 3}

