"""ImageNet ResNets from torchvision's own classes (never pretrained weights).

18 and 34 use BasicBlock, 50/101/152 Bottleneck as torchvision's resnetN; ResNet-200 is the
same Bottleneck with layers [3, 24, 36, 3] (He et al. 2016b), which torchvision lacks. Width w
gives torchvision's wide variants (w=2 is wide_resnet50_2: width_per_group 128), which only
exist for bottleneck blocks. torchvision's ResNet already meets the registry's conventions:
``fc`` is the classifier, each conv (also inside ``downsample``) is followed by its BN, and one
shared ``nn.ReLU`` module does every activation.
"""

from __future__ import annotations

from torch import nn

MAX_WIDTH = 64
BASIC, BOTTLENECK = "basic", "bottleneck"
LAYOUTS: dict[int, tuple[str, list[int]]] = {
    18: (BASIC, [2, 2, 2, 2]),
    34: (BASIC, [3, 4, 6, 3]),
    50: (BOTTLENECK, [3, 4, 6, 3]),
    101: (BOTTLENECK, [3, 4, 23, 3]),
    152: (BOTTLENECK, [3, 8, 36, 3]),
    200: (BOTTLENECK, [3, 24, 36, 3]),
}
BOTTLENECK_DEPTHS = tuple(d for d, (block, _) in LAYOUTS.items() if block == BOTTLENECK)
EXPANSION = {BASIC: 1, BOTTLENECK: 4}  # torchvision's BasicBlock.expansion, Bottleneck.expansion


def check(depth: int, width: int) -> None:
    """Raise ValueError (naming depth or width, never both) for a shape this family cannot build."""
    if depth not in LAYOUTS:
        raise ValueError(f"{depth} is not an imagenet_resnet depth; one of {', '.join(map(str, LAYOUTS))}")
    if not 1 <= width <= MAX_WIDTH:
        raise ValueError(f"width must be an integer 1..{MAX_WIDTH}, got {width}")
    if width != 1 and depth not in BOTTLENECK_DEPTHS:
        raise ValueError(f"width {width} needs a bottleneck depth ({', '.join(map(str, BOTTLENECK_DEPTHS))}); "
                         f"imagenet_resnet {depth} has basic blocks and only exists at width 1")


def build(depth: int, width: int, num_classes: int) -> nn.Module:
    check(depth, width)
    # torchvision is imported here, not at the top: validating a spec needs only check()
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    block, layers = LAYOUTS[depth]
    block_class = BasicBlock if block == BASIC else Bottleneck
    return ResNet(block_class, layers, num_classes=num_classes, width_per_group=64 * width)


def macs(depth: int, width: int, num_classes: int, image_size: int) -> int:
    """Multiply-accumulates of the convs and ``fc`` for one image, from the shapes alone.

    Follows torchvision's ResNet (7x7/2 stem, 3x3/2 max-pool, stages of 64..512 planes, the
    stride on the 3x3 conv, 1x1 downsample where the shape changes); tests check it against
    hooks on a real forward.
    """
    check(depth, width)
    block, layers = LAYOUTS[depth]
    side = (image_size + 2 * 3 - 7) // 2 + 1  # stem conv 7x7, stride 2, pad 3
    total = side * side * 64 * 3 * 49
    side = (side + 2 * 1 - 3) // 2 + 1  # max-pool 3x3, stride 2, pad 1
    in_channels = 64
    for stage, blocks in enumerate(layers):
        planes = 64 * 2 ** stage
        out_channels = planes * EXPANSION[block]
        for index in range(blocks):
            stride = 2 if stage > 0 and index == 0 else 1
            side_in, side = side, (side - 1) // stride + 1
            if block == BASIC:
                total += side * side * planes * (in_channels * 9 + planes * 9)
            else:
                inner = planes * width  # torchvision: planes * width_per_group / 64
                total += side_in * side_in * inner * in_channels  # 1x1 reduce, before the stride
                total += side * side * (inner * inner * 9 + out_channels * inner)
            if stride != 1 or in_channels != out_channels:
                total += side * side * out_channels * in_channels
            in_channels = out_channels
    return total + in_channels * num_classes
