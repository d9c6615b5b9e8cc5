"""Trial arrays (trainables/array): every member trains as its solo trial would, on the CPU in fp32.

The first-step check compares with the solo step computed in float64 (the exact step, to 1e-12):
on this CPU the solo fp32 step itself is off it by up to 5e-3 relative on the stem BN's bias of a
16-channel ResNet (an ill-conditioned sum: measured 1.2e-4 absolute on a 0.026 gradient) where the
array's fp32 step is within 5e-7, so "agrees with solo" is checked as: within 1e-5 relative of the
exact step, or no further from it than twice the solo fp32 step is. fp32 solo and array runs then
drift apart as any two summation orders do; the 2-epoch accuracy check bounds that (1 point).
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from trainables import loop
from trainables.array import run_array
from trainables.array.runner import Member, Array, train_epoch
from trainables.checkpoint import load_checkpoint, load_model
from trainables.config import TrialConfig

FAMILIES = {  # (family, depth, digits side): the smallest of each that the side survives
    "cifar_resnet": ("cifar_resnet", 8, 8),
    "vgg": ("vgg", 11, 16),
    "imagenet_resnet": ("imagenet_resnet", 18, 32),
}
# (mode, seed, lr, weight decay, momentum): mixed on purpose
MEMBERS = [("full", 0, 0.1, 1e-4, 0.9), ("bn_only", 1, 0.5, 5e-4, 0.0),
           ("random_params", 2, 0.25, 1e-4, 0.5), ("bn_output", 3, 0.5, 0.0, 0.9)]


def trial(family: str, mode: str, seed: int, lr: float, wd: float = 1e-4, momentum: float = 0.9, *,
          epochs: int = 2, train_size: int | None = None, optimizer: str = "sgd", data: str = "digits",
          batch_size: int = 64) -> dict:
    name, depth, side = FAMILIES[family]
    return {"dataset": {"name": data, "image_size": side, "train_size": train_size},
            "model": {"family": name, "depth": depth},
            "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": wd, "augment": False,
                      "device": "cpu", "precision": "fp32", "lr_schedule": {"name": "cosine"},
                      "optimizer": {"name": optimizer, "momentum": momentum}},
            "mode": mode, "seed": seed}


def members_of(family: str, **kw) -> list[TrialConfig]:
    return [TrialConfig.from_dict(trial(family, *m, **kw)) for m in MEMBERS]


def build(configs: list[TrialConfig], dtype: torch.dtype = torch.float32) -> list[Member]:
    """Members set up as run_trial sets a trial up, sharing one copy of the data (as run_array)."""
    first = loop.build_setup(configs[0])
    members = [Member(c, first if i == 0 else loop.build_setup(c, data=first.data), None, None)
               for i, c in enumerate(configs)]
    for member in members:
        member.setup.model.to(dtype)  # in place: the optimizer and mask hooks keep their parameters
    return members


@pytest.mark.parametrize("family", FAMILIES)
def test_every_member_starts_from_its_solo_weights_bit_for_bit(family):
    configs = members_of(family, train_size=16, data="synthetic", batch_size=16)
    members = build(configs)
    array = Array(members)
    fused = {**dict(array.model.named_parameters()), **dict(array.model.named_buffers())}
    for index, config in enumerate(configs):
        solo = loop.build_setup(config, data=members[0].setup.data).model  # what run_trial draws
        for name, tensor in [*solo.named_parameters(), *solo.named_buffers()]:
            assert torch.equal(fused[name][index], tensor), (family, config.mode, name)


def _solo_first_step(member: Member, images: torch.Tensor, labels: torch.Tensor, dtype: torch.dtype) -> dict:
    setup = loop.build_setup(member.config, data=member.setup.data)
    setup.model.to(dtype)  # in place: the optimizer and mask hooks keep their parameters
    loss = F.cross_entropy(setup.model(images.to(dtype)), labels)
    loss.backward()
    setup.optimizer.step()
    return {n: p.detach() for n, p in setup.model.named_parameters()}


@pytest.mark.parametrize("family, optimizer, dtype, tolerance", [
    ("cifar_resnet", "sgd", torch.float32, 1e-5), ("vgg", "sgd", torch.float32, 1e-5),
    # ImageNet ResNet's stem max-pool: fp32 rounding of the grouped 7x7 conv flips near-ties, so a
    # few gradients reach a neighbouring pixel (measured 5.2e-4 on a bn_only stem gamma): 1e-3 in
    # fp32, and the rule itself in float64
    ("imagenet_resnet", "sgd", torch.float32, 1e-3),
    pytest.param("imagenet_resnet", "sgd", torch.float64, 1e-9, marks=pytest.mark.slow),
    # Adam's first step is about g / (|g| + eps): a gradient entry near eps turns fp32 rounding
    # into an O(lr) difference, so Adam's rule is checked with the array in float64 too
    ("cifar_resnet", "adam", torch.float64, 1e-9), ("cifar_resnet", "sgd", torch.float64, 1e-9),
    pytest.param("vgg", "sgd", torch.float64, 1e-9, marks=pytest.mark.slow),
])
def test_after_the_first_step_every_member_agrees_with_solo_and_frozen_tensors_keep_every_bit(
        family, optimizer, dtype, tolerance, monkeypatch):
    scale = 0.1 if optimizer == "adam" else 1.0
    # synthetic (noisy) images: digits' flat backgrounds make exact ties in VGG's max-pools, where
    # any two summation orders may route a gradient to different pixels
    configs = [TrialConfig.from_dict(trial(family, mode, seed, lr * scale, wd, momentum, train_size=16,
                                           optimizer=optimizer, data="synthetic", batch_size=16))
               for mode, seed, lr, wd, momentum in MEMBERS]
    members = build(configs, dtype)
    if dtype == torch.float64:
        source = type(members[0].setup.data)
        normalise = source._normalise
        monkeypatch.setattr(source, "_normalise", lambda self, x: normalise(self, x).double())
    before = [{n: p.detach().clone() for n, p in m.setup.model.named_parameters()} for m in members]
    array = Array(members)
    metrics = train_epoch(array, epoch=1)  # train_size == batch_size: one step
    assert all(m is not None for m in metrics)
    fused = dict(array.model.named_parameters())
    for index, member in enumerate(members):
        generator = torch.Generator().manual_seed(member.config.seed * loop.EPOCH_SEED_STRIDE + 1)
        images, labels = next(iter(member.setup.data.train_batches(16, generator)))
        solo = _solo_first_step(member, images, labels, torch.float64)  # the exact step, nearly
        # fp32 rows: within the tolerance, or no further from the exact step than twice the solo
        # fp32 step's own rounding (an ill-conditioned stem gradient; see the module docstring)
        solo32 = _solo_first_step(member, images, labels, torch.float32) if dtype == torch.float32 else None
        trains = {n for n, p in member.setup.model.named_parameters() if p.requires_grad}
        masks = member.setup.trainability.masks
        for name, expected in solo.items():
            got = fused[name][index].detach()
            if name in trains:
                # VGG's conv biases sit before a BN, which cancels them: their exact gradient is 0
                # and their value stays ~0 (fp32 noise ~1e-8), so below 1e-3 the bound is absolute
                scale = expected.abs().max().clamp_min(1e-3)
                worst = float((got.double() - expected).abs().max() / scale)
                own = float((solo32[name].double() - expected).abs().max() / scale) if solo32 else 0.0
                assert worst <= max(tolerance, 2 * own), (family, member.config.mode, name, worst, own)
                if name in masks:  # random_params: the frozen entries of a partly trained tensor
                    assert torch.equal(got[~masks[name]], before[index][name][~masks[name]])
            else:
                assert torch.equal(got, before[index][name]), (family, member.config.mode, name)


@pytest.fixture(scope="module")
def digits_array(tmp_path_factory):
    """Four mixed members on real digits, as an array (with checkpoints and reports) and solo."""
    folder = tmp_path_factory.mktemp("array")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # conftest's one-thread fixture is per test: a module fixture runs before it
    configs = [trial("cifar_resnet", *m) for m in MEMBERS]
    dirs = [folder / f"m{i}" for i in range(len(configs))]
    reports = [[] for _ in configs]
    finals = run_array(configs, [lambda m, c, r=r: r.append((m, c)) for r in reports], dirs)
    solos = [[] for _ in configs]
    solo_finals = [loop.run_trial(c, lambda m, c, r=r: r.append(m)) for c, r in zip(configs, solos)]
    torch.set_num_threads(threads)
    return configs, dirs, reports, finals, solos, solo_finals


def test_after_two_epochs_every_member_is_within_a_point_of_its_solo_run(digits_array):
    configs, _, reports, finals, solos, solo_finals = digits_array
    for config, final, solo in zip(configs, finals, solo_finals):
        assert final["status"] == solo["status"] == "finished"
        assert abs(final["final_test_acc"] - solo["final_test_acc"]) <= 0.01, (config["mode"], final, solo)
        assert final.keys() == solo.keys()
        assert final["trainable_params"] == solo["trainable_params"]
        assert final["total_params"] == solo["total_params"]
    assert finals[0]["final_test_acc"] >= 0.8  # it learned: full training, measured 0.97


def test_every_member_reports_each_epoch_with_the_solo_keys_and_its_checkpoint(digits_array):
    configs, dirs, reports, _, solos, _ = digits_array
    for directory, report, solo in zip(dirs, reports, solos):
        assert [m["epoch"] for m, _ in report] == [1, 2]
        assert [m.keys() for m, _ in report] == [m.keys() for m in solo]
        assert [c for _, c in report] == [directory, directory]  # checkpoint every epoch (the default)


def test_a_members_checkpoint_is_a_solo_checkpoint(digits_array, tmp_path):
    configs, dirs, _, finals, _, _ = digits_array
    for config, directory, final in zip(configs, dirs, finals):
        saved = load_checkpoint(directory)
        assert saved["epoch"] == 2 and saved["final"] == final
        assert set(json.loads((directory / "gamma.json").read_text())["layers"])
        model = load_model(directory)  # frozen weights redrawn from the seed, the trained state on top
        assert not model.training
        assert loop.run_trial(config, checkpoint_dir=directory) == final  # finished: returned untrained


def test_a_member_stopped_mid_array_resumes_alone_and_another_joins_late(tmp_path):
    configs = [trial("cifar_resnet", *m) for m in MEMBERS[:2]]
    dirs = [tmp_path / "a", tmp_path / "b"]
    calls = []

    def fence():  # the lease is lost after the first epoch: nothing of epoch 2 may be written
        calls.append(1)  # called before each member's checkpoint rename: twice an epoch here
        if len(calls) == 3:
            raise RuntimeError("lease lost")

    with pytest.raises(RuntimeError, match="lease lost"):
        run_array(configs, None, dirs, fence=fence)
    assert [load_checkpoint(d)["epoch"] for d in dirs] == [1, 1]
    resumed = []
    final_a = loop.run_trial(configs[0], lambda m, c: resumed.append(m["epoch"]), dirs[0])  # solo
    assert resumed == [2] and final_a["status"] == "finished"
    solo_a = loop.run_trial(configs[0])
    assert abs(final_a["final_test_acc"] - solo_a["final_test_acc"]) <= 0.01

    # b (at epoch 1) and a fresh member c in one array: c trains epoch 1 alone, b joins at epoch 2
    c = trial("cifar_resnet", "bn_only", 7, 0.5)
    seen = {"b": [], "c": []}
    finals = run_array([configs[1], c], [lambda m, _: seen["b"].append(m["epoch"]),
                                         lambda m, _: seen["c"].append(m["epoch"])], [dirs[1], tmp_path / "c"])
    assert seen == {"b": [2], "c": [1, 2]}
    assert all(f["status"] == "finished" for f in finals)
    assert abs(finals[0]["final_test_acc"] - loop.run_trial(configs[1])["final_test_acc"]) <= 0.01


def test_a_member_given_an_absurd_lr_diverges_alone(tmp_path):
    configs = [trial("cifar_resnet", "full", 0, 0.1, epochs=2, train_size=256),
               trial("cifar_resnet", "full", 1, 1e6, epochs=2, train_size=256),
               trial("cifar_resnet", "bn_only", 2, 0.5, epochs=2, train_size=256)]
    dirs = [tmp_path / str(i) for i in range(3)]
    reports = [[] for _ in configs]
    finals = run_array(configs, [lambda m, c, r=r: r.append(m["epoch"]) for r in reports], dirs)
    assert [f["status"] for f in finals] == ["finished", "diverged", "finished"]
    assert reports == [[1, 2], [], [1, 2]]
    solo = loop.run_trial(configs[1], checkpoint_dir=tmp_path / "solo")
    # diverged alike (lr 1e6 makes the weights ~1e5 after one step, so their analyses differ in fp32)
    assert {k: finals[1][k] for k in ("status", "epochs_completed", "best_test_acc", "trainable_params")} == \
           {k: solo[k] for k in ("status", "epochs_completed", "best_test_acc", "trainable_params")}
    saved = load_checkpoint(dirs[1])
    assert saved["final"]["status"] == "diverged" and saved["epoch"] == 0
    assert all(torch.isfinite(p).all() for p in load_model(dirs[1]).parameters())  # stopped before the update
    for index in (0, 2):
        assert finals[index] == loop.run_trial(configs[index], checkpoint_dir=dirs[index])  # finished there


def test_members_that_cannot_share_an_array_are_refused_before_anything_trains(tmp_path):
    a = trial("cifar_resnet", "full", 0, 0.1)
    b = trial("cifar_resnet", "full", 1, 0.1)
    b["train"]["batch_size"] = 32
    with pytest.raises(ValueError, match="train.batch_size 64 vs 32"):
        run_array([a, b], None, [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "a").exists()


def test_a_member_whose_own_work_raises_fails_alone_and_the_fence_comes_before_each_rename(tmp_path):
    configs = [trial("cifar_resnet", *m, train_size=128) for m in MEMBERS[:3]]
    dirs = [tmp_path / str(i) for i in range(3)]
    reports = [[] for _ in configs]
    fenced = []

    def report(index):
        def call(metrics, checkpoint):
            reports[index].append(metrics["epoch"])
            if index == 1:
                raise OSError("tracking server gone")
        return call

    def fence():  # what is on disk at each call: one call before each member's rename
        fenced.append(tuple(load_checkpoint(d)["epoch"] if (d / "checkpoint.pt").exists() else None for d in dirs))

    finals = run_array(configs, [report(i) for i in range(3)], dirs, fence=fence)
    assert isinstance(finals[1], OSError) and "tracking server gone" in str(finals[1])
    assert [f["status"] for i, f in enumerate(finals) if i != 1] == ["finished", "finished"]
    assert reports == [[1, 2], [1], [1, 2]]
    assert load_checkpoint(dirs[1])["epoch"] == 1 and load_checkpoint(dirs[1])["final"] is None  # stopped there
    assert (None, None, None) in fenced and (1, None, None) in fenced and (1, 1, None) in fenced
    for index in (0, 2):
        assert finals[index] == loop.run_trial(configs[index], checkpoint_dir=dirs[index])
