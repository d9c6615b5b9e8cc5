"""train.precision: what each value means on each device, and the TF32 rule on CUDA."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from trainables.precision import precision_context, resolve

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("precision, device, expected", [
    ("auto", CPU, "fp32"), ("auto", CUDA, "bf16"), ("fp32", CUDA, "fp32"), ("fp32", CPU, "fp32"),
    ("bf16", CPU, "bf16"), ("bf16", CUDA, "bf16"),
])
def test_precision_resolves_per_device(precision, device, expected):
    assert resolve(precision, device) == expected


def test_fp32_runs_without_autocast_and_bf16_with_it_on_the_cpu_too():
    assert precision_context("fp32", CPU) is nullcontext
    with precision_context("bf16", CPU)():
        out = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert out.dtype == torch.bfloat16


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
def test_on_cuda_tf32_is_allowed_for_matmuls_and_convolutions_whatever_ran_before(precision, monkeypatch):
    # Setting the flags needs no GPU; a worker that ran a strict-fp32 job before must not leak it.
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    precision_context(precision, CUDA)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32


def test_cpu_trials_leave_the_cuda_flags_alone(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    precision_context("fp32", CPU)
    assert not torch.backends.cuda.matmul.allow_tf32
