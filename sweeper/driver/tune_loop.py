"""Ray Tune's loop over the trials a sweep has left: here, or (``--address ray://``) in a task on
the head (``sweeper.driver.ray_client``). One ``Tuner`` per `sweeper run`, one grid point per
remaining trial or array; we do not use ``Tuner.restore``: its pickled experiment state ties a
resume to the exact param space of the first run, while a trial's identity already lives in
MLflow and in its checkpoint folder. The trials travel to the workers as the plan built them
(``tune.with_parameters``); Tune's param space holds only their keys."""

from __future__ import annotations

import contextlib
import logging
from typing import Mapping

from sweeper.core import settings
from sweeper.core.trial import Trial
from sweeper.driver import cluster_address
from sweeper.driver.context import SweepContext
from sweeper.driver.ray_setup import array_points
from sweeper.driver.trainable import ray_trainable
from sweeper.driver.trial_events import progress_callback
from sweeper.plan import arrays as plan_arrays
from sweeper.plan.search import scheduler, searcher
from sweeper.record import readback
from sweeper.views import terminal

log = logging.getLogger(__name__)


def fit_here_or_on_head(address, signals, spec, ctx: SweepContext, client, remaining: list[Trial],
                        samples_left: int, storage_root: str, done_before: list[tuple],
                        handle_signals: bool = True, ray_log: bool = True,
                        lease_fence=None, waiting: str = "", runs: Mapping | None = None) -> tuple[set[str], bool]:
    """Tune's loop here, or, through Ray Client, in a task on the head. ``lease_fence``: the
    driver's own lease fence, which knows the heartbeats it wrote and so verifies at once; the
    Tune callback checks with it here (on the head it has a fence of its own). ``waiting``: the
    preflight's reason no node can hold a trial yet, repeated on the progress lines here.
    ``runs``: trial key -> its child run as the plan read it, where the epochs each trial has
    done come from (only trials at the same epoch share an array)."""
    epochs_done = readback.epochs_done(runs or {})
    if cluster_address.is_ray_client(address):
        from sweeper.driver import ray_client

        return ray_client.fit_on_head(fit, signals, spec=spec, ctx=ctx, remaining=remaining,
                                      sampled_todo=samples_left, storage_root=storage_root,
                                      done_before=done_before, epochs_done=epochs_done)
    with signals.stopping_tune_here() if handle_signals else contextlib.nullcontext():
        return fit(spec, ctx, client, remaining, samples_left, storage_root, done_before, ray_log, lease_fence,
                   waiting, epochs_done)


def fit(spec, ctx: SweepContext, client, remaining: list[Trial], samples_left: int, storage_root: str,
        done_before: list[tuple] = (), ray_log: bool = True, lease_fence=None,
        waiting: str = "", epochs_done: Mapping[str, int] | None = None) -> tuple[set[str], bool]:
    """The trials' keys Tune ran (and those it was given), and whether it was interrupted.
    ``epochs_done``: trial key -> epochs its run has reported (absent: fresh), for the arrays."""
    from ray import tune

    search = searcher(spec)
    plan = search.tune_search(spec, remaining, client, ctx.experiment_id, samples_left)
    param_space = plan.param_space
    if plan.note:
        terminal.say(plan.note)
    units = plan_arrays.plan_units(spec, remaining, terminal.say, progress=epochs_done)  # None: every trial solo
    extra, resources = {}, {"cpu": float(spec.resources.cpu), "gpu": float(spec.resources.gpu)}
    if units is not None:  # arrays: a grid point per array or solo trial, each with its own resources
        extra, resources = array_points(units, spec)
        param_space = {"grid": tune.grid_search([u.grid_point for u in units])}

    trainable = tune.with_resources(tune.with_parameters(ray_trainable, ctx=ctx, grid=plan.grid,
                                                         name_axes=spec.varying_axes(), **extra),
                                    resources)
    progress = progress_callback(client, ctx.experiment_id, plan.grid, spec.varying_axes(),
                                 total=plan.num_samples if search.draws_in_run else len(remaining),
                                 sweep=spec.name, parent_run_id=ctx.parent_run_id, done_before=done_before,
                                 pending_ends=f"{storage_root}/{spec.name}/pending-ends", fence=lease_fence or ctx.fence(),
                                 waiting=waiting, **extra)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.direction, search_alg=plan.search_alg,
                                    scheduler=scheduler(spec), num_samples=plan.num_samples,
                                    max_concurrent_trials=spec.max_concurrent,
                                    # a new actor per trial re-imports torch and MLflow and reopens
                                    # the store: seconds per trial, the largest overhead measured
                                    reuse_actors=settings.REUSE_ACTORS.get(),
                                    trial_dirname_creator=lambda trial: trial.trial_id),
        run_config=tune.RunConfig(name=spec.name, storage_path=storage_root, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=int(spec.max_failures)),
                                  callbacks=[progress]),
    )
    with terminal.ray_output(terminal.log_path_for(storage_root, spec.name), ray_log):
        log.info("startup: Tune starts")
        results = tuner.fit()
    interrupted = progress.finished < len(results)  # Ray ends no trial it paused on Ctrl-C
    given = set() if search.draws_in_run else {t.key for t in remaining}
    return progress.keys | given, interrupted
