"""The cost estimate's per-mode FLOP factor and per-precision rate, checked against what autograd
really computes and against the line `sweeper validate` prints."""

from __future__ import annotations

import pytest

from sweeper.plan.estimate import (ASSUMED_FLOPS_PER_S, MODE_FLOPS, STARTUP_S, estimate_spec, flop_factor,
                                   trial_work)
from sweeper.spec import parse_spec
from trainables.names import MODES


def test_every_mode_has_one_factor():
    assert tuple(MODE_FLOPS) == MODES


@pytest.mark.parametrize("mode", MODES)
def test_the_factor_is_what_autograd_counts_for_a_training_step(mode):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from trainables.config import TrialConfig
    from trainables.models import build_model
    from trainables.modes import apply_mode

    cfg = TrialConfig.from_dict({"dataset": {"name": "synthetic"}, "model": {"family": "cifar_resnet", "depth": 20},
                                 "train": {"epochs": 1}, "mode": mode})
    model = build_model(cfg.model, 10, 0)
    apply_mode(model, mode, 0)
    images = torch.randn(2, 3, 32, 32)
    with FlopCounterMode(display=False) as forward:
        model(images)
    with FlopCounterMode(display=False) as step:
        model(images).sum().backward()
    # the stem conv's input gradient is never needed (the images do not train): a hair under
    assert step.get_total_flops() / forward.get_total_flops() == pytest.approx(flop_factor(mode), abs=0.05)


def _spec(precision: str, mode: str = "bn_only") -> str:
    return (f"name: s\ndataset: {{name: cifar10}}\nmodel: {{family: cifar_resnet, depth: 20}}\n"
            f"train: {{epochs: 2, precision: {precision}}}\ngrid: {{mode: [{mode}]}}\n")


@pytest.mark.parametrize(("precision", "rate"), [("fp32", "fp32"), ("bf16", "bf16"), ("auto", "bf16")])
def test_gpu_hours_take_each_trials_precision_rate_and_its_start_up(precision, rate):
    est = estimate_spec(parse_spec(_spec(precision), "s.yaml"))
    work = trial_work(parse_spec(_spec(precision), "s.yaml").trials()[0].config)
    assert est.precisions == (rate,)
    assert est.training_flops == 2 * work.forward_flops * 50_000 * 2  # bn_only: 2x forward
    assert est.gpu_hours == pytest.approx((est.training_flops / ASSUMED_FLOPS_PER_S[rate] + STARTUP_S) / 3600)


def test_fp32_is_costed_at_half_the_bf16_rate_and_the_line_says_which():
    from sweeper.views.validate import estimate_lines

    fp32 = estimate_spec(parse_spec(_spec("fp32", "full"), "s.yaml"))
    bf16 = estimate_spec(parse_spec(_spec("bf16", "full"), "s.yaml"))
    assert fp32.gpu_seconds == pytest.approx(2 * bf16.gpu_seconds)
    line = next(x for x in estimate_lines(fp32) if "GPU-hours" in x)
    assert "fp32 on TF32 tensor cores at an assumed 20 TFLOP/s sustained per GPU" in line
    assert "bf16" not in line and f"{STARTUP_S:g} s of start-up per trial" in line
    flops = next(x for x in estimate_lines(fp32) if "training FLOPs" in x)
    assert "full 3x" in flops


def test_the_whole_study_wall_time_packs_every_trial_with_its_start_up():
    from sweeper.plan.measure import Measured, StepTiming, study_wall_s

    long = Measured("a", trials=1, train_steps=100, timing=StepTiming(1.0, 64, None), startup_s=5.0)
    short = Measured("b", trials=4, train_steps=40, timing=StepTiming(1.0, 64, None), startup_s=5.0)
    assert short.trial_seconds == 15.0 and long.trial_seconds == 105.0
    assert study_wall_s([long, short], 2) == 105.0  # the four short ones fill the other slot (60 s)
    assert study_wall_s([long, short], 1) == 165.0
    assert study_wall_s([short], 2) == 30.0
