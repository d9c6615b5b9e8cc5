"""The arithmetic a trial trains in: ``train.precision`` resolved for a device.

- ``fp32``: float32 weights and activations. On CUDA, matmuls and convolutions may use TF32
  tensor cores (10-bit mantissa inputs, float32 accumulation): PyTorch already does so for
  convolutions by default and this sets it for matmuls too, so both follow one rule. open_lth,
  the paper's code, trained in float32 (its V100s had no TF32); set ``NVIDIA_TF32_OVERRIDE=0``
  for strict float32 at about half the speed on Ampere or newer.
- ``bf16``: bf16 autocast (8-bit mantissa activations, float32 weights and BN statistics), about
  twice TF32's throughput and half its activation memory. Whether it costs the very deep BN-only
  ResNets accuracy is what sweeps/precision.yaml measures.
- ``auto``: bf16 on CUDA, fp32 elsewhere. The paper's studies say ``fp32`` explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import partial

import torch


def resolve(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: what ``precision`` means on ``device``."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"unknown precision {precision!r}; one of auto, fp32, bf16")
    return precision


def precision_context(precision: str, device: torch.device) -> Callable[[], AbstractContextManager]:
    """A factory of the context every forward pass runs in; sets the TF32 rule on CUDA."""
    if device.type == "cuda":
        # Process-wide flags (a Ray worker runs trial after trial): set them the same way for
        # every precision, so that no trial depends on what ran before it in the process.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if resolve(precision, device) == "fp32":
        return nullcontext
    # an explicit bf16 is honoured on the CPU too
    return partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16)
