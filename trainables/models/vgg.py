"""CIFAR VGG-11/13/16/19 with BatchNorm, as open_lth's ``cifar_vgg`` builds them.

Each conv is 3x3 with padding 1 and a bias (as in open_lth, so parameter counts match it;
the BN right after it makes that bias inert), then BN and ReLU; max-pools between stages; no
pool after the last stage, then global average pooling (open_lth's AvgPool2d(2) on the 2x2 map
of a 32x32 image, written adaptively so other image sizes work) and ``fc`` from 512w channels.
The width multiplier scales every conv's channels.
"""

from __future__ import annotations

from torch import nn

MAX_WIDTH = 64
POOL = "M"
PLANS: dict[int, tuple] = {
    11: (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512),
    13: (64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512),
    16: (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512),
    19: (64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL,
         512, 512, 512, 512),
}


def check(depth: int, width: int) -> None:
    """Raise ValueError (naming depth or width, never both) for a shape this family cannot build."""
    if depth not in PLANS:
        raise ValueError(f"{depth} is not a VGG depth for vgg; one of {', '.join(map(str, PLANS))}")
    if not 1 <= width <= MAX_WIDTH:
        raise ValueError(f"width must be an integer 1..{MAX_WIDTH}, got {width}")


class VGG(nn.Module):
    def __init__(self, depth: int, width: int, num_classes: int):
        super().__init__()
        check(depth, width)
        layers: list[nn.Module] = []
        in_channels = 3
        for spec in PLANS[depth]:
            if spec == POOL:
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


def macs(depth: int, width: int, num_classes: int, image_size: int) -> int:
    """Multiply-accumulates of the convs and ``fc`` for one image, from the shapes alone."""
    check(depth, width)
    side, in_channels, total = image_size, 3, 0
    for spec in PLANS[depth]:
        if spec == POOL:
            side //= 2
        else:
            total += side * side * spec * width * in_channels * 9
            in_channels = spec * width
    return total + in_channels * num_classes
