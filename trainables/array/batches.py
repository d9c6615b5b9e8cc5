"""The members' training batches of one step as one input, gathered and augmented in one pass.

Member k's batch at step i must be its solo batch at step i (``TensorSource.train_batches`` with
its own epoch generator). For an on-device set (``TensorSource``) the members' epoch draws (order,
crop offsets, flips) are made on the CPU exactly as ``train_batches`` makes them, one generator
per member in the same call order, stacked, and copied to the device once per epoch; each step
then gathers all K*B crops with ONE indexing op, flips and normalises them with one op each (the
same elementwise ops as solo, so every member's pixels are its solo pixels bit for bit), and
views them as ``[B, K*C, S, S]`` (batch-major gather order: no copy). tests/test_array.py pins the
equality. Other sources (streamed ImageNet) are stacked member by member.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import Tensor

from trainables.array.fused import stack_inputs
from trainables.data.source import PAD, TensorSource


def _draws(data: TensorSource, generators: Sequence[torch.Generator]) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``[N, K]`` order, ``[2, N, K]`` crop offsets and ``[N, K]`` flips, drawn as train_batches draws."""
    orders, offsets, flips = [], [], []
    for generator in generators:  # per member, in train_batches' order of calls
        orders.append(torch.randperm(data.num_train, generator=generator))
        if data.augment:
            offsets.append(torch.randint(0, 2 * PAD + 1, (2, data.num_train), generator=generator))
            if data.flip:
                flips.append(torch.rand(data.num_train, generator=generator) < 0.5)
    device = data.device
    order = torch.stack(orders, dim=1).to(device)
    offset = torch.stack(offsets, dim=2).to(device) if offsets else None
    flip = torch.stack(flips, dim=1).to(device) if flips else None
    return order, offset, flip


def member_batches(data, batch_size: int, generators: Sequence[torch.Generator]) -> Iterator[tuple[Tensor, Tensor]]:
    """Per step: ``[B, K*C, S, S]`` images (member k on channels k*C ..) and ``[K, B]`` labels."""
    if not isinstance(data, TensorSource):
        for batches in zip(*[data.train_batches(batch_size, g) for g in generators]):
            yield stack_inputs([b[0] for b in batches]), torch.stack([b[1] for b in batches])
        return
    k = len(generators)
    order, offset, flip = _draws(data, generators)
    labels_all = data._train_labels
    for start in range(0, data.num_train, batch_size):
        index = order[start:start + batch_size]  # [B, K], contiguous
        flat = index.reshape(-1)
        if offset is not None:
            dy, dx = offset[0, start:start + batch_size].reshape(-1), offset[1, start:start + batch_size].reshape(-1)
            images = data._windows[flat, :, dy, dx]  # [B*K, C, S, S]
            if flip is not None:
                images = torch.where(flip[start:start + batch_size].reshape(-1, 1, 1, 1), images.flip(3), images)
        else:
            images = data._train[flat]
        images = data._normalise(images)
        rows = index.shape[0]
        yield images.view(rows, k * images.shape[1], *images.shape[2:]), labels_all[index.t()]
