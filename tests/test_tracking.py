"""MLflow layout and logging behaviour of sweeper.record.tracking (and the store it opens,
sweeper.record.store), on a real sqlite store."""

from __future__ import annotations

import socket
import time

import pytest

from sweeper.record import names
from sweeper.record import run_index, tracking
from sweeper.core.errors import SweepError


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _experiment(client, uri, name="sweep-a"):
    return tracking.ensure_experiment(client, name, uri)


# --- tracking URI --------------------------------------------------------------------------


def test_tracking_uri_order_flag_env_spec_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_tracking_uri(None, None, tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking.resolve_tracking_uri(None, "http://spec:5000", tmp_path) == "http://spec:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert tracking.resolve_tracking_uri(None, "http://spec:5000", tmp_path) == "http://env:5000"
    assert tracking.resolve_tracking_uri("http://flag:5000", "http://spec:5000", tmp_path) == "http://flag:5000"


def test_relative_sqlite_uri_is_made_absolute_for_workers(tmp_path):
    assert tracking.absolute_uri("sqlite:///runs/m.db", tmp_path) == f"sqlite:///{tmp_path / 'runs' / 'm.db'}"
    assert tracking.absolute_uri("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"


@pytest.mark.parametrize("given, kind, local, server", [
    ("sqlite:///runs/m.db", "sqlite", True, False),
    ("mlruns", "file", True, False),
    ("file:///abs/mlruns", "file", True, False),
    ("http://mlflow:5000/", "http", False, True),
    ("https://mlflow.example.com", "https", False, True),
    ("postgresql+psycopg2://u@db/mlflow", "postgresql", False, False),
    ("databricks", "file", True, False),  # no scheme: MLflow reads it as a folder, as before
    ("databricks://profile", "databricks", False, False),
])
def test_a_store_is_read_once_into_its_kind_and_where_it_lives(tmp_path, given, kind, local, server):
    import pickle

    store = tracking.TrackingStore.parse(given, tmp_path)
    assert (store.kind, store.is_local, store.is_server, store.given) == (kind, local, server, given)
    assert pickle.loads(pickle.dumps(store)) == store and str(store) == store.uri
    assert tracking.TrackingStore.parse(store) is store  # a store is never read again
    if kind == "sqlite":
        assert store.sqlite_db == tmp_path / "runs" / "m.db" == store.local_path
        assert store.artifact_location == (tmp_path / "runs" / "mlartifacts").as_uri()
    if given == "mlruns":
        assert store.uri == str(tmp_path / "mlruns") and store.local_path == tmp_path / "mlruns"
    assert store.ui_base == ("http://mlflow:5000" if given.startswith("http://") else
                             given if server else None)


def test_the_store_names_where_its_uri_came_from(tmp_path, monkeypatch):
    from sweeper.record.store import origin_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.TrackingStore.resolve(None, "http://spec:5000", tmp_path).uri == "http://spec:5000"
    assert origin_uri(None, None) == ("sqlite:///mlflow.db", "tracking (the default, with no --tracking-uri)")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert origin_uri(None, "x") == ("http://env:5000", "MLFLOW_TRACKING_URI")
    assert origin_uri("y", "x") == ("y", "--tracking-uri")


def test_unreachable_tracking_server_is_one_line_sweep_error_and_fast():
    uri = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(SweepError) as err:
        tracking.connect(uri)
    assert time.monotonic() - started < 30
    message = str(err.value)
    assert "\n" not in message and uri in message and "not reachable" in message


# --- parent and child runs -----------------------------------------------------------------


def test_parent_run_is_found_again_not_duplicated_and_follows_the_spec_hash(mlflow_client, tracking_uri):
    exp = _experiment(mlflow_client, tracking_uri)
    first = tracking.ensure_parent_run(mlflow_client, exp, "sweep-a", "name: sweep-a\n", "hash1")
    again = tracking.ensure_parent_run(mlflow_client, exp, "sweep-a", "name: sweep-a\n", "hash1")
    changed = tracking.ensure_parent_run(mlflow_client, exp, "sweep-a", "name: sweep-a\n# v2\n", "hash2")
    assert first == again == changed
    runs = mlflow_client.search_runs([exp])
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags[names.TAG_ROLE] == "sweep"
    assert run.data.tags[names.TAG_SPEC_HASH] == "hash2"
    paths = sorted(a.path for a in mlflow_client.list_artifacts(first, "spec"))
    assert paths == ["spec/hash1.yaml", "spec/hash2.yaml"]


def test_child_run_is_found_by_trial_key_with_parent_params_and_role(mlflow_client, tracking_uri):
    exp = _experiment(mlflow_client, tracking_uri)
    parent = tracking.ensure_parent_run(mlflow_client, exp, "sweep-a", "x: 1\n", "h")
    params = {"mode": "bn_only", "model.depth": 8, "train.lr": 0.1}
    a = tracking.ensure_child_run(mlflow_client, exp, parent, "key-1", "bn_only-d8", params)
    b = tracking.ensure_child_run(mlflow_client, exp, parent, "key-1", "bn_only-d8", params)
    other = tracking.ensure_child_run(mlflow_client, exp, parent, "key-2", "full-d8", params)
    assert a == b != other
    children = run_index.trial_runs(mlflow_client, exp)
    assert set(children) == {"key-1", "key-2"}
    run = mlflow_client.get_run(a)
    assert run.data.tags[names.TAG_PARENT] == parent
    assert run.data.tags[names.TAG_ROLE] == "trial"
    assert run.info.run_name == "bn_only-d8"
    assert run.data.params == {"mode": "bn_only", "model.depth": "8", "train.lr": "0.1"}


def test_every_run_is_found_page_by_page(mlflow_client, tracking_uri):
    exp = _experiment(mlflow_client, tracking_uri)
    parent = tracking.ensure_parent_run(mlflow_client, exp, "sweep-a", "x: 1\n", "h")
    made = [tracking.ensure_child_run(mlflow_client, exp, parent, f"k{i}", f"trial-{i}", {}) for i in range(5)]
    found = tracking.search_all_runs(mlflow_client, exp, names.TRIAL_RUNS,
                                     order_by=["attributes.start_time ASC"], page_size=2)
    assert [r.info.run_id for r in found] == made  # three pages, in order, the parent left out
    assert [r.info.run_id for r in run_index.trial_runs(mlflow_client, exp).values()] == made


# --- idempotent, buffered logging ----------------------------------------------------------


def _child(client, uri):
    exp = _experiment(client, uri)
    parent = tracking.ensure_parent_run(client, exp, "sweep-a", "x: 1\n", "h")
    return tracking.ensure_child_run(client, exp, parent, "k", "trial-k", {})


def _steps(client, run_id, key):
    return [m.step for m in client.get_metric_history(run_id, key)]


def test_a_restarted_trial_never_logs_a_metric_step_twice(mlflow_client, tracking_uri):
    run_id = _child(mlflow_client, tracking_uri)
    first = tracking.TrialLogger(mlflow_client, run_id)
    for epoch in (1, 2, 3):
        assert first.log_metrics({"test_acc": 0.1 * epoch, "train_loss": 1.0 / epoch}, step=epoch)
    # the trial crashed after epoch 3 and its last checkpoint was epoch 2: epochs 3.. run again
    second = tracking.TrialLogger(mlflow_client, run_id)
    for epoch in (3, 4):
        assert second.log_metrics({"test_acc": 0.5, "train_loss": 0.2}, step=epoch)
    assert sorted(_steps(mlflow_client, run_id, "test_acc")) == [1, 2, 3, 4]
    assert sorted(_steps(mlflow_client, run_id, "train_loss")) == [1, 2, 3, 4]
    history = {m.step: m.value for m in mlflow_client.get_metric_history(run_id, "test_acc")}
    assert history[3] == pytest.approx(0.3)  # the first value of a step stays


def test_an_epoch_sent_late_by_a_driver_that_lost_the_sweep_is_not_a_second_row(mlflow_client, tracking_uri):
    """Driver A's trial passed its fence for epoch 5 and was frozen before the send; driver B resumed
    from epoch 5's checkpoint and logged its history; A wakes and sends (seen in CI). The same
    values, step and time (the record's ``ended_at``) are one row in MLflow's SQL store."""
    from types import SimpleNamespace

    from sweeper.driver.tracked import TrackedTrial

    run_id = _child(mlflow_client, tracking_uri)
    record = {"epoch": 5, "test_acc": 0.5, "train_loss": 0.7, "ended_at": 1796297159.798}
    a = tracking.TrialLogger(mlflow_client, run_id)  # opened before B, so it does not know B's rows
    b = tracking.TrialLogger(mlflow_client, run_id)
    TrackedTrial.log_epoch(SimpleNamespace(logger=b), record)  # B: the checkpoint's history, logged before it resumes
    time.sleep(0.01)  # a logger that stamped "now" would send another timestamp here
    TrackedTrial.log_epoch(SimpleNamespace(logger=a), record)  # A: the late send
    for key in ("test_acc", "train_loss", names.METRIC_EPOCH):
        history = mlflow_client.get_metric_history(run_id, key)
        assert [(m.step, m.timestamp) for m in history] == [(5, 1796297159798)], key


class FlakyClient:
    """An MlflowClient whose log_batch fails while ``down`` is set; with ``lose_replies`` the
    write lands but the caller sees an error (a reply lost in a network outage)."""

    def __init__(self, client):
        self.client = client
        self.down = False
        self.lose_replies = False
        self.failures = 0

    def log_batch(self, run_id, **kw):
        if self.down:
            self.failures += 1
            if self.lose_replies:
                self.client.log_batch(run_id, **kw)
            raise ConnectionError("tracking server went away")
        return self.client.log_batch(run_id, **kw)

    def __getattr__(self, name):
        return getattr(self.client, name)


@pytest.mark.parametrize("lose_replies", [False, True])
def test_metrics_missed_during_an_outage_are_written_once_it_is_back(mlflow_client, tracking_uri, lose_replies):
    run_id = _child(mlflow_client, tracking_uri)
    flaky = FlakyClient(mlflow_client)
    logger = tracking.TrialLogger(flaky, run_id, retry_every_s=0.01)
    assert logger.log_metrics({"test_acc": 0.1}, step=1)
    flaky.down, flaky.lose_replies = True, lose_replies
    assert logger.log_metrics({"test_acc": 0.2}, step=2) is False  # training goes on
    assert logger.set_tags({"status": "finished"}) is False
    assert logger.log_metrics({"test_acc": 0.3}, step=3) is False
    assert logger.flush(wait_s=0.05) is False  # a bounded wait, then give up for now
    assert flaky.failures >= 3 and logger.pending > 0
    flaky.down = False
    assert logger.log_metrics({"test_acc": 0.4}, step=4)
    assert logger.pending == 0
    assert sorted(_steps(mlflow_client, run_id, "test_acc")) == [1, 2, 3, 4]
    assert mlflow_client.get_run(run_id).data.tags["status"] == "finished"


def test_flush_waits_for_a_server_that_comes_back(mlflow_client, tracking_uri):
    import threading

    run_id = _child(mlflow_client, tracking_uri)
    flaky = FlakyClient(mlflow_client)
    logger = tracking.TrialLogger(flaky, run_id, retry_every_s=0.05)
    flaky.down = True
    logger.log_metrics({"best_test_acc": 0.9}, step=0)
    threading.Timer(0.3, lambda: setattr(flaky, "down", False)).start()
    assert logger.flush(wait_s=20)
    assert _steps(mlflow_client, run_id, "best_test_acc") == [0]


# --- why we do not use Ray's stock MLflowLoggerCallback --------------------------------------


class _FakeTrial:
    """What MLflowLoggerCallback reads from a Ray trial: str(), config, hashability."""

    def __init__(self, name, config):
        self.name, self.config = name, config

    def __str__(self):
        return self.name

    def __hash__(self):
        return hash(self.name)

    def __eq__(self, other):
        return isinstance(other, _FakeTrial) and other.name == self.name


def test_rays_stock_mlflow_callback_makes_a_second_flat_run_when_the_driver_restarts(mlflow_client, tracking_uri):
    """A known trap of Ray Tune with MLflow, pinned on the installed Ray: the stock callback keeps trial ->
    run ids in driver memory, so a new driver (a resumed sweep) opens a new run for the same
    trial, and its runs have no parent. sweeper.record.tracking finds runs by tag instead (above)."""
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    trial = _FakeTrial("train_fn_00000", {"lr": 0.1})
    for _driver in range(2):  # the first driver, then the one that resumes the sweep
        callback = MLflowLoggerCallback(tracking_uri=tracking_uri, experiment_name="stock")
        callback.setup()
        callback.log_trial_start(trial)
        callback.log_trial_end(trial)
    exp = mlflow_client.get_experiment_by_name("stock").experiment_id
    runs = mlflow_client.search_runs([exp])
    assert len(runs) == 2  # one trial, two runs
    assert all("mlflow.parentRunId" not in r.data.tags for r in runs)
