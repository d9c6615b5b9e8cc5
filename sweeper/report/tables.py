"""Seeds -> configurations -> the paper's tables.

A configuration is a trial without its seed: every param but ``seed``. Its numbers are the mean,
the sample standard deviation and the count over its finished seeds; diverged seeds are counted
beside them and never averaged in (a diverged run's accuracy is chance, not a measurement).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sweeper.core.states import DIVERGED, FINISHED
from trainables.names import ACCURACY_METRICS, FINAL_METRICS, MODES

# What a configuration's seeds are averaged over: the accuracies a trial ends with (test_acc's
# last value is final_test_acc again), then every other final metric but the epoch count.
AGGREGATED_METRICS = (tuple(m for m in ACCURACY_METRICS if m != "test_acc")
                      + tuple(m for m in FINAL_METRICS if m not in ACCURACY_METRICS and m != "epochs_completed"))
DEPTH, WIDTH, MODE = "model.depth", "model.width", "mode"
# Params that identify a run rather than its configuration.
NOT_CONFIG = ("seed",)


def aggregate(trials: pd.DataFrame, param_columns: Sequence[str]) -> pd.DataFrame:
    """One row per configuration: its params, ``n`` finished and ``n_diverged`` seeds, the finished
    run ids, and ``<metric>_mean`` / ``<metric>_std`` for every metric in AGGREGATED_METRICS."""
    keys = [c for c in param_columns if c not in NOT_CONFIG]
    counted = trials[trials["status"].isin([FINISHED, DIVERGED])]
    metrics = [m for m in AGGREGATED_METRICS if m in trials.columns]
    columns = keys + ["n", "n_diverged", "run_ids"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std")]
    if counted.empty:
        return pd.DataFrame(columns=columns)
    # One pass over numpy columns: per group pandas ops cost ~1 ms each, seconds at 10,000 trials.
    if keys:
        grouped = counted.groupby(keys, dropna=False, sort=False)
        codes = grouped.ngroup().to_numpy()  # 0, 1, ... in the order the groups are first seen
        labels = [k if isinstance(k, tuple) else (k,) for k in grouped.size().index]  # the same order
    else:
        codes, labels = np.zeros(len(counted), dtype=int), [()]
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    status = counted["status"].to_numpy()
    run_ids = counted["run_id"].to_numpy()
    values = {m: counted[m].astype(float).to_numpy() for m in metrics}
    rows = []
    for label, idx in zip(labels, np.split(order, starts[1:])):
        finished = idx[status[idx] == FINISHED]
        row: dict[str, Any] = dict(zip(keys, label))
        row["n"] = len(finished)
        row["n_diverged"] = int((status[idx] == DIVERGED).sum())
        row["run_ids"] = list(run_ids[finished])
        for m in metrics:
            seeds = values[m][finished]
            seeds = seeds[~np.isnan(seeds)]
            row[f"{m}_mean"] = float(seeds.mean()) if len(seeds) else math.nan
            row[f"{m}_std"] = float(seeds.std(ddof=1)) if len(seeds) > 1 else math.nan
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns)
    return sort_configs(frame)


def sort_configs(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    order = {m: i for i, m in enumerate(MODES)}
    frame = frame.assign(_mode=frame[MODE].map(lambda m: order.get(m, len(order))) if MODE in frame else 0)
    keys = ["_mode"] + [k for k in (MODE, DEPTH, WIDTH) if k in frame]
    return frame.sort_values(keys, kind="stable").drop(columns="_mode").reset_index(drop=True)


def varying_keys(configs: pd.DataFrame, param_columns: Sequence[str]) -> list[str]:
    """Config params that take more than one value in this sweep."""
    keys = [c for c in param_columns if c not in NOT_CONFIG and c in configs]
    return [k for k in keys if configs[k].astype(str).nunique() > 1]


def reference_width(configs: pd.DataFrame) -> Any:
    """The width at which depth is compared: 1 (the paper's) when present, else the smallest."""
    return _preferred(configs, WIDTH, 1)


def reference_depth(configs: pd.DataFrame) -> Any:
    """The depth at which width is compared: the smallest one (ResNet-14 in the paper)."""
    return _preferred(configs, DEPTH, None)


def _preferred(configs: pd.DataFrame, key: str, wanted: Any) -> Any:
    if key not in configs or configs[key].dropna().empty:
        return None
    values = sorted(configs[key].dropna().unique())
    return wanted if wanted in values else values[0]


def series(configs: pd.DataFrame, along: str, fixed: dict[str, Any], metric: str = "final_test_acc") -> pd.DataFrame:
    """The configurations along one axis (depth or width) with the other axes fixed, one row per
    (mode, axis value). Where other keys vary too (lr, ...), the cell keeps the configuration with
    the best mean ``metric`` and ``chosen_from`` says among how many it was chosen."""
    if along not in configs or configs.empty:
        return configs.iloc[0:0].assign(chosen_from=pd.Series(dtype=int))
    subset = configs
    for key, value in fixed.items():
        if key in subset and value is not None:
            subset = subset[subset[key] == value]
    subset = subset[subset["n"] > 0] if "n" in subset else subset
    mean = f"{metric}_mean"
    if subset.empty or mean not in subset:
        return subset.assign(chosen_from=pd.Series(dtype=int))
    cell = [k for k in (MODE, along) if k in subset]
    counts = subset.groupby(cell, dropna=False)[mean].transform("size")
    best = (subset.assign(chosen_from=counts, _score=subset[mean].fillna(-math.inf))
            .sort_values("_score", ascending=False, kind="stable")
            .drop_duplicates(cell).drop(columns="_score"))
    return sort_configs(best)


def pivot(rows: pd.DataFrame, column: str, cell: Any) -> pd.DataFrame:
    """mode x ``column`` table of ``cell(row)`` strings; blank where the grid has no result yet."""
    if rows.empty:
        return pd.DataFrame()
    modes = [m for m in MODES if m in set(rows[MODE])] + sorted(set(rows[MODE]) - set(MODES))
    columns = sorted(rows[column].unique())
    table = pd.DataFrame("", index=modes, columns=columns)
    for _, row in rows.iterrows():
        table.loc[row[MODE], row[column]] = cell(row)
    return table


def accuracy_cell(row: pd.Series, metric: str = "final_test_acc") -> str:
    text = percent(row[f"{metric}_mean"], row[f"{metric}_std"])
    notes = [f"n={int(row['n'])}"]
    if row.get("n_diverged", 0):
        notes.append(f"{int(row['n_diverged'])} diverged")
    return f"{text} ({', '.join(notes)})"


def count_cell(row: pd.Series, metric: str = "trainable_params") -> str:
    value = row.get(f"{metric}_mean", math.nan)
    return "" if _missing(value) else f"{int(round(value)):,}"


def percent(mean: float, std: float = math.nan) -> str:
    if _missing(mean):
        return ""
    return f"{100 * mean:.1f}" if _missing(std) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def markdown_table(table: pd.DataFrame, corner: str = "", header: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured markdown table of an index x columns frame of strings."""
    if table.empty:
        return "_no finished trials yet_"
    names = list(header) if header is not None else [str(c) for c in table.columns]
    lines = ["| " + " | ".join([corner] + names) + " |",
             "|" + "---|" * (len(names) + 1)]
    for index, row in table.iterrows():
        lines.append("| " + " | ".join([str(index)] + [_escape(v) for v in row]) + " |")
    return "\n".join(lines)


def records_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "_none_"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_escape(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _escape(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
