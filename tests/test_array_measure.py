"""measure_array: what `resources.array: auto` decides from (sweeper.plan.arrays.choose_sizes), timed here."""

from __future__ import annotations

from trainables.array.measure import measure_array

TINY = {"dataset": {"name": "synthetic", "image_size": 8}, "model": {"family": "cifar_resnet", "depth": 8},
        "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "precision": "fp32"}, "mode": "bn_only", "seed": 0}


def test_measure_array_times_solo_and_array_steps():
    row = measure_array(TINY, 2, steps=1, warmup=1)
    assert row["k"] == 2 and row["device"] == "cpu"
    assert row["solo_images_per_s"] > 0 and row["array_images_per_s"] > 0
    assert row["speedup"] == row["array_images_per_s"] / row["solo_images_per_s"]
