"""`sweeper status SPEC_OR_NAME`: a sweep's trials and their states, read back from MLflow.

Given a spec file, every trial it defines is listed, with ``pending`` for those MLflow has not
seen yet; given a bare sweep name, the trials MLflow holds for that experiment. States
(sweeper.core.states, read by sweeper.record.trial_record): finished, diverged, stopped_early (by the
scheduler), running, interrupted (stopped by Ctrl-C or a killed driver; the next `sweeper run`
resumes it from its checkpoint), failed, pending. A running trial whose driver is gone (its lease
claim's process gone on this machine, or its heartbeat stale: sweeper.record.claims) shows
``running (driver gone since ...)``: nothing trains it until the next `sweeper run`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import click

from sweeper.record import names
from sweeper.record import readback, run_index, tracking
from sweeper.core import settings
from sweeper.record.claims import ClaimWatch, driver_gone_since, gone_text
from sweeper.core.errors import SweepError
from sweeper.plan import lookup
from sweeper.record.preflight import check_store_exists, store_exists
from sweeper.record.store import TrackingStore
from sweeper.core.states import EXIT_OK, FAILED, PENDING, RUNNING, STATES
from sweeper.record.trial_record import state_of
from sweeper.record.versions import is_current

STATE_WIDTH = 11  # the state column; wider only when a longer state ("stopped_early") is listed


@dataclass(frozen=True)
class TrialStatus:
    name: str
    key: str
    state: str
    epoch: int | None  # last epoch with a test_acc point
    test_acc: float | None  # final_test_acc when finished, else the latest test_acc
    run_id: str | None
    superseded: bool = False  # a trial of an earlier version of the spec (sweeper.record.versions)
    error: str | None = None  # sweeper.last_error of a failed trial
    index: int | None = None  # its place in the spec's order (plan.lookup), what `train --trial` takes
    driver_gone_since: float | None = None  # running, but its driver is gone (its last heartbeat, Unix s)

    @property
    def shown_state(self) -> str:
        return gone_text(self.driver_gone_since) if self.driver_gone_since is not None else self.state


def sweep_status(spec_or_name: str, tracking_uri: str | None = None, all_versions: bool = False,
                 watch: ClaimWatch | None = None) -> tuple[str, str, list[TrialStatus]]:
    """(sweep name, tracking URI, one row per trial). Trials of earlier spec versions only with
    ``all_versions``. ``watch`` (status --watch) keeps the driver's heartbeat between reads."""
    spec = None
    if Path(spec_or_name).is_file() or spec_or_name.endswith((".yaml", ".yml")):
        from sweeper.spec import load_spec

        spec = load_spec(spec_or_name)
        name, spec_uri = spec.name, spec.tracking.uri
    else:
        name, spec_uri = spec_or_name, None
    store = TrackingStore.resolve(tracking_uri, spec_uri)
    uri = store.uri
    try:
        check_store_exists(store, name)  # reading must not create an empty store
    except SweepError:
        if spec is None:
            raise
        return name, uri, [_row(None, t.name, t.key, None, index=i) for i, t in enumerate(lookup.trial_order(spec))]
    client = store.client()
    experiment = client.get_experiment_by_name(name)
    if experiment is None and spec is None:
        raise SweepError(f"no sweep named {name!r} in MLflow at {uri}")
    runs = run_index.trial_runs(client, experiment.experiment_id) if experiment is not None else {}

    # One order everywhere (plan.lookup): the spec's trials by their index, the spec as last run
    # when only a name is given; then the runs it does not define, those of earlier versions last.
    order_spec = spec
    if spec is None and runs:
        order_spec = lookup.spec_as_run(client, tracking.find_parent_run(client, experiment.experiment_id))
    rows: list[TrialStatus] = []
    listed: set[str] = set()
    for i, trial in enumerate(lookup.trial_order(order_spec) if order_spec is not None else []):
        if spec is not None or trial.key in runs:  # by name: only what MLflow holds
            rows.append(_row(client, trial.name, trial.key, runs.get(trial.key), index=i))
            listed.add(trial.key)
    rest = []
    for key, run in runs.items():  # sampled (optuna) trials, or trials of an earlier spec version
        # with a spec file, an unlisted run is current only as an Optuna sample on its grid
        current = is_current(run) and (spec is None or names.TAG_GRID_KEY in run.data.tags)
        if key not in listed and (all_versions or current):
            rest.append(_row(client, run.info.run_name or key, key, run))
    rows += sorted(rest, key=lambda r: r.superseded)  # stable: MLflow's start order within each
    if any(r.state == RUNNING for r in rows):
        gone = sweep_driver_gone(client, experiment.experiment_id, watch)
        if gone is not None:
            rows = [replace(r, driver_gone_since=gone) if r.state == RUNNING else r for r in rows]
    return name, uri, rows


def sweep_driver_gone(client, experiment_id: str, watch: ClaimWatch | None = None) -> float | None:
    """When the sweep's driver was last alive, if it is gone (sweeper.record.claims)."""
    parent = tracking.find_parent_run(client, experiment_id)
    if parent is None:
        return None
    return driver_gone_since(parent.data.tags, settings.LEASE_STALE_S.get(), settings.CLOCK_SKEW_S.get(), watch)


def _row(client, name: str, key: str, run, index: int | None = None) -> TrialStatus:
    if run is None:
        return TrialStatus(name, key, PENDING, None, None, None, index=index)
    state = state_of(run)
    metrics = run.data.metrics
    acc = metrics.get("final_test_acc", metrics.get("test_acc"))
    epoch = readback.trial_epoch(client, run)  # from the search result; a request only for odd runs
    return TrialStatus(name, key, state, epoch, acc, run.info.run_id, superseded=not is_current(run),
                       error=run.data.tags.get(names.TAG_LAST_ERROR) if state == FAILED else None, index=index)


def format_table(name: str, rows: list[TrialStatus]) -> str:
    counts = Counter(r.state for r in rows)
    order = [s for s in STATES if counts[s]] + sorted(s for s in counts if s not in STATES)
    summary = ", ".join(f"{counts[s]} {s}" for s in order) or "no trials"
    old = sum(r.superseded for r in rows)
    summary += f" ({old} of them from earlier versions of the spec, marked 'old')" if old else ""
    width = max([len(r.name) for r in rows] + [5])
    state_width = max([len(r.shown_state) for r in rows] + [STATE_WIDTH])
    lines = [f"{name}: {len(rows)} trials: {summary}",
             f"{'#':>4}  {'trial':<{width}}  {'state':<{state_width}}  {'epoch':>5}  {'test_acc':>8}  key"]
    for r in rows:
        i = "" if r.index is None else r.index  # outside the spec's order: an Optuna sample or an old trial
        epoch = "" if r.epoch is None else str(r.epoch)
        acc = "" if r.test_acc is None else f"{r.test_acc:.3f}"
        lines.append(f"{i:>4}  {r.name:<{width}}  {r.shown_state:<{state_width}}  {epoch:>5}  {acc:>8}  {r.key}"
                     + ("  old" if r.superseded else ""))
        if r.error:
            lines.append(f"{'':>4}  error: {r.error}")
    return "\n".join(lines)


def status_command(spec_or_name: str, tracking_uri: str | None = None, all_versions: bool = False) -> int:
    name, uri, rows = sweep_status(spec_or_name, tracking_uri, all_versions)
    click.echo(format_table(name, rows))
    if not store_exists(uri):  # a spec's trials before any run: reading must not create the store
        return EXIT_OK
    from sweeper.record.links import for_sweep

    for line in for_sweep(uri, name):
        click.echo(line)
    return EXIT_OK
