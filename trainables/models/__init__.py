"""The models: every family looked up by name in one registry (``shapes.FAMILIES``).

Conventions every family follows, so that training modes and analysis need no per-family code:
the classifier is ``model.fc`` (an ``nn.Linear``); every convolution is followed by an
``nn.BatchNorm2d`` with as many channels as the conv has outputs, and BN appears nowhere else
(so BN channels == the sum of conv output channels); every ReLU is an ``nn.ReLU`` module; the
model is built on the CPU with the paper's initialisation drawn from the trial's seed.

Importing this package costs no torch: the shape rules (``check_architecture``,
``flops_per_image``) are torch-free (``shapes.py``), and ``build_model`` imports torch and the
family's module when it is called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from trainables.models.shapes import FAMILIES, check_architecture, family, flops_per_image

if TYPE_CHECKING:
    from torch import nn

    from trainables.config import ModelConfig

__all__ = ["FAMILIES", "check_architecture", "build_model", "flops_per_image"]


def build_model(cfg: ModelConfig, num_classes: int, seed: int, bias_init: str = "zeros") -> nn.Module:
    """The model ``cfg`` names, on the CPU, initialised from ``seed`` (see models/init.py);
    ``bias_init="uniform"`` leaves biases at PyTorch's default draw, as open_lth does."""
    import torch

    from trainables.models.init import init_model

    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    check_architecture(cfg.family, cfg.depth, cfg.width)
    builder = importlib.import_module(family(cfg.family).builder)
    # Built on the meta device, then given real (uninitialised) storage: the family's own
    # constructor-time init never runs, so a big model pays for exactly one random init.
    with torch.device("meta"):
        model = builder.build(cfg.depth, cfg.width, num_classes)
    model.to_empty(device="cpu")
    return init_model(model, seed, cfg.bn_init, bias_init)
