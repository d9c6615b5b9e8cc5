"""The dry run's preview (sweeper.views.plan_preview): kept / new / no longer in the spec, read
from a real MLflow store without writing to it, and nothing created where there is no store."""

from __future__ import annotations

from sweeper.plan.lookup import trial_order
from sweeper.record import names, tracking
from sweeper.spec import parse_spec
from sweeper.views.plan_preview import describe_plan, read_runs

SPEC = ("name: pv\ndataset: {name: digits}\nmodel: {family: cifar_resnet, depth: 8}\ntrain: {epochs: 2}\n"
        "grid: {mode: [bn_only, full, output_only]}\nresources: {cpu: 1, gpu: 0}\n")


def test_no_store_means_every_trial_is_new_and_nothing_is_created(tmp_path):
    spec = parse_spec(SPEC, "pv.yaml")
    runs = read_runs(spec, f"sqlite:///{tmp_path}/mlflow.db")
    assert runs == {} and list(tmp_path.iterdir()) == []
    lines = describe_plan(spec, runs)
    assert lines[1] == "  3 trials in the spec: 0 kept (0 finished, 0 to train or resume), 3 new"
    assert any(line.startswith("work estimate") for line in lines)
    assert "resources per trial: 1 CPU, 0 GPU" in lines


def test_kept_new_and_gone_are_counted_from_the_store_without_writing(workdir, tracking_uri, mlflow_client):
    old = parse_spec(SPEC.replace("output_only]", "output_only, random_params]"), "pv.yaml")
    spec = parse_spec(SPEC.replace("bn_only, ", ""), "pv.yaml")  # bn_only and random_params left
    exp = tracking.ensure_experiment(mlflow_client, "pv", tracking_uri)
    parent = tracking.ensure_parent_run(mlflow_client, exp, "pv", old.text, old.spec_hash)
    ids = {t.key: tracking.ensure_child_run(mlflow_client, exp, parent, t.key, t.name, t.params)
           for t in trial_order(old)}
    for t in trial_order(old)[:2]:  # bn_only and full finished
        mlflow_client.set_tag(ids[t.key], names.TAG_STATUS, "finished")
        mlflow_client.set_terminated(ids[t.key], "FINISHED")
    runs = read_runs(spec, tracking_uri)
    lines = describe_plan(spec, runs)
    assert lines[1] == "  2 trials in the spec: 2 kept (1 finished, 1 to train or resume), 0 new"
    assert lines[2] == "  2 in MLflow no longer in the spec (1 of them finished); a run would tag 2 of them superseded"
    # read only: no run was tagged
    assert all(names.TAG_SUPERSEDED not in mlflow_client.get_run(i).data.tags for i in ids.values())
