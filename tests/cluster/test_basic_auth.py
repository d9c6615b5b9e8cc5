"""MLflow's basic-auth app: with MLFLOW_TRACKING_USERNAME/PASSWORD a sweep on the cluster logs;
with a wrong password `sweeper run` stops before any trial with one clear line; and the password
is nowhere to be found afterwards (params, tags, artifacts, output, Ray logs, storage, report).

Only the `sweeper` processes get the credentials, through their environment, as a user would
give them; the Ray nodes never see them.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cluster_sweeps import (
    ARTIFACT_BUCKET, STORAGE_BUCKET, assert_each_epoch_once, env_vars, run_cli, run_sweep, trial_runs, write_spec,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAME, REFUSED_NAME, SEEDS, EPOCHS = "cluster_auth", "cluster_auth_refused", [0, 1], 1
PREFIX = "auth"


def credentials(stack, password: str | None = None) -> dict:
    return {"MLFLOW_TRACKING_USERNAME": stack.auth_user, "MLFLOW_TRACKING_PASSWORD": password or stack.auth_password}


@pytest.fixture(scope="module")
def auth_sweeps(stack, tmp_path_factory):
    """The sweep with the right credentials, its report, and the attempt with a wrong password."""
    stack.ray.ensure_two_nodes()
    folder = tmp_path_factory.mktemp("auth")
    storage = f"s3://{STORAGE_BUCKET}/{PREFIX}"
    good = run_sweep(write_spec(folder, NAME, seeds=SEEDS, epochs=EPOCHS), stack,
                     tracking_uri=stack.auth_mlflow.uri, storage=storage, env=credentials(stack))
    report = run_cli("report", NAME, "--tracking-uri", stack.auth_mlflow.uri, "--out", str(folder / "report"),
                     env=credentials(stack), cwd=folder)
    refused = run_sweep(write_spec(folder, REFUSED_NAME, seeds=SEEDS, epochs=EPOCHS), stack,
                        tracking_uri=stack.auth_mlflow.uri, storage=storage,
                        env=credentials(stack, password="not-the-password-" + "x" * 8), timeout=180)
    return stack, folder, good, report, refused


def test_a_sweep_logs_with_the_users_credentials(auth_sweeps):
    stack, _, good, report, _ = auth_sweeps
    assert good.proc.returncode == 0, good.output()
    assert report.returncode == 0, report.stdout + report.stderr
    client = stack.auth_mlflow.client()
    with env_vars(**credentials(stack)):
        runs = trial_runs(client, NAME)
        assert len(runs) == len(SEEDS)
        assert {r.data.tags.get("status") for r in runs} == {"finished"}
        assert_each_epoch_once(client, runs, EPOCHS)


def test_a_wrong_password_stops_the_sweep_before_any_trial_with_one_line(auth_sweeps):
    stack, _, _, _, refused = auth_sweeps
    assert refused.proc.returncode == 2, refused.output()
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, refused.output()
    assert "credentials" in lines[0].lower() or "401" in lines[0], lines[0]
    assert "Traceback" not in refused.stdout + refused.stderr
    with env_vars(**stack.auth_mlflow.admin_env()):
        experiment = stack.auth_mlflow.client().get_experiment_by_name(REFUSED_NAME)
        if experiment is not None:
            assert stack.auth_mlflow.client().search_runs([experiment.experiment_id]) == []
    assert stack.s3.keys(STORAGE_BUCKET, f"{PREFIX}/{REFUSED_NAME}") == []


def _secrets(stack) -> list[bytes]:
    """The password, and the Basic header value that carries it."""
    token = base64.b64encode(f"{stack.auth_user}:{stack.auth_password}".encode())
    return [stack.auth_password.encode(), token]


def _files_holding(paths, needles: list[bytes]) -> list[str]:
    found = []
    for path in paths:
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                found.append(str(path))
    return found


def test_the_password_appears_nowhere(auth_sweeps):
    stack, folder, good, report, refused = auth_sweeps
    needles = _secrets(stack)
    password = stack.auth_password

    client = stack.auth_mlflow.client()
    with env_vars(**stack.auth_mlflow.admin_env()):
        experiment = client.get_experiment_by_name(NAME)
        runs = client.search_runs([experiment.experiment_id])
    assert runs, "the sweep left no runs to inspect"
    for run in runs:
        for key, value in {**run.data.params, **run.data.tags}.items():
            assert password not in key and password not in value, f"run {run.info.run_name}: {key}"

    artifact_keys = stack.s3.keys(ARTIFACT_BUCKET, f"{experiment.experiment_id}/")
    leaking = [k for k in artifact_keys if any(n in stack.s3.read(ARTIFACT_BUCKET, k) for n in needles)]
    assert leaking == [], f"artifacts holding the password: {leaking}"
    storage_keys = stack.s3.keys(STORAGE_BUCKET, f"{PREFIX}/")
    leaking = [k for k in storage_keys if any(n in stack.s3.read(STORAGE_BUCKET, k) for n in needles)]
    assert leaking == [], f"trial storage holding the password: {leaking}"

    for name, text in [("sweep stdout", good.stdout), ("sweep stderr", good.stderr),
                       ("report output", report.stdout + report.stderr),
                       ("refused sweep output", refused.stdout + refused.stderr)]:
        assert password not in text, f"the password is in the {name}"
    ray_logs = list(Path(stack.ray.root).rglob("*"))
    assert any(p.suffix in (".out", ".err", ".log") for p in ray_logs), "no Ray logs found to inspect"
    assert _files_holding(ray_logs, needles) == []
    report_files = list((folder / "report").rglob("*"))
    assert _files_holding(report_files, needles) == []
    # nothing leaked; and there was something to look at: a finished sweep's checkpoints and report
    assert good.proc.returncode == 0, good.output()
    assert any("/artifacts/checkpoint/" in k for k in artifact_keys), artifact_keys
    assert any(p.name == "report.md" for p in report_files)
