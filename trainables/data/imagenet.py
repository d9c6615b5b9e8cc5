"""ImageNet (or any ImageFolder tree with train/ and val/), streamed from disk through a DataLoader.

Unlike the on-device sets, ImageNet batches are not bit-reproducible: the order of an epoch is
drawn from the loop's generator, but each image's RandomResizedCrop and flip are drawn inside
the DataLoader's worker processes from torch's per-worker seeding, which depends on how many
workers there are and on what they did in earlier epochs (workers persist across epochs).
"""

from __future__ import annotations

import os
from typing import Iterator

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, Subset

from trainables.config import DatasetConfig
from trainables.data.facts import DATA_SETS
from trainables.data.source import DataSource

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CROP_SCALE = (0.1, 1.0)  # as in the paper's ImageNet set-up (open_lth), not torchvision's (0.08, 1.0)
CROP_RATIO = (0.8, 1.25)
EVAL_RESIZE = 256 / 224  # resize the short side to size * 256/224, then centre-crop size


class _EpochOrder(Sampler[int]):
    """Yields the order set for the coming epoch; the loader reads it in the main process."""

    def __init__(self, length: int):
        self.length = length
        self.order: list[int] = list(range(length))

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return self.length


class ImageFolderSource(DataSource):
    def __init__(self, cfg: DatasetConfig, device: torch.device, seed: int, augment: bool = True):
        from torchvision import datasets, transforms  # lazy: importing torchvision costs a second

        root = cfg.expanded_root
        size = cfg.image_size or DATA_SETS["imagenet"].image_size
        normalise = [transforms.ToTensor(), transforms.Normalize(MEAN, STD)]
        evaluate = transforms.Compose([transforms.Resize(round(size * EVAL_RESIZE)),
                                       transforms.CenterCrop(size), *normalise])
        train_transform = transforms.Compose([
            transforms.RandomResizedCrop(size, scale=CROP_SCALE, ratio=CROP_RATIO),
            transforms.RandomHorizontalFlip(), *normalise]) if augment else evaluate
        folders = {split: os.path.join(root, split) for split in ("train", "val")}
        for split, folder in folders.items():
            if not os.path.isdir(folder):
                raise FileNotFoundError(f"imagenet: dataset.root {root!r} has no {split}/ folder "
                                        f"(expected {folder}/<class>/<image>)")
        train = datasets.ImageFolder(folders["train"], transform=train_transform)
        test = datasets.ImageFolder(folders["val"], transform=evaluate)
        if test.classes != train.classes:
            raise ValueError(f"imagenet: val/ has {len(test.classes)} classes, train/ has "
                             f"{len(train.classes)}; their class folders must be the same")
        self.name = cfg.name
        self.num_classes = len(train.classes)
        self.image_size = size
        self.flip = True
        self.device = torch.device(device)
        # A smoke-run cap takes evenly spaced images, not the first N: ImageFolder sorts by class,
        # so the first N would all be of one class.
        train_set, test_set = _spread(train, cfg.train_size), _spread(test, cfg.test_size)
        self.num_train, self.num_test = len(train_set), len(test_set)
        self._order = _EpochOrder(self.num_train)
        workers = cfg.num_workers
        common = dict(num_workers=workers, pin_memory=self.device.type == "cuda",
                      persistent_workers=workers > 0, drop_last=False)
        # The workers' base seed (their transforms' randomness) comes from the trial seed.
        self._train_loader_args = dict(dataset=train_set, sampler=self._order,
                                       generator=torch.Generator().manual_seed(seed), **common)
        self._test_loader_args = dict(dataset=test_set, shuffle=False, **common)
        self._loaders: dict[tuple[str, int], DataLoader] = {}

    def _loader(self, split: str, batch_size: int) -> DataLoader:
        # One loader per split and batch size, kept so that persistent workers survive epochs.
        key = (split, batch_size)
        if key not in self._loaders:
            args = self._train_loader_args if split == "train" else self._test_loader_args
            self._loaders[key] = DataLoader(batch_size=batch_size, **args)
        return self._loaders[key]

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        loader = self._loader("train", batch_size)
        self._order.order = torch.randperm(self.num_train, generator=generator).tolist()
        return self._to_device(loader)

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return self._to_device(self._loader("test", batch_size))

    def _to_device(self, loader: DataLoader) -> Iterator[tuple[Tensor, Tensor]]:
        non_blocking = self.device.type == "cuda"
        for images, labels in loader:
            yield (images.to(self.device, non_blocking=non_blocking),
                   labels.to(self.device, torch.int64, non_blocking=non_blocking))


def _spread(dataset, keep: int | None):
    if keep is None or keep >= len(dataset):
        return dataset
    step = len(dataset) / keep
    return Subset(dataset, [int(i * step) for i in range(keep)])
