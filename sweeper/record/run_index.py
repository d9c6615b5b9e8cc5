"""A sweep's child runs, read in a handful of requests however many trials it has.

Listing a sweep's child runs with ``search_runs`` makes the tracking server load and serialise
every param, tag and metric of every run: at 10,000 trials that is ~75 MB of JSON and 20-30 s of
server CPU per command, most of it for runs that finished long ago. A FINISHED child run does not
change again: the worker and the driver write a trial's status tag, final metrics and artifacts
before ``set_terminated``, which stamps ``end_time``; the one later write, the spec-version tag
(``sweeper.record.versions``), is made by the driver, which then rewrites this index.

So the driver keeps an index on the sweep's parent run, the artifact ``sweeper/runs.json.gz``:
the data of every FINISHED child run as of a time ``as_of`` (taken before the reads it was built
from), and the ids of the runs that were not finished then (``open``). A reader loads it and asks
the server only for what may differ since: runs that are not FINISHED now (running, killed,
failed), the runs that were open at ``as_of`` (by id: they may have finished since), runs
started after ``as_of - slack_ms()`` (created since; the clock-skew bound ``SWEEPER_CLOCK_SKEW_S``,
for clocks that disagree between the nodes that stamp ``start_time``) and deleted runs; a run deleted at the last write and not
any more (restored) is read by id. How recently the indexed runs ended does not matter: a run
FINISHED at ``as_of`` is in the index and does not change, so a sweep indexed right after its
trials ended reads back as fast as one indexed long after. Without an index (a sweep from before
it existed, one of an older format, a file cut short by a concurrent write) the reader lists
every run, as before: slower, never wrong.

What the readers get is a :class:`IndexedRun` per run: the parts of ``mlflow.entities.Run``
that sweeper reads (``info.run_id`` ..., ``data.tags``/``params``/``metrics``, the latest
metrics' steps), built from the index or from a search result alike.
"""

from __future__ import annotations

import gzip
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable

from sweeper.core import settings
from sweeper.core.errors import one_line
from sweeper.record import names
from sweeper.record import tracking

log = logging.getLogger(__name__)

FORMAT = 2  # bump when the layout below changes; an index of another format is not used (2: ``open``)
IDS_PER_SEARCH = 200  # run ids in one ``attributes.run_id IN (...)`` filter
_TRIALS = names.TRIAL_RUNS


@dataclass
class RunInfo:
    run_id: str
    run_name: str | None
    status: str
    start_time: int | None
    end_time: int | None
    artifact_uri: str | None
    experiment_id: str | None


@dataclass
class RunData:
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    steps: dict[str, tuple[int, int]] = field(default_factory=dict)  # metric -> (step, timestamp) of its latest point

    @property
    def _metric_objs(self) -> list[SimpleNamespace]:  # as on mlflow.entities.RunData
        return [SimpleNamespace(key=k, value=v, step=self.steps.get(k, (0, 0))[0],
                                timestamp=self.steps.get(k, (0, 0))[1]) for k, v in self.metrics.items()]


@dataclass
class IndexedRun:
    info: RunInfo
    data: RunData

    @classmethod
    def of(cls, run: Any) -> "IndexedRun":
        """From an ``mlflow.entities.Run`` (or an IndexedRun)."""
        if isinstance(run, IndexedRun):
            return run
        info, data = run.info, run.data
        return cls(RunInfo(info.run_id, info.run_name, info.status, info.start_time, info.end_time,
                           info.artifact_uri, info.experiment_id),
                   RunData(dict(data.tags), dict(data.params), dict(data.metrics),
                           {m.key: (int(m.step), int(m.timestamp)) for m in data._metric_objs}))

    def to_json(self) -> dict[str, Any]:
        i, d = self.info, self.data
        return {"id": i.run_id, "name": i.run_name, "status": i.status, "start": i.start_time, "end": i.end_time,
                "uri": i.artifact_uri, "exp": i.experiment_id, "tags": d.tags, "params": d.params,
                "metrics": {k: [v, *d.steps.get(k, (0, 0))] for k, v in d.metrics.items()}}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> "IndexedRun":
        metrics = row["metrics"]
        return cls(RunInfo(row["id"], row["name"], row["status"], row["start"], row["end"], row["uri"], row["exp"]),
                   RunData(row["tags"], row["params"], {k: float(v[0]) for k, v in metrics.items()},
                           {k: (int(v[1]), int(v[2])) for k, v in metrics.items()}))


@dataclass
class Index:
    as_of: int  # ms since the epoch, taken before the reads the index was built from
    runs: dict[str, IndexedRun]  # run_id -> a FINISHED child run
    deleted: set[str]  # run ids deleted at as_of
    open: set[str] = field(default_factory=set)  # run ids active but not FINISHED at as_of


# --- reading ------------------------------------------------------------------------------


def child_runs(client: Any, experiment_id: str, parent_run_id: str | None = None) -> list[IndexedRun]:
    """Every active child run of the sweep, oldest first: the index plus what changed since,
    or every run listed when there is no usable index. ``parent_run_id``: the sweep's parent
    run, when the caller knows it (saves a search)."""
    return _read(client, experiment_id, parent_run_id)[0]


def trial_runs(client: Any, experiment_id: str, parent_run_id: str | None = None) -> dict[str, Any]:
    """trial_key -> its child run, for every trial MLflow knows in this experiment."""
    return by_trial_key(child_runs(client, experiment_id, parent_run_id))


def by_trial_key(runs: Iterable[Any]) -> dict[str, Any]:
    """trial_key -> its run; should a key have several (a store edited by hand), the oldest."""
    found: dict[str, Any] = {}
    for run in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)):
        found.setdefault(run.data.tags.get(names.TAG_TRIAL_KEY), run)
    return found


def _read(client: Any, experiment_id: str, parent_run_id: str | None) -> tuple[list[IndexedRun], set[str]]:
    """(the runs, the ids of the deleted child runs)."""
    if parent_run_id is None:
        parent = tracking.find_parent_run(client, experiment_id)
        parent_run_id = parent.info.run_id if parent is not None else None
    index = load_index(client, parent_run_id) if parent_run_id is not None else None
    deleted = {r.info.run_id for r in search(client, experiment_id, _TRIALS, deleted=True)}
    if index is None:
        return _oldest_first(search(client, experiment_id, _TRIALS)), deleted
    since = index.as_of - slack_ms()
    fresh = search(client, experiment_id, f"{_TRIALS} and attributes.status != 'FINISHED'")
    fresh += search(client, experiment_id, f"{_TRIALS} and attributes.start_time > {since}")
    seen = {run.info.run_id for run in fresh}
    fresh += search_ids(client, experiment_id, index.open - seen - deleted)
    runs = {run_id: run for run_id, run in index.runs.items() if run_id not in deleted}
    runs.update({run.info.run_id: run for run in fresh})
    for run_id in index.deleted - deleted - runs.keys():  # deleted then, not now: restored (or purged)
        restored = _get_active(client, run_id)
        if restored is not None:
            runs[run_id] = restored
    return _oldest_first(runs.values()), deleted


def load_index(client: Any, parent_run_id: str) -> Index | None:
    """The index on the sweep's parent run; None when absent or unusable."""
    from sweeper.record.readback import quiet_downloads

    where = f"{names.ARTIFACT_INDEX_DIR}/{names.ARTIFACT_INDEX_NAME} on parent run {parent_run_id}"
    with tempfile.TemporaryDirectory(prefix="sweeper-index-") as tmp, quiet_downloads():
        try:
            path = client.download_artifacts(parent_run_id, f"{names.ARTIFACT_INDEX_DIR}/{names.ARTIFACT_INDEX_NAME}", tmp)
        except Exception as e:  # noqa: BLE001 - no index yet (or not reachable): list every run instead
            log.info("no run index read (%s): %s; listing every run", where, one_line(e))
            return None
        try:
            data = json.loads(_json_bytes(Path(path).read_bytes()))
            if data.get("format") != FORMAT:
                log.info("run index %s is of format %r, not %r; listing every run", where, data.get("format"), FORMAT)
                return None
            return Index(int(data["as_of"]), {row["id"]: IndexedRun.from_json(row) for row in data["runs"]},
                         set(data["deleted"]), set(data["open"]))
        except Exception as e:  # noqa: BLE001 - one cut short or damaged: list every run instead (logged)
            log.warning("run index %s is unreadable (%s); listing every run instead (slower, never wrong)",
                        where, one_line(e))
            return None


def _json_bytes(raw: bytes) -> bytes:
    """The index's JSON from the downloaded file. An S3 store behind the MLflow server keeps
    ``.gz`` objects with Content-Encoding: gzip, so the client's HTTP layer hands back the JSON
    already decoded; and MLflow's presigned download first sizes the file to the object's
    (compressed) length, so a small index arrives followed by NUL bytes."""
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    return raw.rstrip(b"\x00")


# --- writing (the driver) -----------------------------------------------------------------


def write_index(client: Any, experiment_id: str, parent_run_id: str, runs: Iterable[Any] | None = None,
                read_at_ms: int | None = None) -> int:
    """Record the FINISHED child runs on the parent run; returns how many. ``runs``: every child
    run as it is now, when the caller holds them (after changing their tags), and
    ``read_at_ms``, the time (``now_ms()``) before it read them; else they are read here (the last
    index plus what changed since)."""
    as_of = read_at_ms if runs is not None and read_at_ms is not None else now_ms()
    if runs is None:
        listed, deleted = _read(client, experiment_id, parent_run_id)
    else:
        listed = [IndexedRun.of(r) for r in runs]
        deleted = {r.info.run_id for r in search(client, experiment_id, _TRIALS, deleted=True)}
    finished = [r for r in listed if r.info.status == "FINISHED"]
    still_open = sorted(r.info.run_id for r in listed if r.info.status != "FINISHED" and r.info.run_id not in deleted)
    body = {"format": FORMAT, "as_of": as_of, "deleted": sorted(deleted), "open": still_open,
            "runs": [r.to_json() for r in finished]}
    with tempfile.TemporaryDirectory(prefix="sweeper-index-") as tmp:
        path = Path(tmp, names.ARTIFACT_INDEX_NAME)
        path.write_bytes(gzip.compress(json.dumps(body, separators=(",", ":")).encode(), compresslevel=6))
        client.log_artifact(parent_run_id, str(path), names.ARTIFACT_INDEX_DIR)
    return len(finished)


def slack_ms() -> int:
    """Runs that started this long before the index was written are read again: the bound on how
    far two hosts' clocks may disagree (``SWEEPER_CLOCK_SKEW_S``, shared with the lease)."""
    return int(settings.CLOCK_SKEW_S.get() * 1000)


def now_ms() -> int:
    return int(time.time() * 1000)


# --- searching ----------------------------------------------------------------------------


def search(client: Any, experiment_id: str, filter_string: str, deleted: bool = False) -> list[IndexedRun]:
    return [IndexedRun.of(r) for r in tracking.search_all_runs(client, experiment_id, filter_string, deleted=deleted)]


def search_ids(client: Any, experiment_id: str, run_ids: Iterable[str]) -> list[IndexedRun]:
    """The active child runs among ``run_ids``, a few hundred ids per request."""
    ids = sorted(run_ids)
    found = []
    for at in range(0, len(ids), IDS_PER_SEARCH):
        quoted = ", ".join(f"'{run_id}'" for run_id in ids[at:at + IDS_PER_SEARCH])
        found += search(client, experiment_id, f"{_TRIALS} and attributes.run_id IN ({quoted})")
    return found


def _get_active(client: Any, run_id: str) -> IndexedRun | None:
    try:
        run = client.get_run(run_id)
    except Exception:  # noqa: BLE001 - purged for good
        return None
    return IndexedRun.of(run) if run.info.lifecycle_stage == "active" else None


def _oldest_first(runs: Iterable[IndexedRun]) -> list[IndexedRun]:
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))
