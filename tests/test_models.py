"""The model registry: shapes the paper's tables pin, conventions, seeded init, FLOPs."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torchvision
from torch import nn

from trainables.config import ConfigError, ModelConfig, TrialConfig
from trainables.models import FAMILIES, build_model, check_architecture, cifar_resnet, flops_per_image, imagenet_resnet, vgg

BUILDERS = {"cifar_resnet": cifar_resnet.build, "vgg": vgg.build, "imagenet_resnet": imagenet_resnet.build}


def meta_model(family: str, depth: int, width: int = 1, num_classes: int = 10) -> nn.Module:
    """The architecture without storage or init: counting parameters of ResNet-866 stays cheap."""
    with torch.device("meta"):
        return BUILDERS[family](depth, width, num_classes)


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bn_count(model: nn.Module) -> int:
    return sum(p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())


def test_families_are_the_three_the_study_uses():
    assert FAMILIES == ("cifar_resnet", "vgg", "imagenet_resnet")


# --- check_architecture ------------------------------------------------------------------------


@pytest.mark.parametrize("family, depth", [("cifar_resnet", d) for d in (8, 14, 20, 32, 56, 110, 218, 434, 866)]
                         + [("vgg", d) for d in (11, 13, 16, 19)]
                         + [("imagenet_resnet", d) for d in (18, 34, 50, 101, 152, 200)])
def test_every_depth_the_study_names_is_accepted(family, depth):
    assert check_architecture(family, depth, 1) is None  # no exception: the depth is valid


def shape_error(family, depth, width) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        check_architecture(family, depth, width)
    return info.value


def test_unknown_family_names_the_family_with_a_suggestion():
    error = shape_error("cifar_resnett", 20, 1)
    assert (error.path, error.message) == ("model.family", "unknown model family 'cifar_resnett' (did you mean "
                                                           "'cifar_resnet'?); one of cifar_resnet, vgg, imagenet_resnet")


@pytest.mark.parametrize("family, depth, expected", [
    ("cifar_resnet", 15, "15 is not 6n+2 for cifar_resnet"),
    ("cifar_resnet", 2, "2 is too shallow for cifar_resnet"),
    ("cifar_resnet", -4, "-4 is too shallow for cifar_resnet"),
    ("vgg", 12, "12 is not a VGG depth for vgg; one of 11, 13, 16, 19"),
    ("imagenet_resnet", 20, "20 is not an imagenet_resnet depth; one of 18, 34, 50, 101, 152, 200"),
])
def test_bad_depth_names_the_depth_field(family, depth, expected):
    error = shape_error(family, depth, 1)
    assert error.path == "model.depth"
    assert error.message.startswith(expected)


@pytest.mark.parametrize("family, depth, width", [
    ("cifar_resnet", 20, 0), ("cifar_resnet", 20, 65), ("vgg", 11, 0), ("vgg", 11, -1),
    ("imagenet_resnet", 50, 0), ("imagenet_resnet", 18, 65),
])
def test_bad_width_names_the_width_field(family, depth, width):
    assert shape_error(family, depth, width).path == "model.width"


def test_width_message_is_fit_for_a_user():
    assert shape_error("cifar_resnet", 20, 0).message == "width must be an integer 1..64, got 0"


def test_a_depth_and_a_width_both_wrong_name_the_depth_first():
    assert shape_error("vgg", 12, 0).path == "model.depth"


def test_trial_config_points_at_the_key_that_is_wrong():
    def error(model):
        with pytest.raises(ConfigError) as info:
            TrialConfig.from_dict({"dataset": {"name": "synthetic"}, "model": model, "train": {"epochs": 1}})
        return info.value

    assert error({"family": "cifar_resnet", "depth": 15}).path == "model.depth"
    assert error({"family": "cifar_resnet", "depth": 14, "width": 0}).path == "model.width"
    assert error({"family": "resnet", "depth": 14}).path == "model.family"


def test_the_shape_rules_need_no_torch():
    """Validating a spec checks and costs models through shapes.py, which must not load torch."""
    script = ("import sys\n"
              "from trainables.config import ModelConfig, TrialConfig\n"
              "from trainables.models import flops_per_image\n"
              "TrialConfig.from_dict({'dataset': {'name': 'cifar10'}, 'model': {'family': 'imagenet_resnet', "
              "'depth': 50}, 'train': {'epochs': 1}})\n"
              "flops_per_image(ModelConfig('cifar_resnet', 866), 10, 32)\n"
              "print('torch' in sys.modules, 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# --- the paper's parameter counts (docs/paper-setup.md) -------------------------------------------


@pytest.mark.parametrize("depth, total, bn", [
    (14, 175_258, 1_120), (32, 466_906, 2_464), (56, 855_770, 4_256), (110, 1_730_714, 8_288),
    (218, 3_480_602, 16_352), (434, 6_980_378, 32_480), (866, 13_979_930, 64_736),
])
def test_cifar_resnet_parameter_counts_match_the_paper(depth, total, bn):
    model = meta_model("cifar_resnet", depth)
    assert (count(model), bn_count(model), count(model.fc)) == (total, bn, 650)


@pytest.mark.parametrize("width, bn", [(1, 1_120), (2, 2_240), (4, 4_480), (8, 8_960), (16, 17_920), (32, 35_840)])
def test_cifar_resnet14_bn_counts_grow_with_width_as_in_the_paper(width, bn):
    assert bn_count(meta_model("cifar_resnet", 14, width)) == bn


def test_real_cifar_resnet14_has_the_paper_counts_and_classifies():
    model = build_model(ModelConfig("cifar_resnet", 14), num_classes=10, seed=0)
    assert (count(model), bn_count(model), count(model.fc)) == (175_258, 1_120, 650)
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_cifar_resnet_stages_have_16w_32w_64w_channels_and_stride_2_at_stages_2_and_3():
    model = meta_model("cifar_resnet", 20, width=2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels == 32 and convs[0].kernel_size == (3, 3)
    assert sorted({c.out_channels for c in convs}) == [32, 64, 128]
    shortcuts = [m for m in convs if m.kernel_size == (1, 1)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in shortcuts] == [(32, 64, (2, 2)), (64, 128, (2, 2))]
    assert len(model.blocks) == 9 and model.fc.in_features == 128


def test_imagenet_resnets_match_torchvision():
    resnet18, resnet50 = meta_model("imagenet_resnet", 18, 1, 1000), meta_model("imagenet_resnet", 50, 1, 1000)
    assert (count(resnet18), bn_count(resnet18)) == (11_689_512, 9_600)
    assert (count(resnet50), bn_count(resnet50)) == (25_557_032, 53_120)
    with torch.device("meta"):
        for depth, theirs in [(101, torchvision.models.resnet101()), (152, torchvision.models.resnet152()),
                              (34, torchvision.models.resnet34())]:
            mine = BUILDERS["imagenet_resnet"](depth, 1, 1000)
            assert [(n, p.shape) for n, p in mine.named_parameters()] == [(n, p.shape) for n, p in theirs.named_parameters()]


# open_lth's imagenet_resnet_50_128 and _256 (width 2 and 4): counts of its constructor, which
# widens the stem and every stage; torchvision's wide_resnet50_2 (68.88M / 68,224 BN) widens only
# the bottleneck's inner 3x3, and is not the paper's model.
@pytest.mark.parametrize("depth, width, total, bn", [
    (50, 2, 98_004_072, 106_240), (50, 4, 383_571_176, 212_480),
    (18, 2, 45_693_032, 19_200), (34, 2, 86_110_824, 34_048),
])
def test_wide_imagenet_resnets_have_open_lths_counts(depth, width, total, bn):
    model = meta_model("imagenet_resnet", depth, width, 1000)
    assert (count(model), bn_count(model)) == (total, bn)


@pytest.mark.parametrize("depth, width", [(18, 2), (50, 2), (101, 3)])
def test_wide_imagenet_resnets_widen_the_stem_and_every_stage(depth, width):
    narrow, wide = meta_model("imagenet_resnet", depth, 1, 1000), meta_model("imagenet_resnet", depth, width, 1000)
    pairs = [(a.out_channels, b.out_channels) for a, b in zip(
        *[[m for m in model.modules() if isinstance(m, nn.Conv2d)] for model in (narrow, wide)])]
    assert pairs[0] == (64, 64 * width)  # the stem
    assert all(w == width * n for n, w in pairs)  # every conv, the shortcuts' too
    assert wide.fc.in_features == width * narrow.fc.in_features
    assert bn_count(wide) == width * bn_count(narrow)


def test_a_wide_resnet50_counts_like_open_lths_formula():
    """Parameters from open_lth's recipe by hand: stem 64w, stage s of 64w * 2**s planes, bottleneck
    inner width = planes, out = 4 planes, a 1x1 downsample (+BN) on each stage's first block."""
    w, layers, total = 2, [3, 4, 6, 3], 0
    f = 64 * w
    total += 3 * 49 * f + 2 * f  # stem conv + BN
    inp = f
    for stage, blocks in enumerate(layers):
        planes = f * 2**stage
        for index in range(blocks):
            total += inp * planes + 9 * planes * planes + planes * 4 * planes  # 1x1, 3x3, 1x1
            total += 2 * (planes + planes + 4 * planes)  # their BNs
            if index == 0:
                total += inp * 4 * planes + 2 * 4 * planes  # downsample conv + BN
            inp = 4 * planes
    total += inp * 1000 + 1000  # fc
    assert count(meta_model("imagenet_resnet", 50, w, 1000)) == total == 98_004_072


def test_resnet200_is_bottleneck_3_24_36_3():
    model = meta_model("imagenet_resnet", 200, 1, 1000)
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [3, 24, 36, 3]
    assert isinstance(model.layer1[0], torchvision.models.resnet.Bottleneck)
    assert count(model) == 64_673_832


@pytest.mark.parametrize("depth, total, bn", [(11, 9_231_114, 5_504), (13, 9_416_010, 5_888),
                                              (16, 14_728_266, 8_448), (19, 20_040_522, 11_008)])
def test_vgg_counts_follow_open_lth_cifar_vgg(depth, total, bn):
    model = meta_model("vgg", depth)
    assert (count(model), bn_count(model)) == (total, bn)
    assert count(model.fc) == 512 * 10 + 10


def test_vgg_width_multiplies_every_conv():
    narrow, wide = meta_model("vgg", 11, 1), meta_model("vgg", 11, 3)
    widths = [(a.out_channels, b.out_channels) for a, b in zip(
        *[[m for m in model.modules() if isinstance(m, nn.Conv2d)] for model in (narrow, wide)])]
    assert all(w == 3 * n for n, w in widths) and wide.fc.in_features == 3 * 512


# --- conventions every family follows ------------------------------------------------------------

SMALL = [("cifar_resnet", 8, 1, 32), ("cifar_resnet", 14, 2, 32), ("vgg", 11, 1, 32),
         ("imagenet_resnet", 18, 1, 64), ("imagenet_resnet", 50, 1, 64)]


@pytest.mark.parametrize("family, depth, width, size", SMALL + [("imagenet_resnet", 200, 2, 64), ("vgg", 19, 2, 32)])
def test_every_conv_is_followed_by_its_own_batchnorm_and_fc_is_linear(family, depth, width, size):
    model = meta_model(family, depth, width)
    assert isinstance(model.fc, nn.Linear)
    leaves = [m for m in model.modules() if not list(m.children())]
    convs = [i for i, m in enumerate(leaves) if isinstance(m, nn.Conv2d)]
    bns = [i for i, m in enumerate(leaves) if isinstance(m, nn.BatchNorm2d)]
    assert [i + 1 for i in convs] == bns  # BN right after each conv, and nowhere else
    assert all(leaves[i + 1].num_features == leaves[i].out_channels for i in convs)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.GroupNorm, nn.LayerNorm)) for m in leaves)


@pytest.mark.parametrize("family, depth, width, size", SMALL)
def test_every_relu_is_an_nn_relu_module(family, depth, width, size, monkeypatch):
    model = meta_model(family, depth, width, num_classes=7)
    functional_calls, module_calls = [], []
    real_relu = torch.nn.functional.relu
    monkeypatch.setattr(torch.nn.functional, "relu", lambda *a, **k: functional_calls.append(1) or real_relu(*a, **k))
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.register_forward_hook(lambda *_: module_calls.append(1))
    out = model(torch.empty(2, 3, size, size, device="meta"))
    assert out.shape == (2, 7)
    assert len(module_calls) > 0 and len(functional_calls) == len(module_calls)


@pytest.mark.parametrize("family, depth, size", [("vgg", 11, 32), ("imagenet_resnet", 18, 64)])
def test_real_models_are_built_on_the_cpu_and_classify(family, depth, size):
    model = build_model(ModelConfig(family, depth), num_classes=7, seed=0)
    assert all(t.device.type == "cpu" for t in [*model.parameters(), *model.buffers()])
    assert model(torch.randn(2, 3, size, size)).shape == (2, 7)
    if family == "vgg":  # open_lth's conv biases exist, and start at 0 like every bias
        biases = [m.bias for m in model.modules() if isinstance(m, nn.Conv2d)]
        assert len(biases) == 8 and all(torch.count_nonzero(b) == 0 for b in biases)
    else:  # the recipe, not torchvision's own init (gamma=1, fan_out)
        assert model.bn1.weight.min() < 0.5 and model.fc.bias.abs().sum() == 0
        fan_in = model.conv1.weight[0].numel()
        assert abs(model.conv1.weight.std().item() - (2.0 / fan_in) ** 0.5) < 0.1 * (2.0 / fan_in) ** 0.5


# --- initialisation ------------------------------------------------------------------------------


def state_bytes(model: nn.Module) -> bytes:
    return b"".join(t.numpy().tobytes() for t in model.state_dict().values())


@pytest.mark.parametrize("width", [1, 2])
def test_same_seed_same_weights_other_seed_other_weights(width):
    cfg = ModelConfig("cifar_resnet", 8, width)
    a, b, c = (build_model(cfg, 10, seed) for seed in (3, 3, 4))
    assert state_bytes(a) == state_bytes(b)
    others = dict(c.named_parameters())
    for name, param in a.named_parameters():
        drawn = not name.endswith("bias")  # conv/linear weights and BN gammas are random, biases 0
        assert torch.equal(param, others[name]) != drawn, name


def test_seed_0_draws_are_pinned():
    """Catches any change in the draw order or the recipe: old checkpoints rebuild from the seed."""
    state = build_model(ModelConfig("cifar_resnet", 8), num_classes=10, seed=0).state_dict()
    pins = {
        "conv.weight": (state["conv.weight"].flatten()[:3],
                        [0.6658861041069031, -0.18307754397392273, -0.2857878804206848]),
        "blocks.2.conv2.weight": (state["blocks.2.conv2.weight"].flatten()[-2:],
                                  [-0.08402036875486374, -0.03699924051761627]),
        "bn.weight": (state["bn.weight"][:3], [0.6544935703277588, 0.09814786911010742, 0.5785077214241028]),
        "blocks.2.shortcut.1.weight": (state["blocks.2.shortcut.1.weight"][-2:],
                                       [0.6023456454277039, 0.6877682209014893]),
        "fc.weight": (state["fc.weight"][9, -2:], [-0.17029672861099243, 0.02960023283958435]),
    }
    for name, (actual, expected) in pins.items():
        assert torch.equal(actual, torch.tensor(expected, dtype=torch.float32)), name


def test_the_same_seed_gives_the_same_weights_without_vector_instructions():
    """PyTorch's own CPU normal_ differs between its AVX2 and scalar kernels; our draws must not."""
    script = textwrap.dedent("""
        import hashlib, torch
        from trainables.config import ModelConfig
        from trainables.models import build_model
        model = build_model(ModelConfig("cifar_resnet", 8), 10, 5)
        print(torch.backends.cpu.get_cpu_capability(), hashlib.sha256(b"".join(
            t.numpy().tobytes() for t in model.state_dict().values())).hexdigest())
    """)
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    capability, digest = out.split()
    assert capability == "DEFAULT"
    here = hashlib.sha256(state_bytes(build_model(ModelConfig("cifar_resnet", 8), 10, 5))).hexdigest()
    assert digest == here


def test_init_follows_the_paper():
    model = build_model(ModelConfig("cifar_resnet", 8, width=4), num_classes=10, seed=1)
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            std = m.weight.std().item() / (2.0 / fan_in) ** 0.5
            if m.weight.numel() > 100_000:  # enough draws for a tight estimate
                assert 0.99 < std < 1.01, name
            assert abs(m.weight.mean().item()) < 4 * (2.0 / fan_in / m.weight.numel()) ** 0.5, name
            assert m.bias is None or torch.count_nonzero(m.bias) == 0
        if isinstance(m, nn.BatchNorm2d):
            assert 0.0 <= m.weight.min() and m.weight.max() < 1.0 and m.weight.std() > 0.2
            assert torch.count_nonzero(m.bias) == 0
            assert torch.count_nonzero(m.running_mean) == 0 and torch.equal(m.running_var, torch.ones_like(m.running_var))
            assert m.num_batches_tracked.item() == 0


def test_bn_init_ones_sets_every_gamma_to_one():
    model = build_model(ModelConfig("cifar_resnet", 8, bn_init="ones"), num_classes=10, seed=0)
    gammas = [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(g, torch.ones_like(g)) for g in gammas)
    uniform = build_model(ModelConfig("cifar_resnet", 8), num_classes=10, seed=0)
    assert torch.equal(uniform.conv.weight, model.conv.weight)  # gamma=1 draws nothing, but conv comes first


# --- FLOPs -------------------------------------------------------------------------------------


def flops_by_hooks(cfg: ModelConfig, num_classes: int, image_size: int) -> int:
    """The reference: 2 x MACs of every conv and linear, measured on a meta-device forward."""
    model = meta_model(cfg.family, cfg.depth, cfg.width, num_classes)
    macs = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(lambda mod, inp, out: macs.append(out[0].numel() * mod.weight[0].numel()))
    with torch.no_grad():
        model.eval()(torch.empty(1, 3, image_size, image_size, device="meta"))
    return 2 * sum(macs)


def test_flops_of_known_models():
    assert flops_per_image(ModelConfig("cifar_resnet", 20), 10, 32) == 81_626_368  # 40.8M MACs
    assert flops_per_image(ModelConfig("imagenet_resnet", 18), 1000, 224) == 3_628_146_688  # 1.81 GMACs
    assert flops_per_image(ModelConfig("imagenet_resnet", 50), 1000, 224) == 8_178_368_512  # 4.09 GMACs
    assert flops_per_image(ModelConfig("cifar_resnet", 866), 10, 32) == 4_073_555_200


@pytest.mark.parametrize("family, depth, width, classes, size", [
    ("cifar_resnet", 20, 1, 10, 32), ("cifar_resnet", 14, 3, 7, 33), ("cifar_resnet", 8, 1, 10, 28),
    ("vgg", 11, 2, 10, 32), ("vgg", 19, 1, 100, 64), ("imagenet_resnet", 18, 1, 1000, 224),
    ("imagenet_resnet", 34, 1, 10, 97), ("imagenet_resnet", 50, 2, 1000, 224), ("imagenet_resnet", 101, 3, 10, 65),
    ("imagenet_resnet", 18, 2, 10, 64),
])
def test_analytic_flops_equal_a_measured_forward(family, depth, width, classes, size):
    cfg = ModelConfig(family, depth, width)
    assert flops_per_image(cfg, classes, size) == flops_by_hooks(cfg, classes, size)


def test_flops_reject_a_bad_architecture():
    with pytest.raises(ConfigError, match="6n\\+2"):
        flops_per_image(ModelConfig("cifar_resnet", 15), 10, 32)
