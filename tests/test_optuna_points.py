"""What a resumed Optuna search is given back (sweeper.plan.planning), read from a real sqlite
MLflow store: the finished samples' values with the metric each reached, and, apart, the
unfinished ones to resume by key."""

from __future__ import annotations

import json

from mlflow.entities import Metric, RunTag

from sweeper.plan.planning import finished_samples, origin_tags, unfinished_samples
from sweeper.record import names, tracking
from sweeper.spec import parse_spec

SPEC = """\
name: tpe
dataset: {name: digits}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 3, lr: 0.1}
search: {algorithm: optuna, num_samples: 4, space: {lr: {loguniform: [0.01, 1.0]}}}
"""


def test_finished_samples_come_back_with_their_metric_and_unfinished_ones_apart(mlflow_client, tracking_uri):
    spec = parse_spec(SPEC, "tpe.yaml")
    (grid,) = spec.trials()
    experiment = tracking.ensure_experiment(mlflow_client, "tpe", tracking_uri)
    parent = tracking.ensure_parent_run(mlflow_client, experiment, "tpe", SPEC, "h")

    def sample(key: str, lr: float, status: str | None, accs: list[float], grid_key: str = grid.key) -> None:
        run_id = tracking.ensure_child_run(mlflow_client, experiment, parent, key, f"t-{key}", {},
                                           origin_tags(grid_key, {"train.lr": lr}))
        mlflow_client.log_batch(run_id, metrics=[Metric("test_acc", a, 0, e) for e, a in enumerate(accs, 1)],
                                tags=[RunTag(names.TAG_STATUS, status)] if status else [])

    sample("a", 0.05, "finished", [0.4, 0.7, 0.8])
    sample("b", 0.5, "stopped_early", [0.3])  # ASHA stopped it: its last value is what Ray reported
    sample("c", 0.2, None, [0.5])  # still running: resumed by key, not a result
    sample("d", 0.9, "diverged", [float("nan")])  # no finite value: left out
    sample("e", 0.1, "finished", [0.9], grid_key="not-this-spec")  # another spec's grid point

    points, rewards = finished_samples(mlflow_client, experiment, spec)
    assert sorted(zip(rewards, [p["sampled"]["train.lr"] for p in points])) == [(0.3, 0.5), (0.8, 0.05)]
    assert all(p["grid"] == grid.key for p in points)
    base = {grid.key: {}}
    assert unfinished_samples(mlflow_client, experiment, base) == [
        {"grid": grid.key, "sampled": json.loads(json.dumps({"train.lr": 0.2}))}]


def test_a_resumed_optuna_search_starts_from_its_finished_samples_and_resumes_the_unfinished(mlflow_client,
                                                                                              tracking_uri):
    from sweeper.plan.search import searcher

    spec = parse_spec(SPEC, "tpe.yaml")
    (grid,) = spec.trials()
    experiment = tracking.ensure_experiment(mlflow_client, "tpe", tracking_uri)
    parent = tracking.ensure_parent_run(mlflow_client, experiment, "tpe", SPEC, "h")
    for key, lr, status, acc in (("a", 0.05, "finished", 0.8), ("b", 0.5, "stopped_early", 0.3),
                                 ("c", 0.2, None, 0.5), ("z", 5.0, "finished", 0.1)):  # z: outside today's range
        run_id = tracking.ensure_child_run(mlflow_client, experiment, parent, key, f"t-{key}", {},
                                           origin_tags(grid.key, {"train.lr": lr}))
        mlflow_client.log_batch(run_id, metrics=[Metric("test_acc", acc, 0, 1)],
                                tags=[RunTag(names.TAG_STATUS, status)] if status else [])

    search = searcher(spec).tune_search(spec, [grid], mlflow_client, experiment, samples_left=1)
    study = search.search_alg._ot_study  # the searcher's own history, as TPE will read it
    complete = sorted((t.value, t.params["sampled/train.lr"]) for t in study.trials if t.state.name == "COMPLETE")
    assert complete == [(0.3, 0.5), (0.8, 0.05)]
    # c, enqueued under the names Optuna suggests by, so its draw is its old values and it resumes by key
    waiting = [t.system_attrs["fixed_params"] for t in study.trials if t.state.name == "WAITING"]
    assert waiting == [{"grid": grid.key, "sampled/train.lr": 0.2}]
    assert search.note == ("search: optuna continues from 2 finished samples "
                           "(1 finished outside the current search space left out)")
    assert search.num_samples == 2  # the one left to draw and the unfinished one
    assert search.search_alg.suggest("t1") == {"grid": grid.key, "sampled": {"train.lr": 0.2}}
