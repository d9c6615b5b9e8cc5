"""The report's figures. Each function takes the aggregated configurations (tables.aggregate) and
returns a matplotlib Figure, or None when the sweep holds nothing to draw yet.

Figures are built with ``matplotlib.figure.Figure`` directly, never pyplot: no display, no
global figure registry to leak, safe to call from a server. Error bars and bands are the sample
standard deviation over finished seeds; accuracies are drawn in percent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator, PercentFormatter

from sweeper.report.tables import DEPTH, MODE, WIDTH, reference_depth, reference_width, series
from sweeper.core.states import FINISHED, STOPPED_EARLY
from trainables.names import BN_ONLY, BN_OUTPUT, FULL, GAMMA_THRESHOLDS, MODES, OUTPUT_ONLY, RANDOM_PARAMS

DPI = 100
SINGLE = (8.0, 5.0)  # inches: 800 x 500 pixels at DPI

MODE_STYLE = {  # colour-blind-safe Okabe-Ito colours, one per training mode, the same in every figure;
    # the labels are short legend words (trainables.names.MODE_WORDS says it in a sentence)
    FULL: ("#0072B2", "full (all weights)"),
    BN_ONLY: ("#D55E00", "BN only (γ, β)"),
    BN_OUTPUT: ("#009E73", "BN + output layer"),
    OUTPUT_ONLY: ("#CC79A7", "output layer only"),
    RANDOM_PARAMS: ("#7F7F7F", "random params (as many as BN)"),
}
# A mode without a style would be drawn in black with its raw name; tests/test_report.py checks
# that every mode of trainables.names has one.
CHANCE = {"cifar10": 10.0, "digits": 10.0, "cifar100": 1.0, "imagenet": 0.1}


def mode_color(mode: str) -> str:
    return MODE_STYLE.get(mode, ("#000000", mode))[0]


def mode_label(mode: str) -> str:
    return MODE_STYLE.get(mode, ("#000000", mode))[1]


def accuracy_vs_depth(configs: pd.DataFrame, metric: str = "final_test_acc") -> Figure | None:
    width = reference_width(configs)
    rows = series(configs, DEPTH, {WIDTH: width}, metric)
    if rows.empty or rows[DEPTH].nunique() < 2:  # one depth: nothing to compare along it
        return None
    fig, ax = _single()
    _mode_lines(ax, rows, DEPTH, metric, scale=100)
    _axis_ticks(ax, rows[DEPTH], "depth (layers, log scale)", log=len(set(rows[DEPTH])) > 1)
    _accuracy_axis(ax, configs, metric)
    ax.set_title(f"Does depth help? {_metric_name(metric).capitalize()} vs depth at width {width}\n"
                 "(mean ± std over seeds)", fontsize=11)
    _legend(ax)
    return fig


def accuracy_vs_width(configs: pd.DataFrame, metric: str = "final_test_acc") -> Figure | None:
    depth = reference_depth(configs)
    rows = series(configs, WIDTH, {DEPTH: depth}, metric)
    if rows.empty or rows[WIDTH].nunique() < 2:  # one width: nothing to compare along it
        return None
    fig, ax = _single()
    _mode_lines(ax, rows, WIDTH, metric, scale=100)
    _axis_ticks(ax, rows[WIDTH], "width multiplier (x channels, log scale)", log=len(set(rows[WIDTH])) > 1,
                fmt=lambda v: f"{v:g}x")
    _accuracy_axis(ax, configs, metric)
    ax.set_title(f"Does width help? {_metric_name(metric).capitalize()} vs width at depth {depth}\n"
                 "(mean ± std over seeds)", fontsize=11)
    _legend(ax)
    return fig


def accuracy_vs_params(configs: pd.DataFrame, metric: str = "final_test_acc") -> Figure | None:
    """Depth and width as two curves per mode over the trainable-parameter count."""
    if "trainable_params_mean" not in configs:
        return None
    width, depth = reference_width(configs), reference_depth(configs)
    deeper = series(configs, DEPTH, {WIDTH: width}, metric)
    wider = series(configs, WIDTH, {DEPTH: depth}, metric)
    if deeper.empty and wider.empty:
        return None
    fig, ax = _single()
    for mode in _modes(pd.concat([deeper, wider])):
        for rows, style, marker, label, along in ((deeper, "-", "o", f"deeper (width {width:g})", DEPTH),
                                                  (wider, "--", "s", f"wider (depth {depth:g})", WIDTH)):
            part = rows[rows[MODE] == mode].sort_values("trainable_params_mean")
            part = part[part["trainable_params_mean"].notna()]
            if len(part) < 2:  # a single point is the other curve's shared point, not a curve
                continue
            x, y = part["trainable_params_mean"].to_numpy(), 100 * part[f"{metric}_mean"].to_numpy()
            ax.errorbar(x, y, yerr=100 * part[f"{metric}_std"].fillna(0).to_numpy(), color=mode_color(mode),
                        linestyle=style, marker=marker, capsize=3, label=f"{mode_label(mode)}, {label}")
            # depth labels below the points, width labels above; the shared point (depth d0 at
            # width w0) is labelled once, by the depth curve
            for xi, yi, (_, row) in zip(x, y, part.iterrows()):
                if along == WIDTH and row.get(DEPTH) == depth and row[WIDTH] == width and not deeper.empty:
                    continue
                text, offset = (f"d{row[DEPTH]:g}", (4, -12)) if along == DEPTH else (f"w{row[WIDTH]:g}", (4, 5))
                ax.annotate(text, (xi, yi), textcoords="offset points", xytext=offset, fontsize=7,
                            color=mode_color(mode))
    if not ax.containers:
        return None
    ax.set_xscale("log")
    _count_labels(ax, pd.Series([x for c in ax.containers for x in c.lines[0].get_xdata()]))
    ax.set_xlabel("trainable parameters (count, log scale)")
    _accuracy_axis(ax, configs, metric)
    ax.set_title(f"Which buys more per trained parameter, depth or width?\n{_metric_name(metric).capitalize()} vs "
                 "trainable parameters (d = depth, w = width multiplier)", fontsize=11)
    _legend(ax)
    return fig


def gamma_distribution(configs: pd.DataFrame, gammas: dict[str, Sequence[float]]) -> Figure | None:
    """ECDF of |gamma| per depth, one panel per mode, pooled over seeds and layers."""
    along, fixed = _main_axis(configs)
    rows = series(configs, along, fixed)
    panels = []
    for mode in _modes(rows):
        curves = []
        for _, row in rows[rows[MODE] == mode].sort_values(along).iterrows():
            values = np.abs(np.concatenate([np.asarray(gammas[r], float) for r in row["run_ids"] if r in gammas]
                                           or [np.empty(0)]))
            if values.size:
                curves.append((row[along], values))
        if curves:
            panels.append((mode, curves))
    if not panels:
        return None
    fig = Figure(figsize=(max(SINGLE[0], 4.6 * len(panels)), SINGLE[1] + 0.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    floor = 1e-4  # |gamma| below this is drawn at the axis edge (log scale has no zero)
    for ax, (mode, curves) in zip(axes, panels):
        colors = _sequence_colors(len(curves))
        for (value, g), color in zip(curves, colors):
            xs = np.clip(np.sort(g), floor, None)
            ys = np.arange(1, xs.size + 1) / xs.size
            shares = " / ".join(f"{100 * np.mean(g < t):.0f}%" for t in GAMMA_THRESHOLDS)
            ax.step(xs, ys, where="post", color=color, label=f"{_axis_short(along)}{value:g}: {shares}")
        for t in GAMMA_THRESHOLDS:
            ax.axvline(t, color="0.35", linestyle=":", linewidth=1)
            ax.text(t, 1.01, f"{t:g}", transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(floor, None)
        ax.set_ylim(0, 1)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel("|γ| (BN scale, log scale)")
        ax.set_title(mode_label(mode), fontsize=10, color=mode_color(mode), pad=14)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(title=f"share |γ| < {' / '.join(f'{t:g}' for t in GAMMA_THRESHOLDS)}", fontsize=8,
                  title_fontsize=8, loc="upper left")
    axes[0].set_ylabel("share of BN channels with |γ| ≤ x")
    fig.suptitle(f"How many features does BN switch off? Distribution of |γ| per {_axis_word(along)} "
                 f"(seeds pooled{_fixed_text(fixed)})", fontsize=11)
    return fig


def relu_sparsity(configs: pd.DataFrame) -> Figure | None:
    along, fixed = _main_axis(configs)
    rows = series(configs, along, fixed, "relu_zero_frac")
    if rows.empty or "relu_zero_frac_mean" not in rows or rows["relu_zero_frac_mean"].isna().all():
        return None
    fig, ax = _single()
    _mode_lines(ax, rows, along, "relu_zero_frac", scale=100)
    _axis_ticks(ax, rows[along], f"{_axis_word(along)} (log scale)", log=len(set(rows[along])) > 1)
    ax.set_ylabel("ReLU outputs that are exactly 0 (% of test-set activations)")
    ax.set_ylim(0, 100)
    ax.set_title(f"How sparse are the activations? Zero share of ReLU outputs per mode and {_axis_word(along)}"
                 f"\n(test set, mean ± std over seeds{_fixed_text(fixed)})", fontsize=11)
    _legend(ax)
    return fig


def drawn_run_ids(configs: pd.DataFrame) -> list[str]:
    """The finished runs whose gammas and learning curves the figures draw: those of the
    configurations along the main axis (gamma_distribution and accuracy_curves read no other)."""
    along, fixed = _main_axis(configs)
    rows = series(configs, along, fixed)
    return [r for ids in rows["run_ids"] for r in ids] if "run_ids" in rows else []


def accuracy_curves(configs: pd.DataFrame, curves: pd.DataFrame, key: str = "test_acc",
                    last_epoch: int | None = None) -> Figure | None:
    """Per-epoch test accuracy, one panel per mode, one line per depth (or width): the mean over
    seeds with a ±std band. ``last_epoch``: the last epoch of any finished run, drawn or not (the
    epoch ticks depend on it); by default the last step in ``curves``."""
    along, fixed = _main_axis(configs)
    rows = series(configs, along, fixed)
    if rows.empty or curves.empty:
        return None
    panels = [m for m in _modes(rows) if set(sum(rows[rows[MODE] == m]["run_ids"], [])) & set(curves["run_id"])]
    if not panels:
        return None
    fig = Figure(figsize=(max(SINGLE[0], 4.6 * len(panels)), SINGLE[1]), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, mode in zip(axes, panels):
        part = rows[rows[MODE] == mode].sort_values(along)
        for (_, row), color in zip(part.iterrows(), _sequence_colors(len(part))):
            runs = curves[curves["run_id"].isin(row["run_ids"])]
            if runs.empty:
                continue
            stats = runs.groupby("step")["value"].agg(["mean", "std", "count"]).sort_index()
            x, mean, std = stats.index.to_numpy(), 100 * stats["mean"].to_numpy(), 100 * stats["std"].fillna(0).to_numpy()
            ax.plot(x, mean, color=color, marker="." if len(x) < 15 else None,
                    label=f"{_axis_short(along)}{row[along]:g} (n={int(stats['count'].max())})")
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        ax.set_title(mode_label(mode), fontsize=10, color=mode_color(mode))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(_integer_locator(curves["step"] if last_epoch is None else pd.Series([last_epoch])))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[0].set_ylabel(f"{'test top-1' if key == 'test_acc' else key} accuracy (%)")
    fig.suptitle(f"How fast does each configuration learn? Test accuracy per epoch by {_axis_word(along)}"
                 f"\n(mean ± std band over seeds{_fixed_text(fixed)})", fontsize=11)
    return fig


def accuracy_vs_lr(trials: pd.DataFrame, paper_lr: float = 0.1) -> Figure | None:
    """One point per trial (finished or stopped early): its last test accuracy against its
    learning rate. Colour = mode, marker = depth, hollow = stopped early by the scheduler."""
    if "train.lr" not in trials or "test_acc" not in trials or trials["train.lr"].nunique() < 2:
        return None
    done = trials[trials["status"].isin([FINISHED, STOPPED_EARLY]) & trials["test_acc"].notna()]
    if done.empty:
        return None
    fig, ax = _single()
    markers = "os^Dv<>pP*"
    depths = sorted(done[DEPTH].dropna().unique()) if DEPTH in done else [None]
    for mode in _modes(done):
        for i, depth in enumerate(depths):
            part = done[(done[MODE] == mode) & ((done[DEPTH] == depth) if depth is not None else True)]
            for stopped, face in ((False, mode_color(mode)), (True, "none")):
                pts = part[(part["status"] == STOPPED_EARLY) == stopped]
                if pts.empty:
                    continue
                label = f"{mode_label(mode)}" + (f", depth {depth:g}" if depth is not None else "")
                ax.scatter(pts["train.lr"], 100 * pts["test_acc"], marker=markers[i % len(markers)],
                           facecolors=face, edgecolors=mode_color(mode), s=36,
                           label=label + (" (stopped early)" if stopped else ""))
    ax.axvline(paper_lr, color="0.4", linestyle="--", linewidth=1, label=f"paper's lr ({paper_lr:g})")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("test accuracy at the last epoch (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title("Which learning rate suits each mode? Test accuracy per trial vs learning rate", fontsize=11)
    _legend(ax)
    return fig


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, format="png", facecolor="white")
    return path


# --- helpers ----------------------------------------------------------------------------------


def _single() -> tuple[Figure, object]:
    fig = Figure(figsize=SINGLE, dpi=DPI, layout="constrained")
    return fig, fig.add_subplot()


def _modes(rows: pd.DataFrame) -> list[str]:
    present = set(rows[MODE]) if MODE in rows else set()
    return [m for m in MODES if m in present] + sorted(present - set(MODES))


def _mode_lines(ax, rows: pd.DataFrame, along: str, metric: str, scale: float) -> None:
    for mode in _modes(rows):
        part = rows[rows[MODE] == mode].sort_values(along)
        part = part[part[f"{metric}_mean"].notna()]
        if part.empty:
            continue
        ax.errorbar(part[along].to_numpy(), scale * part[f"{metric}_mean"].to_numpy(),
                    yerr=scale * part[f"{metric}_std"].fillna(0).to_numpy(), color=mode_color(mode),
                    marker="o", capsize=3, label=mode_label(mode))


def _axis_ticks(ax, values: Iterable, label: str, log: bool, fmt=lambda v: f"{v:g}") -> None:
    ticks = sorted(set(float(v) for v in values))
    if log:
        ax.set_xscale("log")
        pad = 1.15
        ax.set_xlim(ticks[0] / pad, ticks[-1] * pad)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label if log else label.replace(", log scale", "").replace(" (log scale)", ""))


def _compact(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def _count_labels(ax, counts: pd.Series) -> None:
    """Parameter counts as 1k, 10k, 1M; within one decade the in-between ticks get labels too."""
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _compact(v)))
    narrow = len(counts) and counts.max() / max(counts.min(), 1) < 10
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: _compact(v)) if narrow else NullFormatter())


def _accuracy_axis(ax, configs: pd.DataFrame, metric: str) -> None:
    ax.set_ylabel(f"{_metric_name(metric)} (%)")
    datasets = set(configs["dataset.name"]) if "dataset.name" in configs else set()
    if len(datasets) == 1 and metric in ("final_test_acc", "best_test_acc") and next(iter(datasets)) in CHANCE:
        ax.axhline(CHANCE[next(iter(datasets))], color="0.5", linestyle="--", linewidth=1, label="chance")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)


def _legend(ax) -> None:
    # below the axes, never over a curve (curves near 100% sit exactly where "best" would go)
    handles, labels = ax.get_legend_handles_labels()
    ax.figure.legend(handles, labels, loc="outside lower center", ncols=min(3, len(labels)), fontsize=8,
                     frameon=False)


def _metric_name(metric: str) -> str:
    return {"final_test_acc": "final test accuracy", "best_test_acc": "best test accuracy",
            "test_top5": "test top-5 accuracy"}.get(metric, metric)


def _main_axis(configs: pd.DataFrame) -> tuple[str, dict]:
    """Depth when the sweep varies it (at the reference width), else width (at the reference depth)."""
    depths = configs[DEPTH].nunique() if DEPTH in configs else 0
    widths = configs[WIDTH].nunique() if WIDTH in configs else 0
    if depths >= 2 or widths < 2:
        return DEPTH, {WIDTH: reference_width(configs)}
    return WIDTH, {DEPTH: reference_depth(configs)}


def _axis_word(along: str) -> str:
    return "depth" if along == DEPTH else "width"


def _axis_short(along: str) -> str:
    return "depth " if along == DEPTH else "width "


def _fixed_text(fixed: dict) -> str:
    parts = [f"{_axis_word(k)} {v:g}" for k, v in fixed.items() if v is not None]
    return f", {', '.join(parts)}" if parts else ""


def _sequence_colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.1 + 0.75 * i / max(n - 1, 1)) for i in range(n)]


def _integer_locator(steps: pd.Series):
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True, nbins=min(10, max(int(steps.max()) if len(steps) else 1, 1)))
