"""Driving the real CLI against the cluster stack, and reading a sweep back from MLflow.

``SweepRun`` runs ``sweeper run SPEC --address --tracking-uri --storage`` as a subprocess, so a
test can act mid-sweep (kill a node, stop the tracking server).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cluster_services import VENV_BIN, MlflowServer, Postgres, RayCluster, S3Server, wait_until

from sweeper.core import environ

ARTIFACT_BUCKET = "mlflow-artifacts"
STORAGE_BUCKET = "ray-storage"
SWEEPER = str(VENV_BIN / "sweeper")


@dataclass
class Stack:
    root: Path
    postgres: Postgres
    s3: S3Server
    mlflow: MlflowServer
    auth_mlflow: MlflowServer
    auth_user: str
    auth_password: str
    ray: RayCluster


def env_vars(**values: str):
    """Set environment variables for the duration of a block (MLflow reads credentials there)."""
    return environ.temporarily(values, users_win=False)


# --- sweeps ----------------------------------------------------------------------------------


def write_spec(folder: Path, name: str, *, seeds: list[int], epochs: int, max_failures: int = 0) -> Path:
    """A tiny sweep: synthetic images, CIFAR ResNet-8, one trial per seed, 1 CPU each,
    a checkpoint every epoch."""
    spec = folder / f"{name}.yaml"
    spec.write_text(
        f"name: {name}\n"
        "dataset: {name: synthetic}\n"
        "model: {family: cifar_resnet, depth: 8, width: 1}\n"
        f"train: {{epochs: {epochs}, batch_size: 64, lr: 0.05, augment: false}}\n"
        f"grid:\n  - {{mode: [bn_only], seed: {seeds}}}\n"
        "resources: {cpu: 1, gpu: 0}\n"
        "max_concurrent: 2\n"
        f"max_failures: {max_failures}\n"
        "checkpoint: {every_epochs: 1}\n"
    )
    return spec


class SweepRun:
    """``sweeper run`` as a subprocess with its output in files, for tests that act mid-sweep."""

    def __init__(self, spec: Path, stack: Stack, *, tracking_uri: str, storage: str, env: dict | None = None,
                 address: str | None = None, argv: list[str] | None = None):
        self.spec, self.stack = spec, stack
        self.out_path, self.err_path = spec.with_suffix(".stdout"), spec.with_suffix(".stderr")
        self.argv = argv or [SWEEPER, "run", str(spec), "--address", address or stack.ray.address,
                             "--tracking-uri", tracking_uri, "--storage", storage]
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("MLFLOW_TRACKING_", "RAY_ADDRESS", "RAY_AUTH", "AWS_"))}
        self.env = {**base, **stack.s3.env, **stack.ray.client_env, **(env or {})}
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SweepRun":
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.spec.parent, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, start_new_session=True)
        return self

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)
            raise AssertionError(f"sweeper run did not end within {timeout:.0f} s\n{self.output()}") from None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def output(self) -> str:
        return f"--- stdout\n{self.stdout[-4000:]}\n--- stderr\n{self.stderr[-6000:]}"


def run_sweep(spec: Path, stack: Stack, *, tracking_uri: str, storage: str, env: dict | None = None,
              timeout: float = 400) -> SweepRun:
    sweep = SweepRun(spec, stack, tracking_uri=tracking_uri, storage=storage, env=env).start()
    sweep.wait(timeout)
    return sweep


# --- reading a sweep back from MLflow --------------------------------------------------------


EPOCH_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "lr", "images_per_s", "epoch_s")


def trial_runs(client, sweep_name: str) -> list:
    """Every child run (``sweeper.role=trial``) of the sweep's experiment."""
    experiment = client.get_experiment_by_name(sweep_name)
    assert experiment is not None, f"no MLflow experiment {sweep_name!r}"
    return client.search_runs([experiment.experiment_id], filter_string="tags.`sweeper.role` = 'trial'",
                              max_results=1000)


def parent_run(client, sweep_name: str):
    experiment = client.get_experiment_by_name(sweep_name)
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`sweeper.role` = 'sweep'")
    assert len(runs) == 1, f"expected one parent run, found {len(runs)}"
    return runs[0]


def epoch_steps(client, run_id: str, key: str) -> list[int]:
    """The steps at which ``key`` was logged, in order, duplicates kept."""
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def assert_each_epoch_once(client, runs: list, epochs: int) -> None:
    for run in runs:
        for key in EPOCH_METRICS:
            steps = epoch_steps(client, run.info.run_id, key)
            assert steps == list(range(1, epochs + 1)), (
                f"run {run.info.run_name}: {key} logged at steps {steps}, expected each of 1..{epochs} once")


def metric_points(client, runs: list, key: str = "test_acc") -> int:
    """How many points of ``key`` the runs hold so far (0 while the server is unreachable)."""
    try:
        return sum(len(client.get_metric_history(run.info.run_id, key)) for run in runs)
    except Exception:  # noqa: BLE001 - polling through an outage
        return 0


def wait_for_epochs(client, sweep_name: str, predicate, timeout: float, sweep: SweepRun, what: str):
    """Poll MLflow until ``predicate(client, runs)`` holds, failing early if the sweep exits."""
    def ready():
        assert sweep.running(), f"sweep ended before {what}\n{sweep.output()}"
        try:
            experiment = client.get_experiment_by_name(sweep_name)
            if experiment is None:
                return None
            return predicate(client, trial_runs(client, sweep_name))
        except AssertionError:
            raise
        except Exception:  # noqa: BLE001 - the server may be starting; keep polling
            return None

    return wait_until(ready, timeout, what, interval=1.0)


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 180):
    return subprocess.run([SWEEPER, *args], env={**os.environ, **(env or {})}, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def elapsed(since: float) -> str:
    return f"{time.monotonic() - since:.0f} s"
