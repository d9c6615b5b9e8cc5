"""Where a sweep stands, as plain data: counts, the trials running now, the best result, an ETA.

The driver keeps one ``SweepState`` up to date from Ray Tune's events (sweeper.views.progress), the
terminal view draws it, the parent MLflow run stores it (sweeper.record.dashboard), and
``sweeper status --watch`` draws it again from there. It holds no Ray or MLflow object, so it
travels as JSON.

ETA: the epochs still to train (the rest of each running trial, the whole of each trial not yet
started) times the mean measured seconds per epoch, divided by the number of trials seen running
at once. An early-stopping scheduler only makes the sweep end sooner than that.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from sweeper.core.states import DIVERGED, FAILED, FINISHED, STOPPED_EARLY


@dataclass
class TrialLine:
    name: str
    epoch: int = 0
    epochs: int | None = None
    test_acc: float | None = None
    images_per_s: float | None = None


@dataclass
class SweepState:
    name: str
    total: int
    finished: int = 0
    diverged: int = 0
    failed: int = 0
    running: dict[str, TrialLine] = field(default_factory=dict)
    best_acc: float | None = None
    best_trial: str | None = None
    started: float = field(default_factory=time.time)  # wall clock, so another process can read it
    mean_epochs: float = 0.0  # epochs of a trial not yet started (the mean over the grid)
    epoch_s_sum: float = 0.0
    epoch_s_n: int = 0
    concurrency: int = 1
    updated: float = field(default_factory=time.time)
    ended: bool = False
    waiting: str = ""  # why no trial can start yet (the driver's preflight), shown while none runs

    @property
    def done(self) -> int:
        return self.finished + self.diverged + self.failed

    def result(self, key: str, name: str, epochs: int | None, metrics: Mapping[str, Any]) -> None:
        """One epoch of a trial, as Tune reported it."""
        line = self.running.setdefault(key, TrialLine(name, epochs=epochs))
        if _number(metrics.get("epoch")) is not None:
            line.epoch = int(metrics["epoch"])
        for attr in ("test_acc", "images_per_s"):
            value = _number(metrics.get(attr))
            if value is not None:
                setattr(line, attr, value)
        epoch_s = _number(metrics.get("epoch_s"))
        if epoch_s is not None and epoch_s > 0:
            self.epoch_s_sum += epoch_s
            self.epoch_s_n += 1
        self.concurrency = max(self.concurrency, len(self.running))
        self.updated = time.time()

    def started_trial(self, key: str, name: str, epochs: int | None) -> None:
        self.running.setdefault(key, TrialLine(name, epochs=epochs))
        self.concurrency = max(self.concurrency, len(self.running))

    def end(self, key: str, name: str, state: str, acc: float | None) -> None:
        """A trial left the sweep: finished (or stopped early: it counts as finished), diverged or
        failed; any other word (its end was not readable) only takes it off the running list."""
        self.running.pop(key, None)
        if state in (FINISHED, STOPPED_EARLY):
            self.finished += 1
            self.offer_best(name, acc)
        elif state == DIVERGED:
            self.diverged += 1
        elif state == FAILED:
            self.failed += 1
        self.updated = time.time()

    def offer_best(self, name: str, acc: float | None) -> None:
        if acc is not None and (self.best_acc is None or acc > self.best_acc):
            self.best_acc, self.best_trial = float(acc), name

    def elapsed_s(self, now: float | None = None) -> float:
        end = self.updated if self.ended else (now or time.time())  # a stopped driver's clock stops
        return max(0.0, end - self.started)

    def eta_s(self) -> float | None:
        if self.done >= self.total:
            return 0.0
        if self.ended or not self.epoch_s_n:  # a driver that stopped early: nothing is running
            return None
        per_epoch = self.epoch_s_sum / self.epoch_s_n
        left = sum(max(0, (t.epochs or self.mean_epochs) - t.epoch) for t in self.running.values())
        not_started = max(0, self.total - self.done - len(self.running))
        return (left + not_started * self.mean_epochs) * per_epoch / max(1, self.concurrency)

    def to_json(self, max_running: int = 30) -> str:
        """Compact JSON (an MLflow tag holds at most a few thousand characters)."""
        data = asdict(self)
        data["running"] = dict(list(data["running"].items())[:max_running])
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "SweepState":
        data = json.loads(text)
        data["running"] = {k: TrialLine(**v) for k, v in data.get("running", {}).items()}
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # NaN is no measurement


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h04m``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
