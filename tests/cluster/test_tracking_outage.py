"""The MLflow server stopped for 30 s mid-sweep and started again on the same port: training goes
on meanwhile (the trials' checkpoints in S3 keep advancing), the sweep ends well, and every
epoch's metrics are in MLflow exactly once.
"""

from __future__ import annotations

import time

import pytest
from cluster_sweeps import (
    STORAGE_BUCKET, SweepRun, assert_each_epoch_once, trial_runs, wait_for_epochs, write_spec,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAME, SEEDS, EPOCHS = "cluster_outage", [0, 1], 4
PREFIX = "outage"
OUTAGE_S = 30


def checkpoint_versions(s3) -> dict[str, str]:
    """ETag of every trial checkpoint in the storage bucket: it changes with each new epoch."""
    client = s3.client()
    keys = [k for k in s3.keys(STORAGE_BUCKET, f"{PREFIX}/{NAME}/trials/") if k.endswith("/checkpoint.pt")]
    return {k: client.head_object(Bucket=STORAGE_BUCKET, Key=k)["ETag"] for k in keys}


@pytest.fixture(scope="module")
def sweep_through_outage(stack, tmp_path_factory):
    stack.ray.ensure_two_nodes()
    if stack.mlflow.service is None:
        stack.mlflow.start()
    folder = tmp_path_factory.mktemp("outage")
    spec = write_spec(folder, NAME, seeds=SEEDS, epochs=EPOCHS, max_failures=2)
    sweep = SweepRun(spec, stack, tracking_uri=stack.mlflow.uri, storage=f"s3://{STORAGE_BUCKET}/{PREFIX}").start()
    client = stack.mlflow.client()

    def both_trials_trained_an_epoch(client, runs):
        return len(runs) == len(SEEDS) and all(
            1 <= len(client.get_metric_history(r.info.run_id, "test_acc")) < EPOCHS for r in runs)

    wait_for_epochs(client, NAME, both_trials_trained_an_epoch, 300, sweep, "an epoch of each trial")
    before = checkpoint_versions(stack.s3)
    stack.mlflow.stop()
    advanced_during_outage = False
    deadline = time.monotonic() + OUTAGE_S
    while time.monotonic() < deadline:
        advanced_during_outage = advanced_during_outage or checkpoint_versions(stack.s3) != before
        time.sleep(1)
    sweep_alive_after_outage = sweep.running()
    stack.mlflow.start()
    sweep.wait(500)
    return stack, sweep, before, advanced_during_outage, sweep_alive_after_outage


def test_training_goes_on_while_the_server_is_down(sweep_through_outage):
    _, sweep, before, advanced, alive = sweep_through_outage
    assert len(before) == len(SEEDS)
    assert advanced, "no trial stored a new checkpoint while the MLflow server was down"
    assert alive, f"sweeper run ended during the outage\n{sweep.output()}"


def test_the_sweep_ends_well_with_every_epoch_logged_exactly_once(sweep_through_outage):
    stack, sweep, *_ = sweep_through_outage
    assert sweep.proc.returncode == 0, sweep.output()
    client = stack.mlflow.client()
    runs = trial_runs(client, NAME)
    assert len(runs) == len(SEEDS)
    assert {r.data.tags.get("status") for r in runs} == {"finished"}
    assert_each_epoch_once(client, runs, EPOCHS)
