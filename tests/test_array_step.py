"""The array's training step on the device's terms: few launches, no host sync, solo's layout and
precision, each member's batch and loss its solo one (trainables/array, on the CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from trainables import loop
from trainables.array.batches import member_batches
from trainables.array.fused import fuse_model, repeat_input
from trainables.array.measure import ops_per_step
from trainables.array.runner import Array, Member, MemberLoss
from trainables.config import ModelConfig, TrialConfig
from trainables.models import build_model


def tiny(mode: str, seed: int, *, depth: int = 20, lr: float = 0.1, wd: float = 1e-4, momentum: float = 0.9,
         smoothing: float = 0.0) -> dict:
    return {"dataset": {"name": "synthetic", "image_size": 8, "train_size": 4, "test_size": 2},
            "model": {"family": "cifar_resnet", "depth": depth},
            "train": {"epochs": 1, "batch_size": 2, "device": "cpu", "precision": "fp32", "lr": lr,
                      "weight_decay": wd, "label_smoothing": smoothing, "optimizer": {"momentum": momentum}},
            "mode": mode, "seed": seed}


@pytest.mark.parametrize("mode", ["bn_only", "full"])
def test_a_step_of_16_members_costs_at_most_a_quarter_more_ops_than_one_solo_step(mode):
    # counted through run_trial / run_array (ResNet-20): ops that grow with K would show here
    solo = ops_per_step([tiny(mode, 0)], short=2, long=3)
    array = ops_per_step([tiny(mode, s) for s in range(16)], short=2, long=3)
    assert solo > 100  # it counted a real step
    assert array <= 1.25 * solo, (mode, solo, array)


class NoScalarReads(TorchDispatchMode):
    """Fails on any op that reads a value from a tensor back to the host (a sync on CUDA)."""

    READS = {"_local_scalar_dense", "is_nonzero", "item", "equal", "allclose"}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in self.READS:
            raise AssertionError(f"{func} reads a scalar from a tensor")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_the_optimizer_step_reads_no_scalar_from_its_tensors(optimizer):
    configs = []
    for mode, seed, wd, momentum in (("full", 0, 1e-4, 0.9), ("random_params", 1, 5e-4, 0.0), ("bn_only", 2, 0.0, 0.5)):
        config = tiny(mode, seed, depth=8, wd=wd, momentum=momentum)
        config["train"]["optimizer"]["name"] = optimizer
        configs.append(TrialConfig.from_dict(config))
    first = loop.build_setup(configs[0])
    array = Array([Member(c, first if i == 0 else loop.build_setup(c, data=first.data), None, None)
                    for i, c in enumerate(configs)])
    images, labels = next(member_batches(first.data, 2, [torch.Generator().manual_seed(i) for i in range(3)]))
    array.loss(array.net(images), labels).sum().backward()
    before = {n: p.detach().clone() for n, p in array.model.named_parameters()}
    with NoScalarReads():
        array.optimizer.step(array.lrs())
    moved = [n for n, p in array.model.named_parameters() if not torch.equal(p, before[n])]
    assert moved  # it updated something, with no read-back
    with pytest.raises(AssertionError, match="reads a scalar"), NoScalarReads():  # the guard guards
        bool(torch.ones(1).any())


def test_every_members_batch_is_its_solo_batch_bit_for_bit():
    config = TrialConfig.from_dict(tiny("full", 0))
    data = loop.build_setup(config).data
    assert data.augment and data.flip  # crops and flips, the whole path
    seeds = [3, 11, 5]
    fused = list(member_batches(data, 3, [torch.Generator().manual_seed(s) for s in seeds]))
    for k, seed in enumerate(seeds):
        solo = list(data.train_batches(3, torch.Generator().manual_seed(seed)))
        assert len(solo) == len(fused) == 2  # a full batch and the last partial one
        for (images, labels), (stacked, member_labels) in zip(solo, fused):
            assert torch.equal(stacked[:, 3 * k:3 * k + 3], images)
            assert torch.equal(member_labels[k], labels)


def test_each_member_has_its_own_label_smoothing_in_one_batched_loss():
    smoothing = [0.0, 0.1, 0.3]
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 10, generator=generator)
    labels = torch.randint(0, 10, (3, 5), generator=generator)
    got = MemberLoss(smoothing, torch.device("cpu"))(logits, labels)
    want = torch.stack([F.cross_entropy(logits[k], labels[k], label_smoothing=e) for k, e in enumerate(smoothing)])
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    shared = MemberLoss([0.1] * 3, torch.device("cpu"))(logits, labels)
    torch.testing.assert_close(shared, torch.stack([F.cross_entropy(logits[k], labels[k], label_smoothing=0.1)
                                                    for k in range(3)]), rtol=1e-6, atol=1e-7)


def _models_with_nonzero_biases(count: int) -> list[torch.nn.Module]:
    models = [build_model(ModelConfig("cifar_resnet", 8), 10, seed) for seed in range(count)]
    generator = torch.Generator().manual_seed(1)
    for model in models:
        with torch.no_grad():
            model.fc.bias.copy_(torch.randn(model.fc.bias.shape, generator=generator))
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    return models


def test_fused_weights_and_the_evaluation_input_keep_the_activations_channels_last_layout():
    models = [m.to(memory_format=torch.channels_last) for m in _models_with_nonzero_biases(3)]
    fused = fuse_model(models, torch.channels_last)
    conv = fused.conv  # the stem conv as conv2d sees it
    weight = conv.weight.view(-1, *conv.weight.shape[2:])
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    images = torch.randn(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    repeated = repeat_input(images, 3)
    assert repeated.is_contiguous(memory_format=torch.channels_last) and not repeated.is_contiguous()
    assert torch.equal(repeated, images.repeat(1, 3, 1, 1))
    fused.eval()
    out = fused(repeated)
    for k, model in enumerate(models):
        torch.testing.assert_close(out[k], model.eval()(images), rtol=1e-5, atol=1e-5)


def test_under_bf16_autocast_the_fused_classifier_gives_solos_dtype_and_values_from_nonzero_biases():
    models = _models_with_nonzero_biases(2)
    fused = fuse_model(models).eval()
    images = torch.randn(4, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        solo = [m.eval()(images) for m in models]
        out = fused(repeat_input(images, 2))
    assert out.dtype == solo[0].dtype == torch.bfloat16
    for k in range(2):
        # one bf16 step apart at most: the same ops in the same precision, summed in another order
        torch.testing.assert_close(out[k].float(), solo[k].float(), rtol=2e-2, atol=2e-2)
