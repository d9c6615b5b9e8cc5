"""report.md: the header that says what was included, the tables, the figures, the scorecard."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

import pandas as pd

from sweeper.report import tables
from sweeper.report.collect import SweepRuns
from sweeper.report.scorecard import (APPROXIMATE_ACCURACY_TOLERANCE, EXACT_ACCURACY_TOLERANCE, MARKDOWN_COLUMNS,
                                      ScoreRow)
from sweeper.report.tables import DEPTH, MODE, WIDTH
from sweeper.core.states import DIVERGED, FAILED, FINISHED, INTERRUPTED, RUNNING, STOPPED_EARLY
from trainables.names import ACCURACY_METRICS, GAMMA_METRICS, GAMMA_THRESHOLDS


def render(sweep: SweepRuns, configs: pd.DataFrame, score_rows: Sequence[ScoreRow], not_in_sweep: pd.DataFrame,
           figures: dict[str, str], generated: datetime, planned: int | None = None) -> str:
    """The whole report. ``figures`` maps a figure's role to its file name (only those drawn)."""
    out = [f"# Sweep report: {sweep.name}", "", _header(sweep, generated, planned), ""]
    varying = [k for k in tables.varying_keys(configs, sweep.param_columns) if k not in (MODE, DEPTH, WIDTH)]
    if varying:
        out += [f"Besides mode, depth and width, this sweep varies {', '.join(f'`{k}`' for k in varying)}: "
                "each cell and point shows the configuration with the best mean final test accuracy.", ""]
    width, depth = tables.reference_width(configs), tables.reference_depth(configs)

    by_depth = tables.series(configs, DEPTH, {WIDTH: width})
    out += [f"## Test accuracy by depth (width {_g(width)})", "",
            "Final test top-1 accuracy (%), mean ± std over finished seeds.", "",
            tables.markdown_table(tables.pivot(by_depth, DEPTH, tables.accuracy_cell), "mode \\ depth"), ""]
    out += _figure(figures, "accuracy_vs_depth", missing="_no figure: the sweep has fewer than two depths here_")

    by_width = tables.series(configs, WIDTH, {DEPTH: depth})
    out += [f"## Test accuracy by width (depth {_g(depth)})", "",
            "Final test top-1 accuracy (%), mean ± std over finished seeds.", "",
            tables.markdown_table(tables.pivot(by_width, WIDTH, tables.accuracy_cell), "mode \\ width",
                                  header=[f"{_g(w)}x" for w in sorted(by_width[WIDTH].unique())]
                                  if not by_width.empty else None), ""]
    out += _figure(figures, "accuracy_vs_width", missing="_no figure: the sweep has fewer than two widths here_")

    out += [f"## Trainable parameters by depth (width {_g(width)})", "",
            tables.markdown_table(tables.pivot(by_depth, DEPTH, tables.count_cell), "mode \\ depth"), ""]
    out += _figure(figures, "accuracy_vs_params")

    out += ["## Disabled features: BN scales near zero", "",
            f"Share of BN channels with |γ| below {' / '.join(f'{t:g}' for t in GAMMA_THRESHOLDS)} (%), "
            "mean over finished seeds. "
            "The paper reports that BN-only training disables roughly a quarter to a third of the "
            "random features.", "",
            tables.markdown_table(tables.pivot(by_depth, DEPTH, _gamma_cell), "mode \\ depth"), ""]
    out += _figure(figures, "gamma_distribution")

    out += ["## Activation sparsity", "",
            "Share of ReLU outputs that are exactly zero on the test set (%), mean ± std over finished seeds.", "",
            tables.markdown_table(tables.pivot(by_depth, DEPTH, _relu_cell), "mode \\ depth"), ""]
    out += _figure(figures, "relu_sparsity")

    out += ["## Learning curves", ""] + _figure(figures, "test_acc_curves", missing="_no per-epoch history yet_")
    if "accuracy_vs_lr" in figures:
        out += ["## Learning rate", "",
                "Test accuracy at each trial's last epoch against its learning rate; hollow markers are "
                "trials the scheduler stopped early.", ""] + _figure(figures, "accuracy_vs_lr")
    out += _scorecard(score_rows, not_in_sweep)
    out += ["## Files", "",
            "- `results.csv`: one row per trial (run id, trial key, state, configuration, final metrics).",
            "- the PNG figures above; everything here is also stored on the sweep's MLflow run under `report/`.",
            ""]
    return "\n".join(out)


def _header(sweep: SweepRuns, generated: datetime, planned: int | None) -> str:
    counts = sweep.counts()
    total = len(sweep.trials)
    of = f" of {planned} planned by the spec" if planned is not None else ""
    lines = [
        f"Generated {generated:%Y-%m-%d %H:%M:%S UTC} from `{sweep.tracking_uri}` "
        f"(experiment `{sweep.experiment_id}`, sweep run `{sweep.parent_run_id}`).",
        "",
        f"Trials in MLflow: **{total}**{of}.",
        f"- finished: {counts[FINISHED]} (the numbers below are computed from these)",
        f"- diverged: {counts[DIVERGED]} (counted in their cells, never averaged in)",
        f"- running: {counts[RUNNING]}, failed: {counts[FAILED]}, interrupted: {counts[INTERRUPTED]} (left out)",
    ]
    if sweep.earlier_versions:  # --all: say it, never mix versions silently
        lines += ["", f"**Mixed spec versions**: {sweep.earlier_versions} of these trials belong to earlier "
                      "versions of the spec (`sweeper report --all`); cells may combine them."]
    elif sweep.left_out_versions:
        lines += ["", f"{sweep.left_out_versions} trials of earlier versions of the spec are left out "
                      "(`sweeper report --all` includes them)."]
    if counts[STOPPED_EARLY]:
        lines.insert(5, f"- stopped early by the scheduler: {counts[STOPPED_EARLY]} (left out of the means; "
                         "their last test accuracy is in `results.csv` and the learning-rate figure)")
    if counts[RUNNING] or (planned is not None and counts[FINISHED] + counts[DIVERGED] < planned):
        lines += ["", "**The sweep is not complete**: this report covers the trials finished so far; "
                      "blank cells have no finished trial yet."]
    return "\n".join(lines)


def _scorecard(rows: Sequence[ScoreRow], not_in_sweep: pd.DataFrame) -> list[str]:
    out = ["## Replication scorecard", "",
           "Our mean next to each number the paper reports for a configuration this sweep ran. Tolerance: "
           f"±{100 * EXACT_ACCURACY_TOLERANCE:.0f} pp for accuracies quoted exactly (the paper's abstract; "
           "it rounds to whole percent and seed spread is about 1 pp), "
           f"±{100 * APPROXIMATE_ACCURACY_TOLERANCE:.0f} pp for approximate ones (secondary summaries), "
           "exact for parameter counts computed from the architecture. Runs shorter than the paper's "
           "schedule, on another data set or on a subset of it are **not comparable**, not failed.", "",
           ("Parameter counts follow the paper's code, open_lth (a wide ImageNet ResNet widens its stem and every "
            "stage); how this code compares with open_lth point by point: `docs/fidelity.md` in the sweeper repository."),
           ""]
    out += [tables.records_table([r.as_markdown_row() for r in rows], MARKDOWN_COLUMNS), ""]
    accuracies = not_in_sweep[not_in_sweep["metric"].isin(ACCURACY_METRICS)] if len(not_in_sweep) else not_in_sweep
    if len(accuracies):
        names = [f"{r['dataset']} {r['family']}-{int(r['depth'])} w{int(r['width'])} {r['mode']} "
                 f"({_paper_value(r)} {r['metric']})" for _, r in accuracies.iterrows()]
        out += [f"Paper accuracies this sweep has no configuration for: {'; '.join(names)}.", ""]
    return out


def _paper_value(ref: pd.Series) -> str:
    return ("~" if ref["approximate"] else "") + f"{100 * float(ref['value']):.1f}%"


def _figure(figures: dict[str, str], role: str, missing: str = "_nothing to draw yet_") -> list[str]:
    if role not in figures:
        return [missing, ""]
    return [f"![{role.replace('_', ' ')}]({figures[role]})", ""]


def _gamma_cell(row: pd.Series) -> str:
    values = [row.get(f"{k}_mean") for k in GAMMA_METRICS]
    if all(v is None or pd.isna(v) for v in values):
        return ""
    return " / ".join("?" if v is None or pd.isna(v) else f"{100 * v:.0f}" for v in values)


def _relu_cell(row: pd.Series) -> str:
    return tables.percent(row.get("relu_zero_frac_mean"), row.get("relu_zero_frac_std"))


def _g(value) -> str:
    return "?" if value is None else f"{value:g}"
