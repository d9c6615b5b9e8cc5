"""End to end: a real (tiny) sweep on digits with Ray and MLflow, then `sweeper report` as a user
runs it, and the report checked against what MLflow holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sweeper.driver.orchestrate import run_command
from sweeper.report import figures
from sweeper.report.collect import load_sweep
from sweeper.report.tables import aggregate

pytestmark = pytest.mark.slow

SWEEPER = str(Path(sys.executable).parent / "sweeper")
SPEC = """\
name: tiny_report
dataset: {name: digits, image_size: 8, train_size: 192, test_size: 96}
model: {family: cifar_resnet}
train: {epochs: 2, batch_size: 64, lr: 0.1, augment: false}
grid: {mode: [bn_only, full], depth: [8, 14], seed: [0]}
resources: {cpu: 1}
max_concurrent: 2
checkpoint: {every_epochs: 1}
"""
# one width only: no width figure (a single point compares nothing)
FIGURES = {"accuracy_vs_depth", "accuracy_vs_params", "gamma_distribution", "relu_sparsity", "test_acc_curves"}


def test_a_real_sweep_reports_what_mlflow_holds(workdir, tracking_uri, mlflow_client, ray_local):
    spec = workdir / "tiny_report.yaml"
    spec.write_text(SPEC)
    assert run_command(str(spec), tracking_uri=tracking_uri, storage=str(workdir / "results")) == 0

    out = workdir / "report"
    done = subprocess.run([SWEEPER, "report", str(spec), "--tracking-uri", tracking_uri, "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert "4 finished" in done.stdout

    assert {p.stem for p in out.glob("*.png")} == FIGURES
    text = (out / "report.md").read_text()
    assert "Trials in MLflow: **4** of 4 planned by the spec" in text and "finished: 4" in text
    assert "not complete" not in text
    assert "not comparable: dataset digits" in text  # the paper's numbers are CIFAR-10

    results = pd.read_csv(out / "results.csv")
    assert len(results) == 4 and set(results["status"]) == {"finished"}
    for _, row in results.iterrows():
        run = mlflow_client.get_run(row["run_id"])
        assert row["trial_key"] == run.data.tags["sweeper.trial_key"]
        assert (row["mode"], str(row["model.depth"])) == (run.data.params["mode"], run.data.params["model.depth"])
        for key in ("final_test_acc", "best_test_acc", "trainable_params", "relu_zero_frac", "gamma_near_zero_frac"):
            assert row[key] == run.data.metrics[key], key

    for png in out.glob("*.png"):
        with Image.open(png) as image:
            pixels = np.asarray(image.convert("L"), dtype=float)
        assert image.size[0] >= 800 and pixels.std() > 10, png.name

    # the curves drawn are the seed means MLflow holds: one point per depth and mode
    sweep = load_sweep(mlflow_client, "tiny_report", tracking_uri)
    configs = aggregate(sweep.trials, sweep.param_columns)
    depth_fig = figures.accuracy_vs_depth(configs)
    for mode in ("bn_only", "full"):
        (line,) = [c.lines[0] for c in depth_fig.axes[0].containers if c.get_label() == figures.mode_label(mode)]
        x, y = line.get_data()
        assert list(x) == [8, 14]
        expected = [100 * results[(results["mode"] == mode) & (results["model.depth"] == d)]["final_test_acc"].iloc[0]
                    for d in (8, 14)]
        assert np.allclose(y, expected)

    experiment = mlflow_client.get_experiment_by_name("tiny_report").experiment_id
    (parent,) = mlflow_client.search_runs([experiment], "tags.`sweeper.role` = 'sweep'")
    stored = {a.path for a in mlflow_client.list_artifacts(parent.info.run_id, "report")}
    assert {f"report/{p.name}" for p in out.iterdir()} == stored
