"""One network holding K members: fused Conv2d, BatchNorm2d and Linear (HFTA's layout, our code).

Activations run as ``[N, K*C, H, W]``: member k owns channels ``k*C .. (k+1)*C - 1``. So
- a conv is ONE ``conv2d`` with ``groups = K * groups`` over a ``[K, Cout, Cin/g, kh, kw]`` weight;
- a BatchNorm is ONE ``batch_norm`` over ``K*C`` channels with ``[K, C]`` weight, bias and running
  statistics: every member's statistics are its own;
- ReLU, pooling and residual additions are per channel already and stay as they are;
- the classifier takes ``[N, K*F]`` (the flattened pool) and returns ``[K, N, classes]``.

``fuse_model`` copies a member's module tree and swaps those three kinds of layer, so every
family's own ``forward`` runs the array unchanged (no per-family code). Every fused tensor has the
member on dim 0, so ``member_tensors`` names member k's slice of each, by the solo model's names,
and the fused optimizer broadcasts per-member coefficients over dim 0.
"""

from __future__ import annotations

import copy
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _stack(tensors: Sequence[Tensor]) -> Tensor:
    return torch.stack([t.detach() for t in tensors]).contiguous()


def _conv_weight(convs: Sequence[nn.Conv2d], memory_format: torch.memory_format) -> Tensor:
    """``[K, Cout, Cin/g, kh, kw]`` whose ``[K*Cout, ...]`` view (what conv2d gets) is in
    ``memory_format``: channels_last where the activations are, so no conv converts its weight."""
    stacked = _stack([c.weight for c in convs])
    flat = stacked.view(-1, *stacked.shape[2:]).contiguous(memory_format=memory_format)
    return flat.view(stacked.shape)


class FusedConv2d(nn.Module):
    def __init__(self, convs: Sequence[nn.Conv2d], memory_format: torch.memory_format = torch.contiguous_format):
        super().__init__()
        first = convs[0]
        self.members = len(convs)
        self.stride, self.padding, self.dilation, self.groups = first.stride, first.padding, first.dilation, first.groups
        if first.padding_mode != "zeros":
            raise TypeError("fused convs support zero padding only")
        self.weight = nn.Parameter(_conv_weight(convs, memory_format))
        self.bias = nn.Parameter(_stack([c.bias for c in convs])) if first.bias is not None else None

    def forward(self, x: Tensor) -> Tensor:
        k = self.members
        weight = self.weight.view(k * self.weight.shape[1], *self.weight.shape[2:])
        bias = self.bias.view(-1) if self.bias is not None else None
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups * k)


class FusedBatchNorm2d(nn.Module):
    def __init__(self, bns: Sequence[nn.BatchNorm2d]):
        super().__init__()
        first = bns[0]
        if not (first.affine and first.track_running_stats) or first.momentum is None:
            raise TypeError("fused BatchNorm supports affine layers with running statistics and a momentum")
        self.members, self.eps, self.momentum = len(bns), first.eps, first.momentum
        self.weight = nn.Parameter(_stack([b.weight for b in bns]))
        self.bias = nn.Parameter(_stack([b.bias for b in bns]))
        self.register_buffer("running_mean", _stack([b.running_mean for b in bns]))
        self.register_buffer("running_var", _stack([b.running_var for b in bns]))
        self.register_buffer("num_batches_tracked", _stack([b.num_batches_tracked for b in bns]))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)  # as nn.BatchNorm2d counts; momentum does not read it
        # views of the [K, C] tensors: batch_norm updates the running statistics in place
        return F.batch_norm(x, self.running_mean.view(-1), self.running_var.view(-1), self.weight.view(-1),
                            self.bias.view(-1), self.training, self.momentum, self.eps)


class FusedLinear(nn.Module):
    def __init__(self, linears: Sequence[nn.Linear]):
        super().__init__()
        self.members = len(linears)
        self.weight = nn.Parameter(_stack([m.weight for m in linears]))  # K x out x in
        self.bias = nn.Parameter(_stack([m.bias for m in linears])) if linears[0].bias is not None else None

    def forward(self, x: Tensor) -> Tensor:
        # [N, K*in] -> [K, N, in]; one batched matmul (bias included) -> [K, N, out]. baddbmm, like
        # nn.Linear's addmm, runs in autocast's lower precision with its bias: bf16 logits as solo's
        per_member = x.reshape(x.shape[0], self.members, -1).transpose(0, 1)
        if self.bias is None:
            return torch.bmm(per_member, self.weight.transpose(1, 2))
        return torch.baddbmm(self.bias[:, None, :], per_member, self.weight.transpose(1, 2))


_FUSED = {nn.Conv2d: FusedConv2d, nn.BatchNorm2d: FusedBatchNorm2d, nn.Linear: FusedLinear}


def fuse_model(models: Sequence[nn.Module], memory_format: torch.memory_format = torch.contiguous_format) -> nn.Module:
    """One module computing all ``models`` (same architecture, any weights) side by side.

    The result holds copies of the members' tensors (on their device, in their dtype; conv weights
    in ``memory_format``, the activations' format); the members themselves are left as they are.
    """
    template = models[0]
    named = [dict(m.named_modules()) for m in models]
    if any(set(n) != set(named[0]) for n in named):
        raise ValueError("array members must have the same architecture")
    fused = copy.deepcopy(template)
    for name, module in list(fused.named_modules()):
        if not name:
            continue
        kind = _FUSED.get(type(module))
        if kind is FusedConv2d:
            replacement = kind([n[name] for n in named], memory_format)
        elif kind is not None:
            replacement = kind([n[name] for n in named])
        elif any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(recurse=False)):
            raise TypeError(f"{name} ({type(module).__name__}) has tensors the array cannot fuse")
        else:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = fused.get_submodule(parent_name) if parent_name else fused
        setattr(parent, child, replacement)
    if any(True for _ in fused.parameters(recurse=False)):
        raise TypeError("the model holds tensors outside its layers; the array cannot fuse them")
    return fused


def fused_tensors(fused: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """Every fused parameter and buffer by its solo name (member on dim 0)."""
    yield from fused.named_parameters()
    yield from fused.named_buffers()


@torch.no_grad()
def copy_member_out(fused: nn.Module, index: int, model: nn.Module) -> None:
    """Write member ``index``'s slice of every fused tensor into its solo ``model``."""
    solo = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    for name, tensor in fused_tensors(fused):
        solo[name].copy_(tensor[index])


def stack_inputs(images: Sequence[Tensor]) -> Tensor:
    """K members' ``[N, C, H, W]`` batches as one ``[N, K*C, H, W]`` input."""
    stacked = torch.stack(images, dim=1)
    return stacked.reshape(stacked.shape[0], -1, *stacked.shape[3:])


def repeat_input(images: Tensor, members: int) -> Tensor:
    """One batch that every member sees (the test set) as ``[N, K*C, H, W]``, in the batch's
    memory format (channels_last stays channels_last: evaluation runs training's path)."""
    if images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous():
        # NHWC memory: repeat the channel run of each pixel, K times, in one copy
        return images.permute(0, 2, 3, 1).repeat(1, 1, 1, members).permute(0, 3, 1, 2)
    return images.repeat(1, members, 1, 1)
