"""A trial's state in MLflow: sweeper.record.trial_record reads it and writes every end, on a real sqlite
store; and the sweep layer spells states and exit codes only through sweeper.core.states."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from mlflow.entities import Metric, RunTag

from sweeper.record import names
from sweeper.core import states
from sweeper.record import tracking, trial_record
from sweeper.record.trial_record import state_of
from test_tracking import FlakyClient

SWEEPER = Path(__file__).resolve().parents[1] / "sweeper"


def _child(client, uri, key="k"):
    experiment = tracking.ensure_experiment(client, "sweep-a", uri)
    parent = tracking.ensure_parent_run(client, experiment, "sweep-a", "x: 1\n", "h")
    return tracking.ensure_child_run(client, experiment, parent, key, f"trial-{key}", {})


def _state(client, run_id):
    return state_of(client.get_run(run_id))


def test_the_state_comes_from_the_status_tag_then_the_run_status(mlflow_client, tracking_uri):
    run_id = _child(mlflow_client, tracking_uri)
    assert state_of(None) == states.PENDING
    assert _state(mlflow_client, run_id) == states.RUNNING
    mlflow_client.set_terminated(run_id, "KILLED")
    assert _state(mlflow_client, run_id) == states.INTERRUPTED
    mlflow_client.set_terminated(run_id, "FAILED")  # a worker that died before the driver settled it
    assert _state(mlflow_client, run_id) == states.FAILED
    mlflow_client.set_tag(run_id, names.TAG_STATUS, "diverged")
    assert _state(mlflow_client, run_id) == states.DIVERGED


def test_a_trained_trial_ends_with_its_status_tag_and_a_finished_run(mlflow_client, tracking_uri):
    finished, diverged = _child(mlflow_client, tracking_uri, "a"), _child(mlflow_client, tracking_uri, "b")
    for run_id, status in ((finished, states.FINISHED), (diverged, states.DIVERGED)):
        assert trial_record.mark_trained(tracking.TrialLogger(mlflow_client, run_id), status, wait_s=0)
        run = mlflow_client.get_run(run_id)
        assert run.data.tags[names.TAG_STATUS] == status and run.info.status == "FINISHED"
        assert state_of(run) == status and state_of(run) in states.DONE


def test_a_trained_trial_whose_end_meets_an_outage_keeps_it_buffered_until_tracking_is_back(
        mlflow_client, tracking_uri):
    run_id = _child(mlflow_client, tracking_uri)
    flaky = FlakyClient(mlflow_client)
    logger = tracking.TrialLogger(flaky, run_id, retry_every_s=0.01)
    flaky.down = True
    assert trial_record.mark_trained(logger, states.FINISHED, wait_s=0.05) is False
    assert _state(mlflow_client, run_id) == states.RUNNING  # not done: the next run takes it up
    flaky.down = False
    assert logger.flush(wait_s=5)
    assert _state(mlflow_client, run_id) == states.FINISHED


def test_a_trial_stopped_early_gets_its_last_and_best_accuracy_as_final_metrics(mlflow_client, tracking_uri):
    run_id = _child(mlflow_client, tracking_uri)
    mlflow_client.log_batch(run_id, metrics=[Metric("test_acc", acc, 0, epoch)
                                             for epoch, acc in ((2, 0.5), (1, 0.2), (3, 0.4))])
    trial_record.mark_stopped_early(mlflow_client, run_id)
    run = mlflow_client.get_run(run_id)
    assert run.data.metrics["final_test_acc"] == 0.4 and run.data.metrics["best_test_acc"] == 0.5
    assert [m.step for m in mlflow_client.get_metric_history(run_id, "final_test_acc")] == [names.FINAL_STEP]
    # the status tag says it in one word; the early-stopped tag stays for earlier versions' readers
    assert run.data.tags[names.TAG_STATUS] == "stopped_early" and run.info.status == "FINISHED"
    assert run.data.tags[names.TAG_EARLY_STOPPED] == "true"
    assert state_of(run) == states.STOPPED_EARLY == "stopped_early" and state_of(run) in states.DONE


@pytest.mark.parametrize("tags", [{names.TAG_STATUS: "finished", names.TAG_EARLY_STOPPED: "true"},
                                  {names.TAG_STATUS: "stopped early"}], ids=["finished + tag", "with a space"])
def test_stops_written_by_earlier_versions_still_read_as_stopped_early(mlflow_client, tracking_uri, tags):
    run_id = _child(mlflow_client, tracking_uri)
    mlflow_client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    assert state_of(mlflow_client.get_run(run_id)) == states.STOPPED_EARLY


def test_failed_for_good_and_interrupted_trials(mlflow_client, tracking_uri):
    failed, stopped = _child(mlflow_client, tracking_uri, "a"), _child(mlflow_client, tracking_uri, "b")
    trial_record.mark_failed(mlflow_client, failed)
    trial_record.mark_interrupted(mlflow_client, stopped)
    run = mlflow_client.get_run(failed)
    assert run.data.tags[names.TAG_STATUS] == states.FAILED and run.info.status == "FAILED"
    assert state_of(run) == states.FAILED
    run = mlflow_client.get_run(stopped)
    assert names.TAG_STATUS not in run.data.tags and run.info.status == "KILLED"
    assert state_of(run) == states.INTERRUPTED and state_of(run) not in states.DONE  # it resumes


def test_the_last_error_is_the_exception_in_one_short_line():
    tags = trial_record.error_tags(ValueError("x" * 1000))
    assert list(tags) == [names.TAG_LAST_ERROR]
    assert tags[names.TAG_LAST_ERROR].startswith("ValueError: xxx") and len(tags[names.TAG_LAST_ERROR]) == 500


# --- one vocabulary ---------------------------------------------------------------------------


def _modules():
    return [p for p in sorted(SWEEPER.rglob("*.py")) if p.name != "states.py"]


def _docstrings(tree) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, kinds) and node.body and isinstance(node.body[0], ast.Expr)}


def _field_names(tree) -> set[int]:
    """``data["running"]``, ``data.get("running")``: a key of a mapping (SweepState's field), not a state."""
    keys = {id(node.slice) for node in ast.walk(tree) if isinstance(node, ast.Subscript)}
    return keys | {id(node.args[0]) for node in ast.walk(tree) if isinstance(node, ast.Call) and node.args
                   and isinstance(node.func, ast.Attribute) and node.func.attr == "get"}


def test_no_sweep_module_spells_a_trial_state_itself():
    found = []
    for path in _modules():
        tree = ast.parse(path.read_text(), str(path))
        skip = _docstrings(tree) | _field_names(tree)
        found += [f"{path.relative_to(SWEEPER.parent)}:{node.lineno} {node.value!r}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and node.value in states.STATES and id(node) not in skip]
    assert found == []  # import the state from sweeper.core.states


def test_exit_codes_are_defined_once():
    found = [f"{path.relative_to(SWEEPER.parent)}:{node.lineno}" for path in _modules()
             for node in ast.walk(ast.parse(path.read_text(), str(path)))
             if isinstance(node, (ast.Assign, ast.AnnAssign))
             and any(isinstance(n, ast.Name) and n.id.startswith("EXIT_")
                     for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) for n in ast.walk(t))]
    assert found == []  # import them from sweeper.core.states


# --- the driver's ends survive a store that fails at the moment of the stop ----------------------


class SetTagFails:
    """An MlflowClient whose set_tag fails while ``down`` is set (the store hiccups at the stop)."""

    def __init__(self, client):
        self.client, self.down, self.failures = client, False, 0

    def set_tag(self, *args, **kwargs):
        if self.down:
            self.failures += 1
            raise ConnectionError("tracking server went away")
        return self.client.set_tag(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


def _experiment(client):
    return client.get_experiment_by_name("sweep-a").experiment_id


def test_a_stop_is_written_with_retries_and_leaves_no_pending_end(mlflow_client, tracking_uri, tmp_path):
    run_id = _child(mlflow_client, tracking_uri)
    pending = trial_record.PendingEnds(str(tmp_path / "pending-ends"))
    state, run = trial_record.settle_driver_end(mlflow_client, _experiment(mlflow_client), "k",
                                                trial_record.COMPLETED, pending, wait_s=0)
    assert (state, run.info.run_id) == (states.STOPPED_EARLY, run_id)
    assert _state(mlflow_client, run_id) == states.STOPPED_EARLY
    assert pending.pending() == {}


def test_a_trial_its_worker_recorded_as_trained_is_left_as_it_is(mlflow_client, tracking_uri, tmp_path):
    run_id = _child(mlflow_client, tracking_uri)
    assert trial_record.mark_trained(tracking.TrialLogger(mlflow_client, run_id), states.FINISHED, wait_s=0)
    pending = trial_record.PendingEnds(str(tmp_path / "pending-ends"))
    state, _ = trial_record.settle_driver_end(mlflow_client, _experiment(mlflow_client), "k",
                                              trial_record.COMPLETED, pending, wait_s=0)
    assert state == states.FINISHED and names.TAG_EARLY_STOPPED not in mlflow_client.get_run(run_id).data.tags
    assert pending.pending() == {}


def test_a_stop_the_store_refused_is_kept_logged_and_written_by_the_next_run(mlflow_client, tracking_uri, tmp_path,
                                                                               caplog):
    run_id = _child(mlflow_client, tracking_uri)
    flaky = SetTagFails(mlflow_client)
    flaky.down = True
    pending = trial_record.PendingEnds(str(tmp_path / "pending-ends"))
    with caplog.at_level("WARNING", logger="sweeper"):
        state, _ = trial_record.settle_driver_end(flaky, _experiment(mlflow_client), "k", trial_record.COMPLETED,
                                                  pending, wait_s=0.05)
    assert state == states.STOPPED_EARLY and flaky.failures >= 2  # retried
    assert _state(mlflow_client, run_id) == states.RUNNING  # what the exit path would mark interrupted
    assert pending.pending() == {"k": trial_record.COMPLETED}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"could not record run {run_id} as stopped_early" in w and "ConnectionError" in w for w in warnings)
    assert any("the next `sweeper run` records it before planning" in w for w in warnings)

    mlflow_client.set_terminated(run_id, "KILLED")  # the driver's exit path: interrupted
    by_key = {"k": mlflow_client.get_run(run_id)}
    # a dry run plans with it and writes nothing
    assert trial_record.settle_pending(mlflow_client, by_key, pending, write=False) == ({}, {"k": states.STOPPED_EARLY})
    assert _state(mlflow_client, run_id) == states.INTERRUPTED
    # the store still down at the next run's start: planned as stopped, still kept
    assert trial_record.settle_pending(flaky, by_key, pending, wait_s=0)[1] == {"k": states.STOPPED_EARLY}
    assert pending.pending() == {"k": trial_record.COMPLETED}
    flaky.down = False
    fresh, unwritten = trial_record.settle_pending(flaky, by_key, pending, wait_s=0)
    assert unwritten == {} and state_of(fresh[run_id]) == states.STOPPED_EARLY
    assert _state(mlflow_client, run_id) == states.STOPPED_EARLY and pending.pending() == {}


def test_a_torn_pending_end_is_ignored_with_a_warning(tmp_path, caplog):
    folder = tmp_path / "pending-ends"
    folder.mkdir()
    (folder / "abc.json").write_text('{"key": "abc", "ray_')
    with caplog.at_level("WARNING", logger="sweeper"):
        assert trial_record.PendingEnds(str(folder)).pending() == {}
    assert any("ignoring unreadable" in r.getMessage() for r in caplog.records)


def test_the_drivers_interrupted_and_failed_marks_are_retried_through_a_hiccup(mlflow_client, tracking_uri):
    flaky = SetTagFails(mlflow_client)
    interrupted, failed = _child(mlflow_client, tracking_uri, "a"), _child(mlflow_client, tracking_uri, "b")
    assert trial_record.write_end_retried(mlflow_client, interrupted, states.INTERRUPTED, wait_s=0)
    assert _state(mlflow_client, interrupted) == states.INTERRUPTED
    flaky.down = True
    assert not trial_record.write_end_retried(flaky, failed, states.FAILED, wait_s=0.05, every_s=0.01)
    assert flaky.failures >= 2 and _state(mlflow_client, failed) == states.RUNNING
