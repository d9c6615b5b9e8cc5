"""SGD and Adam over a fused network, with per-member coefficients and per-member freezing.

Every fused tensor has the member on dim 0, so a member's lr, weight decay and momentum are
``[K]`` tensors viewed as ``[K, 1, ...]`` and broadcast over its slice (HFTA's coefficients;
HFTA has no SGD and no freezing). What trains is per member too: a ``[K, ...]`` boolean mask per
tensor, True where that member's solo trial trains the entry (all of it, a ``random_params``
mask, or nothing). The update is the solo optimizer's, entry for entry:

    g = grad + wd * p            (solo: SGD/Adam's L2 term, or the mask hook's for masked tensors)
    g = where(mask, g, 0)        (frozen entries see exactly zero gradient, hence zero state)
    SGD:  buf = m * buf + g;  d = g + m * buf (nesterov) or buf;  p -= lr * d
    Adam: torch's Adam (no amsgrad), bias corrections from the shared step count

A frozen entry's update is ``-lr * 0``, so it keeps every bit; a member with momentum 0 gets
``buf = g`` exactly (``0 * buf + g``), which is plain SGD. ``load_member`` / ``store_member`` move
one member's state between this optimizer and its solo ``torch.optim`` optimizer, in the solo
layout, so a member's checkpoint is a solo checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from trainables.config import TrainConfig


@dataclass
class _Slot:
    name: str
    param: nn.Parameter
    mask: Tensor | None  # [K, ...] bool; None when every member trains all of it
    state: dict[str, Tensor]


class FusedOptimizer:
    """Members' solo rules, fused. ``trains[k]`` maps member k's trained tensor names to their
    mask (None: the whole tensor); a name missing there is frozen for member k."""

    def __init__(self, fused: nn.Module, trains: Sequence[dict[str, Tensor | None]],
                 trains_cfg: Sequence[TrainConfig]):
        self.members = len(trains)
        first = trains_cfg[0].optimizer
        self.kind, self.nesterov, self.betas = first.name, first.nesterov, (first.beta1, first.beta2)
        self.eps = 1e-8  # torch.optim.Adam's default, which build_optimizer keeps
        like = next(fused.parameters())
        # in the weights' dtype, as the solo optimizers apply their Python floats
        self.weight_decay = torch.tensor([t.weight_decay for t in trains_cfg], dtype=torch.float64).to(like)
        self.momentum = torch.tensor([t.optimizer.momentum for t in trains_cfg], dtype=torch.float64).to(like)
        device = like.device
        self.steps = 0
        self.slots: list[_Slot] = []
        for name, param in fused.named_parameters():
            per_member = [t.get(name, False) for t in trains]  # False: frozen, None: all, else a mask
            if all(p is False for p in per_member):
                param.requires_grad_(False)  # nobody trains it: autograd skips its gradient
                continue
            param.requires_grad_(True)
            mask = None
            if any(p is not None for p in per_member):
                mask = torch.stack([torch.zeros(param.shape[1:], dtype=torch.bool) if p is False else
                                    torch.ones(param.shape[1:], dtype=torch.bool) if p is None else p.cpu()
                                    for p in per_member]).to(device)
            self.slots.append(_Slot(name, param, mask, self._fresh_state(param)))
        if not self.slots:
            raise ValueError("no member of the array trains anything")

    def _fresh_state(self, param: Tensor) -> dict[str, Tensor]:
        if self.kind == "sgd":
            return {"momentum_buffer": torch.zeros_like(param)}
        if self.kind == "adam":
            return {"exp_avg": torch.zeros_like(param), "exp_avg_sq": torch.zeros_like(param)}
        raise ValueError(f"unknown optimizer {self.kind!r}")

    def zero_grad(self) -> None:
        for slot in self.slots:
            slot.param.grad = None

    def _coef(self, values: Tensor, like: Tensor) -> Tensor:
        return values.view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self, lrs: Tensor) -> None:
        """One update; ``lrs`` is this step's ``[K]`` learning rates on the device."""
        self.steps += 1
        any_decay = bool(self.weight_decay.any())
        for slot in self.slots:
            p, grad = slot.param, slot.param.grad
            if grad is None:
                continue
            if any_decay:
                grad = grad + self._coef(self.weight_decay, p) * p
            if slot.mask is not None:
                grad = torch.where(slot.mask, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))
            if self.kind == "sgd":
                self._sgd(slot, p, grad, lrs)
            else:
                self._adam(slot, p, grad, lrs)

    def _sgd(self, slot: _Slot, p: Tensor, grad: Tensor, lrs: Tensor) -> None:
        momentum = self._coef(self.momentum, p)
        buf = slot.state["momentum_buffer"]
        buf.mul_(momentum).add_(grad)
        update = grad + momentum * buf if self.nesterov else buf
        p.addcmul_(update, self._coef(-lrs, p))

    def _adam(self, slot: _Slot, p: Tensor, grad: Tensor, lrs: Tensor) -> None:
        beta1, beta2 = self.betas
        exp_avg, exp_avg_sq = slot.state["exp_avg"], slot.state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        correction1 = 1 - beta1 ** self.steps
        correction2_sqrt = (1 - beta2 ** self.steps) ** 0.5
        denom = (exp_avg_sq.sqrt() / correction2_sqrt).add_(self.eps)
        p.addcmul_(exp_avg / denom, self._coef(-lrs / correction1, p))

    # --- one member's state in and out, in torch.optim's layout --------------------------------

    @torch.no_grad()
    def load_member(self, index: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Member ``index``'s optimizer state from its solo ``optimizer`` over ``model``."""
        params = dict(model.named_parameters())
        for slot in self.slots:
            solo = params[slot.name]
            state = optimizer.state.get(solo) if solo.requires_grad else None
            for key, tensor in slot.state.items():
                value = state.get(key) if state else None
                tensor[index] = value if value is not None else 0

    @torch.no_grad()
    def store_member(self, index: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                     momentum: float) -> None:
        """Member ``index``'s state written into its solo ``optimizer`` as torch would hold it."""
        params = dict(model.named_parameters())
        for slot in self.slots:
            solo = params[slot.name]
            if not solo.requires_grad or self.steps == 0:
                continue
            if self.kind == "sgd":
                if momentum != 0:  # torch keeps no state for plain SGD
                    optimizer.state[solo] = {"momentum_buffer": slot.state["momentum_buffer"][index].clone()}
            else:
                optimizer.state[solo] = {"step": torch.tensor(float(self.steps)),
                                         "exp_avg": slot.state["exp_avg"][index].clone(),
                                         "exp_avg_sq": slot.state["exp_avg_sq"][index].clone()}
