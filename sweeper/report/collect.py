"""Read one sweep back from MLflow into plain pandas tables.

The layout is the one docs/mlflow.md documents: one experiment per sweep, a parent run tagged
``sweeper.role=sweep``, one child run per trial tagged ``sweeper.role=trial`` and
``sweeper.trial_key``, params = the flattened trial configuration, final metrics logged once,
per-epoch metrics with ``step`` = epoch, ``gamma.json`` among the child's artifacts.

Cost: one paged ``search_runs`` for all trials (params, tags and the latest value of every
metric come with it) and one for the parent. The learning curves and gamma distributions are
read by the report only for the runs its figures draw, in bulk (sweeper/record/readback.py).
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from sweeper.record import names
from sweeper.record import readback, run_index, tracking
from sweeper.record.store import TrackingStore
from sweeper.core.errors import SweepError
from sweeper.core.states import PENDING, STATES
from sweeper.core.trial import with_later_defaults
from sweeper.record.trial_record import state_of
from trainables.names import FINAL_METRICS, PER_EPOCH_METRICS
from sweeper.core.errors import one_line

log = logging.getLogger(__name__)

# A trial's state as the report sees it (sweeper.record.trial_record.state_of). Only finished runs
# enter the means; diverged ones are counted next to them (their accuracy is chance, not a
# measurement of the configuration); the rest are listed in the header and left out.
# A trial an early-stopping scheduler (ASHA) ended is stopped early: it has no final metrics
# and ran fewer epochs than its configuration says, so it stays out of the means too.
# A child run is never pending: the report counts the other states.
REPORTED_STATES = tuple(s for s in STATES if s != PENDING)

# When one trial key has several runs (it should not, but a store edited by hand may), keep the
# most complete one: STATES lists them from the most complete on.
_STATE_RANK = {state: rank for rank, state in enumerate(STATES)}

# Columns of the trials table that are not the trial's configuration.
RUN_COLUMNS = ("run_id", "trial_key", "run_name", "status", "mlflow_status", "start_time", "end_time")


@dataclass
class SweepRuns:
    """Everything the report needs about one sweep, as read from MLflow."""

    name: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    trials: pd.DataFrame  # one row per trial: RUN_COLUMNS, then params, then metrics
    param_columns: list[str]
    metric_columns: list[str]
    # run_id -> the child run as search_runs returned it (artifact URI, latest metric steps)
    runs: dict[str, Any] = field(default_factory=dict, repr=False)
    earlier_versions: int = 0  # trials of earlier spec versions included (--all), or 0
    left_out_versions: int = 0  # trials of earlier spec versions left out (the default)

    def with_state(self, *states: str) -> pd.DataFrame:
        return self.trials[self.trials["status"].isin(states)]

    def counts(self) -> dict[str, int]:
        found = self.trials["status"].value_counts().to_dict() if len(self.trials) else {}
        return {state: int(found.get(state, 0)) for state in REPORTED_STATES}


def load_sweep(client: Any, name: str, tracking_uri: str | None = None, all_versions: bool = False,
               keys: set[str] | None = None) -> SweepRuns:
    """The child runs of sweep ``name`` of the current spec version (``keys``, else the runs not
    tagged superseded), or all with ``all_versions``; SweepError when there is no such sweep.

    ``client``: an ``MlflowClient``, a tracking URI or a ``TrackingStore`` (then a checked client
    is made, ``TrackingStore.client``); the URI the messages name is the client's own unless given."""
    if isinstance(client, (str, TrackingStore)):
        client = TrackingStore.parse(client).client()
    tracking_uri = tracking_uri or client.tracking_uri
    experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        raise SweepError(f"no sweep named {name!r} in {tracking_uri} (no MLflow experiment of that name)")
    parent = tracking.find_parent_run(client, experiment.experiment_id)
    if parent is None:
        raise SweepError(f"experiment {name!r} in {tracking_uri} has no sweep run "
                         f"(tag {names.TAG_ROLE}=sweep); was it made by `sweeper run`?")
    children = run_index.child_runs(client, experiment.experiment_id, parent.info.run_id)
    current, earlier = split_versions(children, keys)
    trials, params, metrics = _trials_table(children if all_versions else current)
    shown = children if all_versions else current
    return SweepRuns(name, tracking_uri, experiment.experiment_id, parent.info.run_id, trials, params, metrics,
                     runs={run.info.run_id: run for run in shown},
                     earlier_versions=len(earlier) if all_versions else 0,
                     left_out_versions=0 if all_versions else len(earlier))


def split_versions(runs: list[Any], keys: set[str] | None) -> tuple[list[Any], list[Any]]:
    """(runs of the current spec version, runs of earlier ones): by the spec's trial keys when
    known (Optuna samples by their grid point), else by the superseded tag `sweeper run` sets."""
    from sweeper.record.versions import is_current

    def current(run: Any) -> bool:
        if keys is None:
            return is_current(run)
        tags = run.data.tags
        return tags.get(names.TAG_TRIAL_KEY) in keys or tags.get(names.TAG_GRID_KEY) in keys

    return [r for r in runs if current(r)], [r for r in runs if not current(r)]


def load_curves(client: Any, run_ids: Iterable[str], key: str = "test_acc") -> pd.DataFrame:
    """Per-epoch history of ``key`` for each run: columns run_id, step, value."""
    rows = readback.metric_histories(client, run_ids, key)  # bulk requests, 100 runs each
    frame = pd.DataFrame(rows, columns=["run_id", "step", "value", "timestamp"])
    # A resumed trial may log an epoch twice; its last value is the one that counts.
    frame = frame.sort_values(["run_id", "step", "timestamp"]).drop_duplicates(["run_id", "step"], keep="last")
    return frame.drop(columns="timestamp").reset_index(drop=True)


def load_gammas(client: Any, run_ids: Iterable[str]) -> dict[str, list[float]]:
    """All BN gammas of each run (every layer pooled), from its ``gamma.json`` artifact.

    Runs without the artifact are left out rather than failing the report.
    """
    gammas: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="sweeper-report-") as tmp, readback.quiet_downloads():
        for run_id in run_ids:
            for artifact in readback.GAMMA_ARTIFACTS:
                values = _read_gammas(client, run_id, artifact, Path(tmp) / run_id)
                if values is not None:
                    gammas[run_id] = values
                    break
    return gammas


def _read_gammas(client: Any, run_id: str, artifact: str, folder: Path) -> list[float] | None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = client.download_artifacts(run_id, artifact, str(folder))
        layers = json.loads(Path(path).read_text())["layers"]
        return [float(g) for values in layers.values() for g in values]
    except Exception as e:  # noqa: BLE001 - missing or unreadable: no distribution for this run
        log.debug("no %s on run %s (%s)", artifact, run_id, one_line(e))
        return None


# --- internals --------------------------------------------------------------------------------


def _trials_table(runs: list[Any]) -> tuple[pd.DataFrame, list[str], list[str]]:
    rows, param_keys, metric_keys = [], set(), set()
    for run in runs:
        tags = run.data.tags
        row: dict[str, Any] = {
            "run_id": run.info.run_id,
            "trial_key": tags.get(names.TAG_TRIAL_KEY, run.info.run_id),
            "run_name": run.info.run_name or tags.get(names.TAG_RUN_NAME, ""),
            "status": state_of(run),
            "mlflow_status": run.info.status,
            "start_time": _timestamp(run.info.start_time),
            "end_time": _timestamp(run.info.end_time),
        }
        aliases = set(tags.get(names.TAG_SHORT_PARAMS, "").split(","))  # sweeper.record.child_run: UI names
        for key, value in with_later_defaults(run.data.params).items():
            if key in aliases:
                continue
            row[key] = parse_param(value)
            param_keys.add(key)
        for key, value in run.data.metrics.items():
            if key.startswith((names.SWEEPER_METRIC_PREFIX, names.SYSTEM_METRIC_PREFIX)):  # bookkeeping and
                continue  # MLflow's system metrics (the UI's tab): not results
            row[key] = float(value)
            metric_keys.add(key)
        rows.append(row)
    params = _ordered_params(param_keys)
    metrics = _ordered_metrics(metric_keys - param_keys)
    frame = pd.DataFrame(rows, columns=list(RUN_COLUMNS) + params + metrics)
    if len(frame):
        frame["_rank"] = frame["status"].map(_STATE_RANK)
        frame = (frame.sort_values(["trial_key", "_rank", "start_time"], ascending=[True, True, False])
                 .drop_duplicates("trial_key").drop(columns="_rank"))
        sort_keys = [k for k in ("mode", "model.depth", "model.width", "train.lr", "seed") if k in frame]
        frame = frame.sort_values(sort_keys + ["run_name"], kind="stable")
    return frame.reset_index(drop=True), params, metrics


def parse_param(text: str) -> Any:
    """MLflow stores params as strings; give numbers back their type so tables sort and group."""
    if not isinstance(text, str):
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        if text == "None":  # how the sweep layer logs an unset optional setting
            return None
        return {"True": True, "False": False, "true": True, "false": False}.get(text, text)
    return value if math.isfinite(value) else text


_PARAM_ORDER = ("mode", "seed", "dataset.name", "model.family", "model.depth", "model.width", "train.lr",
                "train.epochs", "train.batch_size")


def _ordered_params(keys: set[str]) -> list[str]:
    first = [k for k in _PARAM_ORDER if k in keys]
    return first + sorted(keys - set(first))


def _ordered_metrics(keys: set[str]) -> list[str]:
    """Final metrics first in the order trainables.names.FINAL_METRICS lists them, then the last value of each per-epoch one."""
    first = [k for k in FINAL_METRICS + PER_EPOCH_METRICS if k in keys]
    return first + sorted(keys - set(first))


def _timestamp(ms: int | None) -> pd.Timestamp | None:
    return pd.Timestamp(ms, unit="ms", tz="UTC") if ms else None
