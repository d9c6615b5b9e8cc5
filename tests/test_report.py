"""`sweeper report` on a small fake-but-realistic MLflow store.

The store is written through MlflowClient in exactly the layout the sweep layer produces
(docs/mlflow.md): a parent run tagged sweeper.role=sweep, one child per trial with the flattened
config as params, per-epoch metrics at step=epoch, final metrics, a ``status`` tag and
``checkpoint/gamma.json``. It holds several seeds, a diverged trial, a running one and a partial
grid, so every rule of the report is exercised without training anything.
"""

from __future__ import annotations

import json
import math
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from PIL import Image

from sweeper import cli
from sweeper.core.errors import SweepError
from sweeper.report import build_report, figures, load_reference
from sweeper.report.collect import load_sweep
from sweeper.report.scorecard import NOT_COMPARABLE, OUTSIDE, PENDING, WITHIN, score, tolerance

SWEEP = "fake_depth_width"
EPOCHS = 3
# (mode, depth, width, seed, state): a partial grid; bn_only has no width-2 trial yet.
TRIALS = [(m, d, 1, s, "finished") for m in ("full", "bn_only") for d in (14, 32) for s in (0, 1)]
TRIALS += [("full", 14, 2, s, "finished") for s in (0, 1)]
TRIALS += [("full", 32, 1, 2, "diverged"), ("bn_only", 32, 1, 2, "running"), ("full", 14, 2, 2, "stopped")]
BN_PARAMS = {(14, 1): 1120, (32, 1): 2464, (14, 2): 2240}
TOTAL_PARAMS = {(14, 1): 175258, (32, 1): 466906, (14, 2): 696_794}


def _final_acc(mode: str, depth: int, width: int, seed: int) -> float:
    base = {"full": 0.80, "bn_only": 0.40}[mode] + 0.05 * (depth == 32) + 0.03 * (width == 2)
    return round(base + 0.013 * seed - 0.004 * (seed % 2) * depth / 14, 6)


def _make_trial(client: MlflowClient, experiment_id: str, parent_id: str, mode: str, depth: int, width: int,
                seed: int, state: str, rng: np.random.Generator, scratch) -> str:
    key = f"{mode}{depth}w{width}s{seed}"
    run = client.create_run(experiment_id, run_name=f"{mode}-d{depth}-w{width}-lr0.1-s{seed}",
                            tags={"mlflow.parentRunId": parent_id, "sweeper.trial_key": key,
                                  "sweeper.role": "trial"})
    run_id = run.info.run_id
    params = {"mode": mode, "seed": seed, "dataset.name": "cifar10", "dataset.root": "~/data/cifar10",
              "model.family": "cifar_resnet", "model.depth": depth, "model.width": width,
              "model.bn_init": "uniform", "train.lr": 0.1, "train.epochs": EPOCHS, "train.batch_size": 128,
              "train.lr_schedule.milestones": "[1, 2]"}
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    final = _final_acc(mode, depth, width, seed)
    epochs = EPOCHS if state not in ("running", "stopped") else 2
    metrics = []
    for epoch in range(1, epochs + 1):
        acc = final * epoch / EPOCHS if state != "diverged" else 0.1
        metrics += [Metric("test_acc", acc, 1000 + epoch, epoch), Metric("test_top5", min(1, acc + 0.3), 1000 + epoch, epoch),
                    Metric("train_loss", 2.3 / epoch, 1000 + epoch, epoch), Metric("lr", 0.1 / epoch, 1000 + epoch, epoch)]
    metrics.append(Metric("sweeper.start_epoch", 1, 999, 1))  # the sweep layer's bookkeeping
    if state in ("finished", "diverged"):
        trainable = BN_PARAMS[(depth, width)] if mode == "bn_only" else TOTAL_PARAMS[(depth, width)]
        finals = {"final_test_acc": final if state == "finished" else 0.1,
                  "best_test_acc": final if state == "finished" else 0.1,
                  "trainable_params": trainable, "total_params": TOTAL_PARAMS[(depth, width)],
                  "gamma_near_zero_frac": 0.02 * (mode == "bn_only") + 0.001 * seed,
                  "gamma_near_zero_frac_0.05": 0.1 * (mode == "bn_only") + 0.002 * seed,
                  "gamma_near_zero_frac_0.1": 0.25 * (mode == "bn_only") + 0.003 * seed,
                  "relu_zero_frac": 0.5 + 0.1 * (mode == "bn_only") + 0.01 * depth / 14 + 0.002 * seed,
                  "epochs_completed": EPOCHS}
        metrics += [Metric(k, float(v), 2000, 0) for k, v in finals.items()]
    client.log_batch(run_id, metrics=metrics)
    if state in ("finished", "diverged"):
        channels = BN_PARAMS[(depth, width)] // 2
        gammas = rng.uniform(0, 1, channels)
        if mode == "bn_only":  # training pushes some scales to zero
            gammas[: channels // 4] = rng.normal(0, 0.02, channels // 4)
        path = scratch / run_id / "gamma.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"layers": {"bn1": gammas[: channels // 2].tolist(),
                                               "layer1.0.bn1": gammas[channels // 2:].tolist()}}))
        client.log_artifact(run_id, str(path), "checkpoint")  # as the sweep layer does: checkpoint/gamma.json
        client.log_batch(run_id, tags=[RunTag("status", state)])
        client.set_terminated(run_id, "FINISHED")
    if state == "stopped":  # what the sweep layer writes when ASHA ends a trial: no final metrics
        client.log_batch(run_id, tags=[RunTag("status", "finished"), RunTag("sweeper.early_stopped", "true")])
        client.set_terminated(run_id, "FINISHED")
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory, _migrated_mlflow_db):
    """(tracking uri, client, parent run id, {trial tuple: run id}) of the fake sweep."""
    root = tmp_path_factory.mktemp("fake_store")
    shutil.copyfile(_migrated_mlflow_db, root / "mlflow.db")  # conftest.py: an empty, migrated store
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(SWEEP, artifact_location=(root / "mlartifacts").as_uri())
    parent = client.create_run(experiment_id, run_name=SWEEP, tags={"sweeper.role": "sweep",
                                                                      "sweeper.spec_hash": "abc123"})
    rng = np.random.default_rng(0)
    runs = {}
    for trial in TRIALS:
        runs[trial] = _make_trial(client, experiment_id, parent.info.run_id, *trial, rng, root / "scratch")
    return uri, client, parent.info.run_id, runs


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    uri, client, _, _ = store
    return build_report(client, SWEEP, uri, tmp_path_factory.mktemp("report"))


def _finished(mode, depth, width):
    return [t for t in TRIALS if t[:3] == (mode, depth, width) and t[4] == "finished"]


# --- what was read ----------------------------------------------------------------------------


def test_every_trial_is_read_with_its_state(report):
    trials = report.sweep.trials
    assert len(trials) == len(TRIALS)
    assert report.sweep.counts() == {"finished": 10, "diverged": 1, "stopped_early": 1, "running": 1, "failed": 0,
                                     "interrupted": 0}
    assert trials["model.depth"].dtype.kind == "i" and trials["train.lr"].dtype.kind == "f"
    assert "sweeper.start_epoch" not in trials.columns


def test_results_csv_holds_exactly_what_mlflow_holds(report, store):
    _, client, _, runs = store
    csv = pd.read_csv(report.out_dir / "results.csv")
    assert len(csv) == len(TRIALS)
    assert set(csv["run_id"]) == set(runs.values())
    assert {"run_id", "trial_key", "status", "mode", "seed", "model.depth", "final_test_acc"} <= set(csv.columns)
    for _, row in csv.iterrows():
        run = client.get_run(row["run_id"])
        assert row["trial_key"] == run.data.tags["sweeper.trial_key"]
        expected_state = run.data.tags.get("status", "running")
        if run.data.tags.get("sweeper.early_stopped") == "true":
            expected_state = "stopped_early"
        assert row["status"] == expected_state
        for key, value in run.data.params.items():
            assert str(row[key]) == value or float(row[key]) == float(value), key
        for key, value in run.data.metrics.items():
            if not key.startswith("sweeper."):
                assert row[key] == value, key  # bit-equal: the CSV keeps full float precision


# --- aggregation ------------------------------------------------------------------------------


def test_seeds_aggregate_to_mean_std_and_count(report):
    configs = report.configs
    for mode, depth, width in {(m, d, w) for m, d, w, _, _ in TRIALS}:
        row = configs[(configs["mode"] == mode) & (configs["model.depth"] == depth) & (configs["model.width"] == width)]
        assert len(row) == 1
        row = row.iloc[0]
        values = [_final_acc(*t[:4]) for t in _finished(mode, depth, width)]
        assert row["n"] == len(values)
        assert row["final_test_acc_mean"] == pytest.approx(np.mean(values))
        assert row["final_test_acc_std"] == pytest.approx(np.std(values, ddof=1))


def test_diverged_seeds_are_counted_but_never_averaged(report):
    configs = report.configs
    full32 = configs[(configs["mode"] == "full") & (configs["model.depth"] == 32)].iloc[0]
    assert full32["n"] == 2 and full32["n_diverged"] == 1
    assert full32["final_test_acc_mean"] == pytest.approx(np.mean([_final_acc("full", 32, 1, s) for s in (0, 1)]))
    bn32 = configs[(configs["mode"] == "bn_only") & (configs["model.depth"] == 32)].iloc[0]
    assert bn32["n"] == 2  # the running seed is left out


def test_report_md_says_what_was_included_and_leaves_blanks(report):
    text = (report.out_dir / "report.md").read_text()
    assert "finished: 10" in text and "diverged: 1" in text and "running: 1" in text
    assert "stopped early by the scheduler: 1" in text
    assert "not complete" in text
    mean = 100 * np.mean([_final_acc("bn_only", 14, 1, s) for s in (0, 1)])
    std = 100 * np.std([_final_acc("bn_only", 14, 1, s) for s in (0, 1)], ddof=1)
    assert f"{mean:.1f} ± {std:.1f} (n=2)" in text
    assert "(n=2, 1 diverged)" in text
    width_table = text.split("## Test accuracy by width")[1].split("##")[0]
    bn_row = next(line for line in width_table.splitlines() if line.startswith("| bn_only"))
    assert bn_row.rstrip().endswith("|  |")  # no bn_only trial at width 2 yet: a blank cell
    for png in report.figures:
        assert f"]({png.name})" in text


# --- scorecard --------------------------------------------------------------------------------


def _configs(**overrides):
    row = {"dataset.name": "cifar10", "model.family": "cifar_resnet", "model.depth": 110, "model.width": 1,
           "mode": "bn_only", "train.epochs": 160, "n": 3, "n_diverged": 0, "run_ids": ["a", "b", "c"],
           "final_test_acc_mean": 0.70, "final_test_acc_std": 0.01,
           "trainable_params_mean": 8288.0, "trainable_params_std": 0.0}
    row.update(overrides)
    return pd.DataFrame([row])


def _row(rows, metric="final_test_acc"):
    (found,) = [r for r in rows if r.metric == metric]
    return found


def test_scorecard_within_tolerance_for_a_full_schedule_run():
    rows, _ = score(_configs())
    acc = _row(rows)
    assert acc.paper == 0.695 and acc.approximate
    assert acc.difference == pytest.approx(0.005)
    assert acc.tolerance == 0.05 and acc.verdict == WITHIN
    assert _row(rows, "trainable_params").verdict == WITHIN


def test_scorecard_outside_tolerance():
    rows, _ = score(_configs(final_test_acc_mean=0.60))
    assert _row(rows).verdict == OUTSIDE
    rows, _ = score(_configs(trainable_params_mean=8289.0))
    assert _row(rows, "trainable_params").verdict == OUTSIDE  # counts are exact


def test_exact_numbers_get_the_tighter_tolerance():
    assert tolerance("final_test_acc", approximate=False) == 0.02
    rows, _ = score(_configs(**{"model.depth": 866, "final_test_acc_mean": 0.795, "trainable_params_mean": 64736.0}))
    acc = _row(rows)
    assert not acc.approximate and acc.tolerance == 0.02 and acc.verdict == OUTSIDE  # 2.5 pp off 82%


def test_short_or_other_data_runs_are_not_comparable_not_failed():
    rows, _ = score(_configs(**{"train.epochs": 3, "final_test_acc_mean": 0.2}))
    assert _row(rows).verdict == NOT_COMPARABLE and "3 epochs < paper's 160" in _row(rows).reason
    assert _row(rows, "trainable_params").verdict == WITHIN  # a parameter count needs no schedule
    rows, _ = score(_configs(**{"dataset.name": "digits"}))
    assert _row(rows).verdict == NOT_COMPARABLE and "digits" in _row(rows).reason
    rows, _ = score(_configs(**{"dataset.train_size": 512}))
    assert _row(rows).verdict == NOT_COMPARABLE and "subset" in _row(rows).reason


def test_scorecard_prefers_the_comparable_configuration_and_waits_for_results():
    both = pd.concat([_configs(**{"train.epochs": 3, "final_test_acc_mean": 0.9}), _configs()], ignore_index=True)
    assert _row(score(both)[0]).verdict == WITHIN
    rows, _ = score(_configs(n=0, final_test_acc_mean=math.nan))
    assert _row(rows).verdict == PENDING


def test_reference_table_is_shipped_with_sources():
    ref = load_reference()
    assert {"dataset", "family", "depth", "width", "mode", "metric", "value", "source", "approximate",
            "epochs"} <= set(ref.columns)
    bn866 = ref[(ref["depth"] == 866) & (ref["mode"] == "bn_only") & (ref["metric"] == "final_test_acc")].iloc[0]
    assert bn866["value"] == 0.82 and bn866["source"] == "abstract" and not bn866["approximate"]
    assert bn866["epochs"] == 160
    top5 = ref[ref["metric"] == "test_top5"].iloc[0]
    assert top5["dataset"] == "imagenet" and top5["value"] == 0.32 and top5["epochs"] == 90


def test_fake_sweep_scorecard_marks_short_runs_not_comparable(report):
    rows = {(r.configuration, r.metric): r for r in report.scorecard}
    assert rows[("cifar10 cifar_resnet-14 w1 bn_only", "final_test_acc")].verdict == NOT_COMPARABLE
    assert rows[("cifar_resnet-14 w1 bn_only", "trainable_params")].verdict == WITHIN
    assert "## Replication scorecard" in (report.out_dir / "report.md").read_text()


# --- figures ----------------------------------------------------------------------------------


def _lines(fig):
    """label -> the Line2D drawn for it (an errorbar's data line carries its container's label)."""
    found = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    found.update({c.get_label(): c.lines[0] for ax in fig.axes for c in ax.containers if hasattr(c, "has_xerr")})
    return found


def test_depth_figure_draws_each_modes_seed_mean(report):
    fig = figures.accuracy_vs_depth(report.configs)
    line = _lines(fig)[figures.mode_label("bn_only")]
    x, y = line.get_data()
    assert list(x) == [14, 32]
    expected = [100 * np.mean([_final_acc("bn_only", d, 1, s) for s in (0, 1)]) for d in (14, 32)]
    assert np.allclose(y, expected)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "depth" in ax.get_xlabel() and "%" in ax.get_ylabel()


def test_width_figure_has_only_what_exists(report):
    labels = _lines(figures.accuracy_vs_width(report.configs))
    x, _ = labels[figures.mode_label("full")].get_data()
    assert list(x) == [1, 2]
    assert list(labels[figures.mode_label("bn_only")].get_data()[0]) == [1]
    one_width = report.configs[report.configs["model.width"] == 1]
    assert figures.accuracy_vs_width(one_width) is None  # a single width compares nothing


def test_params_figure_puts_depth_and_width_on_a_log_parameter_axis(report):
    fig = figures.accuracy_vs_params(report.configs)
    lines = _lines(fig)
    deeper = lines[f"{figures.mode_label('bn_only')}, deeper (width 1)"]
    assert list(deeper.get_data()[0]) == [1120, 2464]
    assert f"{figures.mode_label('full')}, wider (depth 14)" in lines
    assert fig.axes[0].get_xscale() == "log"


def test_gamma_figure_marks_the_near_zero_shares(report, store):
    _, client, _, runs = store
    from sweeper.report.collect import load_gammas

    gammas = load_gammas(client, runs.values())
    assert len(gammas) == 11  # every finished or diverged trial logged checkpoint/gamma.json
    fig = figures.gamma_distribution(report.configs, gammas)
    bn_axis = next(ax for ax in fig.axes if ax.get_title() == figures.mode_label("bn_only"))
    labels = [line.get_label() for line in bn_axis.get_lines() if not line.get_label().startswith("_")]
    assert len(labels) == 2 and labels[0].startswith("depth 14:")
    thresholds = sorted(line.get_xdata()[0] for line in bn_axis.get_lines() if line.get_linestyle() == ":")
    assert thresholds == [0.01, 0.05, 0.1]


def test_curves_figure_draws_mean_over_seeds_per_epoch(report, store):
    fig = figures.accuracy_curves(report.configs, _curves(store))
    bn_axis = next(ax for ax in fig.axes if ax.get_title() == figures.mode_label("bn_only"))
    line = next(line for line in bn_axis.get_lines() if line.get_label().startswith("depth 14"))
    x, y = line.get_data()
    assert list(x) == [1, 2, 3]
    final = np.mean([_final_acc("bn_only", 14, 1, s) for s in (0, 1)])
    assert np.allclose(y, [100 * final * e / EPOCHS for e in (1, 2, 3)])


def test_lr_figure_shows_every_trial_and_marks_early_stops():
    trials = pd.DataFrame({
        "mode": ["bn_only"] * 4, "model.depth": [14, 14, 110, 110], "train.lr": [0.03, 0.3, 0.1, 3.0],
        "status": ["finished", "stopped_early", "finished", "running"], "test_acc": [0.4, 0.2, 0.6, 0.5]})
    fig = figures.accuracy_vs_lr(trials)
    ax = fig.axes[0]
    points = {c.get_label(): c for c in ax.collections}
    assert set(points) == {"BN only (γ, β), depth 14", "BN only (γ, β), depth 14 (stopped early)",
                           "BN only (γ, β), depth 110"}  # the running trial is not drawn
    assert np.allclose(points["BN only (γ, β), depth 110"].get_offsets(), [[0.1, 60.0]])
    assert points["BN only (γ, β), depth 14 (stopped early)"].get_facecolors().size == 0  # hollow
    assert ax.get_xscale() == "log"
    assert figures.accuracy_vs_lr(trials.assign(**{"train.lr": 0.1})) is None  # one lr: nothing to compare


def _curves(store):
    from sweeper.report.collect import load_curves

    _, client, _, runs = store
    return load_curves(client, [r for t, r in runs.items() if t[4] == "finished"])


def test_pngs_are_real_non_blank_images(report):
    names = {p.stem for p in report.figures}
    assert names == {"accuracy_vs_depth", "accuracy_vs_width", "accuracy_vs_params", "gamma_distribution",
                     "relu_sparsity", "test_acc_curves"}
    for png in report.figures:
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            pixels = np.asarray(image.convert("RGB"))
        height, width, _ = pixels.shape
        assert height == 500 or (png.stem == "gamma_distribution" and height == 560), png.name
        assert width >= 800
        assert pixels.std() > 10, png.name
        packed = pixels[..., 0].astype(np.uint32) << 16 | pixels[..., 1].astype(np.uint32) << 8 | pixels[..., 2]
        assert len(np.unique(packed)) > 50, png.name  # curves, text and bands: many distinct colours


def test_empty_sweep_draws_nothing_and_still_reports(tmp_path, store):
    uri, client, _, _ = store
    experiment_id = client.create_experiment("just_started", artifact_location=(tmp_path / "art").as_uri())
    client.create_run(experiment_id, run_name="just_started", tags={"sweeper.role": "sweep"})
    result = build_report(client, "just_started", uri, tmp_path / "out")
    assert result.figures == []
    text = (tmp_path / "out" / "report.md").read_text()
    assert "Trials in MLflow: **0**" in text and "_no finished trials yet_" in text


# --- the command ------------------------------------------------------------------------------


def _sweeper(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["sweeper", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
        raise SystemExit(0)
    return exit_info.value.code


def test_command_writes_files_and_stores_them_on_the_parent_run(store, tmp_path, monkeypatch, capsys):
    uri, client, parent_id, _ = store
    out = tmp_path / "out"
    assert _sweeper(monkeypatch, "report", SWEEP, "--tracking-uri", uri, "--out", str(out)) == 0
    assert "report.md" in capsys.readouterr().out
    stored = {a.path for a in client.list_artifacts(parent_id, "report")}
    assert {"report/report.md", "report/results.csv", "report/accuracy_vs_depth.png"} <= stored
    assert {f"report/{p.name}" for p in out.iterdir()} == stored


def test_unknown_sweep_is_refused_in_one_line(store, tmp_path, monkeypatch, capsys):
    uri = store[0]
    assert _sweeper(monkeypatch, "report", "no_such_sweep", "--tracking-uri", uri, "--out", str(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert "no sweep named 'no_such_sweep'" in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_missing_store_is_refused_without_creating_one(tmp_path, monkeypatch, capsys):
    db = tmp_path / "nothing.db"
    assert _sweeper(monkeypatch, "report", "x", "--tracking-uri", f"sqlite:///{db}") == 2
    err = capsys.readouterr().err.strip()
    assert "no sweep named 'x'" in err and len(err.splitlines()) == 1
    assert not db.exists()


@pytest.mark.parametrize("uri", ["./missing", "file:./missing"])
def test_a_missing_folder_store_is_named_as_status_names_it(tmp_path, monkeypatch, capsys, uri):
    monkeypatch.chdir(tmp_path)
    assert _sweeper(monkeypatch, "report", "x", "--tracking-uri", uri) == 2
    err = capsys.readouterr().err
    assert err.startswith("no sweep named 'x': no MLflow store at ") and err.rstrip().endswith("missing"), err
    assert "maintenance mode" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "missing").exists()


def test_load_sweep_refuses_an_experiment_without_a_sweep_run(tmp_path, store):
    uri, client, _, _ = store
    client.create_experiment("hand_made", artifact_location=(tmp_path / "art").as_uri())
    with pytest.raises(SweepError, match="no sweep run"):
        load_sweep(client, "hand_made", uri)


def test_every_training_mode_has_a_figure_style_and_nothing_else_does():
    from sweeper.report.figures import MODE_STYLE
    from trainables.names import MODES

    assert set(MODE_STYLE) == set(MODES)
