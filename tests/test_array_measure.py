"""measure_array: what `resources.array: auto` decides from (sweeper.plan.arrays.choose_sizes), timed here."""

from __future__ import annotations

import dataclasses

import pytest

from trainables.array.measure import measure_array, members

TINY = {"dataset": {"name": "synthetic", "image_size": 8}, "model": {"family": "cifar_resnet", "depth": 8},
        "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "precision": "fp32"}, "mode": "bn_only", "seed": 0}


def test_measure_array_times_the_members_as_grouped_against_each_mode_alone_over_rounds():
    group = members(TINY, 3)
    group.append(dataclasses.replace(group[0], mode="random_params", seed=9))  # a mixed array, as grouped
    row = measure_array(group, rounds=3, steps=1)
    assert row["k"] == 4 and row["device"] == "cpu"
    assert row["modes"] == ["bn_only"] * 3 + ["random_params"] and row["solo_modes"] == ["bn_only", "random_params"]
    assert row["solo_images_per_s"] > 0 and row["array_images_per_s"] > 0
    # packed: the members' own solo rates summed, K of them side by side
    assert row["packed_images_per_s"] == pytest.approx(4 * row["solo_images_per_s"])
    assert row["speedup"] == pytest.approx(row["array_images_per_s"] / row["packed_images_per_s"])
    assert len(row["ratios"]) == 3
    assert row["noise"] == pytest.approx((max(row["ratios"]) - min(row["ratios"])) / 2 / sorted(row["ratios"])[1])
