"""The data a trial trains on: ``load_data(cfg, device, seed) -> DataSource``.

- ``cifar10``, ``cifar100``: torchvision's data set classes, held whole on the device.
- ``digits``: scikit-learn's real 8x8 handwritten digits, upsampled, fixed 1437/360 split.
- ``synthetic``: tiny deterministic class patterns plus noise, for tests.
- ``imagenet``: an ImageFolder tree (train/, val/) streamed through a DataLoader with workers.

The on-device sets are augmented in whole batches (random crop with 4 px padding, horizontal
flip where the data set allows it) and their epochs depend only on the generator the loop
passes to ``train_batches``; see ``source.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainables.config import DatasetConfig
from trainables.data import cifar, digits, synthetic
from trainables.data.source import DataSource, TensorSource

__all__ = ["DATA_SETS", "DataSetFacts", "DataSource", "TensorSource", "load_data"]


@dataclass(frozen=True)
class DataSetFacts:
    """What a data set is, known without loading it (for work estimates before a sweep)."""

    train_images: int  # before dataset.train_size caps it
    num_classes: int
    image_size: int  # default side in pixels (dataset.image_size overrides it where allowed)


DATA_SETS = {
    "cifar10": DataSetFacts(50_000, cifar.NUM_CLASSES["cifar10"], 32),
    "cifar100": DataSetFacts(50_000, cifar.NUM_CLASSES["cifar100"], 32),
    "imagenet": DataSetFacts(1_281_167, 1000, 224),  # ILSVRC-2012 train; ImageFolderSource counts its own
    "digits": DataSetFacts(int(digits.TRAIN_FRACTION * digits.NUM_IMAGES), 10, digits.DEFAULT_SIZE),
    "synthetic": DataSetFacts(synthetic.DEFAULT_TRAIN, synthetic.NUM_CLASSES, synthetic.DEFAULT_SIZE),
}


def load_data(cfg: DatasetConfig, device: torch.device | str, seed: int, *, augment: bool = True,
              cifar_normalisation: str = "own") -> DataSource:
    """Load the data set ``cfg`` names onto ``device``.

    ``seed`` is the trial's seed. The on-device sets never use it (their splits and synthetic
    images are part of the data set, the same for every trial; an epoch's randomness comes from
    the generator given to ``train_batches``); ImageNet seeds its workers' transforms with it.
    ``augment=False`` turns off random crops and flips (``train.augment`` of the trial).
    ``cifar_normalisation="imagenet"`` normalises CIFAR with ImageNet's mean/std, as open_lth
    does (``train.fidelity: open_lth``); the other sets keep their own statistics.
    """
    device = torch.device(device)
    if cfg.name in ("cifar10", "cifar100"):
        from trainables.data.cifar import load_cifar
        return load_cifar(cfg, device, augment, cifar_normalisation)
    if cfg.name == "digits":
        from trainables.data.digits import load_digits
        return load_digits(cfg, device, augment)
    if cfg.name == "synthetic":
        from trainables.data.synthetic import load_synthetic
        return load_synthetic(cfg, device, augment)
    if cfg.name == "imagenet":
        from trainables.data.imagenet import ImageFolderSource
        return ImageFolderSource(cfg, device, seed, augment)
    raise ValueError(f"unknown data set {cfg.name!r}")  # DatasetConfig.validate() rejects it first
