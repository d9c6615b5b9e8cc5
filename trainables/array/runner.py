"""``run_array``: K compatible trials trained as one fused network, each with run_trial's contract.

Every member keeps a solo ``loop.Setup`` (its model, optimizer and scheduler, built exactly as
``run_trial`` builds them, so its initial weights are its solo trial's bit for bit). The solo
setups are where a member's state lives between arrays: it is fused in (``Array``) and copied
back out whenever the member writes a checkpoint, diverges or finishes, so its checkpoint and
``gamma.json`` are written by the loop's own ``save_epoch`` in the solo format.

Members resumed at different epochs: the array starts at the earliest epoch with the members
there, and a member joins when the array reaches the epoch its checkpoint holds (members at one
epoch have taken the same steps, so nothing but the membership changes). A member that diverges
is copied out at that step (before its update, as solo) and leaves the array at the epoch's end;
the others go on. The array is refused (``ValueError``) unless ``key.compatible`` accepts it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from trainables import analysis, loop
from trainables.array.batches import member_batches
from trainables.array.fused import copy_member_out, fuse_model, repeat_input
from trainables.array.key import compatible
from trainables.array.optim import FusedOptimizer
from trainables.checkpoint import (check_same_trial, load_checkpoint, restore_model_state, restore_optimizer_state,
                                   restore_rng_state, write_gamma_json)
from trainables.config import TrialConfig
from trainables.data.source import TensorSource
from trainables.names import ENDED_AT

Report = Callable[[dict, "Path | None"], None]


@dataclass
class Member:
    config: TrialConfig
    setup: loop.Setup
    directory: Path | None
    report: Report | None
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 1
    diverged: bool = False
    final: dict | None = None  # set at the last epoch


class Array:
    """The fused network and optimizer over some members; their state copied in at construction."""

    def __init__(self, members: list[Member]):
        self.members = members
        setups = [m.setup for m in members]
        first = setups[0]
        self.steps = first.scheduler.steps_done
        if any(s.scheduler.steps_done != self.steps for s in setups):
            raise RuntimeError("array members must have taken the same steps")
        layout = torch.channels_last if first.channels_last else torch.contiguous_format
        self.model = fuse_model([s.model for s in setups], layout)
        trains = [{n: s.trainability.masks.get(n) for n, p in s.model.named_parameters() if p.requires_grad}
                  for s in setups]
        self.optimizer = FusedOptimizer(self.model, trains, [m.config.train for m in members])
        for index, setup in enumerate(setups):
            self.optimizer.load_member(index, setup.model, setup.optimizer)
        self.optimizer.steps = self.steps
        self.net = torch.compile(self.model) if first.config.train.compile else self.model
        self.loss = MemberLoss([m.config.train.label_smoothing for m in members], first.device)

    def copy_out(self, index: int) -> None:
        """Member ``index``'s weights, statistics, optimizer state and step count into its solo setup."""
        member = self.members[index]
        copy_member_out(self.model, index, member.setup.model)
        self.optimizer.store_member(index, member.setup.model, member.setup.optimizer,
                                    member.config.train.optimizer.momentum)
        member.setup.scheduler.load_state_dict({"steps_done": self.steps})

    def lrs(self) -> list[float]:
        """Each member's lr for the next step, from its own schedule (host arithmetic only)."""
        return [m.setup.scheduler.schedule.lr_at(self.steps) for m in self.members]


class MemberLoss:
    """Every member's mean cross-entropy from ``[K, B, classes]`` logits in one batched call over
    K*B rows (reduction none), each with its own label smoothing: ``(1 - e) * nll + e * smooth``,
    torch's own formula; one shared smoothing is passed to cross_entropy as is."""

    def __init__(self, smoothing: Sequence[float], device: torch.device):
        self.shared = smoothing[0] if len(set(smoothing)) == 1 else None
        values = torch.tensor(list(smoothing), dtype=torch.float32)[:, None]
        self.keep, self.smooth = (1 - values).to(device), values.to(device)  # [K, 1], made once

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        k, b = labels.shape
        flat, targets = logits.reshape(k * b, -1), labels.reshape(k * b)
        if self.shared is not None:
            rows = F.cross_entropy(flat, targets, reduction="none", label_smoothing=self.shared)
            return rows.view(k, b).mean(dim=1)
        nll = F.cross_entropy(flat, targets, reduction="none").view(k, b)
        smooth = -F.log_softmax(flat, dim=1).mean(dim=1).view(k, b)
        return (self.keep * nll + self.smooth * smooth).mean(dim=1)


def train_epoch(array: Array, epoch: int) -> list[dict | None]:
    """One epoch for every member; a member's metrics, or None for a member that diverged.
    No host sync per step beyond the solo loop's: the divergence check (every step on the CPU,
    every ``loop.CUDA_FINITE_CHECK_EVERY`` on CUDA) reads one flag."""
    members, first = array.members, array.members[0].setup
    device, k = first.device, len(members)
    check_every = 1 if device.type == "cpu" else loop.CUDA_FINITE_CHECK_EVERY
    batch_size = first.config.train.batch_size
    generators = [torch.Generator().manual_seed(m.config.seed * loop.EPOCH_SEED_STRIDE + epoch) for m in members]
    loss_sum = torch.zeros(k, device=device)
    correct = torch.zeros(k, dtype=torch.long, device=device)
    alive = list(range(k))
    seen = 0
    array.model.train()
    start = time.perf_counter()
    for step, (images, labels) in enumerate(member_batches(first.data, batch_size, generators), start=1):
        if first.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with first.precision():
            logits = array.net(images)  # K x N x classes
            losses = array.loss(logits, labels)
        loss_sum += losses.detach().float() * labels.shape[1]
        correct += (logits.detach().argmax(dim=2) == labels).sum(dim=1)
        seen += labels.shape[1]
        if step % check_every == 0 and not torch.isfinite(loss_sum).all():
            alive = _drop_diverged(array, alive, loss_sum)
            if not alive:
                break
        array.optimizer.zero_grad()
        # a member's gradient is its own loss's: the sum separates; a diverged member's is left out
        (losses if len(alive) == k else losses[alive]).sum().backward()
        array.optimizer.step(array.lrs())
        array.steps += 1
    totals, hits = loss_sum.tolist(), correct.tolist()  # the epoch's one sync
    seconds = time.perf_counter() - start
    alive = _drop_diverged(array, alive, loss_sum, totals)
    out: list[dict | None] = [None] * k
    for i in alive:
        out[i] = {"train_loss": totals[i] / max(seen, 1), "train_acc": hits[i] / max(seen, 1),
                  "lr": members[i].setup.scheduler.schedule.lr_at(array.steps - 1),
                  "images_per_s": seen / seconds if seconds > 0 else 0.0}
    return out


def _drop_diverged(array: Array, alive: list[int], loss_sum: torch.Tensor,
                   totals: list[float] | None = None) -> list[int]:
    """Members whose running loss stopped being finite are copied out now (their weights at their
    last finite values on the CPU, as solo) and leave ``alive``."""
    values = totals if totals is not None else loss_sum.tolist()
    still = []
    for i in alive:
        if math.isfinite(values[i]):
            still.append(i)
        else:
            array.copy_out(i)
            array.members[i].diverged = True
    return still


@torch.no_grad()
def _evaluate(array: Array) -> list[dict[str, float]]:
    """Every member's test loss, top-1 and top-5 (one fused forward per test batch)."""
    first = array.members[0].setup
    k, device = len(array.members), first.device
    loss_sum = torch.zeros(k, device=device)
    top1 = torch.zeros(k, dtype=torch.long, device=device)
    top5 = torch.zeros(k, dtype=torch.long, device=device)
    top = min(5, first.data.num_classes)
    seen = 0
    array.model.eval()
    for images, labels in loop.device_batches(first, first.data.test_batches(first.config.train.eval_batch_size)):
        images = repeat_input(images, k)
        if first.channels_last:  # a no-op unless repeat_input could not keep the layout
            images = images.contiguous(memory_format=torch.channels_last)
        with first.precision():
            logits = array.net(images)
        logits = logits.float()
        rows = labels.shape[0]
        loss_sum += F.cross_entropy(logits.reshape(k * rows, -1), labels.repeat(k), reduction="none").view(k, rows).sum(1)
        hits = logits.topk(top, dim=2).indices == labels[None, :, None]
        top1 += hits[:, :, 0].sum(dim=1)
        top5 += hits.any(dim=2).sum(dim=1)
        seen += labels.shape[0]
    array.model.train()
    n = max(seen, 1)
    losses, ones, fives = loss_sum.tolist(), top1.tolist(), top5.tolist()
    return [{"test_loss": losses[i] / n, "test_acc": ones[i] / n, "test_top5": fives[i] / n} for i in range(k)]


class _Fence:
    """The caller's fence, remembering whether it raised: a fence that raises stops every member
    (the lease is the array's), where any other exception of a member's own work fails that
    member alone. Called just before each member's checkpoint rename, as run_trial calls it."""

    def __init__(self, fence: Callable[[], None] | None):
        self.fence, self.raised = fence, None

    def __call__(self) -> None:
        if self.fence is not None:
            try:
                self.fence()
            except BaseException as e:
                self.raised = e
                raise


def _finish(member: Member, status: str, fence: _Fence) -> dict[str, Any]:
    """A member that diverged or resumed past its last epoch: final metrics and checkpoint, as solo."""
    final = loop.final_metrics(member.setup, member.history, status)
    if member.directory is not None:
        fence()
        write_gamma_json(member.directory, analysis.bn_gammas(member.setup.model))
        loop.save_epoch(member.setup, member.directory, len(member.history), member.history, final, fence)
    return dict(final)


def _alone(results: list, index: int, fence: _Fence, work: Callable[[], Any]) -> bool:
    """Run one member's own work; an exception of it (not the fence's) becomes that member's
    result and it stops (False); the fence's exception stops every member."""
    try:
        outcome = work()
    except Exception as e:  # noqa: BLE001 - the member's own failure is its result: returned to the caller
        if fence.raised is not None:
            raise fence.raised from None
        results[index] = e
        return False
    if outcome is not None:
        results[index] = outcome
    return True


def _prepare(config: TrialConfig, report: Report | None, directory: Path | None,
             shared_data: list) -> Member | dict:
    """A member set up as run_trial sets a trial up (resumed from its checkpoint), or its final
    metrics when its checkpoint is finished."""
    saved = load_checkpoint(directory) if directory is not None else None
    if saved is not None:
        check_same_trial(saved, config, directory)
        if saved["final"] is not None:
            return dict(saved["final"])
    # On-device sets do not depend on the trial's seed (data/__init__.py): one copy serves all.
    setup = loop.build_setup(config, data=shared_data[0] if shared_data else None)
    if not shared_data and isinstance(setup.data, TensorSource):
        shared_data.append(setup.data)
    member = Member(config, setup, directory, report)
    if saved is not None:
        restore_model_state(setup.model, setup.trainability, saved["model"])
        restore_optimizer_state(setup.model, setup.trainability, setup.optimizer, saved["optimizer"])
        setup.scheduler.load_state_dict(saved["scheduler"])
        restore_rng_state(saved["rng"])
        member.history = list(saved["history"])
        member.start_epoch = saved["epoch"] + 1
    return member


def run_array(configs: Sequence[Mapping[str, Any] | TrialConfig], reports: Sequence[Report | None] | None = None,
              checkpoint_dirs: Sequence[str | Path | None] | None = None, *,
              fence: Callable[[], None] | None = None) -> list[dict[str, Any] | Exception]:
    """Train ``configs`` as one array; every member's outcome, in order (see module doc).

    Per member, ``run_trial(config, report, checkpoint_dir, fence=fence)``'s contract:
    ``reports[i](metrics, checkpoint)`` after each of its epochs once that epoch's checkpoint (if
    any) is written; ``fence()`` just before each member's checkpoint replaces its last one (and
    before its ``gamma.json``, and before its report on an epoch without a checkpoint); a
    finished checkpoint returns its final metrics untrained; ``gamma.json`` at the end.

    The list holds member i's final metrics (a dict), or the exception its own work raised (an
    ``Exception`` instance, not raised): its report, its checkpoint or ``gamma.json`` write, its
    resume from ``checkpoint_dirs[i]``, its final analysis. That member then stops (no further
    reports or checkpoints; its last checkpoint stays) and the others go on without it. What is
    every member's raises instead: the fence (the lease is the array's: nothing more is written
    for anyone, checkpoints written before stand), a refused array, the fused training itself.
    """
    configs = [c if isinstance(c, TrialConfig) else TrialConfig.from_dict(c) for c in configs]
    compatible(configs)
    k = len(configs)
    reports = list(reports) if reports is not None else [None] * k
    dirs = [Path(d).expanduser() if d is not None else None for d in (checkpoint_dirs or [None] * k)]
    if len(reports) != k or len(dirs) != k:
        raise ValueError(f"{k} configs need {k} reports and {k} checkpoint_dirs, got {len(reports)} and {len(dirs)}")
    named = [d.resolve() for d in dirs if d is not None]
    if len(set(named)) != len(named):
        raise ValueError("two array members share a checkpoint folder")

    fenced = _Fence(fence)
    results: list[Any] = [None] * k
    members: dict[int, Member] = {}
    shared_data: list = []
    for i, (config, report, directory) in enumerate(zip(configs, reports, dirs)):
        prepared: list = []
        if _alone(results, i, fenced, lambda: prepared.append(_prepare(config, report, directory, shared_data))):
            if isinstance(prepared[0], dict):
                results[i] = prepared[0]
            else:
                members[i] = prepared[0]
    epochs = configs[0].train.epochs
    for i, member in members.items():
        if member.start_epoch > epochs:  # a last checkpoint without its final metrics
            _alone(results, i, fenced, lambda: _finish(member, "finished", fenced))
    _train(members, {i: m for i, m in members.items() if results[i] is None}, results, epochs, fenced)
    return [r if isinstance(r, Exception) else dict(r) for r in results]


def _train(members: dict[int, Member], running: dict[int, Member], results: list, epochs: int, fence: _Fence) -> None:
    array: Array | None = None
    for epoch in range(min((m.start_epoch for m in running.values()), default=epochs + 1), epochs + 1):
        now = [i for i, m in running.items() if m.start_epoch <= epoch and not m.diverged and results[i] is None]
        if not now:
            continue
        if array is None or [id(m) for m in array.members] != [id(running[i]) for i in now]:
            if array is not None:  # membership changes: the old array's state goes back to the solo setups
                for index, member in enumerate(array.members):
                    if not member.diverged:
                        array.copy_out(index)
            array = Array([running[i] for i in now])
        _run_epoch(array, now, results, epoch, epochs, fence)
        for i in now:
            member = running[i]
            if results[i] is not None:
                continue  # failed alone this epoch
            if member.diverged:
                _alone(results, i, fence, lambda: _finish(member, "diverged", fence))
            elif epoch == epochs:
                results[i] = dict(member.final)


def _run_epoch(array: Array, indices: list[int], results: list, epoch: int, epochs: int, fence: _Fence) -> None:
    started = time.perf_counter()
    trained = train_epoch(array, epoch)
    tested = _evaluate(array)
    seconds = time.perf_counter() - started
    for index, member in enumerate(array.members):
        if trained[index] is not None:
            metrics = {"epoch": epoch, **trained[index], **tested[index], "epoch_s": seconds, ENDED_AT: time.time()}
            _alone(results, indices[index], fence, lambda: _member_epoch(array, index, metrics, epoch, epochs, fence))


def _member_epoch(array: Array, index: int, metrics: dict, epoch: int, epochs: int, fence: _Fence) -> None:
    """One member's end of an epoch, as run_trial's: checkpoint (fenced just before its rename)
    or the fence, then the report."""
    member = array.members[index]
    member.history.append(metrics)
    config, directory = member.config, member.directory
    last = epoch == epochs
    checkpoint = last or (directory is not None and epoch % config.checkpoint.every_epochs == 0)
    if checkpoint:
        array.copy_out(index)
    final = loop.final_metrics(member.setup, member.history, "finished") if last else None
    member.final = final
    checkpointed = None
    if directory is not None and checkpoint:
        if final is not None:  # gamma.json first: a finished checkpoint implies it exists
            fence()
            write_gamma_json(directory, analysis.bn_gammas(member.setup.model))
        loop.save_epoch(member.setup, directory, epoch, member.history, final, fence)
        checkpointed = directory
    else:
        fence()
    if member.report is not None:
        member.report(dict(metrics), checkpointed)
