"""Is an array faster than its members trained one by one, on this device? Timed, not assumed.

``measure_array(config, k)`` times training steps of one solo trial and of a K-member array of
``config`` (members differ in seed only) on random batches of the data set's shape, built as the
loop and the runner build them. What ``resources.array: auto`` makes of the figures is the
planner's rule, in one place (``sweeper.plan.arrays.choose_sizes``). A
mixed-mode array costs about what its most-trained member's mode costs (one member training the
convs makes every member's conv-weight gradients computed), so measure with that mode.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from trainables import loop
from trainables.array.runner import Member, _Array
from trainables.config import TrialConfig
from trainables.data.facts import DATA_SETS
from trainables.models import build_model
from trainables.modes import apply_mode, build_optimizer
from trainables.precision import precision_context
from trainables.schedule import build_scheduler



def _setup(config: TrialConfig, device: torch.device) -> loop._Setup:
    """A trial's model, mode and optimizer as loop._build makes them, without loading its data."""
    facts = DATA_SETS[config.dataset.name]
    model = build_model(config.model, facts.num_classes, config.seed)
    trainability = apply_mode(model, config.mode, config.seed)
    channels_last = device.type == "cuda"
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    optimizer = build_optimizer(model, trainability, config.train)
    scheduler = build_scheduler(optimizer, config.train, steps_per_epoch=1)
    net = torch.compile(model) if config.train.compile else model
    return loop._Setup(config, device, None, model, net, trainability, optimizer, scheduler,
                       precision_context(config.train.precision, device), channels_last)


def _batch(config: TrialConfig, device: torch.device, members: int) -> tuple[torch.Tensor, torch.Tensor]:
    facts = DATA_SETS[config.dataset.name]
    side = config.dataset.image_size or facts.image_size
    batch = config.train.batch_size
    generator = torch.Generator().manual_seed(config.seed)
    images = torch.randn(batch, 3 * members, side, side, generator=generator).to(device)
    labels = torch.randint(0, facts.num_classes, (members, batch), generator=generator).to(device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels


def solo_step(config: TrialConfig, device: torch.device) -> Callable[[], None]:
    """One training step of ``config`` alone, as the loop runs it."""
    setup = _setup(config, device)
    images, labels = _batch(config, device, 1)
    setup.model.train()

    def step() -> None:
        with setup.precision():
            loss = F.cross_entropy(setup.net(images), labels[0], label_smoothing=config.train.label_smoothing)
        setup.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        setup.optimizer.step()

    return step


def array_step(configs: Sequence[TrialConfig], device: torch.device) -> Callable[[], None]:
    """One training step of ``configs`` as one array, as the runner runs it."""
    array = _Array([Member(c, _setup(c, device), None, None) for c in configs])
    images, labels = _batch(configs[0], device, len(configs))
    lrs = array.lr_table(1)[0]
    precision = array.members[0].setup.precision
    array.model.train()

    def step() -> None:
        with precision():
            logits = array.net(images)
            losses = torch.stack([F.cross_entropy(logits[i], labels[i]) for i in range(len(configs))])
        array.optimizer.zero_grad()
        losses.sum().backward()
        array.optimizer.step(lrs)

    return step


def _seconds_per_step(step: Callable[[], None], device: torch.device, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def members(config: TrialConfig, k: int) -> list[TrialConfig]:
    """``k`` members of ``config``'s array shape: the same trial at seeds seed, seed + 1, ..."""
    return [dataclasses.replace(config, seed=config.seed + i) for i in range(k)]


def measure_array(config: Mapping[str, Any] | TrialConfig, k: int, steps: int = 5, warmup: int = 2,
                  device: str | torch.device | None = None) -> dict[str, Any]:
    """Images/s of one solo trial and of a ``k``-member array of ``config`` on ``device``
    (default: the config's ``train.device``); ``speedup`` is array over solo."""
    config = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    device = torch.device(device) if device is not None else loop.resolve_device(config.train.device)
    batch = config.train.batch_size
    solo = batch / _seconds_per_step(solo_step(config, device), device, steps, warmup)
    fused = k * batch / _seconds_per_step(array_step(members(config, k), device), device, steps, warmup)
    return {"k": k, "device": str(device), "solo_images_per_s": solo, "array_images_per_s": fused,
            "speedup": fused / solo}
