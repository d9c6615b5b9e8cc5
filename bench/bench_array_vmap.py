"""The other route to a trial array: torch.func (stack_module_state + vmap) against trainables/array's
fused layers, forward + backward of K CIFAR ResNets on random batches (no optimizer: both routes
would share it). Why the array is built from fused layers is this figure.

    python bench/bench_array_vmap.py [--quick] [--ks 2 4 8] [--depth 20] [--batch 32]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainables.array.fused import fuse_model, stack_inputs
from trainables.config import ModelConfig
from trainables.models import build_model


def _median_seconds(step, steps: int, device: torch.device) -> float:
    step()  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(depth: int, k: int, batch: int, steps: int, device: torch.device) -> tuple[float, float]:
    models = [build_model(ModelConfig("cifar_resnet", depth), 10, seed).to(device) for seed in range(k)]
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(k, batch, 3, 32, 32, generator=generator).to(device)
    labels = torch.randint(0, 10, (k, batch), generator=generator).to(device)

    params, buffers = stack_module_state(models)  # BN statistics batched too: each member's own
    skeleton = copy.deepcopy(models[0]).to("meta")

    def loss(p, b, x, y):
        return F.cross_entropy(functional_call(skeleton, (p, b), (x,)), y)

    per_member_grads = vmap(grad(loss), randomness="different")

    def vmap_step():
        per_member_grads(params, buffers, images, labels)

    fused = fuse_model(models)
    stacked = stack_inputs(list(images))

    def fused_step():
        logits = fused(stacked)
        fused.zero_grad(set_to_none=True)
        torch.stack([F.cross_entropy(logits[i], labels[i]) for i in range(k)]).sum().backward()

    return _median_seconds(vmap_step, steps, device), _median_seconds(fused_step, steps, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    batch = args.batch or (16 if args.quick else 64)
    steps = 2 if args.quick else 5
    device = torch.device(args.device)
    print(f"vmap vs fused layers, ResNet-{args.depth}, batch {batch}, {args.device}; seconds per forward+backward")
    print(f"{'K':>3} {'vmap s':>9} {'fused s':>9} {'vmap/fused':>11}")
    for k in args.ks:
        vmap_s, fused_s = compare(args.depth, k, batch, steps, device)
        print(f"{k:>3} {vmap_s:9.3f} {fused_s:9.3f} {vmap_s / fused_s:11.2f}", flush=True)


if __name__ == "__main__":
    main()
