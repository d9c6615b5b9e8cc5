"""measure_array / choose_k: what `resources.array: auto` decides from, timed on this machine."""

from __future__ import annotations

from trainables.array.measure import choose_k, measure_array

TINY = {"dataset": {"name": "synthetic", "image_size": 8}, "model": {"family": "cifar_resnet", "depth": 8},
        "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "precision": "fp32"}, "mode": "bn_only", "seed": 0}


def test_measure_array_times_solo_and_array_steps():
    row = measure_array(TINY, 2, steps=1, warmup=1)
    assert row["k"] == 2 and row["device"] == "cpu"
    assert row["solo_images_per_s"] > 0 and row["array_images_per_s"] > 0
    assert row["speedup"] == row["array_images_per_s"] / row["solo_images_per_s"]


def test_choose_k_never_picks_an_array_slower_than_what_it_replaces():
    k, rows = choose_k(TINY, candidates=(1, 2, 4), steps=1, warmup=1)
    assert rows and [r["k"] for r in rows] == [2, 4][:len(rows)]
    if k == 1:
        assert rows[0]["array_images_per_s"] <= rows[0]["solo_images_per_s"]
    else:
        chosen = next(r for r in rows if r["k"] == k)
        assert chosen["array_images_per_s"] > chosen["solo_images_per_s"]
        assert all(r["array_images_per_s"] <= chosen["array_images_per_s"] for r in rows)
