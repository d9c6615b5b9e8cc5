"""What `sweeper run` and `sweeper status --watch` show while a sweep runs.

On a terminal: one live view (rich), redrawn in place, with a line per running trial (epoch k/N,
last test_acc, images/s) under a sweep line (done/total, failures, best so far, elapsed, ETA);
the line of each trial that ends scrolls above it and stays. Anywhere else (CI, ``nohup``,
Kubernetes logs): the same facts as plain lines, the trial-end lines as they happen and a
summary every ``SWEEPER_PROGRESS_EVERY_S`` seconds (default 30), with no escape codes.

``SweepMonitor`` turns the driver's Ray Tune events into a ``SweepState`` and feeds both the view
and the parent run's dashboard (sweeper.record.dashboard).
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping, TextIO

from sweeper.core import settings
from sweeper.views import terminal
from sweeper.core.states import DONE, STOPPED_EARLY
from sweeper.record.live import SweepState, TrialLine, duration



# --- the words, shared by both modes ---------------------------------------------------------


def counts_text(state: SweepState) -> str:
    return (f"{state.done}/{state.total} done, {state.failed} failed, {state.diverged} diverged, "
            f"{len(state.running)} running")


def timing_text(state: SweepState) -> str:
    best = "" if state.best_acc is None else f"best test_acc {state.best_acc:.3f} ({state.best_trial}), "
    return f"{best}elapsed {duration(state.elapsed_s())}, ETA {duration(state.eta_s())}"


def waiting_text(state: SweepState) -> str:
    """Why the sweep waits for a node (the preflight's reason), while no trial runs: on every
    progress line, so a run that cannot start yet never just sits at 0 running."""
    if not state.waiting or state.running or state.done >= state.total:
        return ""
    return f"waiting: {state.waiting}"


def sweep_summary(state: SweepState) -> str:
    waiting = waiting_text(state)
    return f"{state.name}: {counts_text(state)}, {timing_text(state)}" + (f"; {waiting}" if waiting else "")


def trial_summary(line: TrialLine) -> str:
    if not line.epoch and line.test_acc is None:
        return f"{line.name}  starting"
    of = f"/{line.epochs}" if line.epochs else ""
    acc = "-" if line.test_acc is None else f"{line.test_acc:.3f}"
    speed = "" if line.images_per_s is None else f"  {line.images_per_s:,.0f} img/s"
    return f"{line.name}  epoch {line.epoch}{of}  test_acc {acc}{speed}"


OUTCOME_WORDS = {STOPPED_EARLY: "finished (stopped early)"}  # it counts as finished in the sweep line


def ended_line(state: SweepState, name: str, outcome: str, acc: float | None, where: str = "") -> str:
    acc_text = f"  test_acc={acc:.3f}" if isinstance(acc, float) else ""
    return f"[{state.done}/{state.total}] {name}: {OUTCOME_WORDS.get(outcome, outcome)}{acc_text}{where}"


def renderable(state: SweepState):
    """The live view as one rich renderable: the sweep line, then a line per running trial."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    head = Table.grid(padding=(0, 1))
    counts = Text(counts_text(state))
    if state.failed:
        counts.highlight_words([f"{state.failed} failed"], style="bold red")
    head.add_row(Text(state.name, style="bold"), ProgressBar(total=max(1, state.total), completed=state.done,
                                                              width=20), counts)
    lines = [Text("  " + timing_text(state))]  # its own line: the whole view fits 80 columns
    lines += [Text("  " + trial_summary(t), style="cyan") for t in state.running.values()]
    if waiting_text(state):
        lines.append(Text("  " + waiting_text(state), style="yellow"))
    return Group(head, *lines)


# --- the two views ---------------------------------------------------------------------------


class PlainView:
    def __init__(self, stream: TextIO, every_s: float | None = None):
        self.stream = stream
        self.every_s = settings.PROGRESS_EVERY_S.get() if every_s is None else every_s
        self.last = time.monotonic()

    def message(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def refresh(self, state: SweepState, force: bool = False) -> None:
        if not force and time.monotonic() - self.last < self.every_s:
            return
        self.last = time.monotonic()
        lines = [f"[progress] {sweep_summary(state)}"] + [f"  {trial_summary(t)}" for t in state.running.values()]
        print("\n".join(lines), file=self.stream, flush=True)

    def close(self, state: SweepState) -> None:
        self.refresh(state, force=True)


class LiveView:
    def __init__(self, stream: TextIO, state: SweepState):
        from rich.console import Console
        from rich.live import Live

        self.state = state
        console = Console(file=stream, force_terminal=True, highlight=False, soft_wrap=False)
        self.live = Live(console=console, refresh_per_second=4, transient=False, redirect_stdout=False,
                         redirect_stderr=False, get_renderable=lambda: renderable(self.state))
        self.live.start()

    def message(self, text: str) -> None:
        self.live.refresh()  # the line printed above the view must not come with a stale view below
        self.live.console.print(text, markup=False, highlight=False)

    def refresh(self, state: SweepState, force: bool = False) -> None:
        self.state = state
        if force:
            self.live.refresh()

    def close(self, state: SweepState) -> None:
        self.state = state
        self.live.stop()


def open_view(state: SweepState, stream: TextIO | None = None):
    stream = stream or terminal.terminal()
    if terminal.is_terminal(stream) and os.environ.get("TERM") != "dumb":
        return LiveView(stream, state)
    return PlainView(stream)


# --- the driver's side -----------------------------------------------------------------------


class SweepMonitor:
    """Ray Tune events in, a terminal view and a parent-run dashboard out. Never raises into Tune."""

    def __init__(self, state: SweepState, dashboard=None, epochs_by_key: Mapping[str, int] | None = None):
        self.state = state
        self.dashboard = dashboard
        self.epochs_by_key = dict(epochs_by_key or {})
        self.view = None

    @classmethod
    def start(cls, client, parent_run_id: str | None, sweep: str, grid: Mapping[str, Any],
              total: int, done_before=(), holds=None) -> "SweepMonitor":
        """The state of the whole sweep: ``done_before``, the trials earlier runs finished, as
        (key, name, state, final_test_acc) from what the driver read, count as done. ``holds``:
        the driver's lease check, asked before each dashboard write."""
        from sweeper.record.dashboard import Dashboard

        epochs = {key: int(t.config["train"]["epochs"]) for key, t in grid.items()}
        state = SweepState(sweep, total, mean_epochs=(sum(epochs.values()) / len(epochs)) if epochs else 0.0)
        for key, name, outcome, accuracy in done_before:
            if outcome in DONE and key not in grid:
                state.total += 1
                state.end(key, name, outcome, accuracy)
        dashboard = Dashboard(client, parent_run_id, holds=holds) if parent_run_id else None
        return cls(state, dashboard, epochs)

    def open(self) -> None:
        if self.view is None:
            self.view = open_view(self.state)
            terminal.on_leave(self.close)
        self._write(force=True)

    def started(self, key: str, name: str, epochs: int | None = None) -> None:
        self.state.started_trial(key, name, epochs or self.epochs_by_key.get(key))
        self.tick()

    def result(self, key: str, name: str, metrics: Mapping[str, Any], epochs: int | None = None) -> None:
        self.state.result(key, name, epochs or self.epochs_by_key.get(key), metrics)
        self.tick()

    def ended(self, key: str, name: str, outcome: str, acc: float | None, where: str = "") -> None:
        self.state.end(key, name, outcome, acc)
        self._say(ended_line(self.state, name, outcome, acc, where))
        self.tick()

    def tick(self) -> None:
        if self.view is not None:
            self.view.refresh(self.state)
        self._write()

    def close(self) -> None:
        if self.view is None:
            return
        self.state.ended, self.state.updated = True, time.time()
        view, self.view = self.view, None
        view.close(self.state)
        self._write(force=True)

    def say(self, text: str) -> None:
        """A line above the live view (or a plain line), as the driver's other messages."""
        self._say(text)

    def _say(self, text: str) -> None:
        if self.view is not None:
            self.view.message(text)
        else:
            print(text, file=terminal.terminal(), flush=True)

    def _write(self, force: bool = False) -> None:
        if self.dashboard is not None:
            self.dashboard.maybe_write(self.state, force=force)
