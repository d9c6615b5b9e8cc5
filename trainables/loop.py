"""One trial: build, train, evaluate, checkpoint, analyse. ``run_trial`` is what the sweep calls.

Hot path: the training loop keeps loss and accuracy sums on the device and reads them back once
per epoch. Divergence is detected from the running loss sum (a NaN or inf in any step makes the
sum non-finite): on the CPU, where reading a scalar costs nothing, after every step and before the
update, so the weights stay at their last finite values; on CUDA every ``CUDA_FINITE_CHECK_EVERY``
steps, which costs one host sync per that many steps instead of one per step.

GPU-stall review of this loop (done on the CPU side; bench/gpu_check.py measures it):
- No ``.item()``/``float()``/``int()`` per step: loss and accuracy sums stay on the device and
  are read once per epoch (and once per evaluation); ``labels.shape[0]`` is metadata, and the
  scheduler sets each group's lr as a Python float, which launches nothing.
- The one per-step-family sync left is the divergence check: ``if not torch.isfinite(...)``
  every ``CUDA_FINITE_CHECK_EVERY`` steps drains the CUDA queue, so the GPU idles for about one
  step's launch latency per that many steps (a few percent at most for launch-bound small nets).
  Kept as is: an asynchronous check (pinned flag + event) would remove it but detect divergence
  later. gpu_check's ``loop_overhead`` (the loop's images/s over bare steps) says whether it is
  worth doing on a real card.
- Copies: on-device data sets (TensorSource) move nothing per batch; each epoch's order, crop
  offsets and flips go host -> device once, blocking but once per epoch. Streamed ImageNet
  batches come from pinned DataLoader memory with ``non_blocking=True``.
- No Python work per image anywhere: augmentation and normalisation are whole-batch tensor ops;
  the channels_last conversion of a batch is one device copy.
- Not a stall, noted: random_params' gradient hook makes one scalar zero tensor per masked
  tensor per step (a tiny fill kernel each).
"""

from __future__ import annotations

import gc
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainables import analysis
from trainables.checkpoint import (check_same_trial, config_hash, load_checkpoint, model_state,
                                   optimizer_state, restore_model_state, restore_optimizer_state,
                                   restore_rng_state, rng_state, save_checkpoint, write_gamma_json)
from trainables.config import TrialConfig
from trainables.data import load_data
from trainables.fidelity import conventions
from trainables.models import build_model
from trainables.modes import apply_mode, build_optimizer
from trainables.names import ENDED_AT
from trainables.precision import precision_context
from trainables.schedule import StepwiseLR, build_scheduler

Report = Callable[[dict, "Path | None"], None]

CUDA_FINITE_CHECK_EVERY = 20  # steps between divergence checks on CUDA (one host sync each)
EPOCH_SEED_STRIDE = 1_000_003  # epoch e's data order comes from seed * stride + e


@dataclass
class Setup:
    """Everything a trial trains with, built the same way for a fresh start and a resume."""

    config: TrialConfig
    device: torch.device
    data: Any
    model: nn.Module
    net: nn.Module  # what forward passes go through: the model, or its torch.compile wrapper
    trainability: Any
    optimizer: Any
    scheduler: StepwiseLR
    precision: Callable[[], ContextManager]
    channels_last: bool


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is cuda but no CUDA device is available")
    return torch.device(name)


def release_cuda_memory() -> None:
    """At a trial's end, in a process that may train the next one too (Ray reuses its actors):
    the allocator's cached blocks go back to the card, for the other processes that share it,
    and its peak counter restarts, so a peak read during the next trial is that trial's own."""
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return  # never used CUDA here: nothing is cached, and resetting the peak would create a context
    gc.collect()  # tensors kept only by a reference cycle hold their blocks until the collector runs
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def build_setup(config: TrialConfig, data: Any = None) -> Setup:
    """``data``: an already loaded source of this trial's data set (trainables/array shares one
    on-device set among an array's members); None loads it, as a solo trial does."""
    device = resolve_device(config.train.device)
    seed_everything(config.seed)
    details = conventions(config.train.fidelity)
    if data is None:
        data = load_data(config.dataset, device, config.seed, augment=config.train.augment,
                         cifar_normalisation=details.cifar_normalisation)
    # on the CPU, from the seed
    model = build_model(config.model, data.num_classes, config.seed, bias_init=details.bias_init)
    trainability = apply_mode(model, config.mode, config.seed)
    channels_last = device.type == "cuda"
    if channels_last:
        torch.backends.cudnn.benchmark = True
        model = model.to(device, memory_format=torch.channels_last)
    else:
        model = model.to(device)
    optimizer = build_optimizer(model, trainability, config.train)
    scheduler = build_scheduler(optimizer, config.train, data.steps_per_epoch(config.train.batch_size))
    net = torch.compile(model) if config.train.compile else model
    return Setup(config, device, data, model, net, trainability, optimizer, scheduler,
                  precision_context(config.train.precision, device), channels_last)


def device_batches(setup: Setup, batches: Any) -> Any:
    for images, labels in batches:
        if setup.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        yield images, labels


def train_epoch(setup: Setup, epoch: int) -> dict[str, float] | None:
    """One epoch of training; its metrics, or None when the loss stopped being finite."""
    config, device = setup.config, setup.device
    criterion = nn.CrossEntropyLoss(label_smoothing=config.train.label_smoothing)
    check_every = 1 if device.type == "cpu" else CUDA_FINITE_CHECK_EVERY
    generator = torch.Generator().manual_seed(config.seed * EPOCH_SEED_STRIDE + epoch)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    setup.model.train()  # BN running statistics update in every mode
    start = time.perf_counter()
    batches = setup.data.train_batches(config.train.batch_size, generator)
    for step, (images, labels) in enumerate(device_batches(setup, batches), start=1):
        with setup.precision():
            logits = setup.net(images)
            loss = criterion(logits, labels)
        loss_sum += loss.detach().float() * labels.shape[0]
        correct += (logits.detach().argmax(dim=1) == labels).sum()
        seen += labels.shape[0]
        if step % check_every == 0 and not torch.isfinite(loss_sum):
            return None
        setup.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        setup.optimizer.step()
        setup.scheduler.step()
    total_loss, total_correct = float(loss_sum), int(correct)  # the epoch's one sync
    seconds = time.perf_counter() - start
    if not math.isfinite(total_loss):
        return None
    return {
        "train_loss": total_loss / max(seen, 1),
        "train_acc": total_correct / max(seen, 1),
        "lr": setup.scheduler.schedule.lr_at(setup.scheduler.steps_done - 1),  # the epoch's last step
        "images_per_s": seen / seconds if seconds > 0 else 0.0,
    }


@torch.no_grad()
def evaluate(setup: Setup) -> dict[str, float]:
    """Test loss (plain cross-entropy: label smoothing regularises training only), top-1, top-5."""
    setup.model.eval()
    loss_sum = torch.zeros((), device=setup.device)
    top1 = torch.zeros((), dtype=torch.long, device=setup.device)
    top5 = torch.zeros((), dtype=torch.long, device=setup.device)
    seen = 0
    k = min(5, setup.data.num_classes)
    for images, labels in device_batches(setup, setup.data.test_batches(setup.config.train.eval_batch_size)):
        with setup.precision():
            logits = setup.net(images)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        best = logits.topk(k, dim=1).indices
        hits = best == labels[:, None]
        top1 += hits[:, 0].sum()
        top5 += hits.any(dim=1).sum()
        seen += labels.shape[0]
    setup.model.train()
    n = max(seen, 1)
    return {"test_loss": float(loss_sum) / n, "test_acc": int(top1) / n, "test_top5": int(top5) / n}


def final_metrics(setup: Setup, history: list[dict], status: str) -> dict[str, Any]:
    accuracies = [h["test_acc"] for h in history]
    relu_batches = device_batches(setup, setup.data.test_batches(setup.config.train.eval_batch_size))
    return {
        "status": status,
        "epochs_completed": len(history),
        # a run that diverged in its first epoch has no accuracy to show: 0.0, not NaN, so that
        # searchers that maximise accuracy rank it last
        "best_test_acc": max(accuracies, default=0.0),
        "final_test_acc": accuracies[-1] if accuracies else 0.0,
        "trainable_params": int(setup.trainability.trainable_params),
        "total_params": int(setup.trainability.total_params),
        **analysis.gamma_metrics(setup.model),
        # the plain model, not a torch.compile wrapper: forward hooks belong on eager modules
        "relu_zero_frac": analysis.relu_zero_frac(setup.model, relu_batches, setup.precision),
        ENDED_AT: time.time(),  # the final metrics' MLflow timestamp (trainables/names.py)
    }


def save_epoch(setup: Setup, directory: Path, epoch: int, history: list[dict], final: dict | None,
          fence: Callable[[], None] | None = None) -> None:
    config = setup.config
    save_checkpoint(directory, {
        "config": config.to_dict(),
        "config_hash": config_hash(config),
        "seed": config.seed,
        "num_classes": setup.data.num_classes,
        "epoch": epoch,
        "history": history,
        "final": final,
        "model": model_state(setup.model, setup.trainability),
        "optimizer": optimizer_state(setup.model, setup.trainability, setup.optimizer),
        "scheduler": setup.scheduler.state_dict(),
        "rng": rng_state(),
    }, before_commit=fence)  # checked just before the new file replaces the old one


def run_trial(config: Mapping[str, Any] | TrialConfig, report: Report | None = None,
              checkpoint_dir: str | Path | None = None, *,
              fence: Callable[[], None] | None = None) -> dict[str, Any]:
    """Train one trial to the end (or until its loss diverges) and return its final metrics.

    ``report(metrics, checkpoint)`` is called after every completed epoch, once that epoch's
    checkpoint (if any) is on disk; ``checkpoint`` is then ``checkpoint_dir``, else None. Epochs
    already in a resumed checkpoint are not reported again. ``fence()`` is called after every
    epoch before anything of it is written or reported (and before the end's checkpoint): it
    raises to stop the trial, which then leaves the checkpoint as it was. See docs/architecture.md.
    """
    config = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    directory = Path(checkpoint_dir).expanduser() if checkpoint_dir is not None else None
    saved = load_checkpoint(directory) if directory is not None else None
    if saved is not None:
        check_same_trial(saved, config, directory)
        if saved["final"] is not None:
            return dict(saved["final"])

    setup = build_setup(config)
    history: list[dict] = []
    start_epoch = 1
    if saved is not None:
        restore_model_state(setup.model, setup.trainability, saved["model"])
        restore_optimizer_state(setup.model, setup.trainability, setup.optimizer, saved["optimizer"])
        setup.scheduler.load_state_dict(saved["scheduler"])
        restore_rng_state(saved["rng"])
        history = list(saved["history"])
        start_epoch = saved["epoch"] + 1

    epochs = config.train.epochs
    status = "finished"
    for epoch in range(start_epoch, epochs + 1):
        started = time.perf_counter()
        trained = train_epoch(setup, epoch)
        if trained is None:
            status = "diverged"
            break
        metrics = {"epoch": epoch, **trained, **evaluate(setup)}
        metrics["epoch_s"] = time.perf_counter() - started
        metrics[ENDED_AT] = time.time()
        history.append(metrics)
        final = final_metrics(setup, history, status) if epoch == epochs else None
        checkpointed = None
        # ``fence`` (may this trial still write?) raises to stop it with nothing of this epoch
        # written: checked before gamma.json, just before the checkpoint replaces the last one,
        # and, on an epoch without a checkpoint, before the report
        if directory is not None and (final is not None or epoch % config.checkpoint.every_epochs == 0):
            if final is not None:  # gamma.json first: a finished checkpoint implies it exists
                if fence is not None:
                    fence()
                write_gamma_json(directory, analysis.bn_gammas(setup.model))
            save_epoch(setup, directory, epoch, history, final, fence)
            checkpointed = directory
        elif fence is not None:
            fence()
        if report is not None:
            report(dict(metrics), checkpointed)

    if status == "diverged" or start_epoch > epochs:
        final = final_metrics(setup, history, status)
        if directory is not None:
            if fence is not None:
                fence()
            write_gamma_json(directory, analysis.bn_gammas(setup.model))
            save_epoch(setup, directory, len(history), history, final, fence)
    return dict(final)
