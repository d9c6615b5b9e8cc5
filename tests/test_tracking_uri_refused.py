"""`sweeper validate` refuses a tracking URI MLflow cannot open, in one line saying what to write
instead: no scheme, or a folder store without MLflow 3's opt-in. Run through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.spec.tracking_uri import check_given_uri, check_tracking_uri
from sweeper.core.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
BASE = "name: t\ndataset: {name: digits}\nmodel: {family: cifar_resnet, depth: 8}\ntrain: {epochs: 1}\n"


def _validate(tmp_path: Path, spec: str, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "t.yaml").write_text(spec)
    return subprocess.run([sys.executable, "-c", "from sweeper.cli import main; main()", "validate", "t.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"], **env})


def test_a_uri_without_a_scheme_is_refused_with_what_to_write(tmp_path):
    proc = _validate(tmp_path, BASE + "tracking: {uri: 'mlflow.internal:5000'}\n")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "t.yaml: tracking.uri: 'mlflow.internal:5000' has no scheme: did you mean http://mlflow.internal:5000? (line 5)"]


def test_the_environment_variable_is_named_when_it_holds_the_bad_uri(tmp_path):
    proc = _validate(tmp_path, BASE, MLFLOW_TRACKING_URI="mlflow.internal:5000")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "MLFLOW_TRACKING_URI: 'mlflow.internal:5000' has no scheme: did you mean http://mlflow.internal:5000?"]


@pytest.mark.parametrize("uri", ["./mlruns", "file:///srv/mlruns", "/abs/mlruns"])
def test_a_folder_store_needs_mlflows_opt_in(tmp_path, uri):
    proc = _validate(tmp_path, BASE + f"tracking: {{uri: '{uri}'}}\n")
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    assert line.startswith("t.yaml: tracking.uri: ") and line.endswith("(line 5)")
    assert "use sqlite:///PATH/mlflow.db instead, or set MLFLOW_ALLOW_FILE_STORE=true" in line
    allowed = _validate(tmp_path, BASE + f"tracking: {{uri: '{uri}'}}\n", MLFLOW_ALLOW_FILE_STORE="true")
    assert allowed.returncode == 0, allowed.stderr


def test_mlflow_itself_refuses_a_folder_store_without_the_opt_in(tmp_path, monkeypatch):
    """The rule above is MLflow's, not ours: its client refuses the same store."""
    import mlflow

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(Exception, match="MLFLOW_ALLOW_FILE_STORE"):
        mlflow.MlflowClient(tracking_uri=str(tmp_path / "mlruns")).search_experiments()


def test_a_flag_is_named_as_the_source(monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(SpecError) as e:
        check_given_uri("db:5432", "--tracking-uri")
    assert str(e.value) == "--tracking-uri: 'db:5432' has no scheme: did you mean http://db:5432?"
    check_given_uri(None, "--tracking-uri")
    check_tracking_uri("http://mlflow.internal:5000")
    check_tracking_uri("sqlite:///mlflow.db")
