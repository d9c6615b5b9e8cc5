"""A trial's state in MLflow: the one place that reads it from a child run and writes how it ended.

Read: ``state_of(run)`` gives one of sweeper.states' trial states. The child run's ``status`` tag
(design.md: finished | diverged | failed) decides when it is there, and ``sweeper.early_stopped``
makes a finished trial "stopped early"; without the tag the run's MLflow status says running,
failed, or interrupted (KILLED by a stopped driver, or left RUNNING by a killed one and found
KILLED later); no run at all is pending. `status`, `watch`, the driver, planning and the report
all read a trial's state here and compare it with sweeper.states' names.

Write: whoever learns how a trial ended writes it here, and nowhere else:

- the worker, when ``run_trial`` returns (finished or diverged): ``mark_trained``, through the
  trial's TrialLogger, whose buffer and bounded retries survive a tracking outage;
- the driver's Tune callback: ``mark_stopped_early`` (the scheduler ended it) and
  ``mark_failed`` (Ray's retries are spent);
- the driver when it stops: ``mark_interrupted`` (the trial resumes from its checkpoint next time).

The ``status`` tag is written after everything else a trial logs: a run that has it is done for
every later `sweeper run`.
"""

from __future__ import annotations

from typing import Any

from sweeper.record import names
from sweeper.core.states import DIVERGED, FAILED, FINISHED, INTERRUPTED, PENDING, RUNNING, STOPPED_EARLY

# The MLflow run status each end leaves (a run's own lifecycle, beside the status tag).
_RUN_STATUS = {FINISHED: "FINISHED", DIVERGED: "FINISHED", STOPPED_EARLY: "FINISHED", FAILED: "FAILED",
               INTERRUPTED: "KILLED"}


def state_of(run: Any) -> str:
    """The state of the trial whose child run is ``run`` (None: no run yet)."""
    if run is None:
        return PENDING
    tags = run.data.tags
    status = tags.get(names.TAG_STATUS)
    if status == FINISHED and tags.get(names.TAG_EARLY_STOPPED) == "true":
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
    metrics, so its last and best ``test_acc`` stand in for final_test_acc and best_test_acc."""
    client.set_tag(run_id, names.TAG_EARLY_STOPPED, "true")
    history = client.get_metric_history(run_id, "test_acc")
    if history:
        accs = [m.value for m in sorted(history, key=lambda m: m.step)]
        client.log_metric(run_id, "final_test_acc", accs[-1], step=names.FINAL_STEP)
        client.log_metric(run_id, "best_test_acc", max(accs), step=names.FINAL_STEP)
    client.set_tag(run_id, names.TAG_STATUS, FINISHED)
    client.set_terminated(run_id, _RUN_STATUS[STOPPED_EARLY])


def mark_failed(client, run_id: str) -> None:
    """The trial failed for good: Ray's retries are spent, or `sweeper train` saw it raise (its
    last error is on the run already: the worker wrote ``error_tags`` when it raised)."""
    client.set_tag(run_id, names.TAG_STATUS, FAILED)
    client.set_terminated(run_id, _RUN_STATUS[FAILED])


def mark_interrupted(client, run_id: str) -> None:
    """The driver stopped while the trial ran: no status tag, so the next run resumes it."""
    client.set_terminated(run_id, _RUN_STATUS[INTERRUPTED])
