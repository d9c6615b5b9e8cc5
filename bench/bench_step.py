"""Time of a bn_only training step over a full one (CIFAR ResNet-20 and -56, batch 128, this CPU).

    .venv/bin/python bench/bench_step.py [--depths 20 56] [--repeats 7] [--batch 128] [--threads N]

A step is what the loop does per batch: forward, cross-entropy, zero_grad, backward, optimizer
step. bn_only should cost well under a full step (goal <= 0.8): its frozen conv weights have
requires_grad=False, so autograd computes no weight gradients for them (only the input
gradients that flow back to earlier BN layers), and the stem conv, whose input needs no gradient
either, has no backward at all. The modes are timed in alternation, after warm-up, and the
median of the repeats is reported, so that a busy shared machine biases neither side.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from trainables.config import ModelConfig, TrainConfig
from trainables.models import build_model
from trainables.modes import apply_mode, build_optimizer


def make_step(depth: int, mode: str, batch: int):
    model = build_model(ModelConfig("cifar_resnet", depth, 1), 10, seed=0)
    trainability = apply_mode(model, mode, seed=0)
    optimizer = build_optimizer(model, trainability, TrainConfig(epochs=1))
    criterion = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (batch,), generator=generator)
    model.train()

    def step() -> float:
        start = time.perf_counter()
        loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step, trainability


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 56])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.warmup} warm-up + {args.repeats} timed steps per mode, median")
    for depth in args.depths:
        steps = {mode: make_step(depth, mode, args.batch) for mode in ("full", "bn_only")}
        times: dict[str, list[float]] = {mode: [] for mode in steps}
        for i in range(args.warmup + args.repeats):
            for mode, (step, _) in steps.items():  # alternate, so load spikes hit both modes alike
                elapsed = step()
                if i >= args.warmup:
                    times[mode].append(elapsed)
        full, bn = statistics.median(times["full"]), statistics.median(times["bn_only"])
        trainable = steps["bn_only"][1].trainable_params
        print(f"ResNet-{depth}: full {full * 1e3:7.1f} ms/step, bn_only {bn * 1e3:7.1f} ms/step "
              f"({trainable} trainable), ratio {bn / full:.2f} (goal <= 0.8)")


if __name__ == "__main__":
    main()
