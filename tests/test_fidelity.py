"""train.fidelity: the open_lth switch changes bias init and warm-up as docs/fidelity.md states,
leaves everything else alone, and keeps the keys of configs that do not use it.

(Its CIFAR normalisation is pinned in test_data.py, next to the CIFAR fixtures.)
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from sweeper.record import names
from sweeper.spec import load_spec, parse_spec
from trainables.checkpoint import config_hash, config_identity
from trainables.config import (
    FIDELITIES,
    ConfigError,
    ModelConfig,
    TrainConfig,
    TrialConfig,
)
from trainables.loop import build_setup
from trainables.models import build_model
from trainables.schedule import LRSchedule


def trial(**train) -> dict:
    return {"dataset": {"name": "synthetic", "train_size": 64, "test_size": 32},
            "model": {"family": "cifar_resnet", "depth": 8}, "train": {"epochs": 2, "device": "cpu", **train}}


# --- the key ------------------------------------------------------------------------------------


def test_fidelity_is_validated_and_names_its_key():
    with pytest.raises(ConfigError) as info:
        TrialConfig.from_dict(trial(fidelity="openlth"))
    assert info.value.path == "train.fidelity" and "did you mean 'open_lth'" in str(info.value)


SPEC = """
name: t
dataset: {name: digits}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 1, lr: 0.1}
"""


def test_the_default_fidelity_leaves_trial_keys_as_they_were():
    # the pinned key of tests/test_spec.py's base spec; "sweeper" typed out changes nothing
    plain = parse_spec(SPEC, "t.yaml").trials()[0]
    typed = parse_spec(SPEC.replace("lr: 0.1", "lr: 0.1, fidelity: sweeper"), "t.yaml").trials()[0]
    other = parse_spec(SPEC.replace("lr: 0.1", "lr: 0.1, fidelity: open_lth"), "t.yaml").trials()[0]
    assert plain.key == typed.key
    assert other.key != plain.key and other.params["train.fidelity"] == "open_lth"


def test_a_checkpoint_from_before_the_key_existed_resumes_under_the_default():
    config = TrialConfig.from_dict(trial())
    stored = config.to_dict()
    del stored["train"]["fidelity"]  # what a checkpoint written before train.fidelity holds
    assert config_hash(stored) == config_hash(config)
    assert "train.fidelity" not in config_identity(config)
    assert config_identity(TrialConfig.from_dict(trial(fidelity="open_lth")))["train.fidelity"] == "open_lth"


def test_fidelity_is_an_axis_and_shows_in_trial_names():
    spec = parse_spec(SPEC + "grid: {fidelity: [sweeper, open_lth]}\n", "t.yaml")
    assert [t.name for t in spec.trials()] == ["full-d8-w1-lr0.1-s0-sweeper", "full-d8-w1-lr0.1-s0-open_lth"]


# --- bias init ------------------------------------------------------------------------------------


@pytest.mark.parametrize("family, depth", [("cifar_resnet", 8), ("vgg", 11)])
def test_open_lth_biases_are_pytorchs_default_uniform_and_nothing_else_moves(family, depth):
    ours = build_model(ModelConfig(family, depth), 10, seed=3)
    theirs = build_model(ModelConfig(family, depth), 10, seed=3, bias_init="uniform")
    biased = [(name, m) for name, m in theirs.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None]
    assert biased, "the fc bias at least"
    for name, m in biased:
        bound = 1 / math.sqrt(m.weight[0].numel())  # nn.Linear / nn.Conv2d reset_parameters
        assert m.bias.abs().max() <= bound and m.bias.std() > bound / 4, name
        assert torch.count_nonzero(dict(ours.named_modules())[name].bias) == 0, name
    # weights, gammas, betas and buffers are the same draws: only the biases differ
    bias_names = {f"{name}.bias" for name, _ in biased}
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert all(torch.equal(ours_state[k], theirs_state[k]) for k in ours_state if k not in bias_names)


def test_the_frozen_fc_bias_of_a_bn_only_trial_follows_the_switch():
    ours = build_setup(TrialConfig.from_dict({**trial(), "mode": "bn_only"}))
    theirs = build_setup(TrialConfig.from_dict({**trial(fidelity="open_lth"), "mode": "bn_only"}))
    assert not theirs.model.fc.bias.requires_grad
    assert torch.count_nonzero(ours.model.fc.bias) == 0
    assert torch.count_nonzero(theirs.model.fc.bias) == theirs.model.fc.bias.numel()


# --- warm-up --------------------------------------------------------------------------------------


def test_open_lth_warm_up_starts_at_lr_0_and_reaches_lr_one_step_later():
    train = {"epochs": 10, "lr": 0.4, "warmup_epochs": 1}
    ours = LRSchedule.from_config(TrainConfig(**train), steps_per_epoch=4)
    theirs = LRSchedule.from_config(TrainConfig(**train, fidelity="open_lth"), steps_per_epoch=4)
    assert [ours.lr_at(s) for s in range(6)] == [0.1, 0.2, 0.30000000000000004, 0.4, 0.4, 0.4]
    assert [theirs.lr_at(s) for s in range(6)] == [0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.4]


def test_the_trials_scheduler_follows_the_switch():
    setup = build_setup(TrialConfig.from_dict(trial(fidelity="open_lth", warmup_epochs=1)))
    assert setup.scheduler.current_lr == 0.0 and setup.optimizer.param_groups[0]["lr"] == 0.0
    assert build_setup(TrialConfig.from_dict(trial(warmup_epochs=1))).scheduler.current_lr > 0


def test_without_warm_up_the_switch_leaves_the_schedule_alone():
    train = {"epochs": 4, "lr": 0.1, "lr_schedule": {"name": "step", "milestones": [2]}}
    ours = LRSchedule.from_config(TrialConfig.from_dict(trial(**train)).train, steps_per_epoch=3)
    theirs = LRSchedule.from_config(TrialConfig.from_dict(trial(**train, fidelity="open_lth")).train, steps_per_epoch=3)
    assert [ours.lr_at(s) for s in range(12)] == [theirs.lr_at(s) for s in range(12)]


# --- docs/fidelity.md stays true --------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
PAPER_STUDIES = ("depth_vs_width", "vgg", "imagenet_resnets")


@pytest.mark.parametrize("name", PAPER_STUDIES)
def test_paper_studies_use_open_lths_hyperparameters(name):
    # open_lth's default_hparams for cifar_resnet, cifar_vgg and imagenet_resnet, written out here
    for t in load_spec(ROOT / "sweeps" / f"{name}.yaml").trials():
        train = t.config["train"]
        assert train["optimizer"]["name"] == "sgd" and train["optimizer"]["momentum"] == 0.9
        assert train["optimizer"]["nesterov"] is False
        assert train["weight_decay"] == 1e-4 and train["lr_schedule"]["factor"] == 0.1
        assert train["label_smoothing"] == 0 and train["augment"] is True
        assert t.config["model"]["bn_init"] == "uniform"
        assert (train["batch_size"], train["lr"]) == ((1024, 0.4) if name == "imagenet_resnets" else (128, 0.1))


def test_augmentation_and_evaluation_constants_are_open_lths():
    from trainables.data import imagenet, source
    from trainables.data.facts import DATA_SETS

    assert source.PAD == 4
    assert (imagenet.CROP_SCALE, imagenet.CROP_RATIO) == ((0.1, 1.0), (0.8, 1.25))
    size = DATA_SETS["imagenet"].image_size
    assert round(size * imagenet.EVAL_RESIZE) == 256 and size == 224
    assert (imagenet.MEAN, imagenet.STD) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_every_test_the_fidelity_page_names_exists():
    page = (ROOT / "docs" / "fidelity.md").read_text()
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)`", page)
    assert len(named) >= 20
    missing = [f"{f}::{t}" for f, t in named
               if not re.search(rf"^def {t}\(", (ROOT / "tests" / f).read_text(), flags=re.MULTILINE)]
    assert not missing, f"docs/fidelity.md names tests that do not exist: {missing}"


def test_the_fidelity_page_states_the_numbers_the_code_has():
    page = (ROOT / "docs" / "fidelity.md").read_text()
    from trainables.models import imagenet_resnet

    with torch.device("meta"):
        wide = imagenet_resnet.build(50, 2, 1000)
    assert f"{sum(p.numel() for p in wide.parameters()):,}" in page
    assert "`fidelity: open_lth`" in page and all(f"`{v}`" in page for v in FIDELITIES)


def test_the_scorecards_imagenet_counts_are_the_models():
    from sweeper.report.scorecard import load_reference
    from trainables.models import imagenet_resnet

    ref = load_reference()
    rows = ref[(ref["family"] == "imagenet_resnet") & ref["metric"].isin(["total_params", "trainable_params"])]
    assert {(r.depth, r.width) for r in rows.itertuples()} >= {(50, 2), (50, 4)}
    for r in rows.itertuples():
        with torch.device("meta"):
            model = imagenet_resnet.build(int(r.depth), int(r.width), 1000)
        counted = (sum(p.numel() for p in model.parameters()) if r.metric == "total_params" else
                   sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()))
        allowed = 0.01 * r.value if r.approximate else 0
        assert abs(counted - r.value) <= allowed, (r.depth, r.width, r.metric)


def test_a_report_groups_runs_logged_before_the_key_existed_with_new_ones():
    from types import SimpleNamespace

    from sweeper.report.collect import _trials_table
    from sweeper.report.tables import aggregate

    def run(run_id, seed, params):
        return SimpleNamespace(
            info=SimpleNamespace(run_id=run_id, run_name=f"s{seed}", status="FINISHED", start_time=0, end_time=0),
            data=SimpleNamespace(tags={names.TAG_STATUS: "finished", names.TAG_TRIAL_KEY: run_id},
                                 params={"mode": "bn_only", "seed": str(seed), "train.lr": "0.1", **params},
                                 metrics={"final_test_acc": 0.5}))

    old = run("a", 0, {})  # logged before train.fidelity existed
    new = run("b", 1, {"train.fidelity": "sweeper"})
    frame, params, _ = _trials_table([old, new])
    assert list(frame["train.fidelity"]) == ["sweeper", "sweeper"]
    assert list(aggregate(frame, params)["n"]) == [2]
