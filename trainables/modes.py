"""Training modes: which parameters train, applied in one place, and the optimizer over them.

- ``full``: everything trains.
- ``bn_only``: only BatchNorm gamma and beta (the paper's subject).
- ``bn_output``: BatchNorm plus the classifier ``model.fc``.
- ``output_only``: only ``model.fc``.
- ``random_params``: the paper's count-matched baseline: for every output channel of every
  convolution, 2 weights chosen at random (as many as BN has per channel) train; everything else,
  BN and ``fc`` included, is frozen. Its trainable count equals ``bn_only``'s exactly.

Frozen tensors get ``requires_grad=False``, so autograd skips their weight gradients. A partly
trainable tensor keeps ``requires_grad=True`` and a boolean mask; ``build_optimizer`` makes its
masked-out entries receive exactly zero gradient (hence zero momentum or Adam moments), so they
never change by a single bit. BN running statistics are buffers: they keep updating in train()
mode in every mode, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from trainables.config import TrainConfig
from trainables.names import BN_ONLY, BN_OUTPUT, FULL, MODES, OUTPUT_ONLY, RANDOM_PARAMS

__all__ = ["Trainability", "apply_mode", "MODE_REGISTRY", "build_optimizer", "MASK_SEED_OFFSET", "WEIGHTS_PER_CHANNEL"]

WEIGHTS_PER_CHANNEL = 2  # BN's gamma and beta: the per-channel budget random_params matches
# The masks come from their own stream, far from the init's (seed) and the data order's
# (seed * 1_000_003 + epoch), so that choosing which weights train never correlates with their values.
MASK_SEED_OFFSET = 0x5EED_0000_0000


@dataclass
class Trainability:
    mode: str
    masks: dict[str, torch.Tensor]  # param name -> bool mask (True = trains), partly trainable tensors only
    trainable_params: int
    total_params: int


@dataclass(frozen=True)
class _Parts:
    """A model's parameters as the modes name them."""

    model: nn.Module
    mode: str
    seed: int
    all: frozenset[str]
    bn: frozenset[str]

    @property
    def fc(self) -> frozenset[str]:
        # asked for only by the modes that train the classifier, so the others need no model.fc
        if not isinstance(getattr(self.model, "fc", None), nn.Linear):
            raise TypeError(f"mode {self.mode} needs the classifier at model.fc (an nn.Linear)")
        return frozenset(f"fc.{name}" for name, _ in self.model.fc.named_parameters())


# What trains, per mode: the names of the (wholly or partly) trainable tensors and the masks of
# the partly trainable ones. A mode is one entry here; names.MODES and this registry must hold
# the same names (tests/test_modes_registry.py), so a mode missing here is an error, never a
# silent fallback to another mode's rule.
_TRAINS: dict[str, Callable[[_Parts], tuple[set[str], dict[str, torch.Tensor]]]] = {
    FULL: lambda parts: (set(parts.all), {}),
    BN_ONLY: lambda parts: (set(parts.bn), {}),
    BN_OUTPUT: lambda parts: (set(parts.bn | parts.fc), {}),
    OUTPUT_ONLY: lambda parts: (set(parts.fc), {}),
    RANDOM_PARAMS: lambda parts: _random_params(parts),
}
MODE_REGISTRY = MappingProxyType(_TRAINS)  # read-only view for callers and tests


def _random_params(parts: _Parts) -> tuple[set[str], dict[str, torch.Tensor]]:
    masks = _random_channel_masks(parts.model, parts.seed)
    return set(masks), masks


def apply_mode(model: nn.Module, mode: str, seed: int) -> Trainability:
    """Set ``requires_grad`` on every parameter of ``model`` for ``mode``; draw masks from ``seed``."""
    rule = _TRAINS.get(mode)
    if rule is None:
        raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    params = dict(model.named_parameters())
    bn_names = frozenset(f"{prefix}.{name}" if prefix else name
                         for prefix, module in model.named_modules()
                         if isinstance(module, nn.modules.batchnorm._BatchNorm)
                         for name, _ in module.named_parameters(recurse=False))
    trains, masks = rule(_Parts(model, mode, seed, frozenset(params), bn_names))
    for name, param in params.items():
        param.requires_grad_(name in trains)

    trainable = sum(int(masks[n].sum()) if n in masks else params[n].numel() for n in trains)
    if mode == RANDOM_PARAMS:
        bn_count = sum(params[n].numel() for n in bn_names)
        if trainable != bn_count:  # the baseline is only fair if the counts match
            raise RuntimeError(f"random_params trains {trainable} weights but BN has {bn_count}: the model "
                               "breaks the convention that every conv is followed by its own BatchNorm2d")
    return Trainability(mode=mode, masks=masks, trainable_params=trainable,
                        total_params=sum(p.numel() for p in params.values()))


def _random_channel_masks(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """WEIGHTS_PER_CHANNEL distinct weights per conv output channel, uniformly at random."""
    generator = torch.Generator().manual_seed(seed + MASK_SEED_OFFSET)
    masks = {}
    for prefix, module in model.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        weight = module.weight
        out_channels, per_channel = weight.shape[0], weight[0].numel()
        if per_channel < WEIGHTS_PER_CHANNEL:
            raise ValueError(f"{prefix} has {per_channel} weight per output channel; random_params needs "
                             f"{WEIGHTS_PER_CHANNEL}")
        # Two distinct indices per channel from integer draws (identical on every machine): the
        # second is drawn among the other per_channel - 1 positions and shifted past the first.
        first = torch.randint(per_channel, (out_channels,), generator=generator)
        second = torch.randint(per_channel - 1, (out_channels,), generator=generator)
        second += (second >= first).long()
        mask = torch.zeros(out_channels, per_channel, dtype=torch.bool)
        rows = torch.arange(out_channels)
        mask[rows, first] = True
        mask[rows, second] = True
        masks[f"{prefix}.weight" if prefix else "weight"] = mask.view(weight.shape)
    return masks


# Gradient hooks build_optimizer installed, per parameter, so that building a second optimizer
# over the same model (a resume, a test) replaces them instead of applying decay twice.
_MASK_HOOKS = WeakIdKeyDictionary()  # by identity: tensors compare element-wise


def build_optimizer(model: nn.Module, trainability: Trainability, train: TrainConfig) -> torch.optim.Optimizer:
    """SGD or Adam over exactly the parameters that train, with plain L2 weight decay.

    Call it after moving the model to its device. Fully trainable tensors get the optimizer's own
    L2 decay (added to the gradient, as open_lth does, gamma and beta included). Masked tensors
    sit in a group with weight_decay=0; a gradient hook adds their decay and zeroes every
    masked-out entry, so those entries see exactly zero gradient and zero optimizer state. The
    hook assumes one backward per optimizer step (the loop's), and unscaled gradients (bf16
    autocast needs no GradScaler).
    """
    full, masked = [], []
    for name, param in model.named_parameters():
        if name in trainability.masks:
            if not param.requires_grad:
                raise ValueError(f"{name} has a mask but requires_grad=False: apply_mode was undone")
            masked.append(param)
            _install_mask_hook(param, trainability.masks[name], train.weight_decay)
        elif param.requires_grad:
            full.append(param)
    groups = [{"params": ps, "weight_decay": wd} for ps, wd in ((full, train.weight_decay), (masked, 0.0)) if ps]
    if not groups:
        raise ValueError(f"mode {trainability.mode} leaves nothing to train")
    opt = train.optimizer
    if opt.name == "sgd":
        return torch.optim.SGD(groups, lr=train.lr, momentum=opt.momentum, nesterov=opt.nesterov)
    if opt.name == "adam":
        return torch.optim.Adam(groups, lr=train.lr, betas=(opt.beta1, opt.beta2))
    raise ValueError(f"unknown optimizer {opt.name!r}")


def _install_mask_hook(param: nn.Parameter, mask: torch.Tensor, weight_decay: float) -> None:
    old = _MASK_HOOKS.pop(param, None)
    if old is not None:
        old.remove()
    on_device = {}  # the mask, moved once to wherever the gradients live

    def masked_grad(grad: torch.Tensor) -> torch.Tensor:
        keep = on_device.get(grad.device)
        if keep is None:
            keep = on_device[grad.device] = mask.to(grad.device)
        if weight_decay:
            grad = grad + weight_decay * param.detach()
        # where, not multiply: a NaN or inf gradient must not reach a frozen entry either
        return torch.where(keep, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))

    _MASK_HOOKS[param] = param.register_hook(masked_grad)
