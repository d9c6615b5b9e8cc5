"""The Python API without Ray: errors are exceptions, reading creates nothing, and a sweep read
back by name has its axes as typed columns (docs/python.md; the end-to-end run is test_api_e2e)."""

from __future__ import annotations

import shutil

import pytest

import sweeper
from sweeper import SpecError, SweepError


def test_a_bad_spec_raises_spec_error_not_system_exit(workdir):
    with pytest.raises(SpecError, match="missing.yaml: no such"):
        sweeper.load_results("missing.yaml")
    bad = workdir / "bad.yaml"
    bad.write_text("name: bad\ndataset: {name: digits}\nmodel: {family: cifar_resnet, depth: 15}\n"
                   "train: {epochs: 1}\n")
    with pytest.raises(SpecError, match=r"bad.yaml: .*depth.*15"):
        sweeper.run(bad)
    assert not (workdir / "mlflow.db").exists() and not (workdir / "sweeper_results").exists()


def test_an_unknown_sweep_raises_sweep_error_and_creates_no_store(workdir):
    with pytest.raises(SweepError, match="no MLflow store"):
        sweeper.load_results("nothing_here")
    assert not (workdir / "mlflow.db").exists()
    with pytest.raises(SpecError, match="neither a spec file nor a sweep name"):
        sweeper.load_history("not a name!")


@pytest.fixture
def hand_made(tmp_path, _migrated_mlflow_db):
    """A sweep as `sweeper run` leaves it, written by hand: two finished trials and a running one."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    shutil.copyfile(_migrated_mlflow_db, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("by_hand", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(experiment, tags={"sweeper.role": "sweep"})
    client.log_batch(parent.info.run_id, params=[Param("sweep.axes", "mode, train.lr")])
    for key, mode, lr, state in (("k1", "bn_only", "1", "finished"), ("k2", "full", "2", "finished"),
                                 ("k3", "full", "3", None)):
        run = client.create_run(experiment, run_name=f"{mode}-lr{lr}", tags={
            "mlflow.parentRunId": parent.info.run_id, "sweeper.trial_key": key, "sweeper.role": "trial"})
        params = {"mode": mode, "seed": "0", "model.depth": "8", "train.lr": lr, "lr": lr}
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()],
                         tags=[RunTag("sweeper.short_params", "lr")])
        client.log_batch(run.info.run_id, metrics=[Metric("test_acc", 0.5, 0, 1), Metric("sweeper.epoch", 1, 0, 1)])
        if state:
            client.log_batch(run.info.run_id, metrics=[Metric("final_test_acc", 0.5, 0, 0)],
                             tags=[RunTag("status", state)])
            client.set_terminated(run.info.run_id, "FINISHED")
    return uri, tmp_path


def test_a_sweep_read_by_name_has_its_recorded_axes_typed_and_nan_where_unfinished(hand_made):
    uri, folder = hand_made
    df = sweeper.load_results("by_hand", tracking_uri=uri, storage=str(folder / "store"))
    assert list(df.columns[:4]) == ["name", "state", "mode", "lr"]
    assert str(df["lr"].dtype) == "float64"  # logged as "1", "2", "3"; train.lr is declared a float
    assert sorted(df["state"]) == ["finished", "finished", "running"]
    assert df.set_index("trial_key")["final_test_acc"].isna().to_dict() == {"k1": False, "k2": False, "k3": True}
    assert set(df["checkpoint"]) == {str(folder / "store" / "by_hand" / "trials" / k) for k in ("k1", "k2", "k3")}
    history = sweeper.load_history("by_hand", tracking_uri=uri, metrics=["test_acc"], trials=df[df["mode"] == "full"])
    assert list(history.columns) == ["name", "trial_key", "run_id", "mode", "lr", "epoch", "test_acc"]
    assert sorted(history["trial_key"]) == ["k2", "k3"] and set(history["epoch"]) == {1}
    with pytest.raises(SweepError, match="no trial 'k9'"):
        sweeper.load_model("k9", "by_hand", tracking_uri=uri)


def test_rows_carry_the_last_epoch_and_best_is_a_finished_trial(hand_made):
    uri, folder = hand_made
    df = sweeper.load_results("by_hand", tracking_uri=uri).set_index("trial_key")
    assert df["epoch"].to_dict() == {"k1": 1, "k2": 1, "k3": 1} and (df["test_acc"] == 0.5).all()  # running k3 too
    top = sweeper.best("by_hand", tracking_uri=uri)
    assert top["state"] == "finished" and top["trial_key"] in ("k1", "k2")
    with pytest.raises(SweepError, match="no column 'accuracy' in the results to rank by; one of best_test_acc"):
        sweeper.best("by_hand", "accuracy", tracking_uri=uri)
    with pytest.raises(ValueError, match=r"unknown per-epoch metric 'test_accuracy' \(did you mean 'test_acc'\?\); "
                                         "one of train_loss, train_acc, test_loss, test_acc"):
        sweeper.load_history("by_hand", tracking_uri=uri, metrics=["test_accuracy"])


def test_a_driver_failure_from_python_is_raised_after_the_parent_run_is_closed(workdir, tracking_uri, monkeypatch,
                                                                               capfd):
    from mlflow.tracking import MlflowClient

    from sweeper.driver import preflight, ray_setup, tune_loop
    from sweeper.record import names, tracking

    def crash(*args, **kwargs):
        raise RuntimeError("the driver broke")

    monkeypatch.setattr(ray_setup, "init_ray", lambda *a, **k: False)  # no Ray: the fit fails first
    monkeypatch.setattr(ray_setup, "starts_with_lease", lambda *a, **k: False)  # nor while the lease settles
    monkeypatch.setattr(preflight, "before_trials", lambda *a, **k: None)  # it asks Ray, not started here
    monkeypatch.setattr(tune_loop, "fit", crash)
    spec = workdir / "crashy.yaml"
    spec.write_text("name: crashy\ndataset: {name: digits}\nmodel: {family: cifar_resnet, depth: 8}\n"
                    "train: {epochs: 1}\n")
    with pytest.raises(RuntimeError, match="the driver broke"):
        sweeper.run(spec, tracking_uri=tracking_uri, storage=str(workdir / "results"))
    client = MlflowClient(tracking_uri=tracking_uri)
    parent = tracking.find_parent_run(client, client.get_experiment_by_name("crashy").experiment_id)
    assert parent.info.status == "FAILED"
    assert not any(k.startswith(names.TAG_LEASE_PREFIX) for k in parent.data.tags)  # the sweep is free again
    assert capfd.readouterr() == ("", "")  # the line the CLI prints is not printed here
