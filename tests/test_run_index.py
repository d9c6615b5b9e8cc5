"""The run index: a reader gets exactly the child runs MLflow holds, reading only what changed.

A real sqlite MLflow store. Every test compares what ``run_index.child_runs`` returns with the
index against a plain listing of every run (the truth), after the kind of change a sweep makes
between two index writes, and counts how many runs the server had to send.
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag

from sweeper.record import names
from sweeper.record import run_index


def _sweep(client, root: Path, trials: int = 6):
    """A parent run and ``trials`` finished child runs with params, metrics and a status tag;
    artifacts under ``root`` (MLflow's default is ./mlruns in the working folder)."""
    experiment_id = client.create_experiment("idx", artifact_location=(root / "artifacts").as_uri())
    parent = client.create_run(experiment_id, run_name="idx", tags={names.TAG_ROLE: "sweep"})
    ids = [_child(client, experiment_id, parent.info.run_id, i) for i in range(trials)]
    for run_id in ids:
        _finish(client, run_id)
    return experiment_id, parent.info.run_id, ids


def _child(client, experiment_id: str, parent_id: str, i: int) -> str:
    run = client.create_run(experiment_id, run_name=f"t{i}", tags={
        names.TAG_PARENT: parent_id, names.TAG_ROLE: "trial", names.TAG_TRIAL_KEY: f"key{i}"})
    now = int(time.time() * 1000)
    client.log_batch(run.info.run_id, params=[Param("model.depth", str(8 + i)), Param("mode", "bn_only")],
                     metrics=[Metric("test_acc", 0.1 * e, now, e) for e in range(1, 4)])
    return run.info.run_id


def _finish(client, run_id: str) -> None:
    client.log_batch(run_id, metrics=[Metric("final_test_acc", 0.3, int(time.time() * 1000), 0)],
                     tags=[RunTag(names.TAG_STATUS, "finished")])
    client.set_terminated(run_id, "FINISHED")


def _as_compared(runs) -> dict:
    return {r.info.run_id: r.to_json() for r in runs}


def _truth(client, experiment_id: str) -> dict:
    return _as_compared(run_index.search(client, experiment_id, f"tags.`{names.TAG_ROLE}` = 'trial'"))


class CountingClient:
    """The real client, counting the runs each search sends back."""

    def __init__(self, client):
        self.client, self.runs_sent = client, 0

    def search_runs(self, *args, **kwargs):
        page = self.client.search_runs(*args, **kwargs)
        self.runs_sent += len(page)
        return page

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_without_an_index_every_run_is_listed(mlflow_client, tmp_path: Path):
    experiment_id, _, ids = _sweep(mlflow_client, tmp_path)
    counting = CountingClient(mlflow_client)
    runs = run_index.child_runs(counting, experiment_id)
    assert [r.info.run_id for r in runs] == ids  # oldest first
    assert _as_compared(runs) == _truth(mlflow_client, experiment_id)
    assert counting.runs_sent == len(ids) + 1  # the children and the parent


def test_with_an_index_finished_runs_come_from_it_and_only_changes_are_searched(mlflow_client, tmp_path: Path,
                                                                                 monkeypatch):
    experiment_id, parent_id, ids = _sweep(mlflow_client, tmp_path)
    running = _child(mlflow_client, experiment_id, parent_id, 99)  # running when the index is written
    assert run_index.write_index(mlflow_client, experiment_id, parent_id) == len(ids)
    # Later than the slack: the runs' start_time is well before the index's as_of.
    monkeypatch.setattr(run_index, "slack_ms", lambda: -60_000)
    counting = CountingClient(mlflow_client)
    runs = run_index.child_runs(counting, experiment_id)
    assert _as_compared(runs) == _truth(mlflow_client, experiment_id)
    assert counting.runs_sent == 2  # the parent and the one running trial: nothing finished is re-sent
    assert {r.info.run_id: r.info.status for r in runs}[running] == "RUNNING"


def test_changes_after_the_index_are_seen(mlflow_client, tmp_path: Path, monkeypatch):
    experiment_id, parent_id, ids = _sweep(mlflow_client, tmp_path)
    running = _child(mlflow_client, experiment_id, parent_id, 50)
    restored = ids[1]
    mlflow_client.delete_run(restored)
    run_index.write_index(mlflow_client, experiment_id, parent_id)
    monkeypatch.setattr(run_index, "slack_ms", lambda: 0)
    time.sleep(0.01)
    _finish(mlflow_client, running)  # ended after the index: its final metrics and tag are read
    new = _child(mlflow_client, experiment_id, parent_id, 51)  # started after the index
    mlflow_client.set_terminated(new, "KILLED")
    mlflow_client.delete_run(ids[0])  # in the index, deleted since
    mlflow_client.restore_run(restored)  # deleted at the index, restored since
    runs = {r.info.run_id: r for r in run_index.child_runs(mlflow_client, experiment_id)}
    assert runs.keys() == _truth(mlflow_client, experiment_id).keys()
    assert _as_compared(runs.values()) == _truth(mlflow_client, experiment_id)
    assert ids[0] not in runs and restored in runs and new in runs
    assert runs[running].data.tags[names.TAG_STATUS] == "finished"
    assert runs[running].data.metrics["final_test_acc"] == 0.3


def test_a_tag_the_driver_changes_on_finished_runs_is_in_the_rewritten_index(mlflow_client, tmp_path: Path,
                                                                             monkeypatch):
    experiment_id, parent_id, ids = _sweep(mlflow_client, tmp_path)
    run_index.write_index(mlflow_client, experiment_id, parent_id)
    monkeypatch.setattr(run_index, "slack_ms", lambda: -60_000)
    read_at = run_index.now_ms()
    runs = run_index.child_runs(mlflow_client, experiment_id)
    mlflow_client.set_tag(ids[2], "sweeper.superseded", "abc")  # what sweeper.record.versions does
    runs[2].data.tags["sweeper.superseded"] = "abc"
    run_index.write_index(mlflow_client, experiment_id, parent_id, runs=runs, read_at_ms=read_at)
    assert run_index.load_index(mlflow_client, parent_id).as_of == read_at
    assert _as_compared(run_index.child_runs(mlflow_client, experiment_id)) == _truth(mlflow_client, experiment_id)


def test_an_index_cut_short_is_ignored(mlflow_client, tmp_path: Path):
    experiment_id, parent_id, ids = _sweep(mlflow_client, tmp_path)
    run_index.write_index(mlflow_client, experiment_id, parent_id)
    _finish(mlflow_client, _child(mlflow_client, experiment_id, parent_id, 7))
    whole = gzip.compress(b'{"format": 2, "as_of": 1, "deleted": [], "open": [], "runs": [')
    cut = tmp_path / names.ARTIFACT_INDEX_NAME
    cut.write_bytes(whole[: len(whole) // 2])
    mlflow_client.log_artifact(parent_id, str(cut), names.ARTIFACT_INDEX_DIR)
    assert run_index.load_index(mlflow_client, parent_id) is None
    assert _as_compared(run_index.child_runs(mlflow_client, experiment_id)) == _truth(mlflow_client, experiment_id)


def test_an_index_the_artifact_store_served_decoded_and_padded_is_read(mlflow_client, tmp_path: Path):
    """S3 behind ``mlflow server`` serves runs.json.gz with Content-Encoding: gzip; the client
    decodes it on the way, and MLflow's presigned download had sized the file to the object's
    compressed length first: plain JSON followed by NUL bytes."""
    experiment_id, parent_id, ids = _sweep(mlflow_client, tmp_path)
    run_index.write_index(mlflow_client, experiment_id, parent_id)
    index = run_index.load_index(mlflow_client, parent_id)
    (tmp_path / "stored").mkdir()
    compressed = Path(mlflow_client.download_artifacts(
        parent_id, f"{names.ARTIFACT_INDEX_DIR}/{names.ARTIFACT_INDEX_NAME}", str(tmp_path / "stored"))).read_bytes()
    decoded = gzip.decompress(compressed)
    as_served = tmp_path / names.ARTIFACT_INDEX_NAME
    as_served.write_bytes(decoded + b"\x00" * 13)
    mlflow_client.log_artifact(parent_id, str(as_served), names.ARTIFACT_INDEX_DIR)
    again = run_index.load_index(mlflow_client, parent_id)
    assert again is not None and (again.as_of, again.runs.keys(), again.open) == (index.as_of, index.runs.keys(), index.open)


def test_indexed_runs_read_like_mlflow_runs(mlflow_client, tmp_path: Path):
    experiment_id, parent_id, ids = _sweep(mlflow_client, tmp_path, trials=1)
    real = mlflow_client.get_run(ids[0])
    indexed = run_index.IndexedRun.from_json(run_index.IndexedRun.of(real).to_json())
    assert indexed.info.run_id == real.info.run_id and indexed.info.artifact_uri == real.info.artifact_uri
    assert indexed.data.params == real.data.params and indexed.data.tags == real.data.tags
    assert indexed.data.metrics == real.data.metrics
    assert {(m.key, m.step) for m in indexed.data._metric_objs} == {(m.key, m.step) for m in real.data._metric_objs}


def test_runs_that_ended_just_before_the_index_are_not_sent_again(mlflow_client, tmp_path: Path, monkeypatch):
    """A sweep indexed right after its trials ended reads back like one indexed long after: the
    finished runs come from the index whenever they ended; only the runs started within the clock
    slack are searched again."""
    experiment_id, parent_id, ids = _sweep(mlflow_client, tmp_path)
    monkeypatch.setattr(run_index, "slack_ms", lambda: 0)  # every run started before the index's as_of
    time.sleep(0.01)
    run_index.write_index(mlflow_client, experiment_id, parent_id)
    counting = CountingClient(mlflow_client)
    runs = run_index.child_runs(counting, experiment_id)
    assert _as_compared(runs) == _truth(mlflow_client, experiment_id)
    assert counting.runs_sent == 1  # the parent only, though every trial ended milliseconds ago


def test_a_run_open_at_the_index_is_read_again_whatever_its_clock_says(mlflow_client, tmp_path: Path, monkeypatch):
    """A worker whose clock runs behind stamps end_time before the index's as_of; the run was open
    then, so it is read again by id and its finished state is seen."""
    experiment_id, parent_id, ids = _sweep(mlflow_client, tmp_path)
    late = _child(mlflow_client, experiment_id, parent_id, 60)
    monkeypatch.setattr(run_index, "slack_ms", lambda: -60_000)
    run_index.write_index(mlflow_client, experiment_id, parent_id)
    assert run_index.load_index(mlflow_client, parent_id).open == {late}
    mlflow_client.log_batch(late, tags=[RunTag(names.TAG_STATUS, "finished")])
    mlflow_client.set_terminated(late, "FINISHED", end_time=run_index.now_ms() - 3_600_000)  # an hour behind
    counting = CountingClient(mlflow_client)
    runs = {r.info.run_id: r for r in run_index.child_runs(counting, experiment_id)}
    assert _as_compared(runs.values()) == _truth(mlflow_client, experiment_id)
    assert runs[late].info.status == "FINISHED" and runs[late].data.tags[names.TAG_STATUS] == "finished"
    assert counting.runs_sent == 2  # the parent and the run that was open


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_running_driver_rewrites_the_index_once_a_period_and_only_while_it_holds_the_sweep(
        mlflow_client, tmp_path: Path):
    from sweeper.driver.index_refresh import IndexRefresh

    experiment_id, parent_id, ids = _sweep(mlflow_client, tmp_path)
    clock, holds = _Clock(), [True]
    refresh = IndexRefresh(mlflow_client, experiment_id, parent_id, holds=lambda: holds[0], every_s=600, clock=clock)
    clock.now = 599
    assert not refresh.maybe_write() and run_index.load_index(mlflow_client, parent_id) is None
    clock.now = 600
    assert refresh.maybe_write()
    assert run_index.load_index(mlflow_client, parent_id).runs.keys() == set(ids)
    _finish(mlflow_client, late := _child(mlflow_client, experiment_id, parent_id, 9))
    clock.now, holds[0] = 1300, False  # the lease went to another driver: its index stands
    assert not refresh.maybe_write()
    assert late not in run_index.load_index(mlflow_client, parent_id).runs
    clock.now, holds[0] = 2000, True
    assert refresh.maybe_write() and late in run_index.load_index(mlflow_client, parent_id).runs


def test_an_index_rewrite_the_store_refuses_is_logged_and_leaves_the_sweep_running(mlflow_client, tmp_path: Path,
                                                                                  caplog):
    from sweeper.driver.index_refresh import IndexRefresh

    experiment_id, parent_id, ids = _sweep(mlflow_client, tmp_path)
    clock = _Clock()
    refresh = IndexRefresh(mlflow_client, experiment_id, "no-such-parent-run", every_s=10, clock=clock)
    clock.now = 10
    assert refresh.maybe_write() is False
    assert "could not rewrite the run index on parent run no-such-parent-run" in caplog.text
