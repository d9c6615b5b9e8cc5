"""Every part of MLflow that sweeper relies on beyond its public client API, in one list.

MLflow's public API (``MlflowClient``, ``mlflow.entities``, ``mlflow.artifacts``) has no call for
some things a sweep needs: reading the learning curves of hundreds of runs in one request (the
UI's bulk route, through the client's store), sampling system metrics onto a run that an array
of trials shares and publishing the last window of a short trial (the monitor's own methods),
and writing the reserved tags the UI reads. Each of those reaches into a module MLflow may
rename or move in any release without notice, so each is named here with what sweeper uses it
for and where: tests/test_mlflow_internals.py resolves every entry against the installed MLflow
(an upgrade that moves one fails with its name) and scans sweeper/ and bench/ so that a new use
cannot be added without an entry.

Notation of ``path``:

- ``a.b.C.d``: importable module ``a.b``, then attributes ``C`` and ``d``;
- ``a.b.C().d``: ``d`` on an instance of ``C`` (set in its ``__init__``, not on the class);
- ``/ajax-api/...``: a route of ``mlflow.server``'s Flask app;
- ``ui:TEXT``: a string the MLflow UI's JavaScript bundle must contain (what it reads).

``expect`` is the value sweeper assumes the attribute has, ``mirror`` the sweeper constant that
holds MLflow's value (the two must agree), and ``params`` the parameters sweeper passes, in order.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Internal(NamedTuple):
    path: str
    use: str
    user: str  # the file that uses it
    expect: Any = None
    mirror: str | None = None
    params: tuple[str, ...] = ()


_MONITOR = "mlflow.system_metrics.system_metrics_monitor.SystemMetricsMonitor"
_SQL_RUN = "mlflow.store.tracking.dbmodels.models.SqlRun"
BULK_HISTORY_ROUTE = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"

INTERNALS: tuple[Internal, ...] = (
    # --- system metrics on a trial's run (MLflow's public switch covers only fluent runs) ---
    Internal(_MONITOR, "samples CPU/GPU onto each run of a trial, resuming its step",
             "sweeper/record/system_metrics.py", params=("run_id", "sampling_interval", "resume_logging",
                                                         "tracking_uri")),
    Internal(f"{_MONITOR}.start", "starts the sampling thread", "sweeper/record/system_metrics.py"),
    Internal(f"{_MONITOR}.finish", "stops it when the trial ends", "sweeper/record/system_metrics.py"),
    Internal(f"{_MONITOR}.collect_metrics", "one last sample of a short trial", "sweeper/record/system_metrics.py"),
    Internal(f"{_MONITOR}.aggregate_metrics", "... averaged into a window", "sweeper/record/system_metrics.py"),
    Internal(f"{_MONITOR}.publish_metrics", "... and queued", "sweeper/record/system_metrics.py",
             params=("metrics",)),
    Internal(f"{_MONITOR}().mlflow_logger.flush", "... and written before the run ends",
             "sweeper/record/system_metrics.py"),
    # --- learning curves of many runs at once ---
    Internal("mlflow.tracking.MlflowClient()._tracking_client.store", "the store behind a client: bulk history",
             "sweeper/record/readback.py"),
    Internal("mlflow.store.tracking.sqlalchemy_store.SqlAlchemyStore.get_metric_history_bulk_interval",
             "100 runs' history of one metric in one query (sqlite, PostgreSQL)", "sweeper/record/readback.py",
             params=("run_ids", "metric_key", "max_results", "start_step", "end_step")),
    Internal("mlflow.store.tracking.rest_store.RestStore().get_host_creds",
             "tells a server's store apart, and its credentials for the bulk route", "sweeper/record/readback.py"),
    Internal("mlflow.utils.rest_utils.http_request", "calls the bulk route on a server",
             "sweeper/record/readback.py", params=("host_creds", "endpoint", "method")),
    Internal(BULK_HISTORY_ROUTE, "the bulk route: the UI's, not in the REST API", "sweeper/record/readback.py"),
    Internal("mlflow.server.handlers.MAX_RUNS_GET_METRIC_HISTORY_BULK", "run ids per bulk request",
             "sweeper/record/readback.py", mirror="sweeper.record.readback.BULK_RUNS"),
    Internal("mlflow.server.handlers.MAX_RESULTS_PER_RUN", "points per run and bulk request",
             "sweeper/record/readback.py", mirror="sweeper.record.readback.BULK_POINTS"),
    # --- reserved tags the UI reads ---
    Internal("mlflow.utils.mlflow_tags.MLFLOW_PARENT_RUN_ID", "nests a trial's run under its sweep's",
             "sweeper/record/names.py", mirror="sweeper.record.names.TAG_PARENT"),
    Internal("mlflow.utils.mlflow_tags.MLFLOW_RUN_NOTE", "a run's description: live summary, report",
             "sweeper/record/names.py", mirror="sweeper.record.names.TAG_NOTE"),
    Internal("mlflow.utils.mlflow_tags.MLFLOW_RUN_NAME", "a trial's readable name", "sweeper/record/names.py",
             mirror="sweeper.record.names.TAG_RUN_NAME"),
    Internal("ui:mlflow.experimentKind", "shows a sweep's experiment as training runs (no constant in MLflow)",
             "sweeper/record/names.py", mirror="sweeper.record.names.TAG_EXPERIMENT_KIND"),
    Internal("ui:custom_model_development", "... the kind the UI knows for training", "sweeper/record/names.py",
             mirror="sweeper.record.names.EXPERIMENT_KIND_TRAINING"),
    # --- MLflow's sqlite schema, read directly by a bench ---
    Internal(f"{_SQL_RUN}.__tablename__", "the runs table", "bench/bench_scale.py", expect="runs"),
    Internal(f"{_SQL_RUN}.start_time", "when the last fabricated run started", "bench/bench_scale.py"),
)
