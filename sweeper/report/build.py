"""One report, end to end: MLflow -> tables, figures, scorecard -> files -> the parent run."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from sweeper.record import names
from sweeper.record import readback
from sweeper.core.errors import SweepError, one_line
from sweeper.report import figures as fig
from sweeper.report.collect import SweepRuns, load_curves, load_sweep
from sweeper.report.markdown import render
from sweeper.report.scorecard import ScoreRow, score
from sweeper.report.tables import aggregate
from sweeper.core.states import FINISHED

REPORT_MD, RESULTS_CSV = "report.md", "results.csv"
# Every figure the report can hold: file name -> how to draw it. One without data is not written
# (and a stale copy from an earlier report is removed).
FIGURES = {
    "accuracy_vs_depth": lambda c, curves, gammas, last: fig.accuracy_vs_depth(c),
    "accuracy_vs_width": lambda c, curves, gammas, last: fig.accuracy_vs_width(c),
    "accuracy_vs_params": lambda c, curves, gammas, last: fig.accuracy_vs_params(c),
    "gamma_distribution": lambda c, curves, gammas, last: fig.gamma_distribution(c, gammas),
    "relu_sparsity": lambda c, curves, gammas, last: fig.relu_sparsity(c),
    "test_acc_curves": lambda c, curves, gammas, last: fig.accuracy_curves(c, curves, last_epoch=last),
}
LR_FIGURE = "accuracy_vs_lr"  # drawn from the trials themselves, when the sweep varies train.lr


@dataclass
class Report:
    out_dir: Path
    sweep: SweepRuns
    configs: pd.DataFrame
    scorecard: list[ScoreRow]
    files: list[Path] = field(default_factory=list)

    @property
    def figures(self) -> list[Path]:
        return [p for p in self.files if p.suffix == ".png"]


def build_report(client: Any, name: str, tracking_uri: str, out_dir: str | Path,
                 planned: int | None = None, log_to_mlflow: bool = True, all_versions: bool = False,
                 keys: set[str] | None = None) -> Report:
    """Write report.md, results.csv and the figures of sweep ``name`` into ``out_dir`` and, unless
    told not to, onto the sweep's parent run under ``report/``."""
    sweep = load_sweep(client, name, tracking_uri, all_versions=all_versions, keys=keys)
    configs = aggregate(sweep.trials, sweep.param_columns)
    finished = list(sweep.with_state(FINISHED)["run_id"])
    # Histories and gammas only of the runs the figures draw (the configurations on their axis),
    # so their cost follows what is drawn, not how many trials the sweep holds.
    drawn = [r for r in fig.drawn_run_ids(configs) if r in sweep.runs]
    curves = load_curves(client, drawn)
    gammas = readback.gammas_by_artifact_uri({r: sweep.runs[r].info.artifact_uri for r in drawn})
    last_epoch = _last_epoch(client, sweep, finished)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, sweep, configs, [])
    drawn: dict[str, str] = {}
    for role, draw in FIGURES.items():
        path = out / f"{role}.png"
        figure = draw(configs, curves, gammas, last_epoch)
        if figure is None:
            path.unlink(missing_ok=True)
            continue
        fig.save(figure, path)
        drawn[role] = path.name
        report.files.append(path)

    lr_path = out / f"{LR_FIGURE}.png"
    lr_figure = fig.accuracy_vs_lr(sweep.trials)
    if lr_figure is None:
        lr_path.unlink(missing_ok=True)
    else:
        fig.save(lr_figure, lr_path)
        drawn[LR_FIGURE] = lr_path.name
        report.files.append(lr_path)

    results = out / RESULTS_CSV
    write_results(sweep, results)
    report.files.append(results)

    report.scorecard, not_in_sweep = score(configs)
    markdown = out / REPORT_MD
    markdown.write_text(render(sweep, configs, report.scorecard, not_in_sweep, drawn,
                               datetime.now(timezone.utc), planned), encoding="utf-8")
    report.files.insert(0, markdown)

    if log_to_mlflow:
        try:
            for path in report.files:
                client.log_artifact(sweep.parent_run_id, str(path), names.ARTIFACT_REPORT)
            from sweeper.record.dashboard import set_report_note

            set_report_note(client, sweep.parent_run_id, markdown.read_text(encoding="utf-8"), names.ARTIFACT_REPORT)
        except Exception as e:  # noqa: BLE001 - the local report stands; say what did not happen
            raise SweepError(f"report written to {out}, but not stored on MLflow run "
                             f"{sweep.parent_run_id}: {one_line(e, typed=False, limit=200)}") from None
    return report


def _last_epoch(client: Any, sweep: SweepRuns, finished: list[str]) -> int | None:
    """The last test_acc epoch of any finished run: the curve figure's epoch axis spans it."""
    epochs = [readback.trial_epoch(client, sweep.runs[r]) for r in finished if r in sweep.runs]
    known = [e for e in epochs if e is not None]
    return max(known) if known else None


def write_results(sweep: SweepRuns, path: Path) -> None:
    """One row per trial: identity and state, its configuration, its final metrics."""
    frame = sweep.trials.copy()
    for column in ("start_time", "end_time"):
        frame[column] = frame[column].map(lambda t: t.isoformat() if isinstance(t, pd.Timestamp) else "")
    frame.to_csv(path, index=False)  # shortest round-trip floats: the CSV holds what MLflow holds
