"""Settings by environment variable: each declared once here (name, type, default, help, where it
is read), read when it is used, listed in docs/settings.md (tests/test_core_settings.py keeps the
doc and this file in step, and no other module reads a ``SWEEPER_*`` variable).

Read when used: ``LEASE_STALE_S.get()`` looks at the environment at the call, never at import, so
a value set after ``import sweeper`` (a notebook, a test) counts, and so does one forwarded from
the driver: the Tune loop on a ``ray://`` head and every trial run in other processes, on other
machines, with their own environments. The driver therefore takes the user's values with it
(``captured()``: every declared variable set where `sweeper run` runs) in the sweep's context,
and ``apply()`` sets them where they are read (driver/ray_client.py on the head, driver/worker.py
in each trial).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from sweeper.core.errors import SweepError

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Setting:
    name: str  # the environment variable
    kind: type  # float, int or bool
    default: Any  # a value, or a function of the other settings (the lease heartbeat: stale / 6)
    help: str
    where: str  # the process that reads it: driver, tune loop (the head under ray://), trial

    def get(self) -> Any:
        """The value now: the environment's, else the default; a value that is not of the
        setting's type is one line naming the variable (SweepError)."""
        raw = os.environ.get(self.name, "").strip()
        if not raw:
            return self.default() if callable(self.default) else self.default
        if self.kind is bool:
            if raw.lower() in _TRUE + _FALSE:
                return raw.lower() in _TRUE
            raise SweepError(f"{self.name}={raw!r}: expected one of {', '.join(_TRUE + _FALSE)} (docs/settings.md)")
        try:
            return self.kind(raw)
        except ValueError:
            raise SweepError(f"{self.name}={raw!r}: expected a{'n integer' if self.kind is int else ' number'} "
                             f"(docs/settings.md)") from None

    def default_text(self) -> str:
        if callable(self.default):
            return getattr(self.default, "text", "derived")
        if self.kind is bool:
            return "1" if self.default else "0"
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)


SETTINGS: dict[str, Setting] = {}


def _declare(name: str, kind: type, default: Any, help: str, where: str) -> Setting:
    setting = Setting(name, kind, default, help, where)
    SETTINGS[name] = setting
    return setting


def _derived(text: str, compute: Callable[[], Any]) -> Callable[[], Any]:
    compute.text = text  # type: ignore[attr-defined]  # how docs/settings.md states the default
    return compute


# --- the settings ---------------------------------------------------------------------------------

CLOCK_SKEW_S = _declare(
    "SWEEPER_CLOCK_SKEW_S", float, 60.0,
    "The most two hosts' clocks may disagree (NTP keeps them far closer). The lease does not rely on "
    "it (a driver that measures a larger disagreement says so); readers of the run index ask again for "
    "every run that started this long before the index was written.", "driver, readers")
LEASE_STALE_S = _declare(
    "SWEEPER_LEASE_STALE_S", float, 90.0,
    "A driver's claim on a sweep whose heartbeat has not changed for this long, watched on the next "
    "driver's own clock, is a dead driver's and is taken over.",
    "driver")
LEASE_HEARTBEAT_S = _declare(
    "SWEEPER_LEASE_HEARTBEAT_S", float, _derived("stale / 6", lambda: LEASE_STALE_S.get() / 6),
    "How often the driver holding a sweep refreshes its claim.", "driver")
LEASE_SETTLE_S = _declare(
    "SWEEPER_LEASE_SETTLE_S", float, 2.0,
    "How long a driver waits after writing its claim before it reads every claim again.", "driver")
REUSE_ACTORS = _declare(
    "SWEEPER_REUSE_ACTORS", bool, True,
    "Ray Tune reuses a trial's worker process for the next trial (a new one re-imports torch and "
    "MLflow: seconds per trial).", "tune loop")
DASHBOARD_EVERY_S = _declare(
    "SWEEPER_DASHBOARD_EVERY_S", float, 15.0,
    "Seconds between two updates of the parent run's dashboard (counts, best so far, ETA).", "tune loop")
INDEX_EVERY_S = _declare(
    "SWEEPER_INDEX_EVERY_S", float, 600.0,
    "Seconds between two rewrites of the run index while a sweep runs (status and report then read "
    "only the runs that ended since).", "tune loop")
PROGRESS_EVERY_S = _declare(
    "SWEEPER_PROGRESS_EVERY_S", float, 30.0,
    "Seconds between two summaries of the plain progress view (not a terminal: CI, nohup, logs).", "tune loop")
SYSTEM_METRICS_S = _declare(
    "SWEEPER_SYSTEM_METRICS_S", float, 10.0,
    "Seconds between two samples of MLflow's system metrics (CPU, memory, GPU) on a trial's run.", "trial")
SETTLE_WAIT_S = _declare(
    "SWEEPER_SETTLE_WAIT_S", float, 30.0,
    "How long the driver retries writing a trial's end (a scheduler stop, a failure for good) before it "
    "keeps it in <storage>/<sweep>/pending-ends for the next run; also how long its read of the trials "
    "after training and the end of its parent run ride out a tracking outage.", "tune loop")
END_FLUSH_WAIT_S = _declare(
    "SWEEPER_END_FLUSH_WAIT_S", float, 120.0,
    "How long a trial that finished training waits for MLflow to take its results before it fails "
    "(its checkpoint is kept: a retry only logs).", "trial")
WAIT_FOR_RESOURCES = _declare(
    "SWEEPER_WAIT_FOR_RESOURCES", bool, False,
    "Wait for a node that can hold a trial even when no autoscaler is seen that could add one (nodes "
    "joined by hand, an autoscaler Ray does not report); otherwise such a sweep is refused before it starts.",
    "driver")

# --- forwarding -----------------------------------------------------------------------------------


def captured() -> dict[str, str]:
    """The declared settings set in this process's environment, as text: what the driver takes
    to the Tune loop on a ray:// head and to every trial."""
    return {name: os.environ[name] for name in SETTINGS if os.environ.get(name, "").strip()}


def apply(values: Mapping[str, str]) -> None:
    """Where a setting is read (the head, a trial): the driver's values win over this
    environment's."""
    os.environ.update({k: str(v) for k, v in values.items() if k in SETTINGS})


def markdown_rows() -> list[str]:
    """docs/settings.md's table, a row per setting."""
    return [f"| `{s.name}` | {s.default_text()} | {s.where} | {s.help} |" for s in SETTINGS.values()]
