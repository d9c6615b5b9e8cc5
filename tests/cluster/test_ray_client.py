"""A driver outside the cluster: `sweeper run --address ray://HOST:PORT` (Ray Client) against the
2-node cluster's Ray Client server, the MLflow server and S3 storage of the stack.

What must hold: README's cluster command, with only the addresses and the spec replaced, runs
every trial on the cluster's nodes and exits 0; what the cluster could not reach is refused
before anything starts; an unreachable head is one line and exit 2; "interrupted" and 130 come
only from a real SIGINT, and a driver that fails otherwise names the cause and exits 1.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cluster_services import LOOPBACK, _cmdline, _descendants, free_port, wait_until
from cluster_sweeps import (
    SWEEPER, STORAGE_BUCKET, SweepRun, assert_each_epoch_once, parent_run, run_cli, trial_runs,
    wait_for_epochs, write_spec,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
FIT_TASK_TITLE = "ray::sweeper_fit_on_head"  # the process title of the Tune loop's task on the head
INTERRUPTED = "interrupted: run the same command again to resume"


def readme_cluster_command() -> str:
    """The `sweeper run` line of README's "Running on a cluster" section, continuations joined."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Running on a cluster", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    joined = re.sub(r"\\\n\s*", " ", block)
    (line,) = [line.strip() for line in joined.splitlines() if line.strip().startswith("sweeper run ")]
    return line


def driver_env(stack, **extra: str) -> dict:
    """What the README's `export` lines give the driver: the S3 credentials and endpoint (no
    MLflow login: this server has none), plus the cluster's Ray auth token."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("MLFLOW_TRACKING_", "RAY_ADDRESS", "RAY_AUTH", "AWS_"))}
    return {**base, **stack.s3.env, **stack.ray.client_env, **extra}


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    return lines[0]


# --- README's command, through Ray Client, to the end ------------------------------------------

NAME, SEEDS, EPOCHS = "client_readme", [0, 1], 2


@pytest.fixture(scope="module")
def readme_sweep(stack, tmp_path_factory):
    stack.ray.ensure_two_nodes()
    folder = tmp_path_factory.mktemp("readme")
    spec = write_spec(folder, NAME, seeds=SEEDS, epochs=EPOCHS)
    command = readme_cluster_command()
    replaced = command
    for written, here in [("ray://ray-head:10001", stack.ray.client_address),
                          ("http://mlflow:5000", stack.mlflow.uri),
                          ("s3://sweeper-results/depth_vs_width", f"s3://{STORAGE_BUCKET}/readme"),
                          ("sweeps/depth_vs_width.yaml", str(spec))]:
        assert written in replaced, f"README's cluster command no longer says {written}: {command}"
        replaced = replaced.replace(written, here)
    argv = [SWEEPER] + shlex.split(replaced)[1:]
    sweep = SweepRun(spec, stack, tracking_uri=stack.mlflow.uri, storage="", argv=argv, env=driver_env(stack))
    sweep.start().wait(600)
    return stack, sweep


def test_readme_command_through_ray_client_finishes_every_trial_on_the_cluster(readme_sweep):
    stack, sweep = readme_sweep
    assert sweep.proc.returncode == 0, f"{sweep.output()}\n{stack.ray.client_server_logs()}"
    assert INTERRUPTED not in sweep.stderr
    client = stack.mlflow.client()
    runs = trial_runs(client, NAME)
    assert len(runs) == len(SEEDS), "each trial exactly once"
    assert {run.data.tags.get("status") for run in runs} == {"finished"}
    assert {run.data.tags.get("sweeper.node_id") for run in runs} == {stack.ray.head.node_id,
                                                                       stack.ray.worker.node_id}
    assert_each_epoch_once(client, runs, EPOCHS)
    assert parent_run(client, NAME).info.status == "FINISHED"
    trial_keys = {run.data.tags["sweeper.trial_key"] for run in runs}
    stored = stack.s3.keys(STORAGE_BUCKET, f"readme/{NAME}/trials/")
    assert {key.split("/")[3] for key in stored} - {""} == trial_keys  # "" is the folder's own marker


def test_the_progress_printed_on_the_head_reaches_the_laptop(readme_sweep):
    _, sweep = readme_sweep
    ended = [line for line in sweep.stdout.splitlines() if re.match(r"\[\d/2\] ", line)]
    assert sorted(line[:5] for line in ended) == ["[1/2]", "[2/2]"], sweep.output()
    assert all(": finished" in line for line in ended), sweep.output()


# --- refused before anything starts ------------------------------------------------------------

# Runs the real CLI with Python's sockets guarded: any connection to a non-loopback address ends
# the process with 99 before a packet leaves, so the refusal is proved to come first.
GUARDED_CLI = """
import ipaddress, os, socket, sys
real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
def guard(address):
    host = address[0] if isinstance(address, tuple) else None
    try:
        loopback = host is None or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        sys.stderr.write(f"CONNECTION ATTEMPT {address}\\n")
        sys.stderr.flush()
        os._exit(99)
socket.socket.connect = lambda self, address: (guard(address), real_connect(self, address))[1]
socket.socket.connect_ex = lambda self, address: (guard(address), real_connect_ex(self, address))[1]
from sweeper.cli import main
sys.argv = ["sweeper"] + sys.argv[1:]
main()
"""
REMOTE_HEAD = "ray://10.255.255.1:10001"  # never contacted: the refusals come first


def guarded_run(folder: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", GUARDED_CLI, "run", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_remote_head_with_local_storage_is_refused_before_any_connection(stack, tmp_path):
    spec = write_spec(tmp_path, "client_refused_storage", seeds=[0], epochs=1)
    result = guarded_run(tmp_path, str(spec), "--address", REMOTE_HEAD, "--tracking-uri", stack.mlflow.uri,
                         env=driver_env(stack))
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line(result.stderr)
    assert line.startswith("--storage: ./sweeper_results is a path on this machine"), line
    assert REMOTE_HEAD in line and "s3://" in line
    assert stack.mlflow.client().get_experiment_by_name("client_refused_storage") is None
    assert not (tmp_path / "sweeper_results").exists()


@pytest.mark.parametrize("tracking", ["cli", "environment", "default"])
def test_a_remote_head_with_sqlite_tracking_is_refused_before_any_connection(stack, tmp_path, tracking):
    spec = write_spec(tmp_path, "client_refused_tracking", seeds=[0], epochs=1)
    args = [str(spec), "--address", REMOTE_HEAD, "--storage", f"s3://{STORAGE_BUCKET}/refused"]
    env = driver_env(stack)
    if tracking == "cli":
        args += ["--tracking-uri", "sqlite:///mlflow.db"]
    elif tracking == "environment":
        env["MLFLOW_TRACKING_URI"] = "sqlite:///mlflow.db"
    result = guarded_run(tmp_path, *args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line(result.stderr)
    origin = {"cli": "--tracking-uri", "environment": "MLFLOW_TRACKING_URI", "default": "tracking (the default"}
    assert line.startswith(origin[tracking]), line
    assert f"sqlite:///{tmp_path.resolve()}/mlflow.db is a store on this machine" in line
    assert "http://" in line
    assert not (tmp_path / "mlflow.db").exists(), "the store was opened before the refusal"


def test_an_unreachable_ray_client_address_is_one_line_and_nothing_starts(stack, tmp_path):
    spec = write_spec(tmp_path, "client_unreachable", seeds=[0], epochs=1)
    address = f"ray://{LOOPBACK}:{free_port()}"  # nothing listens there
    result = run_cli("run", str(spec), "--address", address, "--tracking-uri", stack.mlflow.uri,
                     "--storage", f"s3://{STORAGE_BUCKET}/unreachable", env=driver_env(stack), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"ray: cannot reach the Ray Client server at {address}: "), line
    assert "--ray-client-server-port" in line
    # no experiment, so no parent run left RUNNING
    assert stack.mlflow.client().get_experiment_by_name("client_unreachable") is None


# --- how a ray:// driver ends ------------------------------------------------------------------


def started_sweep(stack, folder: Path, name: str, *, tracking_uri: str, storage: str) -> SweepRun:
    """A long sweep through Ray Client, returned once both trials have logged an epoch."""
    stack.ray.ensure_two_nodes()
    spec = write_spec(folder, name, seeds=[0, 1], epochs=60)
    sweep = SweepRun(spec, stack, tracking_uri=tracking_uri, storage=storage,
                     address=stack.ray.client_address, env=driver_env(stack)).start()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    wait_for_epochs(client, name, lambda c, runs: len(runs) == 2 and all(
        c.get_metric_history(r.info.run_id, "test_acc") for r in runs), 400, sweep, "an epoch of each trial")
    return sweep


def test_a_real_sigint_on_a_loopback_client_with_local_paths_is_interrupted_130(stack, tmp_path):
    # A head on this machine runs its trials here: a sqlite store and a local folder are fine.
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    from mlflow.tracking import MlflowClient

    # The store's schema first: the test polls it while the driver works, and two processes
    # creating one sqlite schema at once fail ("Online migration expected to match one row").
    MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)
    sweep = started_sweep(stack, tmp_path, "client_sigint", tracking_uri=tracking_uri,
                          storage=str(tmp_path / "results"))
    os.kill(sweep.proc.pid, signal.SIGINT)
    assert sweep.wait(300) == 130, sweep.output()
    assert sweep.stderr.strip().splitlines()[-1] == INTERRUPTED, sweep.output()
    client = MlflowClient(tracking_uri=tracking_uri)
    assert parent_run(client, "client_sigint").info.status == "KILLED"
    runs = trial_runs(client, "client_sigint")
    assert {run.info.status for run in runs} == {"KILLED"}, "stopped trials resume next time"
    assert any((tmp_path / "results" / "client_sigint" / "trials").iterdir())


def test_a_driver_failure_that_is_no_signal_names_its_cause_and_exits_1(stack, tmp_path):
    sweep = started_sweep(stack, tmp_path, "client_lost", tracking_uri=stack.mlflow.uri,
                          storage=f"s3://{STORAGE_BUCKET}/lost")
    # The Tune loop's task on the head dies (as on an out-of-memory kill): not a signal to the driver.
    fit_pid = wait_until(lambda: next((pid for pid in _descendants(stack.ray.head.service.proc.pid)
                                       if " ".join(_cmdline(pid)).startswith(FIT_TASK_TITLE)), None),
                         30, "the fit task's process on the head")
    os.kill(fit_pid, signal.SIGKILL)
    assert sweep.wait(300) == 1, sweep.output()
    line = sweep.stderr.strip().splitlines()[-1]
    assert line.startswith("failed: the sweep's Tune loop on the head was lost: "), sweep.output()
    assert INTERRUPTED not in sweep.stderr
    client = stack.mlflow.client()
    assert parent_run(client, "client_lost").info.status == "FAILED"
    assert "RUNNING" not in {run.info.status for run in trial_runs(client, "client_lost")}


def test_a_head_that_refuses_the_session_is_one_line_and_the_parent_run_ends_failed(stack, tmp_path):
    # The Ray Client server answers, but the driver's Ray auth token is not the cluster's.
    spec = write_spec(tmp_path, "client_refused_session", seeds=[0], epochs=1)
    result = run_cli("run", str(spec), "--address", stack.ray.client_address, "--tracking-uri", stack.mlflow.uri,
                     "--storage", f"s3://{STORAGE_BUCKET}/refused_session",
                     env=driver_env(stack, RAY_AUTH_TOKEN="0" * 64), cwd=tmp_path, timeout=400)
    assert result.returncode == 2, result.stdout + result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"ray: cannot connect to {stack.ray.client_address}: "), line
    assert "RAY_AUTH_TOKEN" in line, line
    client = stack.mlflow.client()
    assert parent_run(client, "client_refused_session").info.status == "FAILED"
    assert trial_runs(client, "client_refused_session") == []
