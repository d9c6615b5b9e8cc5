"""`sweeper run --smoke-test`'s plan (sweeper.plan.smoke): every shipped study in miniature keeps
every trial, each one short epoch at a capped batch, in its own experiment; the deepest model of
the paper's study trains its capped epoch on this CPU through the real trial code."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeper.plan.smoke import MAX_TEST_IMAGES, SMOKE_STEPS, SMOKE_SUFFIX, smoke_spec
from sweeper.spec import load_spec

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"
STUDIES = sorted(SWEEPS.glob("*.yaml"))


def _count(spec) -> int:
    return spec.sampled_trial_count() or len(spec.trials())


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_every_trial_is_kept_with_one_short_epoch_and_the_caps(path, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))  # no data set here: the stand-ins are used
    spec = load_spec(path)
    smoke, notes = smoke_spec(spec, cluster_has_gpu=False, cluster_cpus=2)
    assert smoke.name == spec.name + SMOKE_SUFFIX
    assert _count(smoke) == _count(spec)
    assert len(smoke.trials()) == len(spec.trials())
    assert len({t.key for t in smoke.trials()}) == len(spec.trials())
    # the same trials: each smoke trial carries its original's varying values
    axes = [a for a in spec.varying_axes() if a not in ("train.batch_size", "train.epochs")]
    assert [[t.params.get(a) for a in axes] for t in smoke.trials()] == \
           [[t.params.get(a) for a in axes] for t in spec.trials()]
    for trial in smoke.trials():
        train, dataset = trial.config["train"], trial.config["dataset"]
        assert train["epochs"] == 1
        assert dataset["train_size"] == SMOKE_STEPS * train["batch_size"]
        assert 2 <= train["batch_size"] <= 32 and dataset["test_size"] <= MAX_TEST_IMAGES
    assert smoke.resources.gpu == 0 and smoke.resources.cpu <= 2
    assert notes[0].startswith(f"smoke test: {_count(spec)} trials of {spec.name!r}, one epoch of {SMOKE_STEPS} steps")
    if spec.resources.gpu:
        assert any("resources.gpu" in n and "dropped to 0" in n for n in notes)
    name = spec.trials()[0].config["dataset"]["name"]
    if name in ("cifar10", "imagenet"):
        assert smoke.trials()[0].config["dataset"]["stand_in"] is True
        assert any(n.startswith(f"smoke test: {name} not found, so stand-in data") for n in notes)
    on_gpu, _ = smoke_spec(spec, cluster_has_gpu=True)
    assert on_gpu.resources.gpu == spec.resources.gpu


def test_the_real_data_is_used_where_it_is_present():
    spec = load_spec(SWEEPS / "vgg.yaml")
    smoke, notes = smoke_spec(spec, cluster_has_gpu=False, stand_in=[])
    assert smoke.trials()[0].config["dataset"].get("stand_in") is False
    assert not any("stand-in" in n for n in notes)


def test_the_deepest_model_of_the_papers_study_trains_its_smoke_epoch_on_the_cpu(tmp_path, monkeypatch):
    from trainables import run_trial

    monkeypatch.setenv("HOME", str(tmp_path))
    spec = load_spec(SWEEPS / "depth_vs_width.yaml")
    smoke, _ = smoke_spec(spec, cluster_has_gpu=False, cluster_cpus=2)
    deepest = next(t for t in smoke.trials()
                   if t.config["model"]["depth"] == 866 and t.config["mode"] == "bn_only")
    reports = []
    final = run_trial(deepest.config, lambda metrics, checkpoint: reports.append(metrics), tmp_path / "ckpt")
    assert [r["epoch"] for r in reports] == [1]
    assert final["status"] == "finished" and final["epochs_completed"] == 1
    assert 0.0 <= final["final_test_acc"] <= 1.0
