"""The data a trial trains on: ``load_data(cfg, device, seed) -> DataSource``.

- ``cifar10``, ``cifar100``: torchvision's data set classes, held whole on the device.
- ``digits``: scikit-learn's real 8x8 handwritten digits, upsampled, fixed 1437/360 split.
- ``synthetic``: tiny deterministic class patterns plus noise, for tests; with ``dataset.stand_in``
  the same patterns stand in for any set, at its image side and class count.
- ``imagenet``: an ImageFolder tree (train/, val/) streamed through a DataLoader with workers.

The on-device sets are augmented in whole batches (random crop with 4 px padding, horizontal
flip where the data set allows it) and their epochs depend only on the generator the loop
passes to ``train_batches``; see ``source.py``. What each set is without loading it (image
count, classes, default size) is in ``facts.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

    from trainables.config import DatasetConfig
    from trainables.data.source import DataSource

__all__ = ["LOADERS", "load_data"]

# Each loader imports its module (and torch) only when called: this package is imported by the
# torch-free validation path. Arguments: (cfg, device, seed, augment, cifar_normalisation).


def _cifar(cfg, device, seed, augment, cifar_normalisation):
    from trainables.data.cifar import load_cifar
    return load_cifar(cfg, device, augment, cifar_normalisation)


def _imagenet(cfg, device, seed, augment, cifar_normalisation):
    from trainables.data.imagenet import ImageFolderSource
    return ImageFolderSource(cfg, device, seed, augment)


def _digits(cfg, device, seed, augment, cifar_normalisation):
    from trainables.data.digits import load_digits
    return load_digits(cfg, device, augment)


def _synthetic(cfg, device, seed, augment, cifar_normalisation):
    from trainables.data.synthetic import load_synthetic
    return load_synthetic(cfg, device, augment)


# The data set registry: name -> loader, in names.DATASETS order (a test checks the names are
# exactly those, the keys of facts.DATA_SETS and what a spec accepts). A new data set is one entry
# here, its facts in facts.py and its word in names.DATASETS.
LOADERS: dict[str, Callable[..., DataSource]] = {
    "cifar10": _cifar,
    "cifar100": _cifar,
    "imagenet": _imagenet,
    "digits": _digits,
    "synthetic": _synthetic,
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
    import torch  # here, not at the top: data/facts.py is read without torch

    if cfg.stand_in:  # the set's shapes without its files (a smoke test where it is absent)
        from trainables.data.facts import DATA_SETS
        from trainables.data.synthetic import load_synthetic
        return load_synthetic(cfg, torch.device(device), augment, facts=DATA_SETS[cfg.name])
    loader = LOADERS.get(cfg.name)
    if loader is None:
        raise ValueError(f"unknown data set {cfg.name!r}")  # DatasetConfig.validate() rejects it first
    return loader(cfg, torch.device(device), seed, augment, cifar_normalisation)
