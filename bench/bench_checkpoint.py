"""Size of a bn_only checkpoint of CIFAR ResNet-110 over a full one (goal <= 1/50).

    .venv/bin/python bench/bench_checkpoint.py [--depth 110]

Both checkpoints are written by the loop's own code (trainables.loop.save_epoch) after one real
optimizer step, so momentum buffers exist, exactly as a mid-trial checkpoint would hold them.
random_params is shown too: its masked tensors store only their trainable entries.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch

from trainables.checkpoint import CHECKPOINT_FILE
from trainables.config import TrialConfig
from trainables.loop import Setup, save_epoch
from trainables.models import build_model
from trainables.modes import apply_mode, build_optimizer
from trainables.schedule import build_scheduler


def checkpoint_size(depth: int, mode: str, folder: Path) -> tuple[int, int]:
    config = TrialConfig.from_dict({"dataset": {"name": "cifar10"}, "model": {"family": "cifar_resnet", "depth": depth},
                                    "train": {"epochs": 160}, "mode": mode})
    model = build_model(config.model, 10, config.seed)
    trainability = apply_mode(model, mode, config.seed)
    optimizer = build_optimizer(model, trainability, config.train)
    scheduler = build_scheduler(optimizer, config.train, steps_per_epoch=391)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.arange(4))
    loss.backward()
    optimizer.step()
    scheduler.step()
    setup = Setup(config=config, device=torch.device("cpu"), data=SimpleNamespace(num_classes=10), model=model,
                   net=model, trainability=trainability, optimizer=optimizer, scheduler=scheduler,
                   precision=None, channels_last=False)
    history = [{"epoch": 1, "test_acc": 0.5}]
    save_epoch(setup, folder, 1, history, None)
    return (folder / CHECKPOINT_FILE).stat().st_size, trainability.trainable_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=110)
    args = parser.parse_args()
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("full", "bn_only", "random_params"):
            folder = Path(tmp) / mode
            sizes[mode], trainable = checkpoint_size(args.depth, mode, folder)
            print(f"ResNet-{args.depth} {mode:13s}: {sizes[mode] / 1024:9.1f} KiB ({trainable} trainable params)")
    ratio = sizes["bn_only"] / sizes["full"]
    print(f"bn_only / full = {ratio:.4f} = 1/{1 / ratio:.0f} (goal <= 1/50)")


if __name__ == "__main__":
    main()
