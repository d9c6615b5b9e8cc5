"""`sweeper run --dry-run` is the plan and nothing else: it makes no store, folder or parent run."""

from __future__ import annotations

from sweeper.core.states import EXIT_OK
from sweeper.driver.orchestrate import run_command

SPEC = """\
name: dry
dataset: {name: digits}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 1}
grid: {mode: [bn_only, full]}
"""


def test_a_dry_run_on_a_store_that_is_not_there_plans_against_no_runs_and_creates_nothing(tmp_path, capfd):
    spec = tmp_path / "dry.yaml"
    spec.write_text(SPEC)
    db = tmp_path / "mlflow.db"
    code = run_command(str(spec), tracking_uri=f"sqlite:///{db}", storage=str(tmp_path / "results"), dry_run=True,
                       handle_signals=False, ray_log=False)
    out, err = capfd.readouterr()
    assert code == EXIT_OK
    assert "dry: 2 trials, 0 done, 2 to run" in out and "bn_only-d8-w1-lr0.1-s0" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dry.yaml"]  # no store, no storage folder
    assert "alembic" not in err and "alembic" not in out  # MLflow made no schema


def test_a_dry_run_says_what_the_preflight_of_a_local_run_would_find_on_this_machine(tmp_path, capfd, monkeypatch):
    import os

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/data/cifar10 here
    spec = tmp_path / "gpu.yaml"
    spec.write_text(SPEC.replace("name: dry", "name: gpu").replace("{name: digits}", "{name: cifar10, root: ~/data/cifar10}")
                    + "resources: {cpu: 1, gpu: 0.5}\n")
    code = run_command(str(spec), tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", storage=str(tmp_path / "results"),
                       dry_run=True, handle_signals=False, ray_log=False)
    out, _ = capfd.readouterr()
    assert code == EXIT_OK
    assert "  2 trials in the spec: 0 kept (0 finished, 0 to train or resume), 2 new" in out
    assert (f"preflight: a run would stop: resources.gpu: 0.5 per trial, but no node of this Ray cluster has a GPU "
            f"(1 node: {os.cpu_count()} CPU, 0 GPU)") in out
    [data] = [line for line in out.splitlines() if "dataset.root" in line]
    assert data.startswith("preflight: a run would stop: ") and "gpu.yaml: dataset.root '~/data/cifar10' on this machine (" in data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu.yaml"]
