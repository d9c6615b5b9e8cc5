"""The RayJob route (docker/k8s/40-rayjob.yaml), for real: `sweeper run` as the entrypoint of a Ray
job on a local head with the dashboard (the Ray Jobs API that KubeRay drives), stopped mid-sweep
with `ray job stop` (what deleting a RayJob does: SIGTERM to the entrypoint's process tree, then
SIGKILL after the supervisor's grace, RAY_JOB_STOP_WAIT_TIME_S, 3 s by default), then submitted
again.

Two stops:
- within the grace (the job's RAY_JOB_STOP_WAIT_TIME_S raised: the supervisor reads it from its
  runtime env): the driver stops Tune gracefully, its trials and the sweep's parent run end
  KILLED and the lease is released;
- past the default 3 s grace: the stop lands while a trial is mid-epoch, and an epoch longer than
  the grace (every real one is) holds Tune's actor cleanup for up to 5 s, so the supervisor
  SIGKILLs the driver. The driver put the record right at the SIGTERM (trials and parent KILLED,
  lease released: sweeper/driver/term_close.py), so the stopped job shows the same as the first;
  the resubmitted job takes the sweep at once, resumes from the checkpoints and logs every epoch
  once.
"""

from __future__ import annotations

from sweeper.record import names

import json
import os
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sweeper.record.names import METRIC_START_EPOCH

sys.path.insert(0, str(Path(__file__).parent / "cluster"))
from cluster_services import (LOOPBACK, Service, _descendants, _kill_stragglers,
                              free_port, http_ok, wait_until)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SWEEPER = str(VENV_BIN / "sweeper")
INTERRUPTED_LINE = "interrupted: run the same command again to resume"


class RayHead:
    """`ray start --head --block` with the dashboard (the Jobs API), 2 CPUs, its own temp dir and
    ports, in its own session; the jobs it runs import this tree (PYTHONPATH)."""

    def __init__(self, root: Path):
        self.root, self.temp_dir = root, root / "ray"
        self.service, self.client, self.starts = None, None, 0

    def _new_service(self) -> Service:
        """A `ray start` on ports free a moment ago (another process may take one before Ray binds it)."""
        self.dashboard_port = free_port()
        self.address = f"http://{LOOPBACK}:{self.dashboard_port}"
        ports = {flag: free_port() for flag in (
            "--port", "--node-manager-port", "--object-manager-port", "--metrics-export-port",
            "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port",
            "--ray-client-server-port")}
        argv = [VENV_BIN / "ray", "start", "--head", "--block", "--num-cpus=2", "--num-gpus=0",
                "--include-dashboard=true", f"--dashboard-host={LOOPBACK}",
                f"--dashboard-port={self.dashboard_port}", f"--temp-dir={self.temp_dir}",
                f"--node-ip-address={LOOPBACK}", "--object-store-memory=200000000", "--disable-usage-stats"]
        argv += [f"{flag}={port}" for flag, port in ports.items()]
        pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        # RAY_AUTH_MODE set: `ray start` turns token auth on by itself once ~/.ray/auth_token exists,
        # and any local ray.init() (every `sweeper run` of the tests before this one) writes that file;
        # the dashboard then answers 401 to a client without the token.
        env = {"PYTHONPATH": pythonpath, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
               "MLFLOW_TRACKING_URI": "", "RAY_ADDRESS": "", "RAY_AUTH_MODE": "disabled"}
        self.starts += 1
        return Service("ray-head", argv, self.root / f"ray-head.{self.starts}.log", env=env)

    def start(self, attempts: int = 2) -> "RayHead":
        """The head with its Jobs API answering. `ray start --block` stays up when its dashboard
        dies (a port taken in the meantime): such a start is stopped and made again on new ports,
        and the last failure shows the dashboard's own log."""
        from ray.job_submission import JobSubmissionClient

        for attempt in range(1, attempts + 1):
            self.service = self._new_service().start()
            try:
                wait_until(lambda: http_ok(f"{self.address}/api/version"), 180, "ray head dashboard",
                           interval=1.0, proc=self.service)
                break
            except TimeoutError as e:
                tail = _dashboard_log_tail(self.temp_dir)
                self.stop()
                if attempt == attempts:
                    raise TimeoutError(f"{e}\n--- dashboard log\n{tail}") from None
        self.client = JobSubmissionClient(self.address)
        return self

    def stop(self) -> None:
        """Our head and everything under it; the job drivers run in sessions of their own
        (the supervisor starts them with start_new_session), so they are found as descendants
        before the head goes, and by our temp dir afterwards."""
        if self.service is None or self.service.proc is None:
            return
        below = _descendants(self.service.proc.pid)
        self.service.stop(timeout=10)
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _kill_stragglers(str(self.temp_dir))

    def submit(self, argv: list[str], env_vars: dict | None = None) -> str:
        return self.client.submit_job(entrypoint=shlex.join(argv),
                                      runtime_env={"env_vars": {"SWEEPER_PROGRESS_EVERY_S": "2", **(env_vars or {})}})

    def wait_terminal(self, job_id: str, timeout: float = 420) -> str:
        from ray.job_submission import JobStatus

        def done():
            status = self.client.get_job_status(job_id)
            return status if status in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED} else None

        return str(wait_until(done, timeout, f"job {job_id}", interval=1.0))

    def logs(self, job_id: str) -> str:
        return self.client.get_job_logs(job_id)


def _dashboard_log_tail(temp_dir: Path, chars: int = 3000) -> str:
    logs = sorted(temp_dir.glob("session_*/logs/dashboard.*"), key=lambda p: p.stat().st_mtime)
    return "\n".join(f"{p}:\n{p.read_text(errors='replace')[-chars:]}" for p in logs[-2:]) or "(no dashboard log)"


@pytest.fixture(scope="module")
def head():
    root = Path(tempfile.mkdtemp(prefix="swj-", dir="/tmp"))  # short: Ray's unix sockets live here
    ray_head = RayHead(root)
    try:
        yield ray_head.start()
    finally:
        ray_head.stop()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def write_spec(folder: Path, name: str, *, epochs: int, modes=("bn_only", "full"),
               dataset="{name: digits, image_size: 8, train_size: 192, test_size: 96}", width: int = 1) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"""\
name: {name}
dataset: {dataset}
model: {{family: cifar_resnet, depth: 8, width: {width}}}
train: {{epochs: {epochs}, batch_size: 64, lr: 0.1, augment: false}}
grid: {{mode: [{", ".join(modes)}], seed: [0]}}
resources: {{cpu: 1}}
max_concurrent: 2
max_failures: 1
checkpoint: {{every_epochs: 1}}
""")
    return path


def sweep_runs(client, name: str):
    """(parent run, {trial key: child run}) as the store has them now."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return None, {}
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parent = next((r for r in runs if r.data.tags.get(names.TAG_ROLE) == "sweep"), None)
    children = {r.data.tags[names.TAG_TRIAL_KEY]: r for r in runs if names.TAG_TRIAL_KEY in r.data.tags}
    return parent, children


def lease_claims(parent) -> dict:
    return {k: json.loads(v) for k, v in parent.data.tags.items() if k.startswith(names.TAG_LEASE_PREFIX)}


def wait_for_an_epoch(head: RayHead, job_id: str, client, name: str, timeout: float = 300) -> None:
    """Until some trial of the job has logged an epoch (so it has a checkpoint, and is training)."""
    from ray.job_submission import JobStatus

    def trained():
        assert head.client.get_job_status(job_id) in (JobStatus.PENDING, JobStatus.RUNNING), head.logs(job_id)
        _, children = sweep_runs(client, name)
        return any("test_acc" in r.data.metrics for r in children.values())

    wait_until(trained, timeout, f"a trial of {name} logging an epoch", interval=0.3)


def stop(head: RayHead, job_id: str) -> float:
    """`ray job stop`, as deleting a RayJob does; returns how long the job took to stop."""
    from ray.job_submission import JobStatus

    started = time.monotonic()
    head.client.stop_job(job_id)
    assert head.wait_terminal(job_id, timeout=120) == str(JobStatus.STOPPED)
    return time.monotonic() - started


def assert_resumed_and_each_epoch_logged_once(head: RayHead, argv: list[str], client, name: str,
                                               epochs: int, count: int) -> str:
    """Submit the same entrypoint again: it succeeds, resumes, and every epoch is in MLflow once."""
    from ray.job_submission import JobStatus

    job_id = head.submit(argv)
    status = head.wait_terminal(job_id)
    logs = head.logs(job_id)
    assert status == str(JobStatus.SUCCEEDED), logs
    parent, children = sweep_runs(client, name)
    assert parent.info.status == "FINISHED" and lease_claims(parent) == {}
    assert len(children) == count
    resumed = 0
    for run in children.values():
        assert run.info.status == "FINISHED" and run.data.tags[names.TAG_STATUS] == "finished", run.info.run_name
        for key in ("test_acc", "train_loss", "epoch_s"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(1, epochs + 1)), f"{run.info.run_name}: {key} steps {steps}"
        starts = [m.value for m in client.get_metric_history(run.info.run_id, METRIC_START_EPOCH)]
        resumed += any(s > 1 for s in starts)
    assert resumed >= 1, "no trial resumed from a checkpoint"  # the stop caught one mid-sweep
    assert f"{name}: {count} trials, 0 done, {count} to run" in logs  # nothing was finished at the stop
    assert f"[progress] {name}: {count}/{count} done" in logs  # the plain progress lines, in `ray job logs`
    return logs


def test_a_ray_job_stopped_within_its_grace_ends_killed_and_a_resubmitted_job_resumes(head, tmp_path):
    from mlflow.tracking import MlflowClient

    name, epochs = "rayjob", 40
    spec = write_spec(tmp_path, name, epochs=epochs)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = [SWEEPER, "run", str(spec), "--tracking-uri", uri, "--storage", str(tmp_path / "results")]
    client = MlflowClient(tracking_uri=uri)

    # Tune's graceful stop takes about 4 s on a busy 2-core machine, more than Ray's 3 s default:
    # this job's grace is raised, so the driver ends by itself (the next test: it is SIGKILLed).
    job_id = head.submit(argv, env_vars={"RAY_JOB_STOP_WAIT_TIME_S": "60"})
    wait_for_an_epoch(head, job_id, client, name)
    stop(head, job_id)
    logs = head.logs(job_id)
    assert INTERRUPTED_LINE in logs, logs
    assert f"[progress] {name}: 0/2 done" in logs  # plain lines (not a terminal), every 2 s here
    parent, children = sweep_runs(client, name)
    assert parent.info.status == "KILLED"
    assert lease_claims(parent) == {}
    # every trial that had started (both, unless the machine was too busy to start the second)
    assert children and all(r.info.status == "KILLED" for r in children.values())
    assert not any(names.TAG_STATUS in r.data.tags for r in children.values())  # not done: resumed next

    assert_resumed_and_each_epoch_logged_once(head, argv, client, name, epochs, count=2)


def test_a_ray_job_stopped_past_the_default_grace_still_ends_killed_and_resumes(head, tmp_path):
    from mlflow.tracking import MlflowClient

    # Full digits at 32 px and width 2: an epoch takes several seconds on one core, longer than
    # the grace, as every real epoch does.
    name, epochs = "rayjob_slow", 3
    spec = write_spec(tmp_path, name, epochs=epochs, modes=("full",), dataset="{name: digits}", width=2)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = [SWEEPER, "run", str(spec), "--tracking-uri", uri, "--storage", str(tmp_path / "results")]
    client = MlflowClient(tracking_uri=uri)

    job_id = head.submit(argv)  # Ray's default grace: 3 s
    wait_for_an_epoch(head, job_id, client, name)  # epoch 1 is in; epoch 2 has just begun
    took = stop(head, job_id)
    assert took >= 3, f"the job stopped in {took:.1f} s: the driver was not slow to exit"
    # SIGKILLed in Tune's stop, yet the record was put right at the SIGTERM (driver/term_close.py)
    logs = head.logs(job_id)
    assert INTERRUPTED_LINE in logs, logs
    parent, children = sweep_runs(client, name)
    (trial,) = children.values()
    assert parent.info.status == "KILLED"
    assert lease_claims(parent) == {}
    assert trial.info.status == "KILLED" and names.TAG_STATUS not in trial.data.tags  # resumed next

    # The next job takes the sweep at once, resumes the trial from epoch 1's checkpoint and logs
    # each epoch once.
    assert_resumed_and_each_epoch_logged_once(head, argv, client, name, epochs, count=1)
