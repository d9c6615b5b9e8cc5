"""The data a trial trains on: ``load_data(cfg, device, seed) -> DataSource``.

- ``cifar10``, ``cifar100``: torchvision's data set classes, held whole on the device.
- ``digits``: scikit-learn's real 8x8 handwritten digits, upsampled, fixed 1437/360 split.
- ``synthetic``: tiny deterministic class patterns plus noise, for tests.
- ``imagenet``: an ImageFolder tree (train/, val/) streamed through a DataLoader with workers.

The on-device sets are augmented in whole batches (random crop with 4 px padding, horizontal
flip where the data set allows it) and their epochs depend only on the generator the loop
passes to ``train_batches``; see ``source.py``. What each set is without loading it (image
count, classes, default size) is in ``facts.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from trainables.config import DatasetConfig
    from trainables.data.source import DataSource

__all__ = ["load_data"]


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
    import torch  # here, not at the top: data/facts.py is read without torch

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
