"""The paper's initialisation, drawn from one seeded CPU generator.

Frozen weights are never stored in checkpoints: they are rebuilt from the trial's seed. So the
draw must be the same on every machine, bit for bit. Two details make that true:

- Every tensor comes from ONE ``torch.Generator().manual_seed(seed)``, in module-registration
  order (``model.modules()``), on the CPU, whatever device the model later moves to.
- Normals are made here from uniforms (Box-Muller in float64, rounded to float32) instead of
  ``Tensor.normal_``: PyTorch's CPU normal kernel has a vectorised AVX2 path and a scalar path
  that differ in the last bits, so the same seed gave different weights on an AVX2 x86 machine
  and on an ARM or pre-AVX2 one. Uniform draws are integer-derived and identical everywhere,
  and the float64 log/cos agree to far below float32 rounding.

The recipe (open_lth's, as the paper used): conv and linear weights Kaiming normal (fan_in,
ReLU gain), BatchNorm gamma ~ U[0, 1] (``bn_init="uniform"``) or 1 (``"ones"``), beta 0, running
statistics at their defaults. Biases (the classifier's, VGG's convs') are 0 (``bias_init="zeros"``)
or, as open_lth leaves them, PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (``"uniform"``,
``train.fidelity: open_lth``). Uniform biases are drawn after every weight and gamma, so the two
choices give the same weights and gammas for a seed and differ in the biases alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trainables.config import BN_INITS

BIAS_INITS = ("zeros", "uniform")


@torch.no_grad()
def init_model(model: nn.Module, seed: int, bn_init: str = "uniform", bias_init: str = "zeros") -> nn.Module:
    """Fill every parameter and buffer of ``model`` (in place) from ``seed``; returns ``model``.

    Works on a model whose storage is uninitialised (built on the meta device, then
    ``to_empty(device="cpu")``), so a big model pays for one random init, not two.
    """
    if bn_init not in BN_INITS:
        raise ValueError(f"bn_init must be one of {', '.join(BN_INITS)}, got {bn_init!r}")
    if bias_init not in BIAS_INITS:
        raise ValueError(f"bias_init must be one of {', '.join(BIAS_INITS)}, got {bias_init!r}")
    generator = torch.Generator().manual_seed(seed)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            _kaiming_normal_(module.weight, generator)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.BatchNorm2d):
            if bn_init == "uniform":
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator))
            else:
                module.weight.fill_(1.0)
            module.bias.zero_()
            module.reset_running_stats()
        elif any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False)):
            # A layer this recipe does not know would keep uninitialised memory: refuse instead.
            raise TypeError(f"init_model does not know how to initialise {name or 'the model'} "
                            f"({type(module).__name__})")
    if bias_init == "uniform":
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
                bound = 1.0 / math.sqrt(module.weight[0].numel())  # nn.Linear/Conv2d.reset_parameters
                draws = torch.rand(module.bias.shape, dtype=torch.float64, generator=generator)
                module.bias.copy_(((2.0 * draws - 1.0) * bound).float())
    return model


def _kaiming_normal_(weight: torch.Tensor, generator: torch.Generator) -> None:
    """He et al.'s normal init, fan_in mode, ReLU gain: N(0, 2 / fan_in)."""
    fan_in = weight[0].numel()  # in_channels/groups * kh * kw for a conv, in_features for a linear
    std = math.sqrt(2.0 / fan_in)
    weight.copy_((standard_normal(weight.numel(), generator) * std).float().view(weight.shape))


def standard_normal(count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` N(0, 1) draws in float64, identical on every CPU (see the module docstring)."""
    uniforms = torch.rand(2, count, dtype=torch.float64, generator=generator)
    radius = torch.sqrt(-2.0 * torch.log1p(-uniforms[0]))  # 1 - u lies in (0, 1]: never log(0)
    return radius * torch.cos((2.0 * math.pi) * uniforms[1])
