"""A trial's state in MLflow: the one place that reads it from a child run and writes how it ended.

Read: ``state_of(run)`` gives one of sweeper.core.states' trial states. The child run's ``status``
tag (finished | diverged | stopped_early | failed) decides when it is there; runs written by earlier
versions say a scheduler's stop as ``finished`` with ``sweeper.early_stopped`` = "true" (or as
``stopped early``), read as stopped_early too; without the tag the run's MLflow status says running,
failed, or interrupted (KILLED by a stopped driver, or left RUNNING by a killed one and found
KILLED later); no run at all is pending. `status`, `watch`, the driver, planning and the report
all read a trial's state here and compare it with sweeper.core.states' names.

Write: whoever learns how a trial ended writes it here, and nowhere else:

- the worker, when ``run_trial`` returns (finished or diverged): ``mark_trained``, through the
  trial's TrialLogger, whose buffer and bounded retries survive a tracking outage;
- the driver's Tune callback: ``mark_stopped_early`` (the scheduler ended it) and
  ``mark_failed`` (Ray's retries are spent);
- the driver when it stops: ``mark_interrupted`` (the trial resumes from its checkpoint next time).

The ``status`` tag is written after everything else a trial logs: a run that has it is done for
every later `sweeper run`.

What the driver learns it must not lose to a tracking hiccup: Ray's word that a trial ended
without an error (a scheduler stop, unless the worker recorded the trial as trained) or failed
for good exists only in the driver's memory. ``settle_driver_end`` first writes it to
``PendingEnds``, one small file per trial in the sweep's storage (``<storage>/<sweep>/pending-ends/``,
a path or a URI, beside the trials' checkpoints), then writes the state to MLflow with
``retrying.retry`` and removes the file. A write that still fails is logged and its file stays:
the driver's exit and the next `sweeper run` settle the trial from it, before anything is planned,
with the same rule applied to the run as its worker left it (``_end_for``). A stopped trial is
therefore never trained again, whatever the store did at the moment of the stop.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from sweeper.core.uris import is_remote_storage, storage_folder
from sweeper.core.errors import one_line
from sweeper.core.states import (DIVERGED, DONE, FAILED, FINISHED, INTERRUPTED, OLD_STOPPED_EARLY, PENDING, RUNNING,
                                 STOPPED_EARLY)
from sweeper.core import settings
from sweeper.record import names, retrying, tracking

log = logging.getLogger(__name__)

# How long the driver retries writing a trial's end before leaving it to PendingEnds.
SETTLE_EVERY_S = 2.0

# The MLflow run status each end leaves (a run's own lifecycle, beside the status tag).
_RUN_STATUS = {FINISHED: "FINISHED", DIVERGED: "FINISHED", STOPPED_EARLY: "FINISHED", FAILED: "FAILED",
               INTERRUPTED: "KILLED"}


def state_of(run: Any) -> str:
    """The state of the trial whose child run is ``run`` (None: no run yet)."""
    if run is None:
        return PENDING
    tags = run.data.tags
    status = tags.get(names.TAG_STATUS)
    if status == OLD_STOPPED_EARLY or (status == FINISHED and tags.get(names.TAG_EARLY_STOPPED) == "true"):
        return STOPPED_EARLY
    if status:
        return status
    return {"RUNNING": RUNNING, "FAILED": FAILED}.get(run.info.status, INTERRUPTED)


def error_tags(error: BaseException) -> dict[str, str]:
    """What a trial's run says about the exception it raised (status prints it under the trial)."""
    return {names.TAG_LAST_ERROR: f"{type(error).__name__}: {error}"[:500]}


# --- the worker: through its TrialLogger -----------------------------------------------------


def mark_trained(logger, status: str, wait_s: float) -> bool:
    """``run_trial`` returned ``status`` (finished or diverged): the status tag, then the run
    FINISHED, each sent through ``logger`` with retries for up to ``wait_s``. False when tracking
    did not take them in time (what was not sent stays in the logger's buffer)."""
    return (logger.set_tags({names.TAG_STATUS: status}) and logger.flush(wait_s=wait_s)
            and logger.terminate(_RUN_STATUS[FINISHED], wait_s=wait_s))


# --- the driver: a client, one request each ---------------------------------------------------


def mark_stopped_early(client, run_id: str) -> None:
    """The scheduler ended the trial before its last epoch, without an error: it has no final
    metrics, so its last and best ``test_acc`` stand in for final_test_acc and best_test_acc.
    ``sweeper.early_stopped`` is still written, for readers of earlier versions (they read the
    stop from it)."""
    client.set_tag(run_id, names.TAG_EARLY_STOPPED, "true")
    history = client.get_metric_history(run_id, "test_acc")
    if history:
        accs = [m.value for m in sorted(history, key=lambda m: m.step)]
        client.log_metric(run_id, "final_test_acc", accs[-1], step=names.FINAL_STEP)
        client.log_metric(run_id, "best_test_acc", max(accs), step=names.FINAL_STEP)
    client.set_tag(run_id, names.TAG_STATUS, STOPPED_EARLY)
    client.set_terminated(run_id, _RUN_STATUS[STOPPED_EARLY])


def mark_failed(client, run_id: str) -> None:
    """The trial failed for good: Ray's retries are spent, or `sweeper train` saw it raise (its
    last error is on the run already: the worker wrote ``error_tags`` when it raised)."""
    client.set_tag(run_id, names.TAG_STATUS, FAILED)
    client.set_terminated(run_id, _RUN_STATUS[FAILED])


def mark_attempt_failed(client, run_id: str) -> None:
    """One attempt failed and nothing retries it now (an array member that failed alone, the
    others going on): no status tag, so the next run trains it again; its error is on the run."""
    client.set_terminated(run_id, _RUN_STATUS[FAILED])


def mark_interrupted(client, run_id: str) -> None:
    """The driver stopped while the trial ran: no status tag, so the next run resumes it."""
    client.set_terminated(run_id, _RUN_STATUS[INTERRUPTED])


# --- the driver's ends, made durable ------------------------------------------------------------

COMPLETED = "completed"  # what Ray said: the trial ended without an error (trained, or stopped)
ERRORED = "errored"  # it raised, and Ray's retries are spent


def _end_for(run: Any, ray_end: str) -> str | None:
    """The state to write for a trial Ray reported ended (``ray_end``), given its run as the
    worker left it; None when there is nothing to write (no run, or the worker recorded it done)."""
    if run is None or state_of(run) in DONE:
        return None
    return FAILED if ray_end == ERRORED else STOPPED_EARLY  # ended without its epochs: a scheduler stop


def _write_end(client, run_id: str, state: str) -> None:
    {FAILED: mark_failed, STOPPED_EARLY: mark_stopped_early, INTERRUPTED: mark_interrupted}[state](client, run_id)


def write_end_retried(client, run_id: str, state: str, wait_s: float | None = None,
                      every_s: float = SETTLE_EVERY_S, level: int = logging.WARNING) -> bool:
    """``state`` (stopped early, failed or interrupted) written on ``run_id``, retried for ``wait_s``; whether it
    went in. The last failure's cause is logged once, at ``level``."""
    wait_s = settings.SETTLE_WAIT_S.get() if wait_s is None else wait_s
    last: list[BaseException] = []

    def attempt() -> bool:
        try:
            with tracking.fast_fail_http():
                _write_end(client, run_id, state)
        except Exception as e:  # noqa: BLE001 - any tracking failure is retried; the last is logged below
            last[:] = [e]
            return False
        return True

    ok = retrying.retry(attempt, wait_s, every_s)
    if not ok:
        log.log(level, "could not record run %s as %s in MLflow within %.0fs (%s)", run_id, state, wait_s,
                one_line(last[0]) if last else "no answer")
    return ok


class PendingEnds:
    """Trial ends the driver learned from Ray and has not yet seen written to MLflow: one JSON
    file per trial key under ``root`` (a local folder or any URI pyarrow opens, as the trials'
    checkpoint folders). Written before the MLflow write, removed after it."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")

    def _fs(self):
        import pyarrow.fs as pafs

        if is_remote_storage(self.root):
            return pafs.FileSystem.from_uri(self.root)
        return pafs.LocalFileSystem(), storage_folder(self.root)

    def record(self, key: str, ray_end: str) -> bool:
        body = json.dumps({"key": key, "ray_end": ray_end, "at": time.time()}).encode()
        try:
            fs, base = self._fs()
            fs.create_dir(base, recursive=True)
            with fs.open_output_stream(f"{base}/{key}.json.tmp") as out:
                out.write(body)
            fs.move(f"{base}/{key}.json.tmp", f"{base}/{key}.json")  # whole or absent
        except Exception as e:  # noqa: BLE001 - logged; the MLflow write is still tried
            log.warning("could not keep the end of trial %s in %s (%s); it depends on MLflow alone",
                        key, self.root, one_line(e))
            return False
        return True

    def clear(self, key: str) -> None:
        try:
            fs, base = self._fs()
            fs.delete_file(f"{base}/{key}.json")
        except FileNotFoundError:  # already settled and cleared
            pass
        except Exception as e:  # noqa: BLE001 - logged; a stale entry is harmless: a done run is left alone
            log.info("could not remove %s/%s.json (%s)", self.root, key, one_line(e))

    def pending(self) -> dict[str, str]:
        """trial key -> what Ray said (COMPLETED or ERRORED), for every end not yet cleared. An
        unreadable folder is an error: planning without it could train a stopped trial again."""
        import pyarrow.fs as pafs

        fs, base = self._fs()
        if fs.get_file_info(base).type == pafs.FileType.NotFound:
            return {}
        found = {}
        for info in fs.get_file_info(pafs.FileSelector(base)):
            if not info.path.endswith(".json"):
                continue
            with fs.open_input_stream(info.path) as stream:
                try:
                    entry = json.loads(stream.read())
                    found[entry["key"]] = entry["ray_end"]
                except (ValueError, KeyError, TypeError) as e:  # a torn file from a killed driver
                    log.warning("ignoring unreadable %s (%s)", info.path, one_line(e))
        return found


def settle_driver_end(client, experiment_id: str, key: str, ray_end: str, pending: PendingEnds | None,
                      wait_s: float | None = None, name: str | None = None) -> tuple[str | None, Any]:
    """Ray reported trial ``key`` ended (``ray_end``): record that durably, read its run, write
    the state it ends in, with retries. Returns (the state it ends in, or None when unknown
    because MLflow could not be read; the run as read, or None)."""
    wait_s = settings.SETTLE_WAIT_S.get() if wait_s is None else wait_s
    if pending is not None:
        pending.record(key, ray_end)
    found: list[Any] = []
    last: list[BaseException] = []

    def read() -> bool:
        try:
            with tracking.fast_fail_http():
                found[:] = [tracking.find_child_run(client, experiment_id, key)]
        except Exception as e:  # noqa: BLE001 - retried; the last cause is logged below
            last[:] = [e]
            return False
        return True

    trial = f"{name} ({key})" if name else key
    if not retrying.retry(read, wait_s, SETTLE_EVERY_S):
        log.warning("could not read trial %s from MLflow to record how it ended (%s)%s", trial,
                    one_line(last[0]) if last else "no answer", _kept(pending))
        return None, None
    run = found[0]
    state = _end_for(run, ray_end)
    if state is None:  # the worker recorded it (or no run): nothing to write
        if pending is not None:
            pending.clear(key)
        return state_of(run) if run is not None else None, run
    if write_end_retried(client, run.info.run_id, state, wait_s):
        if pending is not None:
            pending.clear(key)
    elif pending is not None:
        log.warning("trial %s ended %s%s", trial, state, _kept(pending))
    return state, run


def _kept(pending: PendingEnds | None) -> str:
    if pending is None:
        return ""
    return f"; kept in {pending.root}: the next `sweeper run` records it before planning"


def settle_pending(client, by_key: dict[str, Any], pending: PendingEnds, write: bool = True,
                   wait_s: float | None = None, level: int = logging.WARNING) -> tuple[dict[str, Any], dict[str, str]]:
    """Write the ends an earlier driver kept in ``pending`` onto the runs ``by_key`` holds
    (trial key -> run, as read now). Returns (run id -> the run read again after its write;
    trial key -> the state of each end that could not be written, to plan with). ``write=False``
    (a dry run) writes nothing and returns every such state. A failed write is logged at
    ``level`` (the driver's exit says it in its last line instead)."""
    wait_s = settings.SETTLE_WAIT_S.get() if wait_s is None else wait_s
    fresh: dict[str, Any] = {}
    unwritten: dict[str, str] = {}
    store_down = False
    for key, ray_end in pending.pending().items():
        run = by_key.get(key)
        state = _end_for(run, ray_end)
        if state is None:
            if write:
                pending.clear(key)
            continue
        if not write or store_down:  # after one write that failed, the store is down for the rest
            unwritten[key] = state
            continue
        if write_end_retried(client, run.info.run_id, state, wait_s, level=level):
            log.info("trial %s: recorded as %s from %s", run.info.run_name or key, state, pending.root)
            pending.clear(key)
            try:
                with tracking.fast_fail_http():
                    fresh[run.info.run_id] = client.get_run(run.info.run_id)
            except Exception as e:  # noqa: BLE001 - logged; the state is known, planning uses it
                log.info("could not read run %s again (%s)", run.info.run_id, one_line(e))
                unwritten[key] = state
        else:
            unwritten[key], store_down = state, True
    return fresh, unwritten
