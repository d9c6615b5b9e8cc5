"""Every model family's shape rules, without torch: the depths and widths it builds, and the
multiply-accumulates of one image, computed from the shapes alone.

This is the family registry (``FAMILIES``). Validating a spec and sizing a sweep need only these
rules, so they live here, apart from the ``nn.Module`` code: ``sweeper validate`` checks and
costs ResNet-866 without importing torch or building anything. Each family's module
(``cifar_resnet``, ``vgg``, ``imagenet_resnet``) builds the model from the same constants, and
tests check every ``macs`` against hooks on a real forward.

A bad shape is a ``ConfigError`` naming its field (``model.family``, ``model.depth`` or
``model.width``), so the config points at the key that is wrong without reading the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from trainables.config import ConfigError
from trainables.keys import did_you_mean

if TYPE_CHECKING:
    from trainables.config import ModelConfig

MAX_WIDTH = 64  # every family's widest multiplier

# --- cifar_resnet: He et al. 2016's CIFAR ResNet, depth 6n + 2 -------------------------------

CIFAR_RESNET_STAGES = (16, 32, 64)  # channels of the three stages, times the width multiplier


def _cifar_resnet_depth(depth: int) -> str | None:
    if (depth - 2) % 6 != 0:
        return f"{depth} is not 6n+2 for cifar_resnet (8, 14, 20, 32, 56, 110, ...)"
    if depth < 8:
        return f"{depth} is too shallow for cifar_resnet: depth is 6n+2 with n >= 1 (8, 14, 20, ...)"
    return None


def _cifar_resnet_macs(depth: int, width: int, num_classes: int, image_size: int) -> int:
    """Layer by layer as models/cifar_resnet.py builds it: stem, blocks, projection shortcuts, fc."""
    channels = [c * width for c in CIFAR_RESNET_STAGES]
    side = image_size
    total = side * side * channels[0] * 3 * 9  # stem
    in_channels = channels[0]
    for stage, out_channels in enumerate(channels):
        for index in range((depth - 2) // 6):
            stride = 2 if stage > 0 and index == 0 else 1
            side = (side - 1) // stride + 1  # 3x3 pad 1 and 1x1 pad 0 agree on the output side
            total += side * side * out_channels * (in_channels * 9 + out_channels * 9)
            if stride != 1 or in_channels != out_channels:
                total += side * side * out_channels * in_channels
            in_channels = out_channels
    return total + in_channels * num_classes


# --- vgg: CIFAR VGG-11/13/16/19 with BatchNorm ----------------------------------------------

VGG_POOL = "M"
VGG_PLANS: dict[int, tuple] = {  # conv channels (times the width multiplier) and max-pools, in order
    11: (64, VGG_POOL, 128, VGG_POOL, 256, 256, VGG_POOL, 512, 512, VGG_POOL, 512, 512),
    13: (64, 64, VGG_POOL, 128, 128, VGG_POOL, 256, 256, VGG_POOL, 512, 512, VGG_POOL, 512, 512),
    16: (64, 64, VGG_POOL, 128, 128, VGG_POOL, 256, 256, 256, VGG_POOL, 512, 512, 512, VGG_POOL, 512, 512, 512),
    19: (64, 64, VGG_POOL, 128, 128, VGG_POOL, 256, 256, 256, 256, VGG_POOL, 512, 512, 512, 512, VGG_POOL,
         512, 512, 512, 512),
}


def _vgg_depth(depth: int) -> str | None:
    if depth not in VGG_PLANS:
        return f"{depth} is not a VGG depth for vgg; one of {', '.join(map(str, VGG_PLANS))}"
    return None


def _vgg_macs(depth: int, width: int, num_classes: int, image_size: int) -> int:
    side, in_channels, total = image_size, 3, 0
    for spec in VGG_PLANS[depth]:
        if spec == VGG_POOL:
            side //= 2
        else:
            total += side * side * spec * width * in_channels * 9
            in_channels = spec * width
    return total + in_channels * num_classes


# --- imagenet_resnet: torchvision's ResNets, widened as open_lth ----------------------------

IMAGENET_BASE_FILTERS = 64  # stem and first-stage filters at width 1 (open_lth's default W)
BASIC, BOTTLENECK = "basic", "bottleneck"
IMAGENET_LAYOUTS: dict[int, tuple[str, list[int]]] = {  # block kind and blocks per stage
    18: (BASIC, [2, 2, 2, 2]),
    34: (BASIC, [3, 4, 6, 3]),
    50: (BOTTLENECK, [3, 4, 6, 3]),
    101: (BOTTLENECK, [3, 4, 23, 3]),
    152: (BOTTLENECK, [3, 8, 36, 3]),
    200: (BOTTLENECK, [3, 24, 36, 3]),
}
EXPANSION = {BASIC: 1, BOTTLENECK: 4}  # torchvision's BasicBlock.expansion, Bottleneck.expansion


def _imagenet_resnet_depth(depth: int) -> str | None:
    if depth not in IMAGENET_LAYOUTS:
        return f"{depth} is not an imagenet_resnet depth; one of {', '.join(map(str, IMAGENET_LAYOUTS))}"
    return None


def _imagenet_resnet_macs(depth: int, width: int, num_classes: int, image_size: int) -> int:
    """7x7/2 stem, 3x3/2 max-pool, stages of 64w..512w planes with the stride on the 3x3 conv, a
    1x1 downsample where the shape changes, fc."""
    block, layers = IMAGENET_LAYOUTS[depth]
    filters = IMAGENET_BASE_FILTERS * width
    side = (image_size + 2 * 3 - 7) // 2 + 1  # stem conv 7x7, stride 2, pad 3
    total = side * side * filters * 3 * 49
    side = (side + 2 * 1 - 3) // 2 + 1  # max-pool 3x3, stride 2, pad 1
    in_channels = filters
    for stage, blocks in enumerate(layers):
        planes = filters * 2 ** stage
        out_channels = planes * EXPANSION[block]
        for index in range(blocks):
            stride = 2 if stage > 0 and index == 0 else 1
            side_in, side = side, (side - 1) // stride + 1
            if block == BASIC:
                total += side * side * planes * (in_channels * 9 + planes * 9)
            else:  # inner width = planes (base_width 64, one group)
                total += side_in * side_in * planes * in_channels  # 1x1 reduce, before the stride
                total += side * side * (planes * planes * 9 + out_channels * planes)
            if stride != 1 or in_channels != out_channels:
                total += side * side * out_channels * in_channels
            in_channels = out_channels
    return total + in_channels * num_classes


# --- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    depth_problem: Callable[[int], str | None]  # what is wrong with a depth, for the user; None if fine
    macs: Callable[[int, int, int, int], int]  # (depth, width, num_classes, image_size) -> MACs
    builder: str  # the torch module whose build(depth, width, num_classes) makes the nn.Module


_FAMILIES = {
    "cifar_resnet": Family(_cifar_resnet_depth, _cifar_resnet_macs, "trainables.models.cifar_resnet"),
    "vgg": Family(_vgg_depth, _vgg_macs, "trainables.models.vgg"),
    "imagenet_resnet": Family(_imagenet_resnet_depth, _imagenet_resnet_macs, "trainables.models.imagenet_resnet"),
}
FAMILIES: tuple[str, ...] = tuple(_FAMILIES)


def family(name: str) -> Family:
    """The registry entry of ``name``, or a ``ConfigError`` at ``model.family``."""
    if name not in _FAMILIES:
        raise ConfigError("model.family", f"unknown model family {name!r}{did_you_mean(name, FAMILIES)}; "
                                          f"one of {', '.join(FAMILIES)}")
    return _FAMILIES[name]


def check_architecture(name: str, depth: int, width: int) -> None:
    """A ``ConfigError`` at ``model.family``, ``model.depth`` or ``model.width`` for a shape
    ``name`` cannot build (the depth is checked before the width)."""
    rules = family(name)
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ConfigError("model.depth", f"depth must be an integer, got {depth!r}")
    if isinstance(width, bool) or not isinstance(width, int):
        raise ConfigError("model.width", f"width must be an integer, got {width!r}")
    problem = rules.depth_problem(depth)
    if problem is not None:
        raise ConfigError("model.depth", problem)
    if not 1 <= width <= MAX_WIDTH:
        raise ConfigError("model.width", f"width must be an integer 1..{MAX_WIDTH}, got {width}")


def flops_per_image(cfg: ModelConfig, num_classes: int, image_size: int) -> int:
    """Forward FLOPs for one ``image_size`` x ``image_size`` RGB image.

    Counted as 2 x the multiply-accumulates of every convolution and linear layer (the usual
    convention; BN, ReLU, pooling, biases and residual additions are left out). From the shapes
    alone, so it is instant even for ResNet-866 (building it, even on the meta device, takes
    about a second).
    """
    check_architecture(cfg.family, cfg.depth, cfg.width)
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    return 2 * family(cfg.family).macs(cfg.depth, cfg.width, num_classes, image_size)
