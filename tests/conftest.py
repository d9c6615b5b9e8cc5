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
