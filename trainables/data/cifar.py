"""CIFAR-10 and CIFAR-100, read through torchvision's data set classes, held on the device."""

from __future__ import annotations

import os

import numpy as np
import torch

from trainables.config import ConfigError, DatasetConfig
from trainables.data.facts import DATA_SETS
from trainables.data.imagenet import MEAN as IMAGENET_MEAN
from trainables.data.imagenet import STD as IMAGENET_STD
from trainables.data.layout import DEFAULT_ROOT  # where a spec without dataset.root keeps the set
from trainables.data.prepare import prepared_once
from trainables.data.source import TensorSource

# Per-channel mean and std of the training images in [0, 1] units (the usual constants).
MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
NORMALISATIONS = ("own", "imagenet")  # open_lth normalises CIFAR-10 with ImageNet's constants


def load_cifar(cfg: DatasetConfig, device: torch.device, augment: bool = True,
               normalisation: str = "own") -> TensorSource:
    from torchvision import datasets  # lazy: importing torchvision costs a second

    if normalisation not in NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, got {normalisation!r}")
    facts = DATA_SETS[cfg.name]
    if cfg.image_size not in (None, facts.image_size):
        raise ConfigError("dataset.image_size", f"{cfg.name} images are {facts.image_size} px, got {cfg.image_size}")
    root = cfg.expanded_root or os.path.expanduser(DEFAULT_ROOT.format(name=cfg.name))
    dataset_class = datasets.CIFAR10 if cfg.name == "cifar10" else datasets.CIFAR100
    try:
        if cfg.download:  # once per node: the others wait on the lock, then only read
            prepared_once(root, cfg.name, lambda: dataset_class(root, train=True, download=True))
        train = dataset_class(root, train=True, download=False)
        test = dataset_class(root, train=False, download=False)
    except (RuntimeError, OSError) as e:  # missing or corrupt files, or a failed download (URLError is an OSError)
        folder = os.path.join(root, dataset_class.base_folder)
        how = ("downloading it failed" if cfg.download
               else "set dataset.download: true to fetch it, or point dataset.root at the folder that holds it")
        raise FileNotFoundError(f"{cfg.name} not found in dataset.root {root!r} (expected {folder}/); "
                                f"{how} ({type(e).__name__}: {e})") from None
    mean, std = MEAN_STD[cfg.name] if normalisation == "own" else (IMAGENET_MEAN, IMAGENET_STD)
    return TensorSource(
        name=cfg.name, num_classes=facts.num_classes,
        train_images=_nchw(train.data, cfg.train_size), train_labels=_labels(train.targets, cfg.train_size),
        test_images=_nchw(test.data, cfg.test_size), test_labels=_labels(test.targets, cfg.test_size),
        mean=mean, std=std, flip=True, device=device, augment=augment)


def _nchw(images: np.ndarray, keep: int | None) -> torch.Tensor:
    """torchvision keeps CIFAR as uint8 N x H x W x C; the models want N x C x H x W."""
    return torch.from_numpy(np.ascontiguousarray(images[:keep])).permute(0, 3, 1, 2).contiguous()


def _labels(targets: list[int], keep: int | None) -> torch.Tensor:
    return torch.tensor(targets[:keep], dtype=torch.int64)
