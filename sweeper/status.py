"""`sweeper status SPEC_OR_NAME`: a sweep's trials and their states, read back from MLflow.

Given a spec file, every trial it defines is listed, with ``pending`` for those MLflow has not
seen yet; given a bare sweep name, the trials MLflow holds for that experiment. States:
pending, running, finished, diverged, failed, interrupted (stopped by Ctrl-C or a killed driver;
the next `sweeper run` resumes it from its checkpoint).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import click

from sweeper import tracking
from sweeper.errors import SweepError

STATE_ORDER = ("finished", "diverged", "running", "interrupted", "failed", "pending")


@dataclass(frozen=True)
class TrialStatus:
    name: str
    key: str
    state: str
    epoch: int | None  # last epoch with a test_acc point
    test_acc: float | None  # final_test_acc when finished, else the latest test_acc
    run_id: str | None


def sweep_status(spec_or_name: str, tracking_uri: str | None = None) -> tuple[str, str, list[TrialStatus]]:
    """(sweep name, tracking URI, one row per trial)."""
    spec = None
    if Path(spec_or_name).is_file() or spec_or_name.endswith((".yaml", ".yml")):
        from sweeper.spec import load_spec

        spec = load_spec(spec_or_name)
        name, spec_uri = spec.name, spec.tracking.uri
    else:
        name, spec_uri = spec_or_name, None
    uri = tracking.resolve_tracking_uri(tracking_uri, spec_uri)
    client = tracking.connect(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None and spec is None:
        raise SweepError(f"no sweep named {name!r} in MLflow at {uri}")
    runs = tracking.child_runs(client, experiment.experiment_id) if experiment is not None else {}

    rows: list[TrialStatus] = []
    listed: set[str] = set()
    if spec is not None:
        from sweeper.orchestrate import expected_payloads

        for trial in expected_payloads(spec):
            rows.append(_row(client, trial.name, trial.key, runs.get(trial.key)))
            listed.add(trial.key)
    for key, run in runs.items():  # sampled (optuna) trials, or trials of an earlier spec version
        if key not in listed:
            rows.append(_row(client, run.info.run_name or key, key, run))
    return name, uri, rows


def _row(client, name: str, key: str, run) -> TrialStatus:
    if run is None:
        return TrialStatus(name, key, "pending", None, None, None)
    state = tracking.trial_state(run)
    metrics = run.data.metrics
    acc = metrics.get("final_test_acc", metrics.get("test_acc"))
    epoch = None
    if "test_acc" in metrics:
        epoch = max(m.step for m in client.get_metric_history(run.info.run_id, "test_acc"))
    return TrialStatus(name, key, state, epoch, acc, run.info.run_id)


def format_table(name: str, rows: list[TrialStatus]) -> str:
    counts = Counter(r.state for r in rows)
    order = [s for s in STATE_ORDER if counts[s]] + sorted(s for s in counts if s not in STATE_ORDER)
    summary = ", ".join(f"{counts[s]} {s}" for s in order) or "no trials"
    width = max([len(r.name) for r in rows] + [5])
    lines = [f"{name}: {len(rows)} trials: {summary}",
             f"{'#':>4}  {'trial':<{width}}  {'state':<11}  {'epoch':>5}  {'test_acc':>8}  key"]
    for i, r in enumerate(rows):
        epoch = "" if r.epoch is None else str(r.epoch)
        acc = "" if r.test_acc is None else f"{r.test_acc:.3f}"
        lines.append(f"{i:>4}  {r.name:<{width}}  {r.state:<11}  {epoch:>5}  {acc:>8}  {r.key}")
    return "\n".join(lines)


def status_command(spec_or_name: str, tracking_uri: str | None = None) -> int:
    name, uri, rows = sweep_status(spec_or_name, tracking_uri)
    click.echo(format_table(name, rows))
    from sweeper.links import for_sweep

    for line in for_sweep(uri, name):
        click.echo(line)
    return 0
