"""MLflow bookkeeping for a sweep: experiment, parent run, one child run per trial.

Layout (docs/mlflow.md): one experiment per sweep name; one parent run tagged
``sweeper.role=sweep`` holding the spec YAML and its hash; one child run per trial tagged
``mlflow.parentRunId``, ``sweeper.trial_key``, ``sweeper.role=trial``, named after the trial.

Why not Ray's ``MLflowLoggerCallback``: it keeps trial -> run ids in a dict that lives in the
driver process (``self._trial_runs = {}`` in ``setup``), so a re-run or a driver restart makes a
second run for the same trial, and it creates flat runs with no parent. Here a child run is
always found again by its ``sweeper.trial_key`` tag with ``search_runs``, and logging happens in
the trial's own process through ``MlflowClient``.

``TrialLogger`` is idempotent and outage-tolerant: at start it loads the (metric, step) pairs the
run already holds and never sends one twice (a trial that re-trains epochs after a crash does not
duplicate its history), and a failed ``log_batch`` stays buffered and is retried at the next
epoch and, with a bounded wait, at the end, so a tracking server that goes away mid-sweep does not
kill training.

A fenced logger (``guard``, the trial's lease check) sends nothing, a backlog included, until the
guard has verified the lease just before the send; when the lease is lost the guard raises and the
trial ``discard``s the buffer: epochs buffered by a trial whose driver lost the sweep are never sent.
"""

from __future__ import annotations

import logging
import numbers
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from sweeper.core.errors import one_line
from sweeper.record import names
from sweeper.record.retrying import retry
from sweeper.record.store import DEFAULT_TRACKING_URI, TrackingStore, fast_fail_http

__all__ = ["DEFAULT_TRACKING_URI", "TrackingStore", "fast_fail_http"]  # re-exported: callers name them here

log = logging.getLogger(__name__)

SEARCH_PAGE = 10_000  # runs per search_runs page; MLflow accepts up to 50,000


def no_run_links() -> None:
    """MLflow prints "View run ... / View experiment ..." whenever a run ends on an http(s) store:
    one pair per trial, repeating (with other URLs) the links sweeper prints once. Off for this
    process and the Ray workers it starts; a user who set the variable keeps their value."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def resolve_tracking_uri(cli_uri: str | None = None, spec_uri: str | None = None,
                         workdir: str | Path | None = None) -> str:
    """The URI of ``TrackingStore.resolve`` (for callers that still pass a string along)."""
    return TrackingStore.resolve(cli_uri, spec_uri, workdir).uri


def absolute_uri(uri: str, workdir: str | Path | None = None) -> str:
    """``uri`` as every process opens it (``TrackingStore.parse``)."""
    return TrackingStore.parse(uri, workdir).uri


# What MLflow's client reads from the environment to authenticate to a tracking server.
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                   "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH")


def credentials_from_env() -> dict[str, str]:
    """The driver's MLflow credentials, to hand to trials on other nodes (never logged)."""
    return {k: os.environ[k] for k in CREDENTIAL_VARS if k in os.environ}


def connect(uri: str | TrackingStore):
    """A checked MlflowClient on ``uri`` (``TrackingStore.client``): raises SweepError (one line)
    when the store cannot be reached or refuses our credentials. Called before any trial starts."""
    return TrackingStore.parse(uri).client()


# --- experiment and runs --------------------------------------------------------------------


def ensure_experiment(client, name: str, uri: str | TrackingStore) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=TrackingStore.parse(uri).artifact_location)
    except Exception:  # another process created it between our two calls (else re-raised)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def find_parent_run(client, experiment_id: str):
    runs = client.search_runs([experiment_id], filter_string=names.SWEEP_RUNS,
                              order_by=["attributes.start_time ASC"], max_results=10)
    return runs[0] if runs else None


def ensure_parent_run(client, experiment_id: str, name: str, spec_yaml: str, spec_hash: str) -> str:
    """The sweep's one parent run, found again by tag; its spec artifact and hash tag follow the
    spec that ran last (earlier versions stay as ``spec/<hash>.yaml``)."""
    from mlflow.entities import RunTag

    run = find_parent_run(client, experiment_id)
    if run is None:
        run = client.create_run(experiment_id, run_name=name,
                                tags={names.TAG_ROLE: names.ROLE_SWEEP, names.TAG_SPEC_HASH: spec_hash})
    run_id = run.info.run_id
    if run.data.tags.get(names.TAG_SPEC_HASH) != spec_hash or not _has_artifact(client, run_id, f"{names.ARTIFACT_SPEC}/{spec_hash}.yaml"):
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, f"{spec_hash}.yaml")
            path.write_text(spec_yaml)
            client.log_artifact(run_id, str(path), artifact_path=names.ARTIFACT_SPEC)
        client.log_batch(run_id, tags=[RunTag(names.TAG_SPEC_HASH, spec_hash)])
    return run_id


def _has_artifact(client, run_id: str, path: str) -> bool:
    folder, _, _ = path.rpartition("/")
    try:
        return any(a.path == path for a in client.list_artifacts(run_id, folder or None))
    except Exception as e:  # noqa: BLE001 - an unreadable artifact store just means "log it again"
        log.debug("could not list the artifacts of run %s (%s)", run_id, one_line(e))
        return False


def find_child_run(client, experiment_id: str, trial_key: str):
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{names.TAG_TRIAL_KEY}` = '{trial_key}'",
                              order_by=["attributes.start_time ASC"], max_results=10)
    return runs[0] if runs else None


def search_all_runs(client, experiment_id: str, filter_string: str, order_by: list[str] | None = None,
                    page_size: int = SEARCH_PAGE, deleted: bool = False) -> Iterator[Any]:
    """Every run matching ``filter_string`` (the deleted ones with ``deleted``), one page (one
    request) at a time: a caller that keeps less than the runs holds only a page. MLflow stores
    re-run the query with an offset per page, so few big pages beat many small ones."""
    from mlflow.entities import ViewType

    view = ViewType.DELETED_ONLY if deleted else ViewType.ACTIVE_ONLY
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, order_by=order_by,
                                  run_view_type=view, max_results=page_size, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def ensure_child_run(client, experiment_id: str, parent_run_id: str, trial_key: str,
                     trial_name: str, params: Mapping[str, Any], tags: Mapping[str, str] = ()) -> str:
    """The id of the child run of ``trial_key``, found by tag or created once (``open_child_run``)."""
    return open_child_run(client, experiment_id, parent_run_id, trial_key, trial_name, params, tags).info.run_id


def open_child_run(client, experiment_id: str, parent_run_id: str, trial_key: str,
                   trial_name: str, params: Mapping[str, Any], tags: Mapping[str, str] = ()):
    """The child run of ``trial_key``, found by tag or created once, with ``tags`` set and marked
    RUNNING. Params are logged only where missing (MLflow refuses to change one; the key hashes
    the config, so they agree). Returns the run as found or created, before those writes, whose
    tags and metrics are what a trial reads at its start (its state, attempts, logged steps)."""
    from mlflow.entities import Param, RunTag

    tags = {k: str(v) for k, v in dict(tags).items()}
    run = find_child_run(client, experiment_id, trial_key)
    if run is None:  # the tags go in with the run: one request fewer per new trial
        run = client.create_run(experiment_id, run_name=trial_name, tags={
            names.TAG_PARENT: parent_run_id, names.TAG_TRIAL_KEY: trial_key, names.TAG_ROLE: names.ROLE_TRIAL, **tags})
        tags = {}
    run_id = run.info.run_id
    have = run.data.params
    missing = [Param(k, _param_value(v)) for k, v in params.items() if k not in have]
    tag_list = [RunTag(k, v) for k, v in tags.items()]
    for i, chunk in enumerate(list(_chunks(missing, 100)) or ([[]] if tag_list else [])):
        client.log_batch(run_id, params=chunk, tags=tag_list if i == 0 else [])  # the tags with the first params
    if run.info.status != "RUNNING":
        client.update_run(run_id, status="RUNNING")
    return run


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# --- logging from inside a trial ------------------------------------------------------------


class TrialLogger:
    """Idempotent, buffered metric and tag logging for one child run.

    ``log_metrics`` never raises for a tracking failure: what could not be sent stays in the
    buffer and goes with the next call; ``flush(wait_s)`` retries until the buffer is empty or
    the wait is over (True when everything was written).

    ``guard`` (optional): called just before every send; False keeps the buffer for later, an
    exception (the lease was lost) propagates to the caller, who then ``discard``s.
    """

    def __init__(self, client, run_id: str, retry_every_s: float = 2.0,
                 guard: Callable[[], bool] | None = None, metric_keys: Iterable[str] | None = None):
        """``metric_keys``: the metrics the run holds, where the caller has just read the run
        (its steps are then read for those keys only: none for a new run)."""
        self.client = client
        self.run_id = run_id
        self.retry_every_s = retry_every_s
        self.guard = guard
        self._pending_metrics: list = []
        self._pending_tags: dict[str, str] = {}
        self._failed_since: float | None = None
        self.logged = self._load_logged(metric_keys)

    def _load_logged(self, keys: Iterable[str] | None = None) -> set[tuple[str, int]]:
        if keys is None:
            keys = self.client.get_run(self.run_id).data.metrics.keys()
        return {(k, m.step) for k in keys for m in self.client.get_metric_history(self.run_id, k)}

    def log_metrics(self, metrics: Mapping[str, Any], step: int, at: float | None = None, send: bool = True) -> bool:
        """Buffer and send ``metrics`` at ``step``, stamped ``at`` (Unix seconds; now when None):
        two loggers sending the same values, step and time write one row in MLflow's SQL stores.
        ``send=False`` only buffers: they go with the next send, in the same request."""
        from mlflow.entities import Metric

        now = int((time.time() if at is None else at) * 1000)
        queued = {(m.key, m.step) for m in self._pending_metrics}
        for key, value in metrics.items():
            if not _is_number(value) or (key, step) in self.logged or (key, step) in queued:
                continue
            self._pending_metrics.append(Metric(key, float(value), now, int(step)))
        return self.flush() if send else True

    def set_tags(self, tags: Mapping[str, Any], send: bool = True) -> bool:
        self._pending_tags.update({k: str(v) for k, v in tags.items()})
        return self.flush() if send else True

    @property
    def pending(self) -> int:
        return len(self._pending_metrics) + len(self._pending_tags)

    def discard(self) -> int:
        """Drop everything still buffered (the trial was fenced off); how many items were dropped."""
        dropped = self.pending
        self._pending_metrics, self._pending_tags = [], {}
        return dropped

    def flush(self, wait_s: float = 0.0) -> bool:
        return retry(self._try_send, wait_s, self.retry_every_s)

    def _try_send(self) -> bool:
        from mlflow.entities import RunTag

        if not self.pending:
            return True
        if self.guard is not None and not self.guard():
            return False  # kept until the lease is verified (the guard raises when it is lost)
        try:
            with fast_fail_http():
                if self._failed_since is not None:
                    # A batch that "failed" may have landed before the reply was lost: ask again
                    # what the run holds so that nothing is written twice.
                    self.logged |= self._load_logged({m.key for m in self._pending_metrics})
                    self._pending_metrics = [m for m in self._pending_metrics
                                             if (m.key, m.step) not in self.logged]
                tags = [RunTag(k, v) for k, v in self._pending_tags.items()]
                while self._pending_metrics or tags:
                    # the tags go with the last metrics, in one request where they fit (MLflow takes
                    # 1000 items, 100 of them tags), never before a metric
                    fits = len(self._pending_metrics) + min(len(tags), 100) <= 1000
                    tag_chunk, tags = (tags[:100], tags[100:]) if fits else ([], tags)
                    chunk = self._pending_metrics[:1000 - len(tag_chunk)]
                    self.client.log_batch(self.run_id, metrics=chunk, tags=tag_chunk)
                    self.logged |= {(m.key, m.step) for m in chunk}
                    self._pending_metrics = self._pending_metrics[len(chunk):]
                    for tag in tag_chunk:
                        del self._pending_tags[tag.key]
        except Exception as e:  # noqa: BLE001 - any tracking failure: keep the buffer, keep training (logged)
            if self._failed_since is None:  # once per outage, not once per retry
                self._failed_since = time.monotonic()
                log.warning("MLflow did not take the logs of run %s (%s); %d kept and sent again later",
                            self.run_id, one_line(e), self.pending)
            return False
        if self._failed_since is not None:
            log.info("MLflow took the logs of run %s again after %.0fs", self.run_id,
                     time.monotonic() - self._failed_since)
        self._failed_since = None
        return True

    def log_artifacts(self, local_dir: str | Path, artifact_path: str, wait_s: float = 0.0) -> bool:
        return self._call(lambda: self.client.log_artifacts(self.run_id, str(local_dir), artifact_path), wait_s)

    def log_artifact(self, local_path: str | Path, artifact_path: str, wait_s: float = 0.0) -> bool:
        return self._call(lambda: self.client.log_artifact(self.run_id, str(local_path), artifact_path), wait_s)

    def terminate(self, status: str, wait_s: float = 0.0) -> bool:
        """MLflow run status: FINISHED, FAILED or KILLED."""
        return self._call(lambda: self.client.set_terminated(self.run_id, status), wait_s)

    def _call(self, call: Callable[[], Any], wait_s: float) -> bool:
        errors: list[BaseException] = []

        def attempt() -> bool:
            if self.guard is not None and not self.guard():
                return False  # it goes out only once the lease is verified
            return _succeeds(call, errors)

        ok = retry(attempt, wait_s, self.retry_every_s)
        if not ok and errors:
            log.warning("MLflow refused a write to run %s for %.0fs (%s)", self.run_id, wait_s, one_line(errors[-1]))
        return ok


def _succeeds(call: Callable[[], Any], errors: list[BaseException] | None = None) -> bool:
    try:
        with fast_fail_http():
            call()
    except Exception as e:  # noqa: BLE001 - any tracking failure: the caller decides whether to wait (and logs)
        if errors is not None:
            errors.append(e)
        return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)  # numpy scalars too
