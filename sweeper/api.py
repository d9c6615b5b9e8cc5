"""The Python API: a sweep's results one call away from a notebook (docs/python.md).

    load_results(name_or_spec)  one row per trial: state, the axes as typed columns, final
                                metrics, run id, trial key, checkpoint folder
    load_history(name_or_spec)  the per-epoch curves, one row per (trial, epoch)
    best(name_or_spec)          the best finished trial's row of load_results
    load_model(trial)           a trial's trained network (eval mode), by row, run id or key
    run(spec_or_path)           a sweep from Python: a RunResult (exit code, counts, results)

Nothing here touches the caller's terminal: no prints (what ``sweeper run`` would print is in
``RunResult.messages``), no signal handler left behind (SIGINT, SIGTERM and SIGUSR1 are as they
were when ``run`` returns), file descriptors 1 and 2 left alone unless ``ray_log=True`` asks for
Ray's output in ``<storage>/<sweep>/ray-driver.log``, and MLflow kept quiet (no progress bars,
no INFO lines). Bad input raises ``SpecError``, an unusable store or unknown sweep ``SweepError``.

Reading goes through the readers the CLI uses (``report.collect.load_sweep`` over
``record.run_index``, ``record.readback`` for histories); running through
``driver.orchestrate.run_command`` with its terminal ways turned off.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

if TYPE_CHECKING:  # pandas, MLflow and torch are imported when a function is called
    import pandas as pd
    from torch import nn

    from sweeper.spec import Spec

DEFAULT_STORAGE = "./sweeper_results"  # as `sweeper run --storage`: relative to the working folder
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")  # MLflow run ids; trial keys are 16 hex digits


@dataclass
class RunResult:
    """What ``sweeper.run`` returns."""

    name: str
    exit_code: int  # as `sweeper run`: 0 ok, 1 a trial failed, 3 the sweep was taken over, 130 interrupted (resume: run again)
    counts: dict[str, int]  # trials of the spec per state (pending: no run yet)
    results: "pd.DataFrame"  # load_results of the sweep after the run
    messages: list[str] = field(default_factory=list, repr=False)  # what `sweeper run` would print
    tracking_uri: str = ""
    metric: str = "test_acc"  # the spec's search metric and direction: what best() ranks by
    direction: str = "max"

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def best(self, metric: str | None = None, direction: str | None = None) -> "pd.Series":
        """The best finished trial's row of ``results`` (as ``sweeper.best``: the spec's
        search metric and direction unless given)."""
        from sweeper.report.results import best_row

        return best_row(self.results, metric or self.metric, direction or (self.direction if metric is None else None))

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {state}" for state, n in self.counts.items() if n)
        return f"RunResult({self.name!r}, exit_code={self.exit_code}, {counts or 'no trials'})"


# --- reading --------------------------------------------------------------------------------


def load_results(name_or_spec: "str | Path | Spec", tracking_uri: str | None = None, all_versions: bool = False,
                 *, storage: str | None = None) -> "pd.DataFrame":
    """One row per trial of the sweep (its current spec version; every version with
    ``all_versions``, marked in a ``current`` column).

    Columns: ``name``, ``state``, the axes that vary under their short names (``mode``,
    ``depth``, ``lr``, ``seed`` ...) typed as the trial configuration declares them, the final
    metrics (``best_test_acc`` ... ``epochs_completed``), ``run_id``, ``trial_key``,
    ``checkpoint`` (the trial's folder ``<storage>/<sweep>/trials/<key>``; ``storage``
    defaults to ``./sweeper_results`` of *this* working folder, as for `sweeper run`), and
    ``start_time``/``end_time``, ``driver_gone_since`` (a running trial whose driver is gone:
    its last heartbeat; nothing trains it until the next run). ``name_or_spec``: a sweep name, a spec file or a ``Spec``;
    ``tracking_uri`` as for the CLI (else MLFLOW_TRACKING_URI, the spec's, sqlite:///mlflow.db).
    """
    with _quiet_mlflow():
        return _load(name_or_spec, tracking_uri, all_versions, storage)[2]


def load_history(name_or_spec: "str | Path | Spec", tracking_uri: str | None = None, all_versions: bool = False,
                 *, trials: "pd.DataFrame | Iterable[str] | None" = None, metrics: Iterable[str] | None = None,
                 storage: str | None = None) -> "pd.DataFrame":
    """The per-epoch curves, long: one row per (trial, epoch) with ``name``, ``trial_key``,
    ``run_id``, the axes of ``load_results`` (but one named like a metric: ``lr`` here is the
    schedule's value at that epoch), ``epoch`` and one column per metric (``metrics``, default
    every per-epoch metric: train_loss, train_acc, test_loss, test_acc, test_top5, lr,
    images_per_s, epoch_s). ``trials``: only these (rows of ``load_results``, run ids or trial
    keys). Read in bulk, 100 runs a request per metric."""
    import pandas as pd

    from sweeper.report.collect import load_curves
    from trainables.keys import did_you_mean
    from trainables.names import PER_EPOCH_METRICS

    metrics = list(metrics or PER_EPOCH_METRICS)
    unknown = [m for m in metrics if m not in PER_EPOCH_METRICS]
    if unknown:  # an empty column would read as "never logged"
        raise ValueError(f"unknown per-epoch metric {unknown[0]!r}{did_you_mean(unknown[0], PER_EPOCH_METRICS)}; "
                         f"one of {', '.join(PER_EPOCH_METRICS)}")
    with _quiet_mlflow():
        client, axes, results = _load(name_or_spec, tracking_uri, all_versions, storage)
        if trials is not None:
            wanted = set(trials["run_id"]) if isinstance(trials, pd.DataFrame) else set(trials)
            results = results[results["run_id"].isin(wanted) | results["trial_key"].isin(wanted)]
        run_ids = list(results["run_id"])
        frame = pd.DataFrame({"run_id": pd.Series(dtype=str), "epoch": pd.Series(dtype="int64")})
        for key in metrics:
            curve = load_curves(client, run_ids, key).rename(columns={"step": "epoch", "value": key})
            frame = frame.merge(curve, on=["run_id", "epoch"], how="outer")
    keep = ["name", "trial_key", "run_id"] + [a for a in axes if a not in metrics]
    frame = results[keep].merge(frame, on="run_id", how="inner")
    frame["epoch"] = frame["epoch"].astype("int64")
    order = ["name", "trial_key", "run_id"] + [a for a in axes if a not in metrics] + ["epoch"] + metrics
    return frame[order].sort_values(["name", "epoch"], kind="stable").reset_index(drop=True)


def best(name_or_spec: "str | Path | Spec", metric: str | None = None, direction: str | None = None, *,
         tracking_uri: str | None = None, storage: str | None = None) -> "pd.Series":
    """The row of ``load_results`` of the best finished trial (as Ray's ``get_best_result`` and
    Optuna's ``best_trial``). ``metric``: a final metric or ``test_acc`` (its last value); default
    the spec's search metric when a spec is given, else ``final_test_acc``. ``direction``: ``max``
    or ``min``, default the spec's, else the metric's own (min for losses). SweepError when no
    finished trial has the metric; a metric that is no column of the results names the known ones."""
    from sweeper.report.results import best_row
    from sweeper.spec import Spec, load_spec

    spec = name_or_spec if isinstance(name_or_spec, Spec) else None
    if spec is None and (Path(str(name_or_spec)).suffix in (".yaml", ".yml") or Path(str(name_or_spec)).is_file()):
        spec = load_spec(name_or_spec)
    if metric is None and spec is not None:
        metric, direction = spec.metric, direction or spec.direction
    results = load_results(spec or name_or_spec, tracking_uri, storage=storage)
    return best_row(results, metric or "final_test_acc", direction)


def load_model(trial: "Mapping[str, Any] | str", name_or_spec: "str | Path | Spec | None" = None, *,
               tracking_uri: str | None = None, storage: str | None = None, device: str = "cpu") -> "nn.Module":
    """A trial's trained network, in eval mode on ``device``: frozen weights redrawn from its
    seed, the trained ones from its checkpoint (``trainables.checkpoint.load_model``).

    ``trial``: a row of ``load_results`` (``df.iloc[0]``), an MLflow run id, or a trial key
    (then ``name_or_spec`` names the sweep). The checkpoint is read from the trial's folder
    under ``storage`` when it is there, else from the final checkpoint logged on its MLflow run.
    """
    from trainables import checkpoint

    with _quiet_mlflow():
        folder, run_id, uri = _locate(trial, name_or_spec, tracking_uri, storage)
        if folder is not None and "://" not in folder and (Path(folder) / checkpoint.CHECKPOINT_FILE).is_file():
            return checkpoint.load_model(folder, device)
        return _model_from_run(run_id, uri, device)


# --- running --------------------------------------------------------------------------------


def run(spec_or_path: "str | Path | Spec", *, address: str | None = None, tracking_uri: str | None = None,
        storage: str | None = None, dry_run: bool = False, ray_log: bool = False) -> RunResult:
    """Run (or resume) the sweep of a spec, as `sweeper run` does, and return its RunResult.

    Ray is attached to when this process already called ``ray.init`` (or with ``address``),
    else started here for the sweep and stopped after it. Nothing is printed (the lines
    `sweeper run` prints are ``RunResult.messages``); no signal handler of sweeper's is
    installed and every handler is as before when this returns (Ray Tune's own SIGINT handler
    stops the sweep gracefully while it runs, so interrupting a notebook cell gives exit code
    130 and the next run resumes); file descriptors 1 and 2 are left alone unless ``ray_log``
    sends Ray's output to ``<storage>/<sweep>/ray-driver.log``. A bad spec raises SpecError
    (file, key and line in its message), a store or cluster that cannot be used SweepError, and
    any other failure of the driver is raised after the parent run is closed.
    """
    from sweeper.core.errors import SweepError
    from sweeper.core.states import PENDING, STATES
    from sweeper.driver.orchestrate import run_command
    from sweeper.record.store import TrackingStore
    from sweeper.report import resolve_target
    from sweeper.report.results import empty_results
    from sweeper.spec import Spec, load_spec
    from sweeper.views import terminal

    spec = spec_or_path if isinstance(spec_or_path, Spec) else load_spec(spec_or_path)
    storage = storage or DEFAULT_STORAGE
    with _quiet_mlflow(), terminal.kept() as messages, _signals_kept():
        code = run_command(spec, address=address, tracking_uri=tracking_uri, storage=storage, dry_run=dry_run,
                           handle_signals=False, ray_log=ray_log)
        uri = TrackingStore.resolve(tracking_uri, spec.tracking.uri).uri
        try:
            results = _load(spec, uri, False, storage)[2]
        except SweepError:  # a dry run of a new sweep: no store or experiment yet, no rows
            results = empty_results()
    _, _, planned, _ = resolve_target(spec)
    counts = {state: int((results["state"] == state).sum()) for state in STATES}
    counts[PENDING] = max(0, int(planned or 0) - len(results))
    return RunResult(spec.name, code, counts, results, messages, uri, spec.metric, spec.direction)


# --- internals ------------------------------------------------------------------------------


def _load(name_or_spec, tracking_uri: str | None, all_versions: bool, storage: str | None):
    """(client, the axis columns, the results frame)."""
    from sweeper.record.preflight import check_store_exists
    from sweeper.record.store import TrackingStore
    from sweeper.report import resolve_target
    from sweeper.report.collect import load_sweep, split_versions
    from sweeper.report.results import results_frame
    from sweeper.spec import Spec, load_spec

    if not isinstance(name_or_spec, Spec):
        text = str(name_or_spec)
        if Path(text).suffix in (".yaml", ".yml") or Path(text).is_file():
            name_or_spec = load_spec(text)  # SpecError for a missing or bad file
    name, spec_uri, _, keys = resolve_target(name_or_spec)
    store = TrackingStore.resolve(tracking_uri, spec_uri)
    check_store_exists(store, name)
    client = store.client()
    sweep = load_sweep(client, name, all_versions=all_versions, keys=keys)
    if isinstance(name_or_spec, Spec):
        axes = list(name_or_spec.varying_axes())
    else:
        parent = client.get_run(sweep.parent_run_id)
        axes = [a.strip() for a in parent.data.params.get("sweep.axes", "").split(",") if "(" not in a and a.strip()]
    current = None
    if all_versions:
        now, _ = split_versions(list(sweep.runs.values()), keys)
        current = {run.info.run_id for run in now}
    short, frame = results_frame(sweep.trials, axes, _trials_root(storage, name), current, sweep.runs)
    frame["driver_gone_since"] = _driver_gone(client, sweep.parent_run_id, frame)
    frame.attrs.update(sweep=name, tracking_uri=store.uri)
    return client, short, frame


def _driver_gone(client, parent_run_id: str, frame: "pd.DataFrame") -> "pd.Series":
    """For running trials whose driver is gone (sweeper.record.claims), its last heartbeat (UTC); else NaT."""
    import pandas as pd

    from sweeper.core import settings
    from sweeper.core.states import RUNNING
    from sweeper.record.claims import driver_gone_since

    gone = None
    if (frame["state"] == RUNNING).any():
        tags = client.get_run(parent_run_id).data.tags
        gone = driver_gone_since(tags, settings.LEASE_STALE_S.get(), settings.CLOCK_SKEW_S.get())
    at = pd.Timestamp(gone, unit="s", tz="UTC") if gone is not None else pd.NaT
    return pd.Series([at if state == RUNNING else pd.NaT for state in frame["state"]], index=frame.index,
                     dtype="datetime64[ns, UTC]")


def _trials_root(storage: str | None, sweep: str) -> str:
    from sweeper.driver.orchestrate import storage_root

    return f"{storage_root(storage or DEFAULT_STORAGE)}/{sweep}/trials"


def _locate(trial, name_or_spec, tracking_uri: str | None, storage: str | None):
    """(checkpoint folder or None, run id or None, tracking URI) of ``trial``."""
    from sweeper.core.errors import SweepError
    from sweeper.record import names, tracking
    from sweeper.record.store import TrackingStore
    from sweeper.report import resolve_target

    spec_uri = resolve_target(name_or_spec)[1] if name_or_spec is not None else None
    store = TrackingStore.resolve(tracking_uri, spec_uri)
    uri = store.uri
    if not isinstance(trial, str):  # a row of load_results, or a mapping with either key
        folder, run_id = trial.get("checkpoint"), trial.get("run_id")
        return (str(folder) if folder else None), (str(run_id) if run_id else None), uri
    client = store.client()
    if _RUN_ID.match(trial):
        try:
            run = client.get_run(trial)
        except Exception:  # noqa: BLE001 - named below, with the store
            raise SweepError(f"no MLflow run {trial} in {uri}") from None
        sweep = client.get_experiment(run.info.experiment_id).name
        key = run.data.tags.get(names.TAG_TRIAL_KEY)
    else:
        if name_or_spec is None:
            raise SweepError(f"{trial!r} is not a run id: a trial key needs the sweep (load_model(key, 'sweep_name'))")
        sweep = resolve_target(name_or_spec)[0]
        experiment = client.get_experiment_by_name(sweep)
        run = tracking.find_child_run(client, experiment.experiment_id, trial) if experiment else None
        if run is None:
            raise SweepError(f"no trial {trial!r} in sweep {sweep!r} at {uri}")
        key = trial
    folder = f"{_trials_root(storage, sweep)}/{key}" if key else None
    return folder, run.info.run_id, uri


def _model_from_run(run_id: str | None, uri: str, device: str) -> "nn.Module":
    import tempfile

    from sweeper.core.errors import SweepError
    from sweeper.record import names
    from sweeper.record.store import TrackingStore
    from trainables import checkpoint

    if run_id is None:
        raise SweepError("the trial has no checkpoint folder and no MLflow run to read one from")
    client = TrackingStore.parse(uri).client()
    with tempfile.TemporaryDirectory(prefix="sweeper-model-") as tmp:
        try:
            folder = client.download_artifacts(run_id, names.ARTIFACT_CHECKPOINT, tmp)
        except Exception as e:  # noqa: BLE001 - one line: where it looked
            raise SweepError(f"run {run_id}: no checkpoint in its trial folder nor among its artifacts "
                             f"({type(e).__name__}); pass storage= where `sweeper run --storage` wrote it") from None
        return checkpoint.load_model(folder, device)


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """No MLflow progress bars (artifact downloads), no INFO lines (a store's creation), no
    "View run" links (a tracking server) and no warnings from MLflow's own modules (deprecations
    of its stores) while sweeper reads or runs."""
    import logging
    import warnings

    import mlflow  # noqa: F401 - first: importing it sets its logger's level, which is set here after

    from sweeper.record.readback import quiet_downloads

    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    links = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"  # "View run ... at http://..." on a server
    saved = os.environ.get(links)
    os.environ.setdefault(links, "true")
    try:
        with quiet_downloads(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if saved is None:
            os.environ.pop(links, None)


@contextlib.contextmanager
def _signals_kept() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGUSR1 as they were, whatever Ray and Tune installed meanwhile
    (ray.init sets a SIGTERM handler, Tune a SIGINT and a SIGUSR1 one and keeps them)."""
    sigs = [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR1", None)) if s is not None]
    main = threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in sigs} if main else {}
    try:
        yield
    finally:
        for s, handler in saved.items():
            if handler is not None:
                signal.signal(s, handler)
