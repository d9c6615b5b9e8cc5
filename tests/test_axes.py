"""sweeper.spec.axes: writing an axis into a trial config, and the one way a sampled trial is built."""

from __future__ import annotations

import pytest

from sweeper import spec
from sweeper.spec import axes
from sweeper.spec.axes import sampled_trial, set_axis
from sweeper.core.errors import SpecError
from sweeper.plan.planning import resolve_sampled
from sweeper.spec import parse_spec
from trainables.config import ConfigError

BASE = """\
name: t
dataset: {name: digits}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 2, lr: 0.1}
"""
SAMPLED = BASE + ("grid: {mode: [bn_only, full]}\n"
                  "search: {algorithm: random, num_samples: 2, space: {lr: {loguniform: [0.01, 1.0]}}}\n")


def test_set_axis_creates_missing_sections_and_reports_a_part_that_is_not_a_mapping_as_trial_config_does():
    config = {"train": {"lr": 0.1}}
    set_axis(config, "train.optimizer.momentum", 0.8)
    assert config == {"train": {"lr": 0.1, "optimizer": {"momentum": 0.8}}}
    with pytest.raises(ConfigError) as e:
        set_axis({"train": {"optimizer": "sgd"}}, "train.optimizer.momentum", 0.9)
    assert (e.value.path, e.value.message) == ("train.optimizer", "must be a mapping, got the string 'sgd'")


def test_a_base_section_that_is_not_a_mapping_under_a_grid_axis_names_the_key_and_the_grid_point():
    text = BASE.replace("lr: 0.1}", "lr: 0.1, optimizer: sgd}") + "grid: {momentum: [0.9]}\n"
    with pytest.raises(SpecError) as e:
        parse_spec(text, "x.yaml")
    assert str(e.value) == "x.yaml: train.optimizer: must be a mapping, got the string 'sgd' [in grid: momentum=0.9] (line 4)"


def test_the_spec_planning_and_the_worker_build_a_sampled_trial_the_same_way():
    s = parse_spec(SAMPLED, "x.yaml")
    base = s.trials()[1]
    values = {"lr": 0.0312}
    by_spec = s.make_trial(values, base=base)
    by_axes = sampled_trial(base.config, values, s.varying_axes())
    in_worker = resolve_sampled(base, values, s.varying_axes())
    assert by_spec == by_axes
    assert (in_worker.key, in_worker.name, in_worker.config, in_worker.params) == \
        (by_spec.key, by_spec.name, by_spec.config, by_spec.params)
    assert by_spec.name == "full-d8-w1-lr0.0312-s0"
    assert in_worker.tags == {"sweeper.grid_key": base.key, "sweeper.sampled": '{"lr": 0.0312}'}


def test_a_bad_sampled_value_is_a_config_error_in_the_worker_and_a_spec_error_from_the_spec():
    s = parse_spec(SAMPLED, "x.yaml")
    base = s.trials()[0]
    with pytest.raises(ConfigError) as e:
        sampled_trial(base.config, {"train.lr": -1.0}, s.varying_axes())
    assert str(e.value) == "train.lr: must be a finite number > 0, got -1.0"
    with pytest.raises(SpecError) as e:
        s.make_trial({"train.lr": -1.0}, base=base)
    assert str(e.value) == "x.yaml: search.space.lr: must be a finite number > 0, got -1.0 (line 6)"
    with pytest.raises(ValueError, match="unknown axis 'lrr'"):
        sampled_trial(base.config, {"lrr": 0.1}, s.varying_axes())


def test_the_spec_module_still_offers_the_axis_names_others_import():
    assert (spec.AXES, spec.MAX_TRIALS, spec.resolve_axis) == (axes.AXES, axes.MAX_TRIALS, axes.resolve_axis)
    assert (spec.GridAxis, spec.GridBlock) == (axes.GridAxis, axes.GridBlock)
    assert "train.optimizer.momentum" in spec.AXES and "dataset.root" not in spec.AXES
