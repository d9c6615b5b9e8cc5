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
