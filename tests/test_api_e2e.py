"""The Python API end to end: docs/python.md's example run as written against a real sweep, and
`sweeper.run` leaving the caller's signal handlers, file descriptors and terminal as they were."""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

import pytest

import sweeper

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def doc_example() -> str:
    (block,) = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "python.md").read_text(), re.S)
    return block


@pytest.fixture
def repo_like_folder(tmp_path, monkeypatch, _migrated_mlflow_db) -> Path:
    """A working folder laid out as the example expects: sweeps/notebook.yaml, and the embedded
    default store ./mlflow.db (an empty migrated one: building the schema takes seconds)."""
    folder = tmp_path / "repo"
    (folder / "sweeps").mkdir(parents=True)
    shutil.copyfile(ROOT / "sweeps" / "notebook.yaml", folder / "sweeps" / "notebook.yaml")
    shutil.copyfile(_migrated_mlflow_db, folder / "mlflow.db")
    monkeypatch.chdir(folder)
    for var in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    return folder


def test_the_python_doc_example_runs_as_written(repo_like_folder):
    import torch

    from trainables.checkpoint import load_checkpoint
    from trainables.config import TrialConfig
    from trainables.data import load_data

    spec = sweeper.load_spec("sweeps/notebook.yaml")
    namespace: dict = {}
    exec(compile(doc_example(), "docs/python.md", "exec"), namespace)
    result, df, history, model = (namespace[k] for k in ("result", "df", "history", "model"))

    assert result.exit_code == 0 and result.ok
    assert result.counts["finished"] == 5 and result.counts["pending"] == 0 and result.counts["failed"] == 0
    assert any("5 trials, 0 done, 5 to run" in line for line in result.messages)
    assert len(result.results) == 5

    # one row per trial, the axes as typed columns, final metrics, run id, checkpoint folder
    assert len(df) == 5 and set(df["state"]) == {"finished"}
    assert list(df.columns[:5]) == ["name", "state", "mode", "depth", "lr"]
    assert str(df["depth"].dtype) == "int64" and str(df["lr"].dtype) == "float64"
    assert all(isinstance(m, str) for m in df["mode"])
    for metric in ("best_test_acc", "final_test_acc", "trainable_params", "gamma_near_zero_frac",
                   "relu_zero_frac", "epochs_completed"):
        assert str(df[metric].dtype) == "float64" and df[metric].notna().all(), metric
    expected = {(t.params["mode"], t.params["model.depth"], t.params["train.lr"]) for t in spec.trials()}
    assert set(zip(df["mode"], df["depth"], df["lr"])) == expected
    assert set(df["trial_key"]) == {t.key for t in spec.trials()} and df["run_id"].str.fullmatch("[0-9a-f]{32}").all()
    root = repo_like_folder / "sweeper_results" / "notebook" / "trials"
    assert list(df["checkpoint"]) == [str(root / key) for key in df["trial_key"]]
    assert all((Path(c) / "checkpoint.pt").is_file() for c in df["checkpoint"])
    assert set(namespace["by_config"].index) == expected

    # the curves: 2 epochs of each of the 5 trials, every per-epoch metric
    assert len(history) == 10 and set(history["epoch"]) == {1, 2}
    assert history.groupby("trial_key")["epoch"].apply(sorted).tolist() == [[1, 2]] * 5
    for metric in ("train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "lr", "images_per_s", "epoch_s"):
        assert history[metric].notna().all(), metric
    assert {"mode", "depth"} <= set(history.columns)
    last = history[history["epoch"] == 2].set_index("trial_key")["test_acc"]
    assert (last - df.set_index("trial_key")["final_test_acc"]).abs().max() < 1e-9
    assert namespace["curves"].shape == (2, 5)

    # sweeper.best is the top finished trial (and RunResult.best() by the spec's metric, test_acc's last value)
    best = namespace["best"]
    assert best["state"] == "finished" and best["final_test_acc"] == df["final_test_acc"].max()
    assert best["test_acc"] == best["final_test_acc"] and best["epoch"] == 2
    top = result.best()
    assert top["test_acc"] == result.results["test_acc"].max() and top["trial_key"] in set(df["trial_key"])
    assert sweeper.best("sweeps/notebook.yaml", "final_test_acc", "min")["final_test_acc"] == df["final_test_acc"].min()
    with pytest.raises(ValueError, match="unknown per-epoch metric 'test_accuracy' \\(did you mean 'test_acc'\\?\\)"):
        sweeper.load_history("notebook", metrics=["test_accuracy"])

    # the best trial's network gives logits, and on the test set the accuracy its run logged
    config = TrialConfig.from_dict(load_checkpoint(best["checkpoint"])["config"])
    data = load_data(config.dataset, "cpu", config.seed)
    correct = total = 0
    with torch.no_grad():
        for images, labels in data.test_batches(64):
            logits = model(images)
            assert logits.shape == (len(images), data.num_classes) and torch.isfinite(logits).all()
            correct += int((logits.argmax(1) == labels).sum())
            total += len(labels)
    assert correct / total == pytest.approx(best["final_test_acc"], abs=1e-6)

    # the same network by run id and by trial key; and from MLflow once the folder is gone
    images = next(iter(data.test_batches(16)))[0]
    by_id = sweeper.load_model(best["run_id"])
    by_key = sweeper.load_model(best["trial_key"], "notebook")
    shutil.move(repo_like_folder / "sweeper_results", repo_like_folder / "moved")
    from_mlflow = sweeper.load_model(best)
    with torch.no_grad():
        reference = model(images)
        for other in (by_id, by_key, from_mlflow):
            assert torch.equal(other(images), reference)
    moved = sweeper.load_results("notebook", storage=str(repo_like_folder / "moved"))
    assert all((Path(c) / "checkpoint.pt").is_file() for c in moved["checkpoint"])


def _fd_identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def test_sweeper_run_prints_nothing_and_leaves_signals_and_fds_as_they_were(workdir, tracking_uri, capfd):
    import ray

    spec = workdir / "quiet.yaml"
    spec.write_text("""\
name: quiet
dataset: {name: digits, image_size: 8, train_size: 128, test_size: 64}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 1, batch_size: 64, lr: 0.1, augment: false}
grid: {mode: [bn_only, full]}
resources: {cpu: 1}
max_concurrent: 2
""")
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    fds = {fd: _fd_identity(fd) for fd in (1, 2)}
    capfd.readouterr()

    result = sweeper.run(spec, tracking_uri=tracking_uri, storage=str(workdir / "results"))

    assert capfd.readouterr() == ("", "")  # not a line from sweeper, Ray, Tune or MLflow
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    assert {fd: _fd_identity(fd) for fd in fds} == fds
    assert not ray.is_initialized()  # started for the sweep, stopped after it
    assert result.exit_code == 0 and result.counts["finished"] == 2
    assert any(line.startswith("[2/2] ") for line in result.messages)  # the lines the CLI would print
    assert not (workdir / "results" / "quiet" / "ray-driver.log").exists()  # not asked for

    # resuming from Python: nothing left to do, said in the messages, not on the terminal
    again = sweeper.run(spec, tracking_uri=tracking_uri, storage=str(workdir / "results"))
    assert again.exit_code == 0 and "nothing to do: every trial is finished" in again.messages
    assert capfd.readouterr() == ("", "")
