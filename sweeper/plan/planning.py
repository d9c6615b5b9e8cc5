"""Planning a sweep: which trials the spec defines, the values sampled for them, and what is left.

No Ray and no training here (Ray Tune's domains are imported only to draw samples), so the plan is
tested fast. ``random`` search is expanded here, with a generator seeded by the spec hash, so the
sampled trials are concrete, have stable keys and resume like grid trials; ``optuna`` samples are
drawn by Ray Tune's OptunaSearch during the run, and a sampled trial's key is computed from its
resolved config inside the trial (``payload_from_config``).
"""

from __future__ import annotations

import json
from typing import Any

from sweeper.record import names
from sweeper.record import run_index
from sweeper.core.states import DONE
from sweeper.record.trial_record import state_of
from sweeper.spec.axes import sampled_trial
from sweeper.plan.payload import TrialPayload


def payload_of(trial) -> TrialPayload:
    return TrialPayload(key=trial.key, name=trial.name, config=dict(trial.config), params=dict(trial.params))


def expected_payloads(spec) -> list[TrialPayload]:
    """Every trial the spec defines up front (grid, plus sampled ones for ``random``)."""
    grid = [payload_of(t) for t in spec.trials()]
    search = spec.search
    if algorithm(spec) != "random":
        return grid
    import numpy as np

    rng = np.random.default_rng(int(spec.spec_hash[:12], 16))  # the same draws on every re-run
    domains = tune_domains(spec)
    sampled = []
    for _ in range(int(search.num_samples)):
        for base in spec.trials():
            values = {axis: _native(domain.sample(random_state=rng)) for axis, domain in domains.items()}
            trial = spec.make_trial(values, base=base)
            sampled.append(TrialPayload(trial.key, trial.name, trial.config, trial.params, origin_tags(base.key, values)))
    return sampled


def origin_tags(grid_key: str, values: dict[str, Any]) -> dict[str, str]:
    """Tags that say which grid point a sampled trial grew from and what was drawn."""
    return {names.TAG_GRID_KEY: grid_key, names.TAG_SAMPLED: json.dumps(values, sort_keys=True)}


def algorithm(spec) -> str:
    return spec.search.algorithm if spec.search is not None else "grid"


def _native(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def resolve_sampled(base: TrialPayload, values: dict[str, Any], name_axes: list[str]) -> TrialPayload:
    """A grid trial with sampled values (dotted paths) set: a new config, key, name and params.
    ``sampled_trial`` builds it, as it does for ``Spec.make_trial``, without needing the spec
    inside a worker."""
    trial = sampled_trial(base.config, values, name_axes)
    return TrialPayload(trial.key, trial.name, trial.config, trial.params, origin_tags(base.key, values))


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


def payload_from_config(config: dict, grid: dict, name_axes: list[str]) -> TrialPayload:
    base = TrialPayload(**grid[config["grid"]])
    sampled = config.get("sampled") or {}
    return resolve_sampled(base, sampled, name_axes) if sampled else base


def optuna_samples_left(spec, grid: list[TrialPayload], states: dict[str, str]) -> int:
    """Optuna samples still to draw: num_samples less the sampled trials already done
    (``states``: trial key -> state, as planning read them)."""
    grid_keys = {t.key for t in grid}
    done = sum(1 for key, state in states.items()
               if key not in grid_keys and state in DONE)
    return max(0, spec.sampled_trial_count() - done)


def unfinished_optuna_points(client, experiment_id, base: dict) -> list[dict]:
    """Sampled trials an earlier run left unfinished, as Optuna points: they resume by key."""
    points = []
    for key, run in run_index.trial_runs(client, experiment_id).items():
        if key in base or state_of(run) in DONE:
            continue
        grid_key = run.data.tags.get(names.TAG_GRID_KEY)
        sampled = run.data.tags.get(names.TAG_SAMPLED)
        if grid_key in base and sampled:
            points.append({"grid": grid_key, "sampled": json.loads(sampled)})
    return points
