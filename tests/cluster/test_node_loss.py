"""Losing the worker node mid-sweep: its raylet is SIGKILLed by pid and its temp dir (its local
disk) deleted. Every trial still finishes, on the surviving head node, resumed from the
checkpoint it left in S3, and MLflow holds each trial once with each epoch once.
"""

from __future__ import annotations

import shutil

import pytest
from cluster_sweeps import (
    STORAGE_BUCKET, SweepRun, assert_each_epoch_once, trial_runs, wait_for_epochs, write_spec,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAME, SEEDS, EPOCHS = "cluster_node_loss", [0, 1], 4
PREFIX = "node-loss"


@pytest.fixture(scope="module")
def sweep_after_node_loss(stack, tmp_path_factory):
    ray = stack.ray
    ray.ensure_two_nodes()
    worker_id, head_id = ray.worker.node_id, ray.head.node_id
    folder = tmp_path_factory.mktemp("node-loss")
    spec = write_spec(folder, NAME, seeds=SEEDS, epochs=EPOCHS, max_failures=2)
    sweep = SweepRun(spec, stack, tracking_uri=stack.mlflow.uri, storage=f"s3://{STORAGE_BUCKET}/{PREFIX}").start()
    client = stack.mlflow.client()

    def worker_trial_mid_way(client, runs):
        # the trial on the worker has stored at least one checkpoint (it is uploaded before the
        # epoch's metrics are logged) and has not finished
        on_worker = [r for r in runs if r.data.tags.get("sweeper.node_id") == worker_id]
        return on_worker and all(
            1 <= len(client.get_metric_history(r.info.run_id, "test_acc")) < EPOCHS for r in on_worker)

    wait_for_epochs(client, NAME, worker_trial_mid_way, 300, sweep, "an epoch of the trial on the worker")
    killed_keys = {r.data.tags["sweeper.trial_key"] for r in trial_runs(client, NAME)
                   if r.data.tags.get("sweeper.node_id") == worker_id}
    ray.kill_worker_raylet()
    shutil.rmtree(ray.worker.temp_dir, ignore_errors=True)  # the node's local disk is gone with it
    sweep.wait(500)
    return stack, sweep, head_id, worker_id, killed_keys


def test_every_trial_finishes_on_the_surviving_node(sweep_after_node_loss):
    stack, sweep, head_id, worker_id, _ = sweep_after_node_loss
    assert sweep.proc.returncode == 0, sweep.output()
    runs = trial_runs(stack.mlflow.client(), NAME)
    assert {r.data.tags.get("status") for r in runs} == {"finished"}
    assert {r.data.tags.get("sweeper.node_id") for r in runs} == {head_id}
    assert worker_id not in stack.ray.alive_node_ids()


def test_no_trial_run_or_epoch_is_duplicated(sweep_after_node_loss):
    stack, *_ = sweep_after_node_loss
    client = stack.mlflow.client()
    runs = trial_runs(client, NAME)
    assert len(runs) == len(SEEDS)
    assert len({r.data.tags["sweeper.trial_key"] for r in runs}) == len(SEEDS)
    assert_each_epoch_once(client, runs, EPOCHS)


def test_the_killed_trial_resumed_from_its_s3_checkpoint(sweep_after_node_loss):
    stack, _, _, _, killed_keys = sweep_after_node_loss
    client = stack.mlflow.client()
    assert len(killed_keys) == 1
    (run,) = [r for r in trial_runs(client, NAME) if r.data.tags["sweeper.trial_key"] in killed_keys]
    # sweeper.start_epoch: the first epoch each attempt trained (step = attempt number)
    starts = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "sweeper.start_epoch")}
    assert starts[1] == 1
    assert len(starts) >= 2 and starts[max(starts)] > 1, f"attempts started at epochs {starts}"
    (key,) = killed_keys
    assert f"{PREFIX}/{NAME}/trials/{key}/checkpoint.pt" in stack.s3.keys(STORAGE_BUCKET, f"{PREFIX}/{NAME}/")
