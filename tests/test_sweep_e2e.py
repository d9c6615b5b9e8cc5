"""End to end: real Ray (local, 2 CPUs) and a real MLflow store, tiny trials on digits.

What must hold: one parent and exactly N children; a second run adds nothing; a driver killed
with SIGKILL completes on the next run; a killed worker resumes from its checkpoint; exit codes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from sweeper.record import names
from sweeper.record import run_index
from sweeper.driver.orchestrate import run_command
from sweeper.driver.train import train_command
from sweeper.record.trial_record import state_of
from sweeper.record.names import METRIC_START_EPOCH

pytestmark = pytest.mark.slow

SWEEPER = [str(Path(sys.executable).parent / "sweeper")]


def write_spec(folder: Path, name: str, *, modes=("bn_only", "full", "output_only"), seeds=(0,),
               epochs=2, max_failures=1, dataset="{name: digits, image_size: 8, train_size: 192, test_size: 96}") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"""\
name: {name}
dataset: {dataset}
model: {{family: cifar_resnet, depth: 8}}
train: {{epochs: {epochs}, batch_size: 64, lr: 0.1, augment: false}}
grid: {{mode: [{", ".join(modes)}], seed: [{", ".join(map(str, seeds))}]}}
resources: {{cpu: 1}}
max_concurrent: 2
max_failures: {max_failures}
checkpoint: {{every_epochs: 1}}
""")
    return path


def children(client, name):
    experiment = client.get_experiment_by_name(name)
    return run_index.trial_runs(client, experiment.experiment_id) if experiment else {}


def metric_points(client, run_id, key):
    return [m.step for m in client.get_metric_history(run_id, key)]


def assert_no_duplicate_steps(client, runs):
    for run in runs.values():
        for key in ("test_acc", "train_loss", "epoch_s"):
            steps = metric_points(client, run.info.run_id, key)
            assert len(steps) == len(set(steps)), f"{run.info.run_name}: {key} steps {steps}"


def test_a_sweep_lands_as_one_parent_and_n_children_and_a_second_run_adds_nothing(
        workdir, tracking_uri, mlflow_client, ray_local):
    spec = write_spec(workdir, "three")
    storage = str(workdir / "results")

    # `sweeper train` first: one trial in-process, no Ray; the sweep must then reuse its run
    assert train_command(str(spec), 0, tracking_uri=tracking_uri, storage=storage) == 0
    (trained_key, trained_run), = children(mlflow_client, "three").items()

    assert run_command(str(spec), tracking_uri=tracking_uri, storage=storage) == 0
    runs = children(mlflow_client, "three")
    assert len(runs) == 3 and runs[trained_key].info.run_id == trained_run.info.run_id
    experiment = mlflow_client.get_experiment_by_name("three").experiment_id
    parents = mlflow_client.search_runs([experiment], f"tags.`{names.TAG_ROLE}` = 'sweep'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags[names.TAG_SPEC_HASH] and parent.info.status == "FINISHED"
    # the driver's last word on its trials: the run index holds all three, FINISHED
    index = run_index.load_index(mlflow_client, parent.info.run_id)
    assert {r.info.run_id for r in index.runs.values()} == {r.info.run_id for r in runs.values()}
    for key, run in runs.items():
        tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
        assert tags[names.TAG_PARENT] == parent.info.run_id
        assert tags[names.TAG_TRIAL_KEY] == key and tags[names.TAG_STATUS] == "finished"
        assert tags[names.TAG_NODE_ID]
        assert run.info.status == "FINISHED"
        assert params["model.depth"] == "8" and params["mode"] in ("bn_only", "full", "output_only")
        assert sorted(metric_points(mlflow_client, run.info.run_id, "test_acc")) == [1, 2]
        for final in ("best_test_acc", "final_test_acc", "trainable_params", "total_params",
                      "gamma_near_zero_frac", "relu_zero_frac"):
            assert final in metrics, final
        artifacts = {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
        assert {"checkpoint", "gamma"} <= artifacts
        checkpoint_files = {a.path for a in mlflow_client.list_artifacts(run.info.run_id, "checkpoint")}
        assert "checkpoint/gamma.json" in checkpoint_files
    # BN-only trains only BN (plus nothing else): far fewer trainable parameters than full
    by_mode = {r.data.params["mode"]: r.data.metrics["trainable_params"] for r in runs.values()}
    assert by_mode["bn_only"] < by_mode["full"]

    before = {k: (r.info.run_id, len(mlflow_client.get_metric_history(r.info.run_id, "test_acc")))
              for k, r in runs.items()}
    assert run_command(str(spec), tracking_uri=tracking_uri, storage=storage) == 0
    after_runs = children(mlflow_client, "three")
    after = {k: (r.info.run_id, len(mlflow_client.get_metric_history(r.info.run_id, "test_acc")))
             for k, r in after_runs.items()}
    assert after == before
    assert len(mlflow_client.search_runs([experiment])) == 4  # parent + 3, nothing new


def test_a_killed_worker_resumes_from_its_checkpoint_not_from_scratch(workdir, tracking_uri, mlflow_client,
                                                                     worker_killed_once):
    import ray

    flag = worker_killed_once(1)  # the worker SIGKILLs itself after epoch 1
    spec = write_spec(workdir, "crash", modes=("bn_only",), epochs=2, max_failures=2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # workers inherit the env
    try:
        code = run_command(str(spec), tracking_uri=tracking_uri, storage=str(workdir / "results"))
    finally:
        ray.shutdown()
    assert flag.exists()  # the worker really died once
    assert code == 0
    (run,) = children(mlflow_client, "crash").values()
    assert run.data.tags[names.TAG_STATUS] == "finished"
    assert run.data.tags["sweeper.attempts"] == "2"
    starts = {m.step: m.value for m in mlflow_client.get_metric_history(run.info.run_id, METRIC_START_EPOCH)}
    assert starts == {1: 1.0, 2: 2.0}  # the second attempt trained epoch 2 only
    assert sorted(metric_points(mlflow_client, run.info.run_id, "test_acc")) == [1, 2]


def kill_session(pid: int) -> None:
    """SIGKILL the driver's whole session: the driver and the Ray processes it started (only those)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == pid:
                    os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def test_a_driver_killed_with_sigkill_mid_sweep_completes_on_the_next_run(workdir, tracking_uri, mlflow_client,
                                                                          ray_local):
    spec = write_spec(workdir, "killed", modes=("bn_only", "full", "output_only"), epochs=2)
    storage = str(workdir / "results")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen([*SWEEPER, "run", str(spec), "--tracking-uri", tracking_uri, "--storage", storage],
                              cwd=workdir, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # wait for the first epoch of any trial to land
            runs = children(mlflow_client, "killed")
            if any("test_acc" in r.data.metrics for r in runs.values()):
                break
            assert driver.poll() is None, "the driver ended before the test could kill it"
            time.sleep(0.5)
        else:
            pytest.fail("no trial reported an epoch in time")
    finally:
        kill_session(driver.pid)
        driver.wait(timeout=60)
    states_at_kill = Counter(state_of(r) for r in children(mlflow_client, "killed").values())
    assert states_at_kill["finished"] < 3  # it really was killed mid-sweep

    assert run_command(str(spec), tracking_uri=tracking_uri, storage=storage) == 0
    runs = children(mlflow_client, "killed")
    assert len(runs) == 3
    assert all(r.data.tags.get(names.TAG_STATUS) == "finished" for r in runs.values())
    assert all(sorted(metric_points(mlflow_client, r.info.run_id, "test_acc")) == [1, 2] for r in runs.values())
    assert_no_duplicate_steps(mlflow_client, runs)
    experiment = mlflow_client.get_experiment_by_name("killed").experiment_id
    assert len(mlflow_client.search_runs([experiment])) == 4  # one parent, three children


def test_a_trial_that_fails_for_good_gives_exit_code_1_and_status_failed(workdir, tracking_uri, mlflow_client,
                                                                         ray_local):
    # every file where the loader looks, none of them readable: the preflight finds the set there,
    # the trial fails loading it
    empty = workdir / "broken-cifar" / "cifar-10-batches-py"
    empty.mkdir(parents=True)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"):
        (empty / name).write_bytes(b"not a pickle")
    spec = write_spec(workdir, "broken", modes=("bn_only",), max_failures=0,
                      dataset=f"{{name: cifar10, root: {empty.parent}, download: false}}")
    assert run_command(str(spec), tracking_uri=tracking_uri, storage=str(workdir / "results")) == 1
    (run,) = children(mlflow_client, "broken").values()
    assert run.data.tags[names.TAG_STATUS] == "failed" and run.info.status == "FAILED"
    assert run.data.tags[names.TAG_LAST_ERROR]


def test_dry_run_checks_tracking_prints_the_plan_and_starts_nothing(workdir, tracking_uri, mlflow_client, capsys):
    import ray

    spec = write_spec(workdir, "dry")
    assert run_command(str(spec), tracking_uri=tracking_uri, storage=str(workdir / "results"), dry_run=True) == 0
    out = capsys.readouterr().out
    assert "3 trials, 0 done, 3 to run" in out and "bn_only-d8-w1-lr0.1-s0" in out
    assert not ray.is_initialized()
    assert mlflow_client.get_experiment_by_name("dry") is None
    assert not (workdir / "results").exists()


def test_unreachable_tracking_is_one_line_and_exit_2_before_any_trial(workdir):
    spec = write_spec(workdir, "offline")
    proc = subprocess.run([*SWEEPER, "run", str(spec), "--tracking-uri", "http://127.0.0.1:9",
                           "--storage", str(workdir / "results")],
                          cwd=workdir, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "INFO" not in line]
    assert lines == ["tracking: cannot use MLflow at http://127.0.0.1:9: server not reachable"]
    assert "Traceback" not in proc.stderr
    assert not (workdir / "results").exists()


def test_an_optuna_search_extended_from_2_to_4_samples_continues_from_its_2_finished(
        workdir, tracking_uri, mlflow_client, ray_local, capsys, monkeypatch):
    """The finished samples and their test_acc go back to the searcher: checked from the Optuna
    study Tune draws from, not only from the line."""
    from sweeper.plan import search

    studies = []
    told = search.tell_finished
    monkeypatch.setattr(search, "tell_finished", lambda alg, *a: (studies.append(alg._ot_study), told(alg, *a))[1])
    spec = workdir / "tpe.yaml"
    text = """\
name: tpe
dataset: {name: digits, image_size: 8, train_size: 192, test_size: 96}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 1, batch_size: 64, augment: false}
search: {algorithm: optuna, num_samples: SAMPLES, space: {lr: {loguniform: [0.01, 1.0]}}, metric: test_acc, direction: max}
resources: {cpu: 1}
max_concurrent: 2
"""
    spec.write_text(text.replace("SAMPLES", "2"))
    storage = str(workdir / "results")
    assert run_command(str(spec), tracking_uri=tracking_uri, storage=storage) == 0
    first = children(mlflow_client, "tpe")
    assert len(first) == 2 and "continues from" not in capsys.readouterr().out

    spec.write_text(text.replace("SAMPLES", "4"))
    assert run_command(str(spec), tracking_uri=tracking_uri, storage=storage) == 0
    assert "search: optuna continues from 2 finished samples" in capsys.readouterr().out.splitlines()
    history = sorted((t.value, t.params["sampled/train.lr"]) for t in studies[-1].trials if t.state.name == "COMPLETE")
    assert len(history) == 4  # the 2 told back before the first draw, the 2 Tune drew and completed
    told_back = {(round(v, 9), round(lr, 9)) for v, lr in history}
    for run in first.values():  # each finished sample is in it with the test_acc it reached
        assert (round(run.data.metrics["test_acc"], 9), round(float(run.data.params["train.lr"]), 9)) in told_back
    runs = children(mlflow_client, "tpe")
    assert len(runs) == 4 and first.keys() <= runs.keys()  # the 2 finished are the same trials, kept


def test_an_optuna_search_with_asha_runs_its_samples_once_and_resumes_to_nothing_more(
        workdir, tracking_uri, mlflow_client, ray_local):
    """lr_search in small: Optuna TPE draws lr for each sample, ASHA may stop the weak ones, and
    every sampled trial still lands as exactly one child run, findable by its own key."""
    spec = workdir / "search.yaml"
    spec.write_text("""\
name: search
dataset: {name: digits, image_size: 8, train_size: 192, test_size: 96}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 2, batch_size: 64, augment: false}
grid: {mode: [bn_only]}
search: {algorithm: optuna, num_samples: 3, space: {lr: {loguniform: [0.01, 1.0]}}, metric: test_acc, direction: max}
scheduler: {name: asha, grace_period: 1, reduction_factor: 2}
resources: {cpu: 1}
max_concurrent: 2
checkpoint: {every_epochs: 1}
""")
    storage = str(workdir / "results")
    assert run_command(str(spec), tracking_uri=tracking_uri, storage=storage) == 0
    runs = children(mlflow_client, "search")
    assert len(runs) == 3
    lrs = {float(run.data.params["train.lr"]) for run in runs.values()}
    assert len(lrs) == 3 and all(0.01 <= lr <= 1.0 for lr in lrs)
    # ASHA may stop a weak sample at its first rung: stopped_early, its own status since it has one
    assert {run.data.tags["status"] for run in runs.values()} <= {"finished", "stopped_early"}
    assert_no_duplicate_steps(mlflow_client, runs)

    assert run_command(str(spec), tracking_uri=tracking_uri, storage=storage) == 0
    assert children(mlflow_client, "search").keys() == runs.keys()
