"""An ASHA stop is durable: real `sweeper run` processes, real Ray, a real sqlite store.

The study makes the stop deterministic: two trials run one after the other (max_concurrent 1),
the first with a working learning rate, the second with lr 1e-9, which leaves it at its random
initialisation. ASHA (grace_period 1, reduction_factor 2, 3 epochs: rungs at epochs 1 and 2)
keeps the first, alone at every rung, and stops the second at epoch 1, where its test_acc is
below the first's. The stopped trial must never be trained again by a second `sweeper run`, also
when the store refuses the write of the stop at that moment (tests/faults/sitecustomize.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import sweeper
from sweeper.core import states
from sweeper.record.names import METRIC_START_EPOCH, TAG_ATTEMPTS
from sweeper.record.trial_record import state_of
from test_sweep_e2e import children, metric_points

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SWEEPER = str(Path(sys.executable).parent / "sweeper")
STUDY = """\
name: asha_stop
dataset: {name: digits, image_size: 16}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 3, batch_size: 64, augment: false, lr_schedule: {name: constant}}
grid: {lr: [0.1, 1.0e-9]}
scheduler: {name: asha, grace_period: 1, reduction_factor: 2}
resources: {cpu: 1}
max_concurrent: 1
max_failures: 0
checkpoint: {every_epochs: 1}
"""


def _sweeper_run(workdir: Path, tracking_uri: str, *, store_fails_at_stop: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests" / "faults"), str(ROOT)])
    env["SWEEPER_SETTLE_WAIT_S"] = "1"  # the driver's retries of a trial's end, short
    if store_fails_at_stop:
        env["SWEEPER_TEST_STORE_FAILS_AT_STOP"] = "1"
    return subprocess.run([SWEEPER, "run", "study.yaml", "--tracking-uri", tracking_uri, "--storage", "results"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("store_fails_at_stop", [False, True], ids=["healthy store", "store fails at the stop"])
def test_a_trial_asha_stopped_is_never_trained_again(workdir, tracking_uri, mlflow_client, store_fails_at_stop):
    (workdir / "study.yaml").write_text(STUDY)

    first = _sweeper_run(workdir, tracking_uri, store_fails_at_stop=store_fails_at_stop)
    runs = {run.data.params["train.lr"]: run for run in children(mlflow_client, "asha_stop").values()}
    good, stopped = runs["0.1"], runs["1e-09"]
    assert metric_points(mlflow_client, good.info.run_id, "test_acc") == [1, 2, 3], first.stdout + first.stderr
    assert metric_points(mlflow_client, stopped.info.run_id, "test_acc") == [1]  # ASHA stopped it at its first rung
    assert state_of(good) == states.FINISHED
    if store_fails_at_stop:
        assert first.returncode == 1, first.stdout + first.stderr
        assert f"sweeper: warning: could not record run {stopped.info.run_id} as stopped_early" in first.stderr
        assert "ConnectionError: injected by tests/faults" in first.stderr
        assert "1 trial end could not be written to MLflow; kept in " in first.stderr
        assert state_of(stopped) == states.INTERRUPTED  # what used to be trained in full by the next run
        assert "could not record run" in (workdir / "results" / "asha_stop" / "ray-driver.log").read_text()
    else:
        assert first.returncode == 0, first.stdout + first.stderr
        assert "finished (stopped early)" in first.stdout
        assert state_of(stopped) == states.STOPPED_EARLY
        assert mlflow_client.get_run(stopped.info.run_id).data.tags["status"] == "stopped_early"
        # as a notebook reads it: the stopped trial's last test_acc and epoch, not NaN; best is the other
        df = sweeper.load_results("asha_stop", tracking_uri=tracking_uri).set_index("run_id")
        row = df.loc[stopped.info.run_id]
        last_acc = mlflow_client.get_metric_history(stopped.info.run_id, "test_acc")[-1].value
        assert (row["state"], row["epoch"], row["test_acc"]) == ("stopped_early", 1, last_acc)
        assert row["final_test_acc"] == last_acc
        assert df.loc[good.info.run_id, "epoch"] == 3
        assert sweeper.best("asha_stop", tracking_uri=tracking_uri)["run_id"] == good.info.run_id

    second = _sweeper_run(workdir, tracking_uri, store_fails_at_stop=False)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "2 trials, 2 done, 0 to run" in second.stdout and "nothing to do" in second.stdout
    after = mlflow_client.get_run(stopped.info.run_id)
    assert state_of(after) == states.STOPPED_EARLY
    assert after.data.tags[TAG_ATTEMPTS] == "1"  # never started again
    assert metric_points(mlflow_client, stopped.info.run_id, "test_acc") == [1]
    assert metric_points(mlflow_client, stopped.info.run_id, METRIC_START_EPOCH) == [1]
    assert "final_test_acc" in after.data.metrics  # its last test_acc stands in, as for any stop
    assert not any((workdir / "results" / "asha_stop" / "pending-ends").glob("*.json"))
