"""Reading a big sweep back from MLflow in a number of requests that does not grow per trial.

A trial's facts that `sweeper status`, `sweeper report` and planning need mostly come with its
child run as ``sweeper.record.run_index`` reads it (params, tags and the latest value and step of every
metric: from the run index, or from ``search_runs`` for what changed since). What does not is
read here in bulk:

- the epoch a trial has reached: the worker logs ``sweeper.epoch`` in each epoch's batch; a run
  logged before that metric existed still carries the step of its latest ``test_acc`` in the
  search result (MLflow keeps the point with the highest step as the latest), and only a run
  with neither costs one history request;
- learning curves: ``get-history-bulk-interval`` (100 runs a request, the endpoint MLflow's UI
  uses), with one ``get_metric_history`` per run only where a store or server lacks it or a run
  has more points than one request returns;
- the gamma distributions: one ``gamma.json`` per trial, read concurrently straight from each
  run's artifact URI (no ``runs/get`` first), and only for the runs a figure draws.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from sweeper.core import environ
from sweeper.core.errors import one_line
from sweeper.record import names

log = logging.getLogger(__name__)

BULK_RUNS = 100  # MLflow's limit of run ids per get-history-bulk-interval request
BULK_POINTS = 2500  # MLflow's limit of points per run and request
THREADS = 8  # per-run reads at once: enough to hide a round trip, few enough for a small server
GAMMA_ARTIFACTS = ("checkpoint/gamma.json", "gamma.json")


# --- the epoch a trial has reached ------------------------------------------------------------


def epoch_in_search_result(run: Any, key: str = "test_acc") -> int | None:
    """The last epoch of ``run`` with a ``key`` point, from what search_runs returned; None when
    the result does not say (then ``trial_epoch`` asks for the history)."""
    metrics = run.data.metrics
    if key not in metrics:
        return None
    if names.METRIC_EPOCH in metrics:
        return int(metrics[names.METRIC_EPOCH])
    for metric in getattr(run.data, "_metric_objs", ()):  # runs logged before sweeper.epoch
        if metric.key == key:
            return int(metric.step)
    return None


def trial_epoch(client: Any, run: Any, key: str = "test_acc") -> int | None:
    """The last epoch of ``run`` with a ``key`` point (None when it has none)."""
    if key not in run.data.metrics:
        return None
    epoch = epoch_in_search_result(run, key)
    if epoch is None:
        epoch = max(m.step for m in client.get_metric_history(run.info.run_id, key))
    return epoch


# --- planning's trial states -----------------------------------------------------------------


def epochs_done(runs: Mapping[str, Any]) -> dict[str, int]:
    """Trial key -> the epochs its child run has reported, for the runs that reported any (a key
    left out is a fresh trial), from what the runs as read carry: planning a sweep of thousands
    of trials must not cost a request per trial (``trial_epoch``'s history fallback)."""
    done = {}
    for key, run in runs.items():
        epoch = epoch_in_search_result(run)
        if epoch:
            done[key] = epoch
    return done


# --- learning curves --------------------------------------------------------------------------


def metric_histories(client: Any, run_ids: Iterable[str], key: str) -> list[tuple[str, int, float, int]]:
    """(run_id, step, value, timestamp) of every ``key`` point of each run."""
    run_ids = list(dict.fromkeys(run_ids))
    rows: list[tuple[str, int, float, int]] = []
    per_run: list[str] = []
    for start in range(0, len(run_ids), BULK_RUNS):
        chunk = run_ids[start:start + BULK_RUNS]
        points = _bulk_interval(client, chunk, key)
        if points is None:  # the store or server has no bulk call: one request per run
            per_run += chunk
            continue
        counts: dict[str, int] = {}
        for run_id, step, value, timestamp in points:
            counts[run_id] = counts.get(run_id, 0) + 1
        full = [p for p in points if counts[p[0]] < BULK_POINTS]
        rows += full
        per_run += [r for r in chunk if counts.get(r, 0) >= BULK_POINTS]  # sampled: read it whole
    rows += [row for part in _concurrently(lambda r: _history(client, r, key), per_run) for row in part]
    return rows


def _history(client: Any, run_id: str, key: str) -> list[tuple[str, int, float, int]]:
    return [(run_id, int(m.step), float(m.value), int(m.timestamp)) for m in client.get_metric_history(run_id, key)]


def _bulk_interval(client: Any, run_ids: list[str], key: str) -> list[tuple[str, int, float, int]] | None:
    store = _store(client)
    try:
        if hasattr(store, "get_host_creds"):  # a tracking server: the REST route the MLflow UI uses
            from mlflow.utils.rest_utils import http_request

            params = {"run_ids": run_ids, "metric_key": key, "max_results": BULK_POINTS}
            response = http_request(store.get_host_creds(), "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
                                    "GET", params=params)
            if response.status_code != 200:
                return None
            return [(m["run_id"], int(m.get("step", 0)), _float(m.get("value")), int(m.get("timestamp", 0)))
                    for m in response.json().get("metrics", [])]
        points = store.get_metric_history_bulk_interval(run_ids, key, BULK_POINTS, None, None)
        return [(m.run_id, int(m.step), float(m.value), int(m.timestamp)) for m in points]
    except Exception as e:  # noqa: BLE001 - an older server or a store without it: fall back per run
        log.info("bulk metric history unavailable (%s); reading it run by run", one_line(e))
        return None


def _float(value: Any) -> float:
    return float(value) if value is not None else float("nan")  # JSON carries NaN as a string


def _store(client: Any) -> Any:
    return client._tracking_client.store  # private: MlflowClient has no public bulk history call


# --- gamma distributions ----------------------------------------------------------------------


def gammas_by_artifact_uri(artifact_uris: Mapping[str, str]) -> dict[str, list[float]]:
    """run_id -> all BN gammas of that run (layers pooled), read from ``gamma.json`` under each
    run's artifact URI, several runs at once. Runs without the file are left out."""
    with tempfile.TemporaryDirectory(prefix="sweeper-gammas-") as tmp, quiet_downloads():
        items = list(artifact_uris.items())
        found = _concurrently(lambda item: _read_gammas(item[1], Path(tmp) / item[0]), items)
    return {run_id: values for (run_id, _), values in zip(items, found) if values is not None}


def _read_gammas(artifact_uri: str, folder: Path) -> list[float] | None:
    from mlflow.artifacts import download_artifacts

    for artifact in GAMMA_ARTIFACTS:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = download_artifacts(artifact_uri=f"{artifact_uri.rstrip('/')}/{artifact}", dst_path=str(folder))
            layers = json.loads(Path(path).read_text())["layers"]
            return [float(g) for values in layers.values() for g in values]
        except Exception as e:  # noqa: BLE001 - missing or unreadable: try the next name, else no distribution
            log.debug("no %s under %s (%s)", artifact, artifact_uri, one_line(e))
            continue
    return None


@contextlib.contextmanager
def quiet_downloads() -> Iterator[None]:
    """MLflow draws a progress bar per download on stderr; one per trial drowns the output."""
    with environ.temporarily({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}, users_win=False):
        yield


def _concurrently(call, items: list) -> list:
    if len(items) <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(THREADS, len(items))) as pool:
        return list(pool.map(call, items))
