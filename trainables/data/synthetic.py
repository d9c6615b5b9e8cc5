"""A tiny, learnable, fully deterministic data set for tests: class patterns plus noise; also the
stand-in for a real set (``dataset.stand_in``): the same patterns at that set's image side and class
count, so every model and loop sees the shapes the real data would give it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainables.config import DatasetConfig
from trainables.data.facts import DATA_SETS, DataSetFacts
from trainables.data.source import TensorSource

FACTS = DATA_SETS["synthetic"]  # classes, default training images and side
SEED = 0  # fixed, never the trial's seed: every trial of a test sees the same images
DEFAULT_TEST = 256
PATTERN_CELLS = 4  # each class is a smooth 4x4 colour pattern, so it survives 4 px crop shifts
NOISE = 0.2  # per-pixel noise std, in [0, 1] units; the patterns' spread is about 0.2


def load_synthetic(cfg: DatasetConfig, device: torch.device, augment: bool = True,
                   facts: DataSetFacts = FACTS) -> TensorSource:
    """The synthetic set, or with ``facts`` another set's stand-in: its side and class count (its
    training-image count too, unless ``dataset.train_size`` caps it, as a smoke test does)."""
    size = cfg.image_size or facts.image_size
    patterns = torch.rand(facts.num_classes, 3, PATTERN_CELLS, PATTERN_CELLS,
                          generator=torch.Generator().manual_seed(SEED))
    # Mirror-symmetric patterns: random flips exercise the CIFAR code path without changing the class.
    patterns = (patterns + patterns.flip(-1)) / 2
    patterns = F.interpolate(patterns, size=(size, size), mode="bilinear", align_corners=False)
    # Train and test draw from their own generators, so changing one size leaves the other set as is.
    train_images, train_labels = _draw(patterns, cfg.train_size or facts.train_images, seed=SEED + 1)
    test_images, test_labels = _draw(patterns, cfg.test_size or DEFAULT_TEST, seed=SEED + 2)
    scaled = train_images.float() / 255
    mean = scaled.mean(dim=(0, 2, 3)).tolist()
    std = scaled.std(dim=(0, 2, 3)).tolist()
    return TensorSource(name=cfg.name, num_classes=facts.num_classes,
                        train_images=train_images, train_labels=train_labels,
                        test_images=test_images, test_labels=test_labels,
                        mean=mean, std=std, flip=True, device=device, augment=augment)


def _draw(patterns: torch.Tensor, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % patterns.shape[0]  # balanced classes
    labels = labels[torch.randperm(count, generator=generator)]
    noise = torch.randn(count, *patterns.shape[1:], generator=generator) * NOISE
    images = ((patterns[labels] + noise).clamp(0, 1) * 255).round().to(torch.uint8)
    return images, labels
