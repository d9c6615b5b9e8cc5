"""The model registry: every family looked up by name.

Conventions every family follows, so that training modes and analysis need no per-family code:
the classifier is ``model.fc`` (an ``nn.Linear``); every convolution is followed by an
``nn.BatchNorm2d`` with as many channels as the conv has outputs, and BN appears nowhere else
(so BN channels == the sum of conv output channels); every ReLU is an ``nn.ReLU`` module; the
model is built on the CPU with the paper's initialisation drawn from the trial's seed.
"""

from __future__ import annotations

import difflib
from types import ModuleType

import torch
from torch import nn

from trainables.config import ModelConfig
from trainables.models import cifar_resnet, imagenet_resnet, vgg
from trainables.models.init import init_model

_REGISTRY: dict[str, ModuleType] = {
    "cifar_resnet": cifar_resnet,
    "vgg": vgg,
    "imagenet_resnet": imagenet_resnet,
}
FAMILIES: tuple[str, ...] = tuple(_REGISTRY)

__all__ = ["FAMILIES", "check_architecture", "build_model", "flops_per_image", "init_model"]


def check_architecture(family: str, depth: int, width: int) -> None:
    """KeyError for an unknown family; ValueError with a message for the user for a bad shape.

    A depth problem's message never mentions "width" and a width problem's always does, so a
    caller can tell which key to point at.
    """
    if family not in _REGISTRY:
        close = difflib.get_close_matches(str(family), FAMILIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise KeyError(f"unknown model family {family!r}{hint}; one of {', '.join(FAMILIES)}")
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ValueError(f"depth must be an integer, got {depth!r}")
    if isinstance(width, bool) or not isinstance(width, int):
        raise ValueError(f"width must be an integer, got {width!r}")
    _REGISTRY[family].check(depth, width)


def build_model(cfg: ModelConfig, num_classes: int, seed: int, bias_init: str = "zeros") -> nn.Module:
    """The model ``cfg`` names, on the CPU, initialised from ``seed`` (see models/init.py);
    ``bias_init="uniform"`` leaves biases at PyTorch's default draw, as open_lth does."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    model = _build_on_meta(cfg, num_classes)
    # Built on the meta device, then given real (uninitialised) storage: the family's own
    # constructor-time init never runs, so a big model pays for exactly one random init.
    model.to_empty(device="cpu")
    return init_model(model, seed, cfg.bn_init, bias_init)


def flops_per_image(cfg: ModelConfig, num_classes: int, image_size: int) -> int:
    """Forward FLOPs for one ``image_size`` x ``image_size`` RGB image.

    Counted as 2 x the multiply-accumulates of every convolution and linear layer (the usual
    convention; BN, ReLU, pooling, biases and residual additions are left out). Computed from
    the shapes alone, so it is instant even for ResNet-866 (building it, even on the meta
    device, takes about a second); tests check each family against hooks on a real forward.
    """
    check_architecture(cfg.family, cfg.depth, cfg.width)
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    return 2 * _REGISTRY[cfg.family].macs(cfg.depth, cfg.width, num_classes, image_size)


def _build_on_meta(cfg: ModelConfig, num_classes: int) -> nn.Module:
    check_architecture(cfg.family, cfg.depth, cfg.width)
    with torch.device("meta"):
        return _REGISTRY[cfg.family].build(cfg.depth, cfg.width, num_classes)
