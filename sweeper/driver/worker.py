"""What trains inside a Ray trial (or in this process for `sweeper train`): one trial, or an array
of trials, each tracked by a ``sweeper.driver.tracked.TrackedTrial``.

A solo trial is ``trainables.loop.run_trial``; an array is one ``trainables.array.run_array`` call for
all its members, each member tracked exactly as a solo trial (its own child run, attempts,
checkpoint folder, epochs and final results), with the child run's ``sweeper.array`` tag added,
and one Tune report per member per epoch carrying its ``trial_key`` (the driver's callback turns
it back into the member's line; Tune sees one trial). A member whose run is already done
(finished in an earlier attempt of its array) is left out: it is never trained again.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

from sweeper.core import settings
from sweeper.core.trial import Trial
from sweeper.driver.context import SweepContext
from sweeper.driver.lease import LeaseLost
from sweeper.driver.tracked import TrackedTrial
from sweeper.record import system_metrics, tracking

log = logging.getLogger(__name__)


def run_tracked_trial(ctx: SweepContext, trial: Trial, node_id: str,
                      tune_report: Callable[[dict], None] | None = None) -> dict:
    """Train one trial with tracking and its keyed checkpoint folder; run_trial's final metrics."""
    return run_tracked(ctx, [trial], node_id, cpus=ctx.cpus_per_trial, tune_report=tune_report)[trial.key]


def run_tracked(ctx: SweepContext, trials: list[Trial], node_id: str, *, cpus: float,
                tune_report: Callable[[dict], None] | None = None, array: str | None = None) -> dict[str, dict]:
    """``trials`` trained with tracking: alone (``array`` None: one trial, trained even when its run
    is done, whose checkpoint then returns its final metrics untrained), or as the array
    ``array``. Final metrics by trial key."""
    import torch

    from trainables import run_trial
    from trainables.loop import release_cuda_memory

    log.info("startup: torch and the trainables imported")
    torch.set_num_threads(max(1, int(cpus)))
    os.environ.update(ctx.tracking_env)  # MLflow reads credentials from the environment per request
    settings.apply(ctx.settings)  # the driver's, not this node's
    tracking.no_run_links()  # a worker on another node did not inherit the driver's environment
    fence = ctx.fence()
    if fence is not None:
        fence()  # before the first write: a retried trial of a driver that lost the sweep stops here
    tracked: list[TrackedTrial] = []
    try:
        for trial in trials:
            tracked.append(TrackedTrial(ctx, trial, node_id, fence, tune_report).open())
        todo = [t for t in tracked if array is None or not t.done]
        for member in todo:
            member.start(array)
        return _finish(todo, _train(todo, array is not None, fence, run_trial)) if todo else {}
    finally:
        for member in tracked:
            member.close()
        try:
            release_cuda_memory()  # the next trial Ray runs in this process starts with a clean card
        except Exception as e:  # noqa: BLE001 - after a CUDA fault, the trial's own error is the one raised (logged)
            log.warning("CUDA memory not released after the trial (%s)", e)


def _train(todo: list[TrackedTrial], as_array: bool, fence, run_trial) -> list[dict]:
    """``run_trial`` (one trial) or ``run_array``; on a failure every member records it."""
    try:
        with system_metrics.monitored([t.logger.run_id for t in todo], todo[0].ctx.tracking_uri,
                                      resume=[t.logger.run_id for t in todo if t.has_system_metrics]):
            if as_array:
                from trainables.array import run_array

                finals = run_array([t.trial.config for t in todo], [t.report for t in todo],
                                   [t.store.local_dir for t in todo], fence=fence)
            else:
                (solo,) = todo
                finals = [run_trial(solo.trial.config, solo.report, solo.store.local_dir, fence=fence)]
        if fence is not None:
            fence()  # the end's results go in under the same lease
    except LeaseLost:
        for member in todo:
            member.lost()
        raise
    except BaseException as e:  # SystemExit too: Ray stops an early-stopped trial that way
        for member in todo:
            member.failed(e)
        raise
    return finals


def _finish(todo: list[TrackedTrial], finals: list[dict | BaseException]) -> dict[str, dict]:
    """Every member's final results, even if one member's fail (the first error raised after). A
    member whose own work raised inside the array (``run_array`` gives its exception in its place)
    failed alone: its run ends FAILED with its error, not retried by Ray with the others (the next
    `sweeper run` trains it again, from its checkpoint)."""
    done: dict[str, dict] = {}
    first_error: BaseException | None = None
    for member, final in zip(todo, finals):
        if isinstance(final, BaseException):
            log.warning("%s failed inside its array (%s); the others went on", member.trial.name, final)
            member.failed(final)
            member.end_failed()
            continue
        try:
            member.finish(final)
            done[member.trial.key] = final
        except LeaseLost as e:
            member.lost("its final results were not written")
            first_error = first_error or e
        except Exception as e:  # noqa: BLE001 - raised below, after the others
            first_error = first_error or e
    if first_error is not None:
        raise first_error
    return done
