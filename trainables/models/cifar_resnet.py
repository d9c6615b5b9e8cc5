"""The CIFAR ResNet of He et al. 2016 as open_lth builds it (the paper's main model).

depth = 6n + 2: a 3x3 stem conv, three stages of n basic blocks (two 3x3 convs each) with
16w, 32w and 64w channels, the last two stages starting with stride 2, a 1x1-conv + BN
projection shortcut wherever the shape changes, global average pooling and ``fc``.
Every conv is bias-free and followed by its own BatchNorm2d. The depth rule and the FLOP count
are in shapes.py.
"""

from __future__ import annotations

from torch import nn

from trainables.models.shapes import CIFAR_RESNET_STAGES, check_architecture


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Sequential()
        self.relu = nn.ReLU(inplace=True)  # one module, called twice: hooks see both calls

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, width: int, num_classes: int):
        super().__init__()
        check_architecture("cifar_resnet", depth, width)
        blocks_per_stage = (depth - 2) // 6
        channels = [c * width for c in CIFAR_RESNET_STAGES]
        self.conv = nn.Conv2d(3, channels[0], 3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels[0])
        self.relu = nn.ReLU(inplace=True)
        blocks = []
        in_channels = channels[0]
        for stage, out_channels in enumerate(channels):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(in_channels, out_channels, stride))
                in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels[-1], num_classes)

    def forward(self, x):
        x = self.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        return self.fc(self.pool(x).flatten(1))


def build(depth: int, width: int, num_classes: int) -> nn.Module:
    return CifarResNet(depth, width, num_classes)

