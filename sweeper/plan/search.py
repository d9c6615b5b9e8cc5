"""Search algorithms and schedulers by the name a spec gives them (``search.algorithm``,
``scheduler.name``): adding one is one entry here, and tests/test_search_registry.py checks the
names against the spec schema's.

A searcher says how its trials are made: ``grid`` and ``random`` plan every trial up front
(``random`` draws its samples from the spec hash, so they have stable keys and resume like grid
trials); ``optuna`` plans the grid and lets Ray Tune's ``OptunaSearch`` draw the sampled axes
while the sweep runs, a sample's key computed from its resolved config inside the trial;
samples an earlier run left unfinished are handed back as ``points_to_evaluate`` so they resume by
key, and finished ones are told to the searcher with the metric each reached, so a resumed or
extended search goes on from its history. Ray is imported only when Tune's objects are built.

A resumed ASHA does not get its rungs back: Ray's scheduler keeps them in memory only, so
trials resumed from checkpoints are judged against the rungs of this run's trials alone
(docs/spec.md, "search").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from sweeper.core.trial import Trial
from sweeper.plan import planning


@dataclass(frozen=True)
class TuneSearch:
    """What Tune's loop is given: its param space (grid keys only: the trials travel beside it,
    in ``grid``), a search algorithm, how many samples to draw."""

    param_space: dict
    search_alg: Any
    num_samples: int
    grid: dict[str, Trial]
    note: str = ""  # one line for the user about what the searcher starts from


class GridSearch:
    """Every trial planned up front, one Tune grid point each."""

    draws_in_run = False  # Tune draws trials while the sweep runs

    def planned(self, spec) -> list[Trial]:
        return spec.trials()

    def samples_left(self, spec, trials: list[Trial], states: Mapping[str, str]) -> int:
        return 0

    def tune_search(self, spec, remaining: list[Trial], client, experiment_id, samples_left: int) -> TuneSearch:
        from ray import tune

        grid = {t.key: t for t in remaining}
        return TuneSearch({"grid": tune.grid_search(list(grid))}, None, 1, grid)


class RandomSearch(GridSearch):
    """``num_samples`` draws per grid point, made in the plan from the spec hash."""

    def planned(self, spec) -> list[Trial]:
        return planning.sampled_trials(spec, planning.tune_domains(spec))


class OptunaSearch(GridSearch):
    """The grid trials planned; Optuna draws the sampled axes on them while the sweep runs."""

    draws_in_run = True

    def samples_left(self, spec, trials: list[Trial], states: Mapping[str, str]) -> int:
        return max(0, spec.sampled_trial_count() - planning.samples_done(trials, states))

    def tune_search(self, spec, remaining: list[Trial], client, experiment_id, samples_left: int) -> TuneSearch:
        from ray import tune
        from ray.tune.search.optuna import OptunaSearch as TuneOptuna

        grid = {t.key: t for t in planning.expected_trials(spec)}  # the remaining ones among them
        unfinished = planning.unfinished_samples(client, experiment_id, grid)
        space = {"grid": tune.choice(sorted(grid)), "sampled": planning.tune_domains(spec)}
        # the space, metric and mode given here (not through the Tuner) so the study exists now
        # and the finished samples can be added to it before the first suggestion; points flat,
        # as Optuna names the parameters (a nested point's values were not used: a fresh draw)
        search_alg = TuneOptuna(space=TuneOptuna.convert_search_space(space), metric=spec.metric,
                                mode=spec.direction, points_to_evaluate=[flat(p) for p in unfinished] or None)
        told, outside = tell_finished(search_alg, *planning.finished_samples(client, experiment_id, spec))
        note = f"search: optuna continues from {told} finished samples" if told else ""
        if outside:
            note += f" ({outside} finished outside the current search space left out)"
        return TuneSearch({}, search_alg, samples_left + len(unfinished), grid, note)


def flat(point: dict) -> dict:
    """A Tune point ({"grid": key, "sampled": {path: value}}) under Optuna's parameter names."""
    return {"grid": point["grid"], **{f"sampled/{path}": v for path, v in point["sampled"].items()}}


def tell_finished(search_alg, points: list[dict], values: list[float]) -> tuple[int, int]:
    """Each finished sample added to the Optuna study as a complete trial with the value it
    reached; (added, left out because the edited space no longer holds them)."""
    told = outside = 0
    for point, value in zip(points, values):
        try:
            search_alg.add_evaluated_point(flat(point), value)
            told += 1
        except ValueError:  # a value outside a narrowed range, an axis no longer searched
            outside += 1
    return told, outside


SEARCHERS: dict[str, GridSearch] = {"grid": GridSearch(), "random": RandomSearch(), "optuna": OptunaSearch()}


def searcher(spec) -> GridSearch:
    return SEARCHERS[spec.search.algorithm if spec.search is not None else "grid"]


def _fifo(spec) -> None:
    return None  # Tune's default: every trial runs to its end


def _asha(spec):
    from ray.tune.schedulers import ASHAScheduler

    section = spec.scheduler
    max_t = section.max_t or max(int(t.config["train"]["epochs"]) for t in spec.trials())
    return ASHAScheduler(time_attr="epoch", max_t=max_t,
                         grace_period=section.grace_period, reduction_factor=section.reduction_factor)


SCHEDULERS: dict[str, Callable[[Any], Any]] = {"fifo": _fifo, "asha": _asha}


def scheduler(spec):
    """The Tune scheduler the spec names (None: fifo)."""
    return SCHEDULERS[spec.scheduler.name](spec)
