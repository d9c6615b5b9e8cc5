"""scikit-learn's real 8x8 handwritten digits, upsampled: a real data set small enough for CPU runs."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from trainables.config import DatasetConfig
from trainables.data.facts import DATA_SETS, DIGITS_TRAIN_FRACTION
from trainables.data.source import TensorSource

FACTS = DATA_SETS["digits"]
SPLIT_SEED = 0  # the train/test split is part of the data set, never of the trial: same for every seed
MAX_VALUE = 16  # load_digits counts ink in 4x4 blocks of the original 32x32 bitmaps: 0..16


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images 1797 x 8 x 8, labels) as ``sklearn.datasets.load_digits`` gives them, read from
    the file scikit-learn ships (``datasets/data/digits.csv.gz``: 64 pixels and the label per
    row) without importing scikit-learn, whose import (scipy with it) costs each trial's process
    ~1.7 s; through scikit-learn itself where that file is not found."""
    spec = importlib.util.find_spec("sklearn")  # finds the package, runs none of it
    shipped = [Path(p, "datasets", "data", "digits.csv.gz") for p in (spec.submodule_search_locations or [])] if spec else []
    found = next((p for p in shipped if p.is_file()), None)
    if found is None:
        from sklearn.datasets import load_digits as sklearn_digits

        bunch = sklearn_digits()
        return bunch.images, bunch.target
    with gzip.open(found, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def load_digits(cfg: DatasetConfig, device: torch.device, augment: bool = True) -> TensorSource:
    pixels_8x8, targets = digits_arrays()
    images = torch.from_numpy(pixels_8x8).float()  # 1797 x 8 x 8
    labels = torch.from_numpy(targets).long()
    train_all, test_all = split(len(images))
    train_idx, test_idx = train_all[:cfg.train_size], test_all[:cfg.test_size]

    size = cfg.image_size or FACTS.image_size
    # Upsample once at load (bilinear), store as uint8 like every on-device set, grey in 3 channels.
    upsampled = F.interpolate(images[:, None] / MAX_VALUE, size=(size, size), mode="bilinear", align_corners=False)
    pixels = (upsampled.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1)

    # No usual constants exist for this set: normalise with the statistics of the fixed training
    # split (all of it, before any train_size cap, so a smoke run sees the same scale).
    train_pixels = pixels[train_all].float() / 255
    mean, std = train_pixels.mean().item(), train_pixels.std().item()
    return TensorSource(
        name="digits", num_classes=FACTS.num_classes,
        train_images=pixels[train_idx], train_labels=labels[train_idx],
        test_images=pixels[test_idx], test_labels=labels[test_idx],
        mean=(mean,) * 3, std=(std,) * 3,
        # No horizontal flips: a mirrored digit is another glyph (or none), so flipping would
        # teach the network wrong labels; random crops (small shifts) keep the class.
        flip=False, device=device, augment=augment)


def split(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the fixed training and test images: a permutation from ``SPLIT_SEED``, cut 80/20."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(SPLIT_SEED))
    num_train = int(DIGITS_TRAIN_FRACTION * count)
    return order[:num_train], order[num_train:]
