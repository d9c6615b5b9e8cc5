"""`sweeper status SPEC_OR_NAME`: a sweep's trials and their states, read back from MLflow.

Given a spec file, every trial it defines is listed, with ``pending`` for those MLflow has not
seen yet; given a bare sweep name, the trials MLflow holds for that experiment. States
(sweeper.states, read by sweeper.trial_record): finished, diverged, stopped early (by the
scheduler), running, interrupted (stopped by Ctrl-C or a killed driver; the next `sweeper run`
resumes it from its checkpoint), failed, pending.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import click

from sweeper.record import names
from sweeper.record import readback, run_index, tracking
from sweeper.core.errors import SweepError
from sweeper.record.preflight import check_store_exists
from sweeper.core.states import EXIT_OK, FAILED, PENDING, STATES
from sweeper.record.trial_record import state_of
from sweeper.record.versions import is_current

STATE_WIDTH = 11  # the state column; wider only when a longer state ("stopped early") is listed


@dataclass(frozen=True)
class TrialStatus:
    name: str
    key: str
    state: str
    epoch: int | None  # last epoch with a test_acc point
    test_acc: float | None  # final_test_acc when finished, else the latest test_acc
    run_id: str | None
    superseded: bool = False  # a trial of an earlier version of the spec (sweeper.versions)
    error: str | None = None  # sweeper.last_error of a failed trial


def sweep_status(spec_or_name: str, tracking_uri: str | None = None,
                 all_versions: bool = False) -> tuple[str, str, list[TrialStatus]]:
    """(sweep name, tracking URI, one row per trial). Trials of earlier spec versions only with
    ``all_versions``."""
    spec = None
    if Path(spec_or_name).is_file() or spec_or_name.endswith((".yaml", ".yml")):
        from sweeper.spec import load_spec

        spec = load_spec(spec_or_name)
        name, spec_uri = spec.name, spec.tracking.uri
    else:
        name, spec_uri = spec_or_name, None
    uri = tracking.resolve_tracking_uri(tracking_uri, spec_uri)
    try:
        check_store_exists(uri, name)  # reading must not create an empty store
    except SweepError:
        if spec is None:
            raise
        from sweeper.plan.planning import expected_payloads

        return name, uri, [_row(None, t.name, t.key, None) for t in expected_payloads(spec)]
    client = tracking.connect(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None and spec is None:
        raise SweepError(f"no sweep named {name!r} in MLflow at {uri}")
    runs = run_index.trial_runs(client, experiment.experiment_id) if experiment is not None else {}

    rows: list[TrialStatus] = []
    listed: set[str] = set()
    if spec is not None:
        from sweeper.plan.planning import expected_payloads

        for trial in expected_payloads(spec):
            rows.append(_row(client, trial.name, trial.key, runs.get(trial.key)))
            listed.add(trial.key)
    for key, run in runs.items():  # sampled (optuna) trials, or trials of an earlier spec version
        # with a spec file, an unlisted run is current only as an Optuna sample on its grid
        current = is_current(run) and (spec is None or names.TAG_GRID_KEY in run.data.tags)
        if key not in listed and (all_versions or current):
            rows.append(_row(client, run.info.run_name or key, key, run))
    return name, uri, rows


def _row(client, name: str, key: str, run) -> TrialStatus:
    if run is None:
        return TrialStatus(name, key, PENDING, None, None, None)
    state = state_of(run)
    metrics = run.data.metrics
    acc = metrics.get("final_test_acc", metrics.get("test_acc"))
    epoch = readback.trial_epoch(client, run)  # from the search result; a request only for odd runs
    return TrialStatus(name, key, state, epoch, acc, run.info.run_id, superseded=not is_current(run),
                       error=run.data.tags.get(names.TAG_LAST_ERROR) if state == FAILED else None)


def format_table(name: str, rows: list[TrialStatus]) -> str:
    counts = Counter(r.state for r in rows)
    order = [s for s in STATES if counts[s]] + sorted(s for s in counts if s not in STATES)
    summary = ", ".join(f"{counts[s]} {s}" for s in order) or "no trials"
    old = sum(r.superseded for r in rows)
    summary += f" ({old} of them from earlier versions of the spec, marked 'old')" if old else ""
    width = max([len(r.name) for r in rows] + [5])
    state_width = max([len(r.state) for r in rows] + [STATE_WIDTH])
    lines = [f"{name}: {len(rows)} trials: {summary}",
             f"{'#':>4}  {'trial':<{width}}  {'state':<{state_width}}  {'epoch':>5}  {'test_acc':>8}  key"]
    for i, r in enumerate(rows):
        epoch = "" if r.epoch is None else str(r.epoch)
        acc = "" if r.test_acc is None else f"{r.test_acc:.3f}"
        lines.append(f"{i:>4}  {r.name:<{width}}  {r.state:<{state_width}}  {epoch:>5}  {acc:>8}  {r.key}"
                     + ("  old" if r.superseded else ""))
        if r.error:
            lines.append(f"{'':>4}  error: {r.error}")
    return "\n".join(lines)


def status_command(spec_or_name: str, tracking_uri: str | None = None, all_versions: bool = False) -> int:
    name, uri, rows = sweep_status(spec_or_name, tracking_uri, all_versions)
    click.echo(format_table(name, rows))
    from sweeper.record.links import for_sweep

    for line in for_sweep(uri, name):
        click.echo(line)
    return EXIT_OK
