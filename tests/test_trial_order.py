"""One order of trials everywhere: `sweeper status` numbers rows by the spec's order (also given
only the sweep's name), `sweeper train --trial` takes that index, a name or a key, and reading
commands never create a store, also when given a spec path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.core.errors import SpecError
from sweeper.plan.lookup import find_trial, trial_order
from sweeper.record import tracking
from sweeper.spec import load_spec
from sweeper.views.status import format_table, sweep_status

ROOT = Path(__file__).resolve().parents[1]
SPEC = """\
name: order
dataset: {name: digits}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 2}
grid: {mode: [bn_only, full, output_only, random_params], seed: [0]}
"""


def test_a_trial_is_found_by_index_name_key_or_key_prefix(tmp_path):
    (tmp_path / "o.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "o.yaml")
    trials = trial_order(spec)
    assert find_trial(spec, "2") == (2, trials[2])
    assert find_trial(spec, 3) == (3, trials[3])
    assert find_trial(spec, trials[1].name) == (1, trials[1])
    assert find_trial(spec, trials[1].key) == (1, trials[1])
    assert find_trial(spec, trials[0].key[:8]) == (0, trials[0])
    with pytest.raises(SpecError, match=r"^--trial: 4 is out of range: the spec has trials 0\.\.3$"):
        find_trial(spec, "4")
    with pytest.raises(SpecError, match=r"^--trial: no trial 'bn_onyl-d8-w1-lr0.1-s0' in sweep 'order' "
                                        r"\(did you mean 'bn_only-d8-w1-lr0.1-s0'\?\)"):
        find_trial(spec, "bn_onyl-d8-w1-lr0.1-s0")


def test_status_rows_carry_the_specs_index_whatever_order_mlflow_holds_them_in(workdir, tracking_uri,
                                                                               mlflow_client):
    path = workdir / "o.yaml"
    path.write_text(SPEC)
    spec = load_spec(path)
    trials = trial_order(spec)
    exp = tracking.ensure_experiment(mlflow_client, "order", tracking_uri)
    parent = tracking.ensure_parent_run(mlflow_client, exp, "order", spec.text, spec.spec_hash)
    # MLflow holds them newest first and one trial of an earlier version, started first of all
    old = tracking.ensure_child_run(mlflow_client, exp, parent, "0123456789abcdef", "old-trial", {})
    mlflow_client.set_tag(old, "sweeper.superseded", "somehash")
    for t in (trials[3], trials[1]):
        tracking.ensure_child_run(mlflow_client, exp, parent, t.key, t.name, t.params)

    _, _, rows = sweep_status(str(path), tracking_uri, all_versions=True)
    assert [(r.index, r.name) for r in rows] == [(i, t.name) for i, t in enumerate(trials)] + [(None, "old-trial")]
    lines = format_table("order", rows).splitlines()
    assert lines[2 + 3].split()[:2] == ["3", trials[3].name]
    assert lines[-1].split()[0] == "old-trial" and lines[-1].endswith("old")
    # the row a user reads is the trial `sweeper train --trial N` trains
    assert find_trial(spec, lines[2 + 3].split()[0])[1].key == trials[3].key

    _, _, by_name = sweep_status("order", tracking_uri)  # the spec as last run, read from the parent
    assert [(r.index, r.name) for r in by_name] == [(1, trials[1].name), (3, trials[3].name)]


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run([sys.executable, "-c", "from sweeper.cli import main; main()", *args], cwd=folder,
                          capture_output=True, text=True, timeout=300, env={**env, "PYTHONPATH": str(ROOT)})


def test_status_and_report_leave_an_empty_folder_empty(tmp_path):
    spec = tmp_path / "o.yaml"
    spec.write_text(SPEC)
    empty = tmp_path / "empty"
    empty.mkdir()
    status = _cli(empty, "status", str(spec))
    assert status.returncode == 0, status.stderr
    assert "order: 4 trials: 4 pending" in status.stdout
    for args in (("report", str(spec)), ("status", "order"), ("report", "order")):
        proc = _cli(empty, *args)
        assert proc.returncode == 2 and "no MLflow store at" in proc.stderr, (args, proc.stderr)
    assert list(empty.iterdir()) == []
    # the live view too: it waits for a driver; stopped after its first redraws
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    watch = subprocess.Popen([sys.executable, "-c", "from sweeper.cli import main; main()", "status", "--watch",
                              str(spec), "--every", "1"], cwd=empty, env={**env, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = watch.stdout.readline()
    watch.kill()
    watch.wait()
    assert "order: 0/4 done" in first, first
    assert list(empty.iterdir()) == []
