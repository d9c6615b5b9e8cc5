"""What a research group meets in its first week, end to end with real Ray and a real sqlite
MLflow store: an edited study, a broken checkpoint, a bad path, a failing trial, a driver that
crashes, and what a finished trial leaves in /tmp."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sweeper.record import names
from sweeper.core import states
from sweeper.record import tracking
from sweeper.core.errors import SweepError
from sweeper.driver.orchestrate import run_command
from sweeper.driver.train import train_command
from sweeper.plan.planning import expected_trials
from sweeper.spec import load_spec
from sweeper.views.status import sweep_status
from sweeper.record.names import TAG_CHECKPOINT_SET_ASIDE
from test_sweep_e2e import children, metric_points, write_spec

pytestmark = pytest.mark.slow

SWEEPER = str(Path(sys.executable).parent / "sweeper")


def _parent(client, name):
    return tracking.find_parent_run(client, client.get_experiment_by_name(name).experiment_id)


def test_an_edited_study_says_what_changed_and_status_and_report_show_the_current_version(
        workdir, tracking_uri, mlflow_client, ray_local, capsys):
    storage = str(workdir / "results")
    spec = write_spec(workdir, "study", modes=("bn_only", "full"), epochs=1)
    assert run_command(str(spec), tracking_uri=tracking_uri, storage=storage) == 0
    capsys.readouterr()

    spec = write_spec(workdir, "study", modes=("bn_only", "full", "output_only"), epochs=2)  # edited
    assert run_command(str(spec), tracking_uri=tracking_uri, storage=storage) == 0
    out = capsys.readouterr().out
    assert "study: the spec changed since the last run" in out
    assert "0 trials kept, 3 new, 2 no longer in the spec (2 of them finished)" in out

    runs = children(mlflow_client, "study")
    current = {t.key for t in expected_trials(load_spec(spec))}
    assert len(runs) == 5
    for key, run in runs.items():
        assert (names.TAG_SUPERSEDED in run.data.tags) == (key not in current)

    _, _, rows = sweep_status("study", tracking_uri)  # the bare name: the spec as it is now
    assert {r.key for r in rows} == current and all(r.state == "finished" for r in rows)
    _, _, every = sweep_status("study", tracking_uri, all_versions=True)
    assert len(every) == 5 and sum(r.superseded for r in every) == 2

    report = subprocess.run([SWEEPER, "report", "study", "--tracking-uri", tracking_uri, "--out", "rep"],
                            cwd=workdir, capture_output=True, text=True, timeout=600)
    assert report.returncode == 0, report.stderr
    text = (workdir / "rep" / "report.md").read_text()
    assert "Trials in MLflow: **3**" in text and "2 trials of earlier versions of the spec are left out" in text
    assert len((workdir / "rep" / "results.csv").read_text().strip().splitlines()) == 1 + 3
    every = subprocess.run([SWEEPER, "report", "study", "--all", "--tracking-uri", tracking_uri, "--out", "all"],
                           cwd=workdir, capture_output=True, text=True, timeout=600)
    assert every.returncode == 0, every.stderr
    assert "**Mixed spec versions**: 2 of these trials" in (workdir / "all" / "report.md").read_text()


def test_an_unreadable_checkpoint_is_set_aside_and_the_trial_trains_from_scratch(
        workdir, tracking_uri, mlflow_client, ray_local, capsys):
    storage = workdir / "results"
    spec = write_spec(workdir, "torn", modes=("bn_only",), epochs=2)
    (trial,) = expected_trials(load_spec(spec))
    folder = storage / "torn" / "trials" / trial.key
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"PK\x03\x04 half a zip")  # truncated, or someone else's file

    assert run_command(str(spec), tracking_uri=tracking_uri, storage=str(storage)) == 0
    out = capsys.readouterr().out
    assert "its checkpoint was unusable and was set aside, trained from scratch" in out
    (aside,) = folder.glob("checkpoint.pt.unusable-*")
    assert aside.read_bytes() == b"PK\x03\x04 half a zip"  # kept, not deleted
    (run,) = children(mlflow_client, "torn").values()
    assert run.data.tags[names.TAG_STATUS] == "finished"
    assert run.data.tags[TAG_CHECKPOINT_SET_ASIDE].startswith(str(aside))
    assert metric_points(mlflow_client, run.info.run_id, "test_acc") == [1, 2]


def test_an_epoch_checkpointed_but_never_logged_reaches_mlflow_when_the_trial_resumes(
        workdir, tracking_uri, mlflow_client):
    """A trial killed after saving epoch 1's checkpoint and before logging epoch 1 resumes at
    epoch 2; epoch 1 still reaches its run, once."""
    from trainables import run_trial

    storage = workdir / "results"
    spec = write_spec(workdir, "gap", modes=("bn_only",), epochs=2)
    (trial,) = expected_trials(load_spec(spec))

    def killed_before_logging(metrics, checkpoint):
        assert checkpoint is not None  # epoch 1's checkpoint is on disk, its metrics are not in MLflow
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_trial(trial.config, killed_before_logging, storage / "gap" / "trials" / trial.key)
    assert train_command(str(spec), 0, tracking_uri=tracking_uri, storage=str(storage)) == 0
    (run,) = children(mlflow_client, "gap").values()
    assert run.data.tags[names.TAG_STATUS] == "finished"
    assert metric_points(mlflow_client, run.info.run_id, "test_acc") == [1, 2]
    assert metric_points(mlflow_client, run.info.run_id, "sweeper.start_epoch") == [1]  # it did resume at 2...
    assert mlflow_client.get_metric_history(run.info.run_id, "sweeper.start_epoch")[0].value == 2


def test_a_failed_trial_prints_its_real_cause_in_one_line_and_status_shows_it(
        workdir, tracking_uri, mlflow_client, ray_local, capsys, monkeypatch):
    import shutil

    from sweeper.driver import preflight

    # the set is there when the run checks it, and gone when the trial reads it (a volume unmounted
    # meanwhile): the trial's own error is what the user sees
    empty = workdir / "no-cifar-here"
    (empty / "cifar-10-batches-py").mkdir(parents=True)
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"):
        (empty / "cifar-10-batches-py" / name).write_bytes(b"x")
    checked = preflight.before_trials

    def check_then_unmount(*args, **kwargs):
        answer = checked(*args, **kwargs)
        shutil.rmtree(empty / "cifar-10-batches-py")
        return answer

    monkeypatch.setattr(preflight, "before_trials", check_then_unmount)
    spec = write_spec(workdir, "broken", modes=("bn_only",), max_failures=0,
                      dataset=f"{{name: cifar10, root: {empty}, download: false}}")
    assert run_command(str(spec), tracking_uri=tracking_uri, storage=str(workdir / "results")) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[1/1]")]
    assert len(lines) == 1 and "failed" in lines[0]
    assert "FileNotFoundError: cifar10 not found in dataset.root" in lines[0]
    status = subprocess.run([SWEEPER, "status", "broken", "--tracking-uri", tracking_uri],
                            cwd=workdir, capture_output=True, text=True, timeout=300)
    assert status.returncode == 0 and "error: FileNotFoundError: cifar10 not found" in status.stdout


@pytest.mark.parametrize("storage", ["a-file", "a-file/results"])
def test_a_bad_storage_is_one_line_and_exit_2_before_ray_or_mlflow(workdir, tracking_uri, mlflow_client, storage):
    (workdir / "a-file").write_text("not a folder")
    spec = write_spec(workdir, "nowhere")
    result = subprocess.run([SWEEPER, "run", str(spec), "--tracking-uri", tracking_uri, "--storage", storage],
                            cwd=workdir, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"--storage {storage}: ") and "not a folder" in result.stderr
    assert mlflow_client.get_experiment_by_name("nowhere") is None  # nothing written, no run RUNNING


def test_status_and_report_of_a_store_that_is_not_there_create_nothing(workdir):
    for command in ("status", "report"):
        result = subprocess.run([SWEEPER, command, "mysweep", "--tracking-uri", "sqlite:///typo/mlflow.db"],
                                cwd=workdir, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and "no MLflow store at" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert list(workdir.iterdir()) == []


def test_a_driver_that_fails_mid_sweep_ends_the_parent_run_failed_and_releases_the_sweep(
        workdir, tracking_uri, mlflow_client, ray_local, monkeypatch, capsys):
    from sweeper.driver import tune_loop

    def crash(*args, **kwargs):
        raise RuntimeError("the driver broke")

    monkeypatch.setattr(tune_loop, "fit", crash)
    spec = write_spec(workdir, "crashy", modes=("bn_only",))
    code = run_command(str(spec), tracking_uri=tracking_uri, storage=str(workdir / "results"))
    assert code == states.EXIT_FAILED  # a failure, named as one: not "interrupted"
    assert "failed: RuntimeError: the driver broke" in capsys.readouterr().err
    parent = _parent(mlflow_client, "crashy")
    assert parent.info.status == "FAILED"
    assert not any(k.startswith(names.TAG_LEASE_PREFIX) for k in parent.data.tags)


def test_a_finished_trial_leaves_no_temporary_folder(workdir, tracking_uri, monkeypatch):
    scratch = workdir.parent / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    spec = write_spec(workdir, "tidy", modes=("bn_only",), epochs=1)
    assert train_command(str(spec), 0, tracking_uri=tracking_uri, storage=str(workdir / "results")) == 0
    # torch keeps one per-user compile cache there (torchinductor_<user>), made once and reused;
    # nothing else may be left, above all no sweeper-gamma-* folder per trial
    assert [p.name for p in scratch.iterdir() if not p.name.startswith("torchinductor_")] == []


def test_a_missing_sqlite_folder_for_run_is_one_line_before_anything_starts(workdir):
    spec = write_spec(workdir, "typo")
    with pytest.raises(SweepError, match="folder .*typo does not exist"):
        run_command(str(spec), tracking_uri="sqlite:///typo/mlflow.db", storage=str(workdir / "results"))
    assert not (workdir / "typo").exists()
