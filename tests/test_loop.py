"""run_trial end to end on the CPU: what the modes reach on real digits, metrics, divergence,
frozen entries, checkpoints and bit-exact resume."""

import json
import math

import pytest
import torch

from trainables import ConfigError, run_trial
from trainables.checkpoint import CheckpointError, load_checkpoint, load_model
from trainables.config import TrialConfig
from trainables.models import build_model

EPOCH_KEYS = {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "lr", "images_per_s", "epoch_s",
              "ended_at"}
FINAL_KEYS = {"status", "epochs_completed", "best_test_acc", "final_test_acc", "trainable_params", "total_params",
              "gamma_near_zero_frac", "gamma_near_zero_frac_0.05", "gamma_near_zero_frac_0.1", "relu_zero_frac",
              "ended_at"}
FRACTIONS = {"train_acc", "test_acc", "test_top5", "best_test_acc", "final_test_acc", "gamma_near_zero_frac",
             "gamma_near_zero_frac_0.05", "gamma_near_zero_frac_0.1", "relu_zero_frac"}


# Few trainable parameters need, and tolerate, a larger step than full training.
DIGITS_LR = {"full": 0.1, "bn_only": 0.5, "random_params": 0.5}


def digits_trial(mode: str) -> dict:
    """The issue's CPU setting: real digits, CIFAR ResNet-8, 3 epochs, cosine, weight decay 1e-4.
    At their native 8 px (upsampling adds no information) and without crops, so the three modes
    train in seconds."""
    return {
        "dataset": {"name": "digits", "image_size": 8},
        "model": {"family": "cifar_resnet", "depth": 8, "width": 1},
        "train": {"epochs": 3, "batch_size": 64, "lr": DIGITS_LR[mode], "weight_decay": 1e-4, "augment": False,
                  "lr_schedule": {"name": "cosine"}},
        "mode": mode,
        "seed": 0,
    }


def tiny_trial(mode: str = "full", **train) -> dict:
    """A few synthetic images: for behaviour, not accuracy."""
    return {
        "dataset": {"name": "synthetic", "image_size": 16, "train_size": 96, "test_size": 40},
        "model": {"family": "cifar_resnet", "depth": 8, "width": 1},
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.05, "lr_schedule": {"name": "step", "step_size": 2},
                  **train},
        "mode": mode,
        "seed": 3,
        "checkpoint": {"every_epochs": 1},
    }


@pytest.fixture(scope="module")
def digits_results():
    """Each mode trained once, shared by the tests below: (per-epoch reports, final metrics)."""
    results = {}
    for mode in ("full", "bn_only", "random_params"):
        reports = []
        final = run_trial(digits_trial(mode), report=lambda m, c: reports.append((m, c)))
        results[mode] = (reports, final)
        print(mode, json.dumps(final))
    return results


def test_full_training_learns_digits_in_three_epochs(digits_results):
    _, final = digits_results["full"]
    assert final["status"] == "finished"
    assert final["final_test_acc"] >= 0.8  # measured 0.98


def test_bn_only_beats_the_same_number_of_random_weights(digits_results):
    # the paper's baseline claim; measured 0.86 against 0.45
    assert digits_results["bn_only"][1]["final_test_acc"] > digits_results["random_params"][1]["final_test_acc"]


def test_bn_only_is_far_above_chance_on_random_features(digits_results):
    _, final = digits_results["bn_only"]
    assert final["final_test_acc"] >= 0.6  # chance is 0.1; measured 0.86


def test_random_params_trains_exactly_as_many_parameters_as_bn_only(digits_results):
    bn, rand = digits_results["bn_only"][1], digits_results["random_params"][1]
    # ResNet-8: BN channels 16 (stem) + 16 + 16 + 3 x 32 + 3 x 64 (stages, shortcuts) = 336
    assert bn["trainable_params"] == 2 * 336
    assert rand["trainable_params"] == bn["trainable_params"]
    assert rand["total_params"] == bn["total_params"] == digits_results["full"][1]["trainable_params"]
    assert bn["trainable_params"] < bn["total_params"] / 20


def test_every_epoch_reports_the_design_metrics_in_range(digits_results):
    for mode, (reports, final) in digits_results.items():
        assert [m["epoch"] for m, _ in reports] == [1, 2, 3]
        assert all(checkpoint is None for _, checkpoint in reports)  # no folder given, none written
        for metrics, _ in reports:
            assert set(metrics) == EPOCH_KEYS
            for key in EPOCH_KEYS & FRACTIONS:
                assert 0.0 <= metrics[key] <= 1.0, (mode, key, metrics[key])
            assert metrics["test_top5"] >= metrics["test_acc"]
            assert metrics["train_loss"] > 0 and metrics["test_loss"] > 0
            assert metrics["images_per_s"] > 0 and metrics["epoch_s"] > 0
        ended = [m["ended_at"] for m, _ in reports]  # wall clock: the time each epoch is logged at
        assert ended == sorted(ended) and ended[0] > 1.7e9 and final["ended_at"] >= ended[-1]
        assert set(final) == FINAL_KEYS
        for key in FINAL_KEYS & FRACTIONS:
            assert 0.0 <= final[key] <= 1.0, (mode, key, final[key])
        assert final["epochs_completed"] == 3
        assert final["best_test_acc"] == max(m["test_acc"] for m, _ in reports)
        assert final["final_test_acc"] == reports[-1][0]["test_acc"]
        assert final["gamma_near_zero_frac"] <= final["gamma_near_zero_frac_0.05"] <= final["gamma_near_zero_frac_0.1"]
        assert 0.0 < final["relu_zero_frac"] < 1.0


def test_lr_follows_the_schedule_to_the_last_step(digits_results):
    reports, _ = digits_results["full"]
    lrs = [m["lr"] for m, _ in reports]
    assert lrs[0] > lrs[1] > lrs[2] > 0  # cosine, read at each epoch's last step
    assert lrs[2] < DIGITS_LR["full"] * 0.01


def test_a_diverging_run_stops_with_status_diverged_instead_of_raising(tmp_path):
    reports = []
    final = run_trial(tiny_trial(lr=1e6), report=lambda m, c: reports.append(m), checkpoint_dir=tmp_path)
    assert final["status"] == "diverged"
    assert final["epochs_completed"] == len(reports) < 3
    assert set(final) == FINAL_KEYS
    assert all(math.isfinite(v) for k, v in final.items() if k != "status")
    # the diverged trial is recorded: running it again returns the same verdict without training
    again = run_trial(tiny_trial(lr=1e6), report=lambda m, c: pytest.fail("must not train again"),
                      checkpoint_dir=tmp_path)
    assert again == final


def test_random_params_masked_entries_do_not_change_by_a_single_bit(tmp_path):
    config = tiny_trial("random_params", epochs=2)
    run_trial(config, checkpoint_dir=tmp_path)
    trained = load_model(tmp_path)
    initial = build_model(TrialConfig.from_dict(config).model, 10, config["seed"])
    from trainables.modes import apply_mode

    masks = apply_mode(initial, "random_params", config["seed"]).masks
    before, after = dict(initial.named_parameters()), dict(trained.named_parameters())
    moved = 0
    for name, mask in masks.items():
        assert torch.equal(after[name][~mask], before[name][~mask]), name
        moved += int((after[name][mask] != before[name][mask]).sum())
    assert moved > 0, "the masked-in weights did train"
    for name in before.keys() - masks.keys():  # BN and fc are frozen in this mode
        assert torch.equal(after[name], before[name]), name


def test_bn_running_statistics_update_even_when_bn_is_frozen(tmp_path):
    run_trial(tiny_trial("output_only", epochs=1), checkpoint_dir=tmp_path)
    model = load_model(tmp_path)
    assert not torch.equal(model.bn.running_mean, torch.zeros_like(model.bn.running_mean))
    assert int(model.bn.num_batches_tracked) == 3  # 96 images / 32


def test_checkpoints_land_every_n_epochs_and_at_the_end_with_gamma_json(tmp_path):
    seen = []
    config = tiny_trial("bn_only", epochs=3) | {"checkpoint": {"every_epochs": 2}}
    final = run_trial(config, report=lambda m, c: seen.append((m["epoch"], c, load_checkpoint(tmp_path)["epoch"]
                                                                if c else None)), checkpoint_dir=tmp_path)
    assert seen == [(1, None, None), (2, tmp_path, 2), (3, tmp_path, 3)]
    saved = load_checkpoint(tmp_path)
    assert saved["final"] == final and len(saved["history"]) == 3
    gammas = json.loads((tmp_path / "gamma.json").read_text())["layers"]
    model = load_model(tmp_path)
    assert gammas["bn"] == model.bn.weight.tolist()
    assert len(gammas) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_a_finished_trial_returns_its_final_metrics_without_training(tmp_path):
    final = run_trial(tiny_trial(epochs=1), checkpoint_dir=tmp_path)
    again = run_trial(tiny_trial(epochs=1), report=lambda m, c: pytest.fail("trained again"), checkpoint_dir=tmp_path)
    assert again == final


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    run_trial(tiny_trial(epochs=1), checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match="train.lr=0.05 there, 0.07 here"):
        run_trial(tiny_trial(epochs=1, lr=0.07), checkpoint_dir=tmp_path)


@pytest.mark.parametrize("mode, optimizer", [("full", "sgd"), ("random_params", "sgd"), ("random_params", "adam")])
def test_resuming_gives_the_uninterrupted_weights_bit_for_bit(tmp_path, mode, optimizer):
    config = tiny_trial(mode, epochs=3, warmup_epochs=0.5, optimizer={"name": optimizer})
    straight = []
    final_straight = run_trial(config, report=lambda m, c: straight.append(m), checkpoint_dir=tmp_path / "a")

    interrupted = []

    class Crash(Exception):
        pass

    def crash_after_first_epoch(metrics, checkpoint):
        interrupted.append(metrics)
        raise Crash  # the process dies right after epoch 1's checkpoint

    with pytest.raises(Crash):
        run_trial(config, report=crash_after_first_epoch, checkpoint_dir=tmp_path / "b")
    final_resumed = run_trial(config, report=lambda m, c: interrupted.append(m), checkpoint_dir=tmp_path / "b")

    assert [m["epoch"] for m in interrupted] == [1, 2, 3]
    assert untimed(interrupted) == untimed(straight)
    assert untimed([final_resumed]) == untimed([final_straight])
    a, b = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    for (name, tensor_a), (_, tensor_b) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(tensor_a, tensor_b), name
    assert untimed(load_checkpoint(tmp_path / "b")["history"]) == untimed(straight)


def untimed(history: list[dict]) -> list[dict]:
    """Metrics without the wall-clock ones, which no two runs share."""
    return [{k: v for k, v in m.items() if k not in ("images_per_s", "epoch_s", "ended_at")} for m in history]


def test_a_bad_config_raises_config_error_naming_the_key():
    with pytest.raises(ConfigError) as info:
        run_trial(tiny_trial(lr=-1.0))
    assert info.value.path == "train.lr"
