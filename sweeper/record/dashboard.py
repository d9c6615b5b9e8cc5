"""The sweep's parent MLflow run as its dashboard, and the experiment shown as a training one.

- ``prepare`` (at `sweeper run`): tags the experiment ``mlflow.experimentKind =
  custom_model_development`` (MLflow 3 otherwise opens it on its GenAI overview, which has nothing
  to show for a sweep), and logs the spec's name, trial count and axes as the parent's params.
- ``Dashboard`` (in the driver, as trials report): live counts, the best ``test_acc`` so far and
  its trial, elapsed time and ETA as the parent's metrics (step = seconds since the
  parent run began, so they chart over time, resumes included), the ``SweepState`` as JSON (``sweeper.live``, which
  ``status --watch`` draws) and a markdown summary as the run's description
  (``mlflow.note.content``, which MLflow shows on the run page). One ``log_batch`` at most every
  ``SWEEPER_DASHBOARD_EVERY_S`` seconds (default 15), whatever the number of trials and epochs.
  (The run index is the driver's to rewrite: sweeper.driver.index_refresh.)
- ``report_note``: what `sweeper report` puts in the description instead (summary + scorecard).
"""

from __future__ import annotations

import logging
import re
import socket
import time
from datetime import datetime, timezone
from sweeper.core import settings
from sweeper.core.errors import one_line
from sweeper.record import names
from sweeper.record.live import SweepState, duration

log = logging.getLogger(__name__)

MAX_TAG = 8000  # MLflow's limit on a tag value
# How often: settings.DASHBOARD_EVERY_S, read at __init__.

# The parent's metrics: name -> how to read it from the state.
METRICS = {
    "trials_total": lambda s: s.total,
    "trials_finished": lambda s: s.finished,
    "trials_running": lambda s: len(s.running),
    "trials_failed": lambda s: s.failed,
    "trials_diverged": lambda s: s.diverged,
    "best_test_acc_so_far": lambda s: s.best_acc,
    "elapsed_s": lambda s: s.elapsed_s(),
    "eta_s": lambda s: s.eta_s(),
}


def mark_training_experiment(client, experiment_id: str) -> None:
    """Idempotent: one read, and one write only when the tag is missing or different."""
    experiment = client.get_experiment(experiment_id)
    if experiment.tags.get(names.TAG_EXPERIMENT_KIND) != names.EXPERIMENT_KIND_TRAINING:
        client.set_experiment_tag(experiment_id, names.TAG_EXPERIMENT_KIND, names.EXPERIMENT_KIND_TRAINING)


def sweep_params(spec, trials: int) -> dict[str, str]:
    search = spec.search.algorithm if spec.search is not None else "grid"
    return {"sweep.name": spec.name, "sweep.trials": str(trials),
            "sweep.axes": ", ".join(spec.varying_axes()) or "(none)", "sweep.search": search,
            "sweep.scheduler": spec.scheduler.name, "sweep.description": (spec.description or "")[:500]}


def prepare(client, experiment_id: str, parent_run_id: str, spec, trials: int) -> None:
    """Experiment kind, the parent's params (only those missing: MLflow refuses to change a
    param, and an edited spec keeps its first values there; the live metrics say the rest), and
    a first description when the run has none."""
    from mlflow.entities import Param, RunTag

    mark_training_experiment(client, experiment_id)
    run = client.get_run(parent_run_id)
    missing = [Param(k, v) for k, v in sweep_params(spec, trials).items() if k not in run.data.params]
    tags = []
    if names.TAG_NOTE not in run.data.tags:
        tags.append(RunTag(names.TAG_NOTE, live_note(SweepState(spec.name, trials), run.data.params
                                               | {p.key: p.value for p in missing})))
    if missing or tags:
        client.log_batch(parent_run_id, params=missing, tags=tags)


class Dashboard:
    def __init__(self, client, parent_run_id: str, every_s: float | None = None, holds=None):
        every_s = settings.DASHBOARD_EVERY_S.get() if every_s is None else every_s
        self.client, self.parent_run_id, self.every_s = client, parent_run_id, every_s
        self.holds = holds  # the driver's lease check: a driver that lost the sweep writes nothing
        self.last_write = float("-inf")
        self.params: dict[str, str] | None = None
        self.origin_ms = 0
        self.writes = 0
        self.failing = False  # the last write failed: the outage is logged once, its end too

    def maybe_write(self, state: SweepState, force: bool = False) -> bool:
        """Write when forced or when ``every_s`` has passed since the last write. Never raises:
        a tracking hiccup must not stop the sweep (the next write carries the newer state)."""
        now = time.monotonic()
        if not force and now - self.last_write < self.every_s:
            return False
        self.last_write = now
        if self.holds is not None and not self.holds():
            return False
        try:
            self._write(state)
        except Exception as e:  # noqa: BLE001 - the dashboard is a view: the next write carries the newer state
            if not self.failing:
                log.warning("could not update the sweep's dashboard on parent run %s (%s); trying again in %.0fs",
                            self.parent_run_id, one_line(e), self.every_s)
            self.failing = True
            return False
        if self.failing:
            log.info("the sweep's dashboard on parent run %s is updated again", self.parent_run_id)
        self.failing = False
        self.writes += 1
        return True

    def _write(self, state: SweepState) -> None:
        from mlflow.entities import Metric, RunTag

        from sweeper.record import tracking

        if self.params is None:
            run = self.client.get_run(self.parent_run_id)
            self.params, self.origin_ms = dict(run.data.params), run.info.start_time or 0
        # step = seconds since the parent run began, so that a resumed sweep's points come after
        # the earlier driver's (MLflow shows the point with the highest step as the latest)
        stamp = int(time.time() * 1000)
        step = max(0, (stamp - self.origin_ms) // 1000)
        metrics = [Metric(k, float(v), stamp, step) for k, read in METRICS.items() if (v := read(state)) is not None]
        tags = [RunTag(names.TAG_LIVE, state.to_json()[:MAX_TAG]), RunTag(names.TAG_NOTE, live_note(state, self.params))]
        if state.best_trial:
            tags.append(RunTag(names.TAG_BEST_TRIAL, state.best_trial))
        with tracking.fast_fail_http():
            self.client.log_batch(self.parent_run_id, metrics=metrics, tags=tags)


def read_state(parent_run) -> SweepState | None:
    """The state the driver last wrote on the parent run, or None."""
    text = parent_run.data.tags.get(names.TAG_LIVE) if parent_run is not None else None
    if not text:
        return None
    try:
        return SweepState.from_json(text)
    except (ValueError, TypeError, KeyError):
        return None


def live_note(state: SweepState, params: dict[str, str]) -> str:
    """The parent run's description while the sweep runs (markdown)."""
    description = params.get("sweep.description") or ""
    axes = params.get("sweep.axes", "")
    lines = [f"**{description}**", ""] if description else []
    lines += [f"Sweep `{state.name}`: {state.total} trials, {params.get('sweep.search', 'grid')} over {axes or 'no axes'}.",
              "",
              "| trials | finished | running | failed | diverged | best test_acc | elapsed | ETA |",
              "|---|---|---|---|---|---|---|---|",
              f"| {state.total} | {state.finished} | {len(state.running)} | {state.failed} | {state.diverged} "
              f"| {_best(state)} | {duration(state.elapsed_s())} | {duration(state.eta_s())} |",
              ""]
    if state.running:
        lines += ["Running now:", ""]
        lines += [f"- `{t.name}`: epoch {t.epoch}/{t.epochs or '?'}, test_acc "
                  f"{'-' if t.test_acc is None else f'{t.test_acc:.3f}'}" for t in list(state.running.values())[:20]]
        lines.append("")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines.append(f"_Updated {when} by `sweeper run` on {socket.gethostname()}. The trials are this run's "
                 "children: expand it in the runs table, or group by `mode`. `sweeper report "
                 f"{state.name}` replaces this text with the study's summary and scorecard._")
    return "\n".join(lines)[:MAX_TAG]


def _best(state: SweepState) -> str:
    return "-" if state.best_acc is None else f"{state.best_acc:.3f} (`{state.best_trial}`)"


def report_note(report_markdown: str, artifact_path: str) -> str:
    """The report's trial counts, first accuracy table and scorecard, without its images (relative
    paths that the run page cannot show), as the parent run's description."""
    title, _, body = report_markdown.partition("\n")
    sections = re.split(r"(?m)^(?=## )", body)
    head, rest = sections[0], sections[1:]
    # the "Generated ... from <store>" paragraph is provenance for the file; the run page shows
    # only the first lines of a description before "Show more", so the counts come first
    head = re.sub(r"(?s)^\s*Generated .*?\n\n", "", head)
    keep = [s for s in rest if s.startswith(("## Test accuracy by depth", "## Replication scorecard"))]
    text = "\n".join([title, head.strip(), ""] + [s.strip() + "\n" for s in keep])
    text = re.sub(r"(?m)^!\[[^\]]*\]\([^)]*\)\s*$", "", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    footer = f"\n\n_Full report, figures and results.csv: this run's artifacts, `{artifact_path}/`._"
    if len(text) + len(footer) > MAX_TAG:
        text = text[:MAX_TAG - len(footer) - 20] + "\n\n(cut)"
    return text + footer


def set_report_note(client, parent_run_id: str, report_markdown: str, artifact_path: str) -> None:
    client.set_tag(parent_run_id, names.TAG_NOTE, report_note(report_markdown, artifact_path))
