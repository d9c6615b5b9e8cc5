"""ImageNet ResNets built from torchvision's blocks (never pretrained weights), widened as open_lth.

18 and 34 use BasicBlock, 50/101/152 Bottleneck as torchvision's resnetN; ResNet-200 is the
same Bottleneck with layers [3, 24, 36, 3] (He et al. 2016b), which torchvision lacks. Width w
multiplies the stem and every stage, as open_lth's ``imagenet_resnet_D_W`` with W = 64w filters:
stem 64w, stages of 64w, 128w, 256w, 512w planes (times 4 out of a bottleneck), fc from 512w
(x4). So wide ResNet-18/34 exist too, and 2x ResNet-50 has 98.00M parameters, not the 68.88M of
torchvision's wide_resnet50_2, which widens only the bottleneck's inner 3x3 (see
docs/fidelity.md). At w=1 both are torchvision's resnetN exactly. The model meets the registry's
conventions: ``fc`` is the classifier, each conv (also inside ``downsample``) is followed by its
BN, and one shared ``nn.ReLU`` module does every activation. The layouts, the depth rule and the
FLOP count are in shapes.py.
"""

from __future__ import annotations

from torch import nn

from trainables.models.shapes import BASIC, EXPANSION, IMAGENET_BASE_FILTERS, IMAGENET_LAYOUTS, check_architecture


def build(depth: int, width: int, num_classes: int) -> nn.Module:
    check_architecture("imagenet_resnet", depth, width)
    # torchvision is imported here, not at the top: importing it costs about a second
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    block, layers = IMAGENET_LAYOUTS[depth]
    block_class = BasicBlock if block == BASIC else Bottleneck
    model = ResNet(block_class, layers, num_classes=num_classes)
    if width == 1:
        return model
    # Rebuild the stem and the stages at width x the filters. torchvision's _make_layer reads
    # inplanes (what the next block receives) and base_width / groups (64 / 1: a bottleneck's
    # inner width is its planes), so with inplanes set to the wide stem it builds open_lth's layers.
    filters = IMAGENET_BASE_FILTERS * width
    model.inplanes = filters
    model.conv1 = nn.Conv2d(3, filters, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(filters)
    for stage, blocks in enumerate(layers):
        setattr(model, f"layer{stage + 1}", model._make_layer(block_class, filters * 2 ** stage, blocks,
                                                              stride=1 if stage == 0 else 2))
    model.fc = nn.Linear(filters * 8 * EXPANSION[block], num_classes)
    return model

