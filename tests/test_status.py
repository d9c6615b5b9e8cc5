"""`sweeper status`: trial states read back from MLflow, pending ones included for a spec."""

from __future__ import annotations

import pytest

from sweeper.record import tracking
from sweeper.core.errors import SweepError
from sweeper.plan.planning import expected_trials
from sweeper.spec import load_spec
from sweeper.views.status import format_table, sweep_status


def _spec(folder):
    path = folder / "st.yaml"
    path.write_text("""\
name: st
dataset: {name: digits}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 2}
grid: {mode: [bn_only, full, output_only, random_params], seed: [0]}
""")
    return path


def test_status_lists_every_trial_of_a_spec_with_its_state_from_mlflow(workdir, tracking_uri, mlflow_client):
    path = _spec(workdir)
    spec = load_spec(path)
    trials = expected_trials(spec)
    exp = tracking.ensure_experiment(mlflow_client, "st", tracking_uri)
    parent = tracking.ensure_parent_run(mlflow_client, exp, "st", spec.text, spec.spec_hash)
    run_ids = [tracking.ensure_child_run(mlflow_client, exp, parent, t.key, t.name, t.params) for t in trials[:3]]
    mlflow_client.log_metric(run_ids[0], "test_acc", 0.5, step=1)
    mlflow_client.log_metric(run_ids[0], "test_acc", 0.6, step=2)
    mlflow_client.log_metric(run_ids[0], "final_test_acc", 0.6, step=0)
    mlflow_client.set_tag(run_ids[0], "status", "finished")
    mlflow_client.set_tag(run_ids[1], "status", "diverged")
    mlflow_client.set_terminated(run_ids[2], "KILLED")

    name, _, rows = sweep_status(str(path), tracking_uri)
    assert name == "st"
    assert [(r.name, r.state) for r in rows] == [
        (trials[0].name, "finished"), (trials[1].name, "diverged"),
        (trials[2].name, "interrupted"), (trials[3].name, "pending")]
    assert rows[0].epoch == 2 and rows[0].test_acc == pytest.approx(0.6)
    table = format_table(name, rows)
    assert table.splitlines()[0] == "st: 4 trials: 1 finished, 1 diverged, 1 interrupted, 1 pending"
    assert trials[3].key in table

    # by bare name: only what MLflow holds
    _, _, by_name = sweep_status("st", tracking_uri)
    assert sorted(r.state for r in by_name) == ["diverged", "finished", "interrupted"]


def test_status_of_an_unknown_sweep_name_is_a_one_line_error(workdir, tracking_uri):
    with pytest.raises(SweepError, match="no sweep named 'nope'"):
        sweep_status("nope", tracking_uri)
