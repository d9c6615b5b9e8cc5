"""SGD and Adam over a fused network, with per-member coefficients and per-member freezing.

Every fused tensor has the member on dim 0. The update works on *pieces*: member k's slice of a
fused tensor that member k trains (a slice a member does not train is in no list, so it keeps
every bit whatever its gradient holds). The pieces of all tensors go through ``torch._foreach_*``
ops with one coefficient per piece (a ``ScalarList``: its member's lr, weight decay or momentum,
Python floats, so nothing is read back from the device and nothing is copied to it): a step is a
handful of multi-tensor ops whatever K is, and no op of it reads a scalar from a tensor (no host
sync). A ``random_params`` member trains part of a tensor: its frozen entries are zeroed in the
gradient with one ``masked_fill_`` per such fused tensor (where-semantics: a NaN gradient there is
zeroed too, as the solo mask hook does). The update is the solo optimizer's, entry for entry:

    g = grad + wd * p            (solo: SGD/Adam's L2 term, or the mask hook's for masked tensors)
    g = 0 where frozen           (random_params' frozen entries see exactly zero gradient)
    SGD:  buf = m * buf + g;  d = g + m * buf (nesterov) or buf;  p += -lr * d
    Adam: torch's single-tensor Adam (no amsgrad), bias corrections from the shared step count

A member with momentum 0 gets ``buf = g`` exactly (``0 * buf + g``), which is plain SGD.
``load_member`` / ``store_member`` move one member's state between this optimizer and its solo
``torch.optim`` optimizer, in the solo layout, so a member's checkpoint is a solo checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn

from trainables.config import TrainConfig


@dataclass
class _Slot:
    name: str
    param: nn.Parameter
    members: list[int]  # the members that train (some of) it
    frozen: Tensor | None  # [K, ...] bool, True where a member's random_params mask freezes an entry
    state: dict[str, Tensor]
    pieces: list[Tensor] = field(default_factory=list)  # param[k] for k in members (views)


class FusedOptimizer:
    """Members' solo rules, fused. ``trains[k]`` maps member k's trained tensor names to their
    mask (None: the whole tensor); a name missing there is frozen for member k."""

    def __init__(self, fused: nn.Module, trains: Sequence[dict[str, Tensor | None]],
                 trains_cfg: Sequence[TrainConfig]):
        self.members = len(trains)
        first = trains_cfg[0].optimizer
        self.kind, self.nesterov, self.betas = first.name, first.nesterov, (first.beta1, first.beta2)
        if self.kind not in ("sgd", "adam"):
            raise ValueError(f"unknown optimizer {self.kind!r}")
        self.eps = 1e-8  # torch.optim.Adam's default, which build_optimizer keeps
        self.weight_decay = [float(t.weight_decay) for t in trains_cfg]
        self.momentum = [float(t.optimizer.momentum) for t in trains_cfg]
        self.steps = 0
        self.slots: list[_Slot] = []
        for name, param in fused.named_parameters():
            per_member = [t.get(name, False) for t in trains]  # False: frozen, None: all, else a mask
            members = [k for k, p in enumerate(per_member) if p is not False]
            if not members:
                param.requires_grad_(False)  # nobody trains it: autograd skips its gradient
                continue
            param.requires_grad_(True)
            frozen = None
            if any(p is not None and p is not False for p in per_member):
                frozen = torch.stack([~p.cpu() if isinstance(p, Tensor) else torch.zeros(param.shape[1:], dtype=torch.bool)
                                      for p in per_member]).to(param.device)
            self.slots.append(_Slot(name, param, members, frozen, self._fresh_state(param)))
        if not self.slots:
            raise ValueError("no member of the array trains anything")
        self._index()

    def _fresh_state(self, param: Tensor) -> dict[str, Tensor]:
        # in the parameter's memory format (channels_last conv weights keep theirs)
        if self.kind == "sgd":
            return {"momentum_buffer": torch.zeros_like(param)}
        return {"exp_avg": torch.zeros_like(param), "exp_avg_sq": torch.zeros_like(param)}

    @torch.no_grad()
    def _index(self) -> None:
        """The pieces (views, made once) and each piece's member, in one flat order."""
        self.piece_member = [k for slot in self.slots for k in slot.members]
        self.params = [slot.param[k] for slot in self.slots for k in slot.members]
        self.state = {key: [slot.state[key][k] for slot in self.slots for k in slot.members]
                      for key in self.slots[0].state}
        decay = [self.weight_decay[k] for k in self.piece_member]
        self.decayed = [i for i, wd in enumerate(decay) if wd != 0.0]  # pieces with an L2 term
        self.decay = [decay[i] for i in self.decayed]
        self.piece_momentum = [self.momentum[k] for k in self.piece_member]

    def zero_grad(self) -> None:
        for slot in self.slots:
            slot.param.grad = None

    def _grads(self) -> list[Tensor] | None:
        """This step's gradient pieces (views of the fused gradients), or None when no backward ran.
        Every trained fused tensor is in the forward, so a backward gives each its gradient."""
        if all(slot.param.grad is None for slot in self.slots):
            return None
        grads = []
        for slot in self.slots:
            grad = slot.param.grad
            if grad is None:
                raise RuntimeError(f"{slot.name} is trained but got no gradient from the backward pass")
            rows = grad.unbind(0)
            grads.extend(rows[k] for k in slot.members)
        return grads

    @torch.no_grad()
    def step(self, lrs: Sequence[float]) -> None:
        """One update; ``lrs`` is this step's lr of each member (Python floats: solo applies its
        lr as a Python float too, so no rounding beyond theirs and no copy to the device)."""
        grads = self._grads()
        if grads is None:
            return
        self.steps += 1
        if self.decayed:
            decayed = [grads[i] for i in self.decayed]
            torch._foreach_add_(decayed, torch._foreach_mul([self.params[i] for i in self.decayed], self.decay))
        for slot in self.slots:  # after the L2 term, which must not reach frozen entries either
            if slot.frozen is not None:
                slot.param.grad.masked_fill_(slot.frozen, 0)  # the pieces are views: they see it
        neg_lr = [-float(lrs[k]) for k in self.piece_member]
        if self.kind == "sgd":
            self._sgd(grads, neg_lr)
        else:
            self._adam(grads, neg_lr)

    def _sgd(self, grads: list[Tensor], neg_lr: list[float]) -> None:
        bufs = self.state["momentum_buffer"]
        torch._foreach_mul_(bufs, self.piece_momentum)
        torch._foreach_add_(bufs, grads)
        if self.nesterov:
            update = torch._foreach_mul(bufs, self.piece_momentum)
            torch._foreach_add_(update, grads)
        else:
            update = bufs
        torch._foreach_add_(self.params, torch._foreach_mul(update, neg_lr))

    def _adam(self, grads: list[Tensor], neg_lr: list[float]) -> None:
        beta1, beta2 = self.betas
        exp_avg, exp_avg_sq = self.state["exp_avg"], self.state["exp_avg_sq"]
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
        correction1 = 1 - beta1 ** self.steps
        correction2_sqrt = (1 - beta2 ** self.steps) ** 0.5
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, correction2_sqrt)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(self.params, exp_avg, denom, [lr / correction1 for lr in neg_lr])

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
