"""`sweeper run SPEC --smoke-test` end to end: real Ray, a real MLflow store, the CLI as a user
types it. Every trial of the spec trains its one short epoch into `<name>-smoke`, the report is
written, and the real sweep's experiment is never made."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.record import run_index
from sweeper.record.trial_record import state_of
from sweeper.spec import load_spec

pytestmark = pytest.mark.slow

SPEC = Path(__file__).resolve().parent / "specs" / "small.yaml"


def test_a_smoke_test_trains_every_trial_apart_from_the_real_sweep(workdir, tracking_uri, mlflow_client):
    spec = load_spec(SPEC)
    done = subprocess.run([str(Path(sys.executable).parent / "sweeper"), "run", str(SPEC), "--smoke-test",
                           "--tracking-uri", tracking_uri], capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert f"smoke test: {len(spec.trials())} trials of 'small_study'" in out
    smoke = mlflow_client.get_experiment_by_name("small_study-smoke")
    assert smoke is not None and mlflow_client.get_experiment_by_name("small_study") is None
    runs = run_index.trial_runs(mlflow_client, smoke.experiment_id)
    assert len(runs) == len(spec.trials())
    assert {state_of(run) for run in runs.values()} == {"finished"}
    assert {run.data.metrics["epochs_completed"] for run in runs.values()} == {1.0}
    assert (workdir / "reports" / "small_study-smoke" / "report.md").is_file()
    assert (workdir / "sweeper_results" / "small_study-smoke" / "trials").is_dir()
    assert not (workdir / "sweeper_results" / "small_study").exists()
