"""Is an array faster than its members trained side by side, on this device? Timed, not assumed.

``measure_array(configs)`` times what the runner and the loop run: whole training epochs of
``loop.train_epoch`` (one solo trial per distinct member configuration, built by ``loop._build``:
``cudnn.benchmark`` and channels_last as in training) and of the runner's ``train_epoch`` over all
the members as grouped (their real modes: one ``full`` member makes the array compute every
member's conv-weight gradients; a ``random_params`` one adds its masks), on a stand-in on-device
data set of the config's shape (random pixels: a step costs the same on any), so data gathering
and augmentation, the loss, the optimizer and the divergence checks are in the figures. Solo and
array are timed in interleaved rounds (the machine's load changes between rounds, both see the same
spread of it); medians are kept, and the rounds' spread of the array / packed ratio is the noise.
"Packed" is K solo trials side by side at best: the sum of the members' solo images/s. What
``resources.array: auto`` makes of the figures is the planner's rule (``sweeper.plan.arrays.choose_sizes``).

``ops_per_step`` counts a step's non-view aten ops through the public ``run_trial`` / ``run_array``.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from typing import Any, Mapping, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from trainables import loop
from trainables.array.runner import Member, Array
from trainables.array.runner import train_epoch as array_epoch
from trainables.config import TrialConfig
from trainables.data.facts import DATA_SETS
from trainables.data.source import TensorSource


def _config(config: Mapping[str, Any] | TrialConfig) -> TrialConfig:
    return config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)


def stand_in_data(config: TrialConfig, device: torch.device, steps: int) -> TensorSource:
    """An on-device set of ``config``'s image shape and classes with ``steps`` batches an epoch."""
    facts = DATA_SETS[config.dataset.name]
    side = config.dataset.image_size or facts.image_size
    count = config.train.batch_size * steps
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, side, side), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, facts.num_classes, (count,), generator=generator)
    return TensorSource(name="stand-in", num_classes=facts.num_classes, train_images=images, train_labels=labels,
                        test_images=images[:1], test_labels=labels[:1], mean=(0.5,) * 3, std=(0.25,) * 3,
                        flip=True, device=device, augment=config.train.augment)


def _on(config: TrialConfig, device: torch.device) -> TrialConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, device=device.type))


def _timed(run, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_array(configs: Sequence[Mapping[str, Any] | TrialConfig], rounds: int = 3, steps: int = 3,
                  device: str | torch.device | None = None) -> dict[str, Any]:
    """Images/s of the members as one array against each alone, in ``rounds`` interleaved rounds
    of one ``steps``-step epoch each (after one warm-up epoch of each)."""
    configs = [_config(c) for c in configs]
    device = torch.device(device) if device is not None else loop.resolve_device(configs[0].train.device)
    configs = [_on(c, device) for c in configs]
    data = stand_in_data(configs[0], device, steps)
    kinds: dict[str, TrialConfig] = {}  # one solo trial per mode: what a step costs depends on it alone
    for config in configs:
        kinds.setdefault(config.mode, config)
    solos = {name: loop.build_setup(c, data=data) for name, c in kinds.items()}
    array = Array([Member(c, loop.build_setup(c, data=data), None, None) for c in configs])
    batch, k = configs[0].train.batch_size, len(configs)
    epochs = {"array": lambda e: array_epoch(array, e)}
    epochs.update({name: (lambda e, s=setup: loop.train_epoch(s, e)) for name, setup in solos.items()})
    seconds: dict[str, list[float]] = {name: [] for name in epochs}
    for epoch in range(rounds + 1):  # epoch 0: the warm-up (cudnn.benchmark's search, compile)
        for name, run in epochs.items():
            spent = _timed(lambda: run(epoch + 1), device)
            if epoch:
                seconds[name].append(spent)
    per_config = [c.mode for c in configs]
    solo_rate = {name: batch * steps / statistics.median(seconds[name]) for name in solos}
    packed_rounds = [sum(batch * steps / seconds[n][r] for n in per_config) for r in range(rounds)]
    array_rounds = [k * batch * steps / s for s in seconds["array"]]
    ratios = [a / p for a, p in zip(array_rounds, packed_rounds)]
    packed = sum(solo_rate[n] for n in per_config)
    fused = k * batch * steps / statistics.median(seconds["array"])
    return {"k": k, "device": str(device), "modes": per_config, "solo_modes": sorted(solos),
            "solo_images_per_s": packed / k, "packed_images_per_s": packed,
            "array_images_per_s": fused, "speedup": fused / packed, "ratios": ratios,
            "noise": (max(ratios) - min(ratios)) / 2 / statistics.median(ratios) if rounds > 1 else 0.0}


def members(config: Mapping[str, Any] | TrialConfig, k: int) -> list[TrialConfig]:
    """``k`` members of ``config``'s array shape: the same trial at seeds seed, seed + 1, ..."""
    config = _config(config)
    return [dataclasses.replace(config, seed=config.seed + i) for i in range(k)]


class OpCounter(TorchDispatchMode):
    """Counts the non-view aten ops run inside it (views launch nothing): each is one kernel
    launch on CUDA, or one multi-tensor launch group for a ``_foreach_*`` op."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.ops += 1
        return func(*args, **(kwargs or {}))


def ops_per_step(configs: Sequence[Mapping[str, Any]], short: int = 2, long: int = 4) -> float:
    """Non-view aten ops per training step of ``configs`` through the public API (one config:
    ``run_trial``; more: ``run_array``): two one-epoch runs of ``short`` and ``long`` steps on the
    same test set, counted whole; their difference per step is what a step costs, everything else
    (build, evaluation, analysis) cancels."""
    from trainables.array.runner import run_array

    def count(steps: int) -> int:
        runs = [copy.deepcopy(dict(c)) for c in configs]
        for run in runs:
            batch = run.setdefault("train", {}).get("batch_size", 128)
            run["train"]["epochs"] = 1
            run.setdefault("dataset", {})["train_size"] = batch * steps
        with OpCounter() as counter:
            if len(runs) == 1:
                loop.run_trial(runs[0])
            else:
                run_array(runs)
        return counter.ops

    return (count(long) - count(short)) / (long - short)
