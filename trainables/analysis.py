"""What a trained network did with its BatchNorm: near-zero gammas and ReLU sparsity.

The paper's analyses: BN-only training learns to switch random features off, which shows as
gamma near 0 (``names.GAMMA_THRESHOLDS``, since the paper's exact threshold is not confirmed) and as
ReLU outputs that are exactly 0 on the test set. Both rely on the model conventions of
docs/architecture.md: every BN is an ``nn.BatchNorm2d`` (or 1d) module, every ReLU an ``nn.ReLU``.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ContextManager, Iterable

import torch
from torch import nn

from trainables.names import GAMMA_THRESHOLDS, gamma_metric


def bn_layers(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def bn_gammas(model: nn.Module) -> dict[str, list[float]]:
    """Every affine BN layer's gamma (its ``weight``), by module name, as plain floats."""
    return {name: bn.weight.detach().float().cpu().tolist()
            for name, bn in bn_layers(model).items() if bn.weight is not None}


def gamma_near_zero_frac(model: nn.Module, threshold: float = 0.01) -> float:
    """Share of BN channels, over all layers, with |gamma| < threshold (NaN counts as not near 0)."""
    gammas = [bn.weight.detach().float().flatten() for bn in bn_layers(model).values() if bn.weight is not None]
    if not gammas:
        return 0.0
    all_gammas = torch.cat([g.cpu() for g in gammas])
    return float((all_gammas.abs() < threshold).sum()) / all_gammas.numel()


def gamma_metrics(model: nn.Module) -> dict[str, float]:
    """One metric per threshold, named by ``names.gamma_metric`` (``gamma_near_zero_frac`` is 0.01)."""
    return {gamma_metric(threshold): gamma_near_zero_frac(model, threshold) for threshold in GAMMA_THRESHOLDS}


@torch.no_grad()
def relu_zero_frac(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                   precision: Callable[[], ContextManager] = nullcontext) -> float:
    """Share of all ``nn.ReLU`` outputs that are exactly 0 over ``batches``, in eval mode.

    Counts stay on the device (one sync at the end). A ReLU module called twice per forward
    (a shared ``self.relu``) is counted at every call, which is what "outputs" means.
    ``precision`` makes the context the forward passes run in (the loop's bf16 autocast).
    """
    counts = {"zeros": None, "total": 0}

    def count(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        zeros = (output == 0).sum()
        counts["zeros"] = zeros if counts["zeros"] is None else counts["zeros"] + zeros
        counts["total"] += output.numel()

    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError("model has no nn.ReLU modules to measure")
    was_training = model.training
    handles = [m.register_forward_hook(count) for m in relus]
    model.eval()
    try:
        with precision():
            for images, _labels in batches:
                model(images)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if counts["total"] == 0:
        return 0.0
    return float(counts["zeros"]) / counts["total"]
