"""CIFAR VGG-11/13/16/19 with BatchNorm, as open_lth's ``cifar_vgg`` builds them.

Each conv is 3x3 with padding 1 and a bias (as in open_lth, so parameter counts match it;
the BN right after it makes that bias inert), then BN and ReLU; max-pools between stages; no
pool after the last stage, then global average pooling (open_lth's AvgPool2d(2) on the 2x2 map
of a 32x32 image, written adaptively so other image sizes work) and ``fc`` from 512w channels.
The width multiplier scales every conv's channels. The plans, the depth rule and the FLOP count
are in shapes.py.
"""

from __future__ import annotations

from torch import nn

from trainables.models.shapes import VGG_PLANS, VGG_POOL, check_architecture


class VGG(nn.Module):
    def __init__(self, depth: int, width: int, num_classes: int):
        super().__init__()
        check_architecture("vgg", depth, width)
        layers: list[nn.Module] = []
        in_channels = 3
        for spec in VGG_PLANS[depth]:
            if spec == VGG_POOL:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out_channels = spec * width
                layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1),
                           nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
                in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def build(depth: int, width: int, num_classes: int) -> nn.Module:
    return VGG(depth, width, num_classes)

