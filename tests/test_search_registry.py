"""The search algorithms and schedulers sweeper runs are exactly those a spec may name."""

from __future__ import annotations

from typing import get_args

from sweeper.plan.search import SCHEDULERS, SEARCHERS
from sweeper.spec import schema


def _literals(annotation) -> set[str]:
    return set(get_args(annotation))


def test_every_search_algorithm_the_schema_accepts_has_a_searcher_and_no_other():
    assert set(SEARCHERS) == _literals(schema.Search.model_fields["algorithm"].annotation)


def test_every_scheduler_the_schema_accepts_has_an_entry_and_no_other():
    union = get_args(schema.Scheduler)[0]  # Annotated[Union[...], discriminator]
    names = set().union(*(_literals(kind.model_fields["name"].annotation) for kind in get_args(union)))
    assert names and set(SCHEDULERS) == names


def test_a_spec_without_a_search_section_plans_as_a_grid_and_asha_builds_tunes_scheduler():
    from ray.tune.schedulers import ASHAScheduler

    from sweeper.plan.search import scheduler, searcher

    spec = schema.parse_spec("name: t\ndataset: {name: digits}\nmodel: {family: cifar_resnet, depth: 8}\n"
                             "train: {epochs: 4}\ngrid: {seed: [0, 1]}\nscheduler: {name: asha}\n", "t.yaml")
    assert searcher(spec) is SEARCHERS["grid"] and not searcher(spec).draws_in_run
    assert isinstance(scheduler(spec), ASHAScheduler)
    fifo = "name: t\ndataset: {name: digits}\nmodel: {family: cifar_resnet, depth: 8}\ntrain: {epochs: 4}\n"
    assert scheduler(schema.parse_spec(fifo, "t.yaml")) is None
