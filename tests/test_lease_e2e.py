"""One driver per sweep (sweeper/driver/lease.py), with real `sweeper run` processes, real Ray and a
real sqlite MLflow store: a second driver never trains what the first is training, and a holder
killed with SIGKILL is taken over once its claim is stale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeper.record import names
from sweeper.driver import lease
from sweeper.record import tracking
from sweeper.record.names import TAG_ATTEMPTS
from test_sweep_e2e import assert_no_duplicate_steps, children, kill_session, metric_points, write_spec
from two_drivers import assert_one_trained_and_one_named_the_holder, run_two_drivers

pytestmark = pytest.mark.slow

SWEEPER = str(Path(sys.executable).parent / "sweeper")


def _env(**extra: str) -> dict:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def assert_every_trial_trained_once(client, name: str, count: int, epochs: int) -> None:
    runs = children(client, name)
    assert len(runs) == count
    for run in runs.values():
        assert run.data.tags[names.TAG_STATUS] == "finished"
        assert run.data.tags[TAG_ATTEMPTS] == "1", run.info.run_name
        assert metric_points(client, run.info.run_id, "test_acc") == list(range(1, epochs + 1))
    assert_no_duplicate_steps(client, runs)


def lease_tags(client, name: str) -> dict[str, dict]:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return {}
    parent = tracking.find_parent_run(client, experiment.experiment_id)
    if parent is None:
        return {}
    return {k: json.loads(v) for k, v in parent.data.tags.items() if k.startswith(names.TAG_LEASE_PREFIX)}


def test_two_drivers_started_two_seconds_apart_train_every_trial_once(workdir):
    from mlflow.tracking import MlflowClient

    # a store that does not exist yet: both drivers would build its schema at once
    tracking_uri = f"sqlite:///{workdir / 'new' / 'mlflow.db'}"
    (workdir / "new").mkdir()
    spec = write_spec(workdir, "twice", modes=("bn_only", "full"), epochs=3)
    argv = [SWEEPER, "run", str(spec), "--tracking-uri", tracking_uri, "--storage", str(workdir / "results")]
    ended = run_two_drivers(argv, workdir, _env())
    winner, _ = assert_one_trained_and_one_named_the_holder(ended)
    mlflow_client = MlflowClient(tracking_uri=tracking_uri)
    assert "[2/2]" in winner.out
    assert_every_trial_trained_once(mlflow_client, "twice", count=2, epochs=3)
    assert lease_tags(mlflow_client, "twice") == {}  # released at the end
    parent = tracking.find_parent_run(mlflow_client, mlflow_client.get_experiment_by_name("twice").experiment_id)
    assert parent.info.status == "FINISHED"


def test_a_holder_killed_with_sigkill_is_taken_over_once_its_claim_is_stale(workdir, tracking_uri, mlflow_client,
                                                                           monkeypatch):
    stale_s = 8
    env = _env(SWEEPER_LEASE_STALE_S=str(stale_s), SWEEPER_LEASE_HEARTBEAT_S="1", SWEEPER_CLOCK_SKEW_S="2")
    spec = write_spec(workdir, "orphan", modes=("bn_only", "full"), epochs=2)
    argv = [SWEEPER, "run", str(spec), "--tracking-uri", tracking_uri, "--storage", str(workdir / "results")]
    holder = subprocess.Popen(argv, cwd=workdir, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not lease_tags(mlflow_client, "orphan"):
            assert holder.poll() is None and time.monotonic() < deadline, "the holder never took the lease"
            time.sleep(0.3)
    finally:
        kill_session(holder.pid)
        holder.wait(timeout=60)
    (claim,) = lease_tags(mlflow_client, "orphan").values()
    assert claim["pid"] == holder.pid

    # A driver on another machine cannot see that pid: while the dead holder's heartbeat is
    # fresh it names the holder and leaves; once it is stale (stale_s) it takes the sweep.
    # (Asked in this process: a new `sweeper run` takes longer than 8 s to start when busy.)
    monkeypatch.setattr(lease, "pid_namespace", lambda: "another-machine")
    monkeypatch.setenv("SWEEPER_LEASE_STALE_S", str(stale_s))  # read when the lease is taken
    monkeypatch.setenv("SWEEPER_CLOCK_SKEW_S", "2")
    parent = tracking.find_parent_run(mlflow_client, mlflow_client.get_experiment_by_name("orphan").experiment_id)
    with pytest.raises(lease.LeaseHeld, match=f"pid {holder.pid},"):
        lease.Lease(mlflow_client, parent.info.run_id, "orphan").acquire()
    assert list(lease_tags(mlflow_client, "orphan").values()) == [claim]  # it withdrew nothing but its own
    time.sleep(max(0.0, claim["heartbeat"] + stale_s + 1 - time.time()))
    remote = lease.Lease(mlflow_client, parent.info.run_id, "orphan").acquire()
    assert list(lease_tags(mlflow_client, "orphan")) == [remote.tag]  # the dead claim is gone
    remote.release()
    monkeypatch.undo()

    # on this machine the dead pid is seen at once: the next `sweeper run` finishes the sweep
    holder_again = subprocess.Popen(argv, cwd=workdir, env=env, start_new_session=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not lease_tags(mlflow_client, "orphan"):
            assert holder_again.poll() is None and time.monotonic() < deadline
            time.sleep(0.3)
    finally:
        kill_session(holder_again.pid)
        holder_again.wait(timeout=60)
    assert lease_tags(mlflow_client, "orphan")  # a claim left by a SIGKILLed driver
    taken = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    runs = children(mlflow_client, "orphan")
    assert len(runs) == 2 and all(r.data.tags[names.TAG_STATUS] == "finished" for r in runs.values())
    assert_no_duplicate_steps(mlflow_client, runs)
    assert lease_tags(mlflow_client, "orphan") == {}
