"""Learning-rate schedules, applied once per optimisation step.

The learning rate is a pure function of the global step (``LRSchedule.lr_at``), so the only state
a scheduler carries, and a checkpoint stores, is how many steps have been taken. Epoch-based
schedules (``step`` milestones, ``cosine`` over the run) are evaluated at step granularity, which
is what lets warm-up last a fraction of an epoch.

Conventions (the same as ``torch.optim.lr_scheduler.MultiStepLR`` stepped per epoch):
- ``step`` with ``milestones: [80, 120]``: epochs 0..79 (0-based) use ``lr``, 80..119 use
  ``lr * factor``, from 120 on ``lr * factor**2``; ``step_size: s`` multiplies every ``s`` epochs.
- ``cosine`` anneals from ``lr`` to ``min_lr`` over the steps after warm-up, reaching ``min_lr``
  only after the last step.
- warm-up multiplies whatever the schedule gives by ``(step + 1) / warmup_steps`` during the first
  ``warmup_steps = round(warmup_epochs * steps_per_epoch)`` steps (at least 1): it starts near zero and reaches
  the full value on the first step after warm-up. With ``train.fidelity: open_lth`` the factor is
  open_lth's ``min(1, step / warmup_steps)``: the first step has lr 0, the same ramp one step later.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any

from trainables.config import TrainConfig
from trainables.fidelity import conventions


@dataclass(frozen=True)
class LRSchedule:
    name: str  # constant | step | cosine
    base_lr: float
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int = 0
    milestones: tuple[int, ...] = ()  # step: epochs (0-based start of the lowered lr)
    step_size: int | None = None  # step: epochs between multiplications
    factor: float = 0.1  # step: the multiplier
    min_lr: float = 0.0  # cosine: absolute floor
    warmup_from_zero: bool = False  # open_lth's warm-up: factor step / warmup_steps, lr 0 at step 0

    @classmethod
    def from_config(cls, train: TrainConfig, steps_per_epoch: int) -> "LRSchedule":
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        sched = train.lr_schedule
        return cls(
            name=sched.name,
            base_lr=train.lr,
            steps_per_epoch=steps_per_epoch,
            total_steps=train.epochs * steps_per_epoch,
            # any positive warm-up lasts at least one step; round() keeps 0.3 * 10 at 3 steps
            warmup_steps=max(1, round(train.warmup_epochs * steps_per_epoch)) if train.warmup_epochs > 0 else 0,
            milestones=tuple(sched.milestones),
            step_size=sched.step_size,
            factor=sched.factor,
            min_lr=sched.min_lr,
            warmup_from_zero=conventions(train.fidelity).warmup_from_zero,
        )

    def lr_at(self, step: int) -> float:
        """The learning rate of the optimisation step with 0-based global index ``step``."""
        lr = self._schedule_lr(step)
        if step < self.warmup_steps:
            lr *= (step if self.warmup_from_zero else step + 1) / self.warmup_steps
        return lr

    def _schedule_lr(self, step: int) -> float:
        if self.name == "constant":
            return self.base_lr
        if self.name == "step":
            epoch = step // self.steps_per_epoch
            if self.step_size is not None:
                drops = epoch // self.step_size
            else:
                drops = bisect.bisect_right(self.milestones, epoch)
            return self.base_lr * self.factor**drops
        if self.name == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, max(0, step - self.warmup_steps) / span)
            return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        raise ValueError(f"unknown lr schedule {self.name!r}")


class StepwiseLR:
    """Sets every param group's ``lr`` from an ``LRSchedule`` before each step.

    Works with any object that has ``param_groups`` (a plain optimizer or a wrapper around one).
    ``step()`` is called after ``optimizer.step()``, as with torch's schedulers.
    """

    def __init__(self, optimizer: Any, schedule: LRSchedule, steps_done: int = 0):
        self.optimizer = optimizer
        self.schedule = schedule
        self.steps_done = steps_done
        self._apply()

    @property
    def current_lr(self) -> float:
        """The lr the next optimizer step will use."""
        return self.schedule.lr_at(self.steps_done)

    def step(self) -> None:
        self.steps_done += 1
        self._apply()

    def _apply(self) -> None:
        lr = self.current_lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def state_dict(self) -> dict[str, int]:
        return {"steps_done": self.steps_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.steps_done = int(state["steps_done"])
        self._apply()


def build_scheduler(optimizer: Any, train: TrainConfig, steps_per_epoch: int) -> StepwiseLR:
    return StepwiseLR(optimizer, LRSchedule.from_config(train, steps_per_epoch))
