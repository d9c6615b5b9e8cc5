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


@pytest.fixture
def tf32_off():
    """Both TF32 flags off for the test (process-wide state), restored afterwards."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("precision", ["fp32", "bf16", "auto"])
def test_on_cuda_tf32_is_allowed_for_matmuls_and_convolutions_whatever_ran_before(precision, tf32_off):
    # Setting the flags needs no GPU; a worker that ran a strict-fp32 job before must not leak it.
    precision_context(precision, CUDA)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32


def test_cpu_trials_leave_the_cuda_flags_alone(tf32_off):
    precision_context("fp32", CPU)
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
