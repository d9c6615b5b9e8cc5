"""The live view, the parent-run dashboard, UI links and child-run presentation, without Ray.

The end-to-end behaviour (a real `sweeper run` on a terminal and in a pipe, the dashboard during
a running sweep) is in test_progress_e2e.py.
"""

from __future__ import annotations

import io
import os
import re

import pytest

from sweeper.record import names
from sweeper.record import child_run, dashboard, links, tracking
from sweeper.views.progress import LiveView, PlainView, SweepMonitor
from sweeper.record.live import SweepState, duration

ANSI = re.compile(r"\x1b\[")


def two_trials_halfway() -> SweepState:
    state = SweepState("demo", total=4, mean_epochs=10)
    state.result("a", "bn_only-d8", 10, {"epoch": 4, "test_acc": 0.41, "images_per_s": 1234.0, "epoch_s": 2.0})
    state.result("b", "full-d8", 10, {"epoch": 6, "test_acc": 0.62, "images_per_s": 900.0, "epoch_s": 2.0})
    return state


def test_the_eta_counts_the_epochs_left_at_the_measured_pace_over_the_trials_running_at_once():
    state = two_trials_halfway()
    # running: 6 + 4 epochs left; 2 trials not started: 20 epochs; 2 s/epoch; 2 at once
    assert state.eta_s() == pytest.approx((6 + 4 + 20) * 2.0 / 2)
    state.end("b", "full-d8", "finished", 0.63)
    state.end("a", "bn_only-d8", "diverged", 0.1)
    assert (state.done, state.finished, state.diverged, state.best_trial) == (2, 1, 1, "full-d8")
    assert SweepState("x", 1).eta_s() is None  # nothing measured yet: unknown, not zero


def test_the_state_survives_the_trip_through_json():
    state = two_trials_halfway()
    back = SweepState.from_json(state.to_json())
    assert back.running["a"].epoch == 4 and back.running["b"].images_per_s == 900.0
    assert back.eta_s() == pytest.approx(state.eta_s())


def test_plain_output_has_one_line_per_ended_trial_and_periodic_summaries_without_escape_codes():
    out = io.StringIO()
    monitor = SweepMonitor(two_trials_halfway())
    monitor.view = PlainView(out, every_s=0)
    monitor.tick()
    monitor.ended("b", "full-d8", "finished", 0.631)
    monitor.close()
    text = out.getvalue()
    assert not ANSI.search(text)
    assert "[progress] demo: 0/4 done, 0 failed, 0 diverged, 2 running" in text
    assert "  bn_only-d8  epoch 4/10  test_acc 0.410  1,234 img/s" in text
    assert "[1/4] full-d8: finished  test_acc=0.631" in text
    last = [line for line in text.splitlines() if line.startswith("[progress]")][-1]
    assert last.startswith("[progress] demo: 1/4 done, 0 failed, 0 diverged, 1 running, best test_acc 0.631 (full-d8)")


def test_on_a_pseudo_terminal_the_view_redraws_in_place_and_keeps_ended_trials_above_it():
    master, slave = os.openpty()
    stream = os.fdopen(slave, "w", buffering=1)
    state = two_trials_halfway()
    view = LiveView(stream, state)
    state.end("b", "full-d8", "finished", 0.631)
    view.message("[1/4] full-d8: finished  test_acc=0.631")
    state.result("a", "bn_only-d8", 10, {"epoch": 5, "test_acc": 0.45, "epoch_s": 2.0})
    view.refresh(state, force=True)
    view.close(state)
    stream.flush()
    chunks = []
    os.set_blocking(master, False)
    while True:
        try:
            data = os.read(master, 65536)
        except (BlockingIOError, OSError):
            break
        if not data:
            break
        chunks.append(data)
    stream.close()
    os.close(master)
    text = b"".join(chunks).decode()
    assert "\x1b[1A" in text and "\x1b[2K" in text  # cursor up + erase line: redrawn in place
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "[1/4] full-d8: finished  test_acc=0.631" in plain
    assert "bn_only-d8  epoch 5/10  test_acc 0.450" in plain
    assert "1/4 done, 0 failed, 0 diverged, 1 running" in plain


def test_the_dashboard_writes_at_most_once_per_interval_unless_forced(tracking_uri, mlflow_client):
    exp = tracking.ensure_experiment(mlflow_client, "dash", tracking_uri)
    parent = mlflow_client.create_run(exp, run_name="dash").info.run_id
    board = dashboard.Dashboard(mlflow_client, parent, every_s=3600)
    state = two_trials_halfway()
    assert board.maybe_write(state) is True
    state.end("b", "full-d8", "finished", 0.631)
    assert board.maybe_write(state) is False  # within the interval: nothing sent
    run = mlflow_client.get_run(parent)
    assert run.data.metrics["trials_running"] == 2 and run.data.metrics["trials_finished"] == 0
    assert board.maybe_write(state, force=True) is True
    run = mlflow_client.get_run(parent)
    assert run.data.metrics["trials_finished"] == 1 and run.data.metrics["best_test_acc_so_far"] == 0.631
    assert run.data.tags[names.TAG_BEST_TRIAL] == "full-d8"
    assert "| 4 | 1 | 1 | 0 | 0 | 0.631 (`full-d8`) |" in run.data.tags[names.TAG_NOTE]
    assert dashboard.read_state(run).running["a"].epoch == 4
    assert board.writes == 2


def test_the_experiment_is_marked_as_a_training_experiment_once(tracking_uri, mlflow_client):
    exp = tracking.ensure_experiment(mlflow_client, "kind", tracking_uri)
    dashboard.mark_training_experiment(mlflow_client, exp)
    dashboard.mark_training_experiment(mlflow_client, exp)
    assert mlflow_client.get_experiment(exp).tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_report_note_keeps_the_summary_and_scorecard_and_drops_images():
    md = ("# Sweep report: s\n\nGenerated now.\n\nTrials in MLflow: **2**.\n\n## Test accuracy by depth (width 1)\n\n"
          "| mode | 8 |\n|---|---|\n| bn_only | 10.4 |\n\n![accuracy vs depth](accuracy_vs_depth.png)\n\n"
          "## Activation sparsity\n\nlots\n\n## Replication scorecard\n\n| paper | ours |\n|---|---|\n| 82 | 10 |\n")
    note = dashboard.report_note(md, "report")
    assert note.startswith("# Sweep report: s\nTrials in MLflow: **2**") and "Generated" not in note
    assert "| bn_only | 10.4 |" in note and "| 82 | 10 |" in note
    assert "![" not in note and "Activation sparsity" not in note
    assert note.endswith("this run's artifacts, `report/`._")


def test_links_point_at_the_training_runs_page_and_the_parent_run():
    assert links.lines("http://mlflow:5000/", "7", "abc") == [
        "MLflow UI:", "  trials: http://mlflow:5000/#/experiments/7/runs",
        "  sweep:  http://mlflow:5000/#/experiments/7/runs/abc"]
    local = links.lines("sqlite:////w/mlflow.db", "1", None)
    assert local[0].startswith("MLflow UI: mlflow ui --backend-store-uri sqlite:////w/mlflow.db")
    assert local[1] == "  trials: http://127.0.0.1:5000/#/experiments/1/runs"
    assert links.lines("sqlite:////w/mlflow.db", None) == []


def test_child_runs_get_short_names_for_varying_dotted_axes_and_a_one_line_description():
    from sweeper.core.trial import Trial

    params = {"mode": "bn_only", "seed": 0, "model.family": "cifar_resnet", "model.depth": 8, "model.width": 2,
              "train.lr": 0.1, "train.epochs": 3, "dataset.name": "digits", "train.optimizer.name": "sgd"}
    payload = Trial("k1", "bn_only-d8-w2-lr0.1-s0", {"c": 1}, params)
    shown = child_run.presented(payload, ["mode", "model.depth", "model.width", "train.lr",
                                          "train.optimizer.name", "seed"])
    assert shown.key == "k1" and shown.config == {"c": 1}
    assert {k: shown.params[k] for k in ("depth", "width", "lr", "optimizer")} == {
        "depth": 8, "width": 2, "lr": 0.1, "optimizer": "sgd"}
    assert shown.params["model.depth"] == 8  # the full config stays
    assert shown.tags[names.TAG_SHORT_PARAMS] == "depth,width,lr,optimizer"
    assert shown.tags[names.TAG_NOTE] == ("bn_only: only BatchNorm gamma/beta train; cifar_resnet-8 width x2 "
                                              "on digits, lr 0.1, 3 epochs, seed 0")


def test_durations_read_at_a_glance():
    assert [duration(s) for s in (None, 4.4, 185, 7440)] == ["?", "4s", "3m05s", "2h04m"]


def test_a_sweep_waiting_for_a_node_says_why_on_every_progress_line_until_a_trial_runs():
    state = SweepState("gpu_study", total=2)
    state.waiting = "resources.gpu: 1 per trial, but no node of this Ray cluster has a GPU (1 node: 2 CPU, 0 GPU); " \
                    "waiting for the autoscaler to add a node of group 'gpu' (8 CPU, 1 GPU each, up to 2)"
    out = io.StringIO()
    view = PlainView(out, every_s=0)
    view.refresh(state)
    view.refresh(state)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("[progress]")]
    assert len(lines) == 2 and all(line.endswith(f"; waiting: {state.waiting}") for line in lines)
    state.started_trial("k1", "lr=0.1", 1)  # a node came: the reason is no longer said
    out.truncate(0), out.seek(0)
    view.refresh(state)
    assert "waiting" not in out.getvalue()
