"""ImageNet ResNets built from torchvision's blocks (never pretrained weights), widened as open_lth.

18 and 34 use BasicBlock, 50/101/152 Bottleneck as torchvision's resnetN; ResNet-200 is the
same Bottleneck with layers [3, 24, 36, 3] (He et al. 2016b), which torchvision lacks. Width w
multiplies the stem and every stage, as open_lth's ``imagenet_resnet_D_W`` with W = 64w filters:
stem 64w, stages of 64w, 128w, 256w, 512w planes (times 4 out of a bottleneck), fc from 512w
(x4). So wide ResNet-18/34 exist too, and 2x ResNet-50 has 98.00M parameters, not the 68.88M of
torchvision's wide_resnet50_2, which widens only the bottleneck's inner 3x3 (see
docs/fidelity.md). At w=1 both are torchvision's resnetN exactly. The model meets the registry's
conventions: ``fc`` is the classifier, each conv (also inside ``downsample``) is followed by its
BN, and one shared ``nn.ReLU`` module does every activation.
"""

from __future__ import annotations

from torch import nn

MAX_WIDTH = 64
BASE_FILTERS = 64  # stem and first-stage filters at width 1 (open_lth's default W)
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


def build(depth: int, width: int, num_classes: int) -> nn.Module:
    check(depth, width)
    # torchvision is imported here, not at the top: validating a spec needs only check()
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    block, layers = LAYOUTS[depth]
    block_class = BasicBlock if block == BASIC else Bottleneck
    model = ResNet(block_class, layers, num_classes=num_classes)
    if width == 1:
        return model
    # Rebuild the stem and the stages at width x the filters. torchvision's _make_layer reads
    # inplanes (what the next block receives) and base_width / groups (64 / 1: a bottleneck's
    # inner width is its planes), so with inplanes set to the wide stem it builds open_lth's layers.
    filters = BASE_FILTERS * width
    model.inplanes = filters
    model.conv1 = nn.Conv2d(3, filters, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(filters)
    for stage, blocks in enumerate(layers):
        setattr(model, f"layer{stage + 1}", model._make_layer(block_class, filters * 2 ** stage, blocks,
                                                              stride=1 if stage == 0 else 2))
    model.fc = nn.Linear(filters * 8 * EXPANSION[block], num_classes)
    return model


def macs(depth: int, width: int, num_classes: int, image_size: int) -> int:
    """Multiply-accumulates of the convs and ``fc`` for one image, from the shapes alone.

    Follows the model above (7x7/2 stem, 3x3/2 max-pool, stages of 64w..512w planes, the stride
    on the 3x3 conv, 1x1 downsample where the shape changes); tests check it against hooks on a
    real forward.
    """
    check(depth, width)
    block, layers = LAYOUTS[depth]
    filters = BASE_FILTERS * width
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
