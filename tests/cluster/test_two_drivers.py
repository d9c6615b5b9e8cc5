"""Two `sweeper run` of one sweep, 2 s apart, against the MLflow server (PostgreSQL store) and the
2-node Ray cluster: the lease lives in the server's run tags, no extra service. One driver trains
every trial once; the other exits 2 naming the holder and never attaches to Ray."""

from __future__ import annotations

import time

import pytest
from cluster_sweeps import STORAGE_BUCKET, SweepRun, assert_each_epoch_once, parent_run, trial_runs, write_spec

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAME, SEEDS, EPOCHS = "cluster_two_drivers", [0, 1], 2


def test_two_drivers_against_an_mlflow_server_train_every_trial_once(cluster, tmp_path):
    folders = [tmp_path / "a", tmp_path / "b"]
    sweeps = []
    for folder in folders:
        folder.mkdir()
        spec = write_spec(folder, NAME, seeds=SEEDS, epochs=EPOCHS)
        sweeps.append(SweepRun(spec, cluster, tracking_uri=cluster.mlflow.uri,
                               storage=f"s3://{STORAGE_BUCKET}/two-drivers"))
    sweeps[0].start()
    time.sleep(2)
    sweeps[1].start()
    codes = [sweep.wait(600) for sweep in sweeps]
    assert sorted(codes) == [0, 2], "\n".join(s.output() for s in sweeps)
    winner, loser = (sweeps[0], sweeps[1]) if codes[0] == 0 else (sweeps[1], sweeps[0])
    lines = [line for line in loser.stderr.splitlines() if line.strip()]
    assert lines and f"pid {winner.proc.pid}," in lines[-1] and "being run by another driver" in lines[-1], loser.output()
    assert "Traceback" not in loser.stderr and "[1/" not in loser.stdout

    client = cluster.mlflow.client()
    runs = trial_runs(client, NAME)
    assert len(runs) == len(SEEDS)
    assert all(run.data.tags.get("sweeper.attempts") == "1" for run in runs)
    assert all(run.data.tags.get("status") == "finished" for run in runs)
    assert_each_epoch_once(client, runs, EPOCHS)
    parent = parent_run(client, NAME)
    assert parent.info.status == "FINISHED"
    assert not any(k.startswith("sweeper.lease.") for k in parent.data.tags)
