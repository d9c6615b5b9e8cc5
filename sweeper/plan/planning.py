"""Planning a sweep: which trials the spec defines, the values sampled for them, and what is left.

No Ray and no training here (Ray Tune's domains are imported only to draw samples), so the plan is
tested fast. Each trial is built here once, as its child run will show it (``Trial`` with its
short params and note, ``sweeper.record.child_run.presented``), and travels so to its worker.
How a search algorithm makes its trials (drawn up front from the spec hash, or by Tune while it
runs) is its entry in ``sweeper.plan.search``; an Optuna sample is resolved by ``trial_at``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from sweeper.core.states import DONE
from sweeper.core.trial import Trial
from sweeper.record import child_run, names, run_index
from sweeper.record.trial_record import state_of
from sweeper.spec.axes import sampled_trial


def expected_trials(spec) -> list[Trial]:
    """Every trial the spec defines up front (grid, plus the sampled ones a ``random`` search
    draws), as their child runs show them."""
    from sweeper.plan.search import searcher

    axes = spec.varying_axes()
    return [child_run.presented(t, axes) for t in searcher(spec).planned(spec)]


def sampled_trials(spec, tune_domains: Mapping[str, Any]) -> list[Trial]:
    """``search.num_samples`` draws of ``tune_domains`` per grid point, from a generator seeded
    by the spec hash: the same draws on every re-run, so sampled trials resume by key."""
    import numpy as np

    rng = np.random.default_rng(int(spec.spec_hash[:12], 16))
    sampled = []
    for _ in range(int(spec.search.num_samples)):
        for base in spec.trials():
            values = {axis: _native(domain.sample(random_state=rng)) for axis, domain in tune_domains.items()}
            trial = spec.make_trial(values, base=base)
            sampled.append(dataclasses.replace(trial, tags=origin_tags(base.key, values)))
    return sampled


def origin_tags(grid_key: str, values: dict[str, Any]) -> dict[str, str]:
    """Tags that say which grid point a sampled trial grew from and what was drawn."""
    return {names.TAG_GRID_KEY: grid_key, names.TAG_SAMPLED: json.dumps(values, sort_keys=True)}


def _native(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def resolve_sampled(base: Trial, values: dict[str, Any], name_axes: list[str]) -> Trial:
    """A grid trial with sampled values (dotted paths) set: a new config, key, name and params.
    ``sampled_trial`` builds it, as it does for ``Spec.make_trial``, without needing the spec
    inside a worker."""
    trial = sampled_trial(base.config, values, name_axes)
    return dataclasses.replace(trial, tags=origin_tags(base.key, values))


def trial_at(point: Mapping[str, Any], grid: Mapping[str, Trial], name_axes: list[str]) -> Trial:
    """The trial a Tune config names (``{"grid": key}``, with ``"sampled"`` values for an Optuna
    sample): the planned trial itself, or the sample on it resolved and presented, the same in
    the worker and in the driver's callback."""
    base = grid[point["grid"]]
    sampled = point.get("sampled") or {}
    if not sampled:
        return base
    return child_run.presented(resolve_sampled(base, sampled, name_axes), name_axes)


def tune_domains(spec) -> dict[str, Any]:
    """The spec's search space as Ray Tune domains (dotted path -> domain)."""
    from ray import tune

    domains = {}
    for path, dist in dict(spec.search.space).items():
        if dist.kind == "choice":
            domains[path] = tune.choice(list(dist.values))
        else:
            domains[path] = getattr(tune, dist.kind)(dist.low, dist.high)
    return domains


def samples_done(trials: list[Trial], states: Mapping[str, str]) -> int:
    """Sampled trials already done (``states``: trial key -> state, as planning read them): the
    done runs that are not among the planned ``trials``."""
    planned = {t.key for t in trials}
    return sum(1 for key, state in states.items() if key not in planned and state in DONE)


def unfinished_samples(client, experiment_id, base: Mapping[str, Trial]) -> list[dict]:
    """Sampled trials an earlier run left unfinished, as Tune points on their grid trial in
    ``base``: handed back to the searcher, they resume by key."""
    points = []
    for key, run in run_index.trial_runs(client, experiment_id).items():
        if key in base or state_of(run) in DONE:
            continue
        grid_key = run.data.tags.get(names.TAG_GRID_KEY)
        sampled = run.data.tags.get(names.TAG_SAMPLED)
        if grid_key in base and sampled:
            points.append({"grid": grid_key, "sampled": json.loads(sampled)})
    return points


def finished_samples(client, experiment_id, spec) -> tuple[list[dict], list[float]]:
    """The sampled trials of ``spec``'s grid points that an earlier run finished (or a scheduler
    stopped), as Optuna points in the form ``unfinished_samples`` gives, and the value of
    the spec's search metric each reached (its last logged value: what Ray Tune reported to the
    searcher when the trial ended). Given back to ``OptunaSearch`` they let a resumed or extended
    search continue from its history instead of from random start-up trials. A trial without a
    finite value of the metric (diverged, or never logged it) is left out."""
    import math

    from sweeper.core.states import FINISHED, STOPPED_EARLY

    grid_keys = {t.key for t in spec.trials()}
    points, rewards = [], []
    for key, run in run_index.trial_runs(client, experiment_id).items():
        grid_key = run.data.tags.get(names.TAG_GRID_KEY)
        sampled = run.data.tags.get(names.TAG_SAMPLED)
        value = run.data.metrics.get(spec.metric)
        if (key in grid_keys or grid_key not in grid_keys or not sampled or value is None
                or state_of(run) not in (FINISHED, STOPPED_EARLY) or not math.isfinite(value)):
            continue
        points.append({"grid": grid_key, "sampled": json.loads(sampled)})
        rewards.append(float(value))
    return points, rewards
