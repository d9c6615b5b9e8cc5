"""The frame ``sweeper.load_results`` returns, and the best trial of it: one row per trial as a
notebook reads it (docs/python.md), built from what ``collect.load_sweep`` read.

A trial's row carries its final metrics, and its last ``test_acc`` and ``epoch`` as logged: a
trial the scheduler stopped early has no final metrics of its own, and Ray's ``last_result`` and
Optuna's last intermediate value are what users of those tools compare it by.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping

import pandas as pd

from sweeper.core.errors import SweepError
from sweeper.core.states import FINISHED
from sweeper.core.trial import NAME_CORE
from sweeper.record.readback import epoch_in_search_result
from trainables.names import FINAL_METRICS, direction as default_direction

LAST_COLUMNS = ("test_acc", "epoch")  # the last epoch logged: what a stopped trial is compared by


def results_frame(trials: pd.DataFrame, axes: list[str], trials_root: str, current: set[str] | None,
                  runs: Mapping[str, Any] | None = None) -> tuple[list[str], pd.DataFrame]:
    """(the axis columns, the frame) of ``collect.SweepRuns.trials``; ``runs`` (run id -> run as
    read) give each trial's last epoch."""
    # the axes the spec names, and any core axis that varies here (an earlier version's)
    dotted = list(dict.fromkeys(a for a in axes if a in trials))
    dotted += [p for p, _ in NAME_CORE if p in trials and p not in dotted and trials[p].nunique(dropna=False) > 1]
    aliases = [short_name(path) for path in dotted]
    short = {path: alias if aliases.count(alias) == 1 else path for path, alias in zip(dotted, aliases)}
    frame = pd.DataFrame({"name": trials["run_name"].astype(str), "state": trials["status"].astype(str)})
    for path, alias in short.items():
        frame[alias] = _typed(trials[path], path)
    for metric in FINAL_METRICS:
        if metric in trials:
            frame[metric] = trials[metric].astype(float)
    frame["test_acc"] = trials["test_acc"].astype(float) if "test_acc" in trials else float("nan")
    runs = runs or {}
    epochs = [epoch_in_search_result(runs[r]) if r in runs else None for r in trials["run_id"]]
    frame["epoch"] = pd.array(epochs, dtype="Int64")
    frame["run_id"] = trials["run_id"].astype(str)
    frame["trial_key"] = trials["trial_key"].astype(str)
    frame["checkpoint"] = [f"{trials_root}/{key}" for key in trials["trial_key"]]
    frame["start_time"], frame["end_time"] = trials["start_time"], trials["end_time"]
    if current is not None:
        frame["current"] = trials["run_id"].isin(current).to_numpy()
    return list(short.values()), frame


def empty_results() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=str) for c in ("name", "state", "run_id", "trial_key", "checkpoint")})


def best_row(results: pd.DataFrame, metric: str, direction: str | None = None) -> pd.Series:
    """The finished trial of ``results`` best at ``metric`` (a column of it), in ``direction``
    (default: the metric's own, ``trainables.names.direction``); SweepError when none has it."""
    known = (*FINAL_METRICS, "test_acc")
    if metric not in known:
        raise SweepError(f"no column {metric!r} in the results to rank by; one of {', '.join(known)}")
    direction = direction or default_direction(metric)
    if direction not in ("max", "min"):
        raise SweepError(f"direction must be max or min, got {direction!r}")
    if metric not in results:  # none of the trials logged it (yet)
        results = results.assign(**{metric: float("nan")})
    done = results[(results["state"] == FINISHED) & results[metric].notna()]
    if done.empty:
        raise SweepError(f"sweep {results.attrs.get('sweep', '')!r}: no finished trial has {metric} yet")
    values = done[metric].astype(float)
    return done.loc[values.idxmax() if direction == "max" else values.idxmin()]


def short_name(path: str) -> str:
    """The name an axis goes by (``model.depth`` -> ``depth``; ``train.optimizer.name`` ->
    ``optimizer``), as child runs name them in the MLflow UI (two axes sharing one keep their paths)."""
    parts = path.split(".")
    return parts[-1] if parts[-1] != "name" or len(parts) == 1 else parts[-2]


def _typed(column: pd.Series, path: str) -> pd.Series:
    """An axis column with the type its configuration field declares (MLflow keeps strings;
    ``lr: [1, 2]`` would otherwise read back as ints)."""
    kind = _declared_type(path)
    if column.isna().any():
        return column.astype("Float64" if kind is float else "Int64" if kind is int else object)
    if kind in (int, float, bool):
        return column.astype(kind)
    return column.astype(str) if kind is str else column


def _declared_type(path: str) -> type | None:
    from trainables.config import TrialConfig

    klass: Any = TrialConfig
    for part in path.split("."):
        hints = typing.get_type_hints(klass) if dataclasses.is_dataclass(klass) else {}
        if part not in hints:
            return None
        klass = hints[part]
    args = [a for a in typing.get_args(klass) if a is not type(None)]
    if typing.get_origin(klass) is typing.Literal:
        return type(args[0]) if args else None
    if args and typing.get_origin(klass) in (typing.Union, types.UnionType):  # int | None
        klass = args[0]
    return klass if klass in (int, float, str, bool) else None
