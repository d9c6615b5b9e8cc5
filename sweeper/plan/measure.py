"""A sweep's cost from timed training steps on this machine (`sweeper validate SPEC --measure`).

The FLOP estimate (estimate.py) assumes one sustained throughput for every model. This module
times instead: for each distinct (architecture, data shape, batch, precision, mode) of the spec it
builds the trial's model the way the loop does (seeded init, the mode's frozen tensors, the
optimizer, channels_last and bf16 autocast where the trial's precision asks for them), feeds it
random batches of the data set's shape on the device, and times a few full training steps
(forward, loss, zero_grad, backward, optimizer step) after a warm-up. On CUDA it also reads the
allocator's peak for one step. No data set is loaded: a step costs the same on random pixels.

It also times each group's start-up: the data set loaded onto the device (where this machine has
it; else the assumed part of estimate.STARTUP_S), the model built with its mode and optimizer, plus
the sweep layer's own share (estimate.SWEEP_LAYER_S, measured once and stated there).

From those times: device-hours (the sum over trials of steps x step time), the whole study's wall
time at max_concurrent (every trial's start-up and steps, packed max_concurrent at a time,
assuming concurrent trials do not slow each other: true for CPU trials with their own cores,
optimistic for trials packed on one GPU; bench/gpu_check.py measures packing), peak
memory per trial, and on CUDA the ``resources.gpu`` fraction that packs the most trials on one
card without running out of memory. Evaluation passes are not timed (as in the FLOP estimate).
"""

from __future__ import annotations


import dataclasses
import math
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from sweeper.plan.estimate import STARTUP_S, SWEEP_LAYER_S, hours, image_side, train_images
from sweeper.spec import Spec
from trainables.data.facts import DATA_SETS

GIB = 2**30
# Of a card's memory, what packed trials may plan to use: the rest absorbs fragmentation and
# the evaluation batches, which are larger than the training ones and are not measured here.
USABLE_MEMORY_FRACTION = 0.9
MAX_TRIALS_PER_CARD = 16  # beyond this, small trials only queue behind each other's kernels
RAY_GPU_QUANTUM = 1e-4  # Ray accepts fractional GPUs in steps of 0.0001


@dataclass(frozen=True)
class StepTiming:
    seconds: float  # median of the timed steps
    batch_size: int
    peak_bytes: int | None  # device allocator's high-water mark over one step (CUDA only)

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.seconds if self.seconds > 0 else 0.0


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"GPU {props.name} ({props.total_memory / GIB:.0f} GiB)"
    return f"CPU ({os.cpu_count()} cores)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_step(config: Any, device: torch.device, *, batch_size: int | None = None,
                  image_size: int | None = None, compile: bool | None = None,
                  channels_last: bool | None = None) -> Callable[[], torch.Tensor]:
    """One of ``config``'s training steps on random batches, as a closure returning the loss.

    ``config`` is a TrialConfig or its dict. Built as ``trainables.loop`` builds a trial; the
    keyword arguments override the config's batch size, image side, compile flag and layout.
    """
    from trainables.config import TrialConfig
    from trainables.models import build_model
    from trainables.modes import apply_mode, build_optimizer
    from trainables.precision import precision_context

    config = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    facts = DATA_SETS[config.dataset.name]
    batch = batch_size or config.train.batch_size
    size = image_size or config.dataset.image_size or facts.image_size
    model = build_model(config.model, facts.num_classes, config.seed)
    trainability = apply_mode(model, config.mode, config.seed)
    layout = (device.type == "cuda") if channels_last is None else channels_last
    memory_format = torch.channels_last if layout else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    optimizer = build_optimizer(model, trainability, config.train)
    net = torch.compile(model) if (config.train.compile if compile is None else compile) else model
    precision = precision_context(config.train.precision, device)
    generator = torch.Generator().manual_seed(config.seed)
    images = torch.randn(batch, 3, size, size, generator=generator).to(device, memory_format=memory_format)
    labels = torch.randint(0, facts.num_classes, (batch,), generator=generator).to(device)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.train.label_smoothing)
    model.train()

    def step() -> torch.Tensor:
        with precision():
            loss = criterion(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def time_step(step: Callable[[], torch.Tensor], device: torch.device, batch_size: int, *,
              steps: int = 3, warmup: int = 1) -> StepTiming:
    """Median seconds per step over ``steps`` timed steps, after ``warmup`` untimed ones; on
    CUDA each timed step ends in a synchronize, and one more step reads the allocator's peak."""
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    peak = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        step()
        sync(device)
        peak = torch.cuda.max_memory_allocated(device)
    return StepTiming(statistics.median(times), batch_size, peak)


# --- a spec's cost ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    label: str  # architecture, data shape and mode, as printed
    trials: int
    train_steps: int  # training steps of all these trials, summed
    timing: StepTiming
    startup_s: float = STARTUP_S  # per trial: sweep layer + data set on the device + model built
    data_timed: bool = False  # the data set's load was timed here (else STARTUP_S's share is assumed)

    @property
    def trial_seconds(self) -> float:
        """One trial of this group, start-up included (its steps averaged over the group)."""
        return self.startup_s + self.train_steps / max(self.trials, 1) * self.timing.seconds


def time_startup(config: dict, device: torch.device) -> tuple[float, bool]:
    """(seconds a trial of ``config`` spends before its first step, whether the data load was
    timed): the sweep layer's share, the data set loaded here when this machine has it (never
    downloaded: a validate fetches nothing), and the model with its mode and optimizer."""
    from trainables.config import TrialConfig
    from trainables.data import load_data

    cfg = TrialConfig.from_dict(config)
    start = time.perf_counter()
    try:
        load_data(dataclasses.replace(cfg.dataset, download=False), device, cfg.seed, augment=cfg.train.augment)
        data_s, timed = time.perf_counter() - start, True
    except (FileNotFoundError, OSError, RuntimeError):  # not on this machine: the assumed share stands
        data_s, timed = STARTUP_S - SWEEP_LAYER_S, False
    start = time.perf_counter()
    training_step(cfg, device)
    return SWEEP_LAYER_S + data_s + (time.perf_counter() - start), timed


def _group_key(config: dict) -> tuple:
    # What changes a step's cost: not lr, seed, epochs, schedules or the data set's root.
    d, t = config["dataset"], config["train"]
    return (tuple(sorted(config["model"].items())), d["name"], d.get("image_size"), t["batch_size"],
            t["precision"], t["compile"], t["optimizer"]["name"], config["mode"])


def _label(config: dict, image_size: int) -> str:
    m = config["model"]
    width = f" w{m['width']}" if m.get("width", 1) != 1 else ""
    return f"{m['family']}-{m['depth']}{width} {config['dataset']['name']} {image_size}px {config['mode']}"


def _train_steps(config: dict) -> int:
    return math.ceil(train_images(config["dataset"]) / config["train"]["batch_size"]) * config["train"]["epochs"]


def measure_spec(spec: Spec, device: torch.device, *, steps: int = 3, warmup: int = 1,
                 progress: Callable[[str], Any] | None = None) -> list[Measured]:
    """Time every distinct step of ``spec`` on ``device``; with a search, each grid point counts
    num_samples times at its base values (sampled work axes are not covered: see the FLOP
    estimate's upper bound)."""
    samples = spec.search.num_samples if spec.sampled_trial_count() else 1
    groups: dict[tuple, list[dict]] = {}
    for trial in spec.trials():
        groups.setdefault(_group_key(trial.config), []).append(trial.config)
    threads = torch.get_num_threads()
    if device.type == "cpu":  # a trial gets as many torch threads as its cpu share (worker.py)
        torch.set_num_threads(max(1, int(spec.resources.cpu)))
    try:
        measured = []
        for configs in groups.values():
            config = configs[0]
            label = _label(config, image_side(config["dataset"]))
            if progress is not None:
                progress(f"timing {label} ...")
            batch = config["train"]["batch_size"]
            timing = time_step(training_step(config, device), device, batch, steps=steps, warmup=warmup)
            startup, timed = time_startup(config, device)
            measured.append(Measured(label, len(configs) * samples,
                                     samples * sum(_train_steps(c) for c in configs), timing, startup, timed))
            if device.type == "cuda":
                torch.cuda.empty_cache()
        return measured
    finally:
        torch.set_num_threads(threads)


def study_wall_s(measured: list[Measured], at_once: int) -> float:
    """The whole study's wall time with ``at_once`` trials at a time: every trial (start-up and
    steps) handed, longest first, to the slot that frees up first, as Ray's FIFO queue does."""
    slots = [0.0] * max(1, at_once)
    durations = sorted((m.trial_seconds for m in measured for _ in range(m.trials)), reverse=True)
    for d in durations:
        i = min(range(len(slots)), key=slots.__getitem__)
        slots[i] += d
    return max(slots)


def concurrency(spec: Spec, device: torch.device) -> int:
    """Trials at once: max_concurrent, else what this machine's resources allow (as Ray would)."""
    if spec.max_concurrent:
        return spec.max_concurrent
    r = spec.resources
    slots = []
    if r.cpu:
        slots.append(int((os.cpu_count() or 1) // r.cpu))
    if r.gpu and device.type == "cuda":
        slots.append(int(torch.cuda.device_count() // r.gpu))
    return max(1, min(slots) if slots else 1)


def trials_per_card(peak_bytes: int, device: torch.device) -> tuple[int, int]:
    """(trials that fit on one card, bytes per trial) counting the CUDA context each trial's
    process pays (read here as what the card already holds outside this process's allocator)."""
    free, total = torch.cuda.mem_get_info(device)
    context = max(0, total - free - torch.cuda.memory_reserved(device))
    per_trial = peak_bytes + context
    return min(MAX_TRIALS_PER_CARD, int(total * USABLE_MEMORY_FRACTION // per_trial)), per_trial


def gpu_fraction(fit: int) -> float:
    """The resources.gpu that puts ``fit`` trials on one card, in Ray's 0.0001 steps."""
    return math.floor(1 / fit / RAY_GPU_QUANTUM) * RAY_GPU_QUANTUM


def describe_measured(spec: Spec, *, steps: int = 3, warmup: int = 1,
                      progress: Callable[[str], Any] | None = None) -> list[str]:
    device = pick_device()
    measured = measure_spec(spec, device, steps=steps, warmup=warmup, progress=progress)
    where = describe_device(device)
    threads = f", {max(1, int(spec.resources.cpu))} torch thread(s) per trial as resources.cpu gives" \
        if device.type == "cpu" else ""
    lines = ["", f"measured cost, training only (timed on this machine's {where}{threads}; "
                 f"{warmup} warm-up + {steps} timed steps each, median):"]
    rows = [["architecture, data, mode", "trials", "batch", "s/step", "images/s", "start-up", "peak memory"]]
    for m in measured:
        peak = f"{m.timing.peak_bytes / GIB:.2f} GiB" if m.timing.peak_bytes is not None else "-"
        rows.append([m.label, str(m.trials), str(m.timing.batch_size), f"{m.timing.seconds:.4f}",
                     f"{m.timing.images_per_s:,.0f}", f"{m.startup_s:.1f} s" + ("" if m.data_timed else "*"), peak])
    lines += ["  " + line for line in _table(rows)]
    seconds = sum(m.train_steps * m.timing.seconds for m in measured)
    startup = sum(m.trials * m.startup_s for m in measured)
    at_once = concurrency(spec, device)
    per_trial = "one whole GPU per trial while timed" if device.type == "cuda" else \
        "CPU trial-hours, each trial on its resources.cpu cores"
    lines += [
        f"  device-hours:           {hours((seconds + startup) / 3600)} ({per_trial}; {hours(seconds / 3600)} of it "
        "training steps, the rest start-up)",
        f"  wall time:              {_duration(study_wall_s(measured, at_once))} for the whole study at {at_once} "
        "trial(s) at once (max_concurrent), start-up included, if concurrent trials do not slow each other",
        f"  start-up per trial:     {SWEEP_LAYER_S:g} s of sweep layer (measured once, sweeper.plan.estimate) + "
        "the data set loaded and the model built, timed here"
        + ("" if all(m.data_timed for m in measured) else
           f" (*: the data set is not on this machine; its load assumed at {STARTUP_S - SWEEP_LAYER_S:g} s)"),
    ]
    lines += _memory_lines(measured, device, spec)
    lines.append("shown: measured step times on this machine (the FLOP estimate above assumes a throughput)")
    return lines


def _memory_lines(measured: list[Measured], device: torch.device, spec: Spec) -> list[str]:
    if device.type != "cuda":
        return ["  peak memory per trial:  not measured on the CPU (torch keeps allocator statistics on CUDA only)",
                "  resources.gpu:          does not apply: timed on the CPU, no GPU here"]
    peak = max(m.timing.peak_bytes or 0 for m in measured)
    fit, per_trial = trials_per_card(peak, device)
    lines = [f"  peak memory per trial:  {peak / GIB:.2f} GiB in one training step (largest above), "
             f"{per_trial / GIB:.2f} GiB with the CUDA context"]
    if fit < 1:
        lines.append(f"  resources.gpu:          the largest trial does not fit on this card "
                     f"({USABLE_MEMORY_FRACTION:.0%} of its memory)")
    else:
        lines.append(f"  resources.gpu:          {gpu_fraction(fit):g} packs {fit} trial(s) per card without "
                     f"running out of memory (the spec asks {spec.resources.gpu:g}; the data set on the "
                     "device and the evaluation batches come on top)")
    return lines


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def _duration(seconds: float) -> str:
    if seconds < 600:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.1f} h"

