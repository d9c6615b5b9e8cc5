"""Reading a big sweep back: a fixed number of tracking calls per command, and the same answers.

A real sqlite MLflow store holds a finished sweep fabricated the way the sweep layer logs it (one
child run per trial of a spec, per-epoch metrics, final metrics, ``status`` tag,
``checkpoint/gamma.json``). Trials are logged either as the current worker logs them (with
``sweeper.epoch`` in each epoch's batch) or as older versions did (without it): both must read
back the same.
"""

from __future__ import annotations

import functools
import inspect
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient

from sweeper.record import names
from sweeper.record import readback, tracking
from sweeper.driver.orchestrate import run_command
from sweeper.report import build_report
from sweeper.report import figures as fig
from sweeper.report.build import write_results
from sweeper.report.collect import load_gammas, load_sweep
from sweeper.report.markdown import render
from sweeper.report.scorecard import score
from sweeper.report.tables import aggregate
from sweeper.spec import load_spec
from sweeper.core.states import FINISHED
from sweeper.views.status import sweep_status

EPOCHS = 4


def _write_spec(folder: Path, lrs: list[float]) -> Path:
    """8 trials per learning rate: 2 modes x 2 depths x 2 seeds."""
    path = folder / "scale.yaml"
    path.write_text(f"""\
name: scale
dataset: {{name: digits}}
model: {{family: cifar_resnet}}
train: {{epochs: {EPOCHS}, batch_size: 64}}
grid: {{mode: [bn_only, full], depth: [8, 14], lr: {lrs}, seed: [0, 1]}}
resources: {{cpu: 1}}
""")
    return path


def _fabricate(folder: Path, db_template: Path, lrs: list[float], old_format=lambda i: False,
               state=lambda i: "finished", epochs=lambda i: EPOCHS) -> tuple[str, Path]:
    """A sweep of the spec's trials in a fresh store; ``old_format(i)``, ``state(i)``, ``epochs(i)``
    choose per trial (by index) how it was logged, how far it got, how long it trained."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(db_template, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    spec_path = _write_spec(folder, lrs)
    spec = load_spec(spec_path)
    client = MlflowClient(tracking_uri=uri)
    experiment_id = tracking.ensure_experiment(client, spec.name, uri)
    parent = tracking.ensure_parent_run(client, experiment_id, spec.name, spec.text, spec.spec_hash)
    rng = np.random.default_rng(0)
    for i, payload in enumerate(spec.trials()):
        run_id = client.create_run(experiment_id, run_name=payload.name, tags={
            names.TAG_PARENT: parent, names.TAG_TRIAL_KEY: payload.key, names.TAG_ROLE: "trial"}).info.run_id
        final = round(0.3 + 0.6 * rng.random(), 6)
        metrics = []
        for epoch in range(1, epochs(i) + 1):
            values = {"test_acc": final * epoch / epochs(i), "train_loss": 2.0 / epoch}
            if not old_format(i):
                values[names.METRIC_EPOCH] = epoch
            metrics += [Metric(k, float(v), 1000 + epoch, epoch) for k, v in values.items()]
        tags = [RunTag(names.TAG_NODE_ID, "test")]
        if state(i) == "finished":
            finals = {"final_test_acc": final, "best_test_acc": final, "trainable_params": 10 * i,
                      "total_params": 1000, "gamma_near_zero_frac": 0.01 * (i % 5), "relu_zero_frac": 0.5,
                      "epochs_completed": epochs(i)}
            metrics += [Metric(k, float(v), 2000, 0) for k, v in finals.items()]
            tags.append(RunTag(names.TAG_STATUS, "finished"))
        client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in payload.params.items()],
                         tags=tags)
        if state(i) == "finished":
            gamma = folder / "scratch" / run_id / "gamma.json"
            gamma.parent.mkdir(parents=True)
            gamma.write_text(json.dumps({"layers": {"bn1": rng.uniform(-0.2, 1, 40).tolist()}}))
            client.log_artifact(run_id, str(gamma), "checkpoint")
            client.set_terminated(run_id, "FINISHED")
    return uri, spec_path


# --- the same answers -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, _migrated_mlflow_db):
    """Old- and new-format trials side by side, two still running, and trials of different lengths
    (a long one at a learning rate the figures do not draw)."""
    folder = tmp_path_factory.mktemp("mixed")
    return _fabricate(folder, _migrated_mlflow_db, [0.05, 0.1, 0.2], old_format=lambda i: i % 2 == 0,
                      state=lambda i: "running" if i in (3, 12) else "finished",
                      epochs=lambda i: 7 if i == 20 else 2 if i in (3, 12) else EPOCHS)


def test_status_epochs_are_those_of_the_metric_histories(mixed):
    uri, spec_path = mixed
    client = MlflowClient(tracking_uri=uri)
    _, _, rows = sweep_status(str(spec_path), uri)
    assert len(rows) == 24 and {r.state for r in rows} == {"finished", "running"}
    for row in rows:
        history = client.get_metric_history(row.run_id, "test_acc")
        assert row.epoch == max(m.step for m in history)
    assert sorted(r.epoch for r in rows if r.state == "running") == [2, 2]


def _reference_report(client, name: str, uri: str, out: Path) -> dict[str, bytes]:
    """The report as it was built before this module existed: the history of every finished run
    through get_metric_history, the gammas of every finished run through runs/get + download."""
    sweep = load_sweep(client, name, uri)
    configs = aggregate(sweep.trials, sweep.param_columns)
    finished = list(sweep.with_state(FINISHED)["run_id"])
    rows = [(r, int(m.step), float(m.value), int(m.timestamp)) for r in finished
            for m in client.get_metric_history(r, "test_acc")]
    curves = (pd.DataFrame(rows, columns=["run_id", "step", "value", "timestamp"])
              .sort_values(["run_id", "step", "timestamp"]).drop_duplicates(["run_id", "step"], keep="last")
              .drop(columns="timestamp").reset_index(drop=True))
    gammas = load_gammas(client, finished)
    out.mkdir(parents=True)
    drawn = {}
    for role, figure in {"accuracy_vs_depth": fig.accuracy_vs_depth(configs),
                         "accuracy_vs_width": fig.accuracy_vs_width(configs),
                         "accuracy_vs_params": fig.accuracy_vs_params(configs),
                         "gamma_distribution": fig.gamma_distribution(configs, gammas),
                         "relu_sparsity": fig.relu_sparsity(configs),
                         "test_acc_curves": fig.accuracy_curves(configs, curves),
                         "accuracy_vs_lr": fig.accuracy_vs_lr(sweep.trials)}.items():
        if figure is not None:
            fig.save(figure, out / f"{role}.png")
            drawn[role] = f"{role}.png"
    write_results(sweep, out / "results.csv")
    rows, not_in_sweep = score(configs)
    from datetime import datetime, timezone

    (out / "report.md").write_text(render(sweep, configs, rows, not_in_sweep, drawn, datetime(2000, 1, 1, tzinfo=timezone.utc)))
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_report_shows_exactly_what_the_per_run_reads_showed(mixed, tmp_path):
    uri, _ = mixed
    client = MlflowClient(tracking_uri=uri)
    before = _reference_report(client, "scale", uri, tmp_path / "before")
    report = build_report(client, "scale", uri, tmp_path / "after", log_to_mlflow=False)
    after = {p.name: p.read_bytes() for p in (tmp_path / "after").iterdir()}
    assert set(before) >= {"results.csv", "report.md", "gamma_distribution.png", "test_acc_curves.png",
                           "accuracy_vs_depth.png", "accuracy_vs_lr.png"}
    assert set(after) == set(before)
    for name in sorted(before):
        if name != "report.md":
            assert after[name] == before[name], name  # the same CSV bytes, the same pixels
    generated = lambda text: [line for line in text.decode().splitlines() if not line.startswith("Generated ")]
    assert generated(after["report.md"]) == generated(before["report.md"])
    assert report.sweep.counts()["running"] == 2
    # the long trial (7 epochs) is not drawn, yet it still sets the epoch axis as before
    assert max(readback.trial_epoch(client, r) for r in report.sweep.runs.values()) == 7


# --- a fixed number of calls ------------------------------------------------------------------


@pytest.fixture
def counted(monkeypatch):
    """Every public call into MLflow's sqlite store (one per request when the store is a
    server), and every gamma.json read."""
    calls: Counter = Counter()
    for name, member in inspect.getmembers(SqlAlchemyStore, inspect.isfunction):
        if not name.startswith("_"):
            monkeypatch.setattr(SqlAlchemyStore, name, _counting(member, name, calls))
    monkeypatch.setattr(readback, "_read_gammas", _counting(readback._read_gammas, "gamma.json", calls))
    return calls


def _counting(function, name: str, calls: Counter):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        calls[name] += 1
        return function(*args, **kwargs)
    return wrapper


def _calls_per_command(folder: Path, db_template: Path, lrs: list[float], calls: Counter, capsys) -> dict:
    uri, spec_path = _fabricate(folder, db_template, lrs)
    found = {}
    for command, call in (("status", lambda: sweep_status(str(spec_path), uri)),
                          ("report", lambda: build_report(MlflowClient(tracking_uri=uri), "scale", uri, folder / "r")),
                          ("plan", lambda: run_command(str(spec_path), tracking_uri=uri, dry_run=True))):
        calls.clear()
        call()
        found[command] = dict(calls)
    capsys.readouterr()
    return found


def test_tracking_calls_per_command_do_not_grow_with_the_number_of_trials(tmp_path, _migrated_mlflow_db,
                                                                          counted, capsys):
    small = _calls_per_command(tmp_path / "16", _migrated_mlflow_db, [0.1, 0.2], counted, capsys)
    large = _calls_per_command(tmp_path / "48", _migrated_mlflow_db, [0.05, 0.1, 0.2, 0.4, 0.8, 1.6], counted, capsys)
    assert small == large  # 16 or 48 trials: the same calls, each the same number of times
    for command, calls in large.items():
        assert calls.get("get_metric_history", 0) == 0, command  # nothing per run
        assert calls.get("get_run", 0) <= 10, command  # the report's files go onto the parent run
        assert calls["search_runs"] <= 3, command
    # the figures draw 2 modes x 2 depths x 2 seeds at one learning rate, however many rates ran
    assert large["report"]["gamma.json"] == 8
    assert large["report"]["get_metric_history_bulk_interval"] == 1
