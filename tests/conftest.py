"""Shared fixtures: one torch thread, a tmp MLflow store, a tmp work folder, local Ray."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """Tiny models in the test process: one intra-op thread is faster than two fighting over a
    busy 2-core machine (Ray workers set their own from the trial's cpu count)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    """A fresh working folder, made current, with no tracking settings leaking in."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for var in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    return folder


@pytest.fixture(scope="session")
def _migrated_mlflow_db(tmp_path_factory) -> Path:
    """One empty MLflow sqlite store, created once: building its schema takes seconds."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@pytest.fixture
def tracking_uri(tmp_path: Path, _migrated_mlflow_db: Path) -> str:
    """A real, empty MLflow store: sqlite in tmp_path (absolute, so Ray workers agree on it)."""
    import shutil

    path = tmp_path / "mlflow.db"
    shutil.copyfile(_migrated_mlflow_db, path)
    return f"sqlite:///{path}"


@pytest.fixture
def mlflow_client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


@pytest.fixture
def ray_local():
    """Ray on this machine with 2 CPUs, shut down afterwards."""
    import ray

    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def worker_killed_once(monkeypatch, tmp_path: Path):
    """Call with an epoch before starting Ray: the first trial worker to log that epoch SIGKILLs
    itself, once (tests/faults/sitecustomize.py, put first on the PYTHONPATH the Ray workers
    inherit). Returns the flag file the dying worker creates."""

    def arm(epoch: int) -> Path:
        flag = tmp_path / "worker-killed-once"
        faults = Path(__file__).resolve().parent / "faults"
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(faults), os.environ.get("PYTHONPATH")) if p))
        monkeypatch.setenv("FAULT_KILL_AT_EPOCH", str(epoch))
        monkeypatch.setenv("FAULT_ONCE_FLAG", str(flag))
        return flag

    return arm
