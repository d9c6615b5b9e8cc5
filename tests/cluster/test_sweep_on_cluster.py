"""A sweep on the 2-node cluster, tracked by the MLflow server (PostgreSQL store, S3 artifacts),
with Ray trial storage on S3: trials spread over both nodes and everything lands where it should.
"""

from __future__ import annotations

import pytest
from cluster_sweeps import (
    ARTIFACT_BUCKET, STORAGE_BUCKET, assert_each_epoch_once, parent_run, run_cli, run_sweep, trial_runs, write_spec,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAME, SEEDS, EPOCHS = "cluster_spread", [0, 1], 2
PREFIX = "spread"  # this sweep's folder in the storage bucket


@pytest.fixture(scope="module")
def finished_sweep(stack, tmp_path_factory):
    """One sweep run to the end, then `sweeper report` on it."""
    stack.ray.ensure_two_nodes()
    folder = tmp_path_factory.mktemp("spread")
    spec = write_spec(folder, NAME, seeds=SEEDS, epochs=EPOCHS)
    sweep = run_sweep(spec, stack, tracking_uri=stack.mlflow.uri, storage=f"s3://{STORAGE_BUCKET}/{PREFIX}")
    assert sweep.proc.returncode == 0, sweep.output()
    report = run_cli("report", NAME, "--tracking-uri", stack.mlflow.uri, "--out", str(folder / "report"),
                     cwd=folder)
    assert report.returncode == 0, report.stdout + report.stderr
    return stack, sweep


def test_trials_spread_over_both_nodes(finished_sweep):
    stack, _ = finished_sweep
    runs = trial_runs(stack.mlflow.client(), NAME)
    node_ids = {run.data.tags.get("sweeper.node_id") for run in runs}
    assert node_ids == {stack.ray.head.node_id, stack.ray.worker.node_id}


def test_every_trial_logs_each_epoch_once_through_the_server_into_postgres(finished_sweep):
    stack, _ = finished_sweep
    client = stack.mlflow.client()
    runs = trial_runs(client, NAME)
    assert len(runs) == len(SEEDS)
    assert {run.data.tags.get("status") for run in runs} == {"finished"}
    assert_each_epoch_once(client, runs, EPOCHS)
    # The server's store is the PostgreSQL database itself, not a file beside it.
    with stack.postgres.connect("mlflow") as conn, conn.cursor() as cur:
        cur.execute("SELECT run_uuid, count(*) FROM metrics WHERE key = 'test_acc' AND step > 0 "
                    "AND run_uuid = ANY(%s) GROUP BY run_uuid", ([run.info.run_id for run in runs],))
        assert dict(cur.fetchall()) == {run.info.run_id: EPOCHS for run in runs}


def test_checkpoints_and_report_land_in_the_artifact_bucket(finished_sweep):
    stack, _ = finished_sweep
    client = stack.mlflow.client()
    experiment_id = client.get_experiment_by_name(NAME).experiment_id
    keys = stack.s3.keys(ARTIFACT_BUCKET, f"{experiment_id}/")
    for run in trial_runs(client, NAME):
        assert any(k.startswith(f"{experiment_id}/{run.info.run_id}/artifacts/checkpoint/") for k in keys), (
            f"no checkpoint of {run.info.run_name} in s3://{ARTIFACT_BUCKET}: {keys}")
    parent = parent_run(client, NAME)
    assert f"{experiment_id}/{parent.info.run_id}/artifacts/report/report.md" in keys, keys


def test_trial_checkpoints_live_in_the_storage_bucket(finished_sweep):
    stack, _ = finished_sweep
    keys = stack.s3.keys(STORAGE_BUCKET, f"{PREFIX}/{NAME}/trials/")
    for run in trial_runs(stack.mlflow.client(), NAME):
        trial_key = run.data.tags["sweeper.trial_key"]
        assert any(k.startswith(f"{PREFIX}/{NAME}/trials/{trial_key}/") for k in keys), (
            f"no checkpoint of trial {trial_key} under s3://{STORAGE_BUCKET}/{PREFIX}/{NAME}/trials: {keys}")
