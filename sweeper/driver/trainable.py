"""The function Ray Tune runs in a worker for each of its trials: the grid point it is given
becomes one tracked trial, an Optuna sample on one, or an array of trials
(``sweeper.driver.worker``). The trials themselves travel beside Tune's param space, in
``grid`` (``tune.with_parameters``: Ray's object store), as the plan built them."""

from __future__ import annotations

import logging

from sweeper.core import logs
from sweeper.core.trial import Trial
from sweeper.driver.context import SweepContext
from sweeper.driver.worker import run_tracked, run_tracked_trial
from sweeper.plan.arrays import members_of
from sweeper.plan.planning import trial_at

log = logging.getLogger(__name__)


def ray_trainable(config: dict, ctx: SweepContext, grid: dict[str, Trial], name_axes: list[str],
                  arrays: dict | None = None) -> None:
    """``config``: Tune's point, ``{"grid": trial key or array id}`` (and ``"sampled"`` values
    for an Optuna sample); ``arrays``: array id -> its member keys and resources."""
    import ray
    from ray import tune

    logs.configure_worker()  # the worker's sweeper records to its stderr, Ray's worker log
    log.info("startup: the trainable runs in its worker")
    node_id = ray.get_runtime_context().get_node_id()
    members = members_of(config, arrays)
    if members is not None:
        run_tracked(ctx, [grid[key] for key in members], node_id, cpus=arrays[config["grid"]]["cpu"],
                    tune_report=tune.report, array=config["grid"])
        return
    run_tracked_trial(ctx, trial_at(config, grid, name_axes), node_id, tune_report=tune.report)
