"""Training modes: exactly what trains, and nothing frozen moves by a single bit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainables.config import ModelConfig, OptimizerConfig, TrainConfig
from trainables.models import build_model, cifar_resnet, imagenet_resnet, vgg
from trainables.modes import Trainability, apply_mode, build_optimizer
from trainables.names import MODES

SGD = TrainConfig(epochs=1, lr=0.1, weight_decay=1e-4, optimizer=OptimizerConfig("sgd", momentum=0.9, nesterov=True))
ADAM = TrainConfig(epochs=1, lr=0.01, weight_decay=1e-4, optimizer=OptimizerConfig("adam"))
BUILDERS = {"cifar_resnet": cifar_resnet.build, "vgg": vgg.build, "imagenet_resnet": imagenet_resnet.build}


def small_resnet(seed: int = 0) -> nn.Module:
    return build_model(ModelConfig("cifar_resnet", 8), num_classes=10, seed=seed)


def trained_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


# The parameters of CIFAR ResNet-8, spelled out: blocks 1 and 2 open stages 2 and 3 (shortcut convs).
BN = {"bn.weight", "bn.bias"} | {f"blocks.{b}.{bn}.{t}" for b in range(3) for bn in ("bn1", "bn2") for t in ("weight", "bias")} \
    | {f"blocks.{b}.shortcut.1.{t}" for b in (1, 2) for t in ("weight", "bias")}
CONV = {"conv.weight"} | {f"blocks.{b}.conv{i}.weight" for b in range(3) for i in (1, 2)} \
    | {"blocks.1.shortcut.0.weight", "blocks.2.shortcut.0.weight"}
FC = {"fc.weight", "fc.bias"}


def test_the_modes_are_the_papers_five():
    assert MODES == ("full", "bn_only", "bn_output", "output_only", "random_params")


def test_the_names_above_are_all_of_resnet8():
    assert {n for n, _ in small_resnet().named_parameters()} == BN | CONV | FC


@pytest.mark.parametrize("mode, expected", [
    ("full", BN | CONV | FC), ("bn_only", BN), ("bn_output", BN | FC), ("output_only", FC), ("random_params", CONV),
])
def test_exactly_these_parameters_train(mode, expected):
    model = small_resnet()
    trainability = apply_mode(model, mode, seed=0)
    assert trained_names(model) == expected
    assert set(trainability.masks) == (CONV if mode == "random_params" else set())
    assert trainability.mode == mode


def test_applying_a_mode_again_replaces_the_previous_one():
    model = small_resnet()
    apply_mode(model, "output_only", seed=0)
    apply_mode(model, "bn_only", seed=0)
    assert trained_names(model) == BN


def test_resnet14_counts_match_the_paper():
    model = build_model(ModelConfig("cifar_resnet", 14), num_classes=10, seed=0)
    counts = {mode: apply_mode(model, mode, seed=0) for mode in MODES}
    assert {m: t.trainable_params for m, t in counts.items()} == {
        "full": 175_258, "bn_only": 1_120, "bn_output": 1_770, "output_only": 650, "random_params": 1_120}
    assert {t.total_params for t in counts.values()} == {175_258}


@pytest.mark.parametrize("family, depth, width", [
    ("cifar_resnet", 8, 1), ("cifar_resnet", 20, 3), ("cifar_resnet", 110, 1), ("cifar_resnet", 14, 4),
    ("vgg", 11, 1), ("vgg", 13, 1), ("vgg", 19, 1),
    ("imagenet_resnet", 18, 1), ("imagenet_resnet", 50, 1), ("imagenet_resnet", 50, 2),
])
def test_random_params_trains_exactly_as_many_weights_as_bn_only(family, depth, width):
    with torch.device("meta"):  # masks need shapes, not values: this keeps ResNet-200 cheap
        model = BUILDERS[family](depth, width, 10)
    bn_only = apply_mode(model, "bn_only", seed=0).trainable_params
    random_params = apply_mode(model, "random_params", seed=0)
    assert random_params.trainable_params == bn_only
    assert sum(int(m.sum()) for m in random_params.masks.values()) == bn_only


def test_random_params_picks_two_distinct_weights_in_every_output_channel():
    model = build_model(ModelConfig("cifar_resnet", 8, width=2), num_classes=10, seed=0)
    masks = apply_mode(model, "random_params", seed=3).masks
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert mask.dtype == torch.bool and mask.shape == params[name].shape and mask.device.type == "cpu"
        assert torch.equal(mask.flatten(1).sum(dim=1), torch.full((mask.shape[0],), 2))
    stem = masks["conv.weight"].flatten(1).float()  # 27 positions, 32 channels: choices must vary
    assert len({tuple(row.nonzero().flatten().tolist()) for row in stem}) > 10


def test_random_params_masks_come_from_the_seed():
    def masks(seed):
        return apply_mode(small_resnet(), "random_params", seed=seed).masks

    a, b, c = masks(0), masks(0), masks(1)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], c[n]) for n in a)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown mode 'bn'; one of full, bn_only"):
        apply_mode(small_resnet(), "bn", seed=0)


# --- the optimizer and what training moves ------------------------------------------------------


def train_steps(model: nn.Module, trainability: Trainability, train: TrainConfig, steps: int = 5,
                images: torch.Tensor | None = None) -> torch.optim.Optimizer:
    generator = torch.Generator().manual_seed(7)
    optimizer = build_optimizer(model, trainability, train)
    model.train()
    for _ in range(steps):
        x = torch.randn(8, 3, 32, 32, generator=generator) if images is None else images
        y = torch.randint(0, 10, (8,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return optimizer


@pytest.mark.parametrize("train", [SGD, ADAM], ids=["sgd-nesterov", "adam"])
@pytest.mark.parametrize("mode", MODES)
def test_frozen_weights_never_move_and_trainable_ones_do(mode, train):
    model = small_resnet()
    trainability = apply_mode(model, mode, seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    stats_before = {n: b.clone() for n, b in model.named_buffers() if "running" in n}

    optimizer = train_steps(model, trainability, train)

    for name, param in model.named_parameters():
        old = before[name]
        if name in trainability.masks:
            mask = trainability.masks[name]
            assert torch.equal(param[~mask], old[~mask]), f"a masked-out entry of {name} moved"
            assert bool((param[mask] != old[mask]).all()), f"a masked-in entry of {name} did not train"
        elif param.requires_grad:
            assert not torch.equal(param, old), f"{name} trains but did not move"
        else:
            assert torch.equal(param, old), f"frozen {name} moved"
    # BN running statistics are buffers: they follow the data in every mode
    for name, old in stats_before.items():
        assert not torch.equal(dict(model.named_buffers())[name], old), f"{name} did not update"
    held = [p for group in optimizer.param_groups for p in group["params"]]
    assert all(p.requires_grad for p in held)
    assert {id(p) for p in held} == {id(p) for p in model.parameters() if p.requires_grad}
    assert len(held) == len({id(p) for p in held})


def test_masked_gradients_are_plain_l2_then_masked_even_after_a_second_optimizer():
    model, reference = small_resnet(), small_resnet()
    trainability = apply_mode(model, "random_params", seed=0)
    build_optimizer(model, trainability, SGD)
    build_optimizer(model, trainability, SGD)  # a resume builds another one: decay must not double
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    nn.functional.cross_entropy(reference(x), y).backward()  # same seed, all trainable, no hooks
    for name, param in model.named_parameters():
        if name in trainability.masks:
            raw = dict(reference.named_parameters())[name].grad
            expected = torch.where(trainability.masks[name], raw + 1e-4 * param.detach(), torch.zeros(()))
            torch.testing.assert_close(param.grad, expected, rtol=0, atol=1e-7)
            assert torch.count_nonzero(param.grad[~trainability.masks[name]]) == 0
        else:
            assert param.grad is None, f"frozen {name} got a gradient"


def test_weight_decay_and_momentum_live_where_they_should():
    model = small_resnet()
    trainability = apply_mode(model, "random_params", seed=0)
    optimizer = train_steps(model, trainability, SGD, steps=2)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0]  # decay via the mask hook
    assert optimizer.param_groups[0]["momentum"] == 0.9 and optimizer.param_groups[0]["nesterov"]
    for name, param in model.named_parameters():
        if name in trainability.masks:
            momentum = optimizer.state[param]["momentum_buffer"]
            assert torch.count_nonzero(momentum[~trainability.masks[name]]) == 0

    model = small_resnet()
    full = build_optimizer(model, apply_mode(model, "bn_output", seed=0), ADAM)
    assert [g["weight_decay"] for g in full.param_groups] == [1e-4]
    assert full.param_groups[0]["lr"] == 0.01 and full.param_groups[0]["betas"] == (0.9, 0.999)
    assert isinstance(full, torch.optim.Adam)


def test_a_nan_gradient_does_not_reach_a_masked_out_weight():
    model = small_resnet()
    trainability = apply_mode(model, "random_params", seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    images = torch.randn(8, 3, 32, 32)
    images[0, 0, 0, 0] = float("nan")
    train_steps(model, trainability, SGD, steps=1, images=images)
    for name, mask in trainability.masks.items():
        param = dict(model.named_parameters())[name]
        assert torch.equal(param[~mask], before[name][~mask])
