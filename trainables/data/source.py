"""What a trial reads its images from, and the on-device implementation behind the small sets.

Every data set is a ``DataSource``. The small ones (CIFAR, digits, synthetic) are a
``TensorSource``: the whole set lives on the training device as one uint8 NCHW tensor and is
augmented there in whole batches, so an epoch costs a few tensor ops per batch and no
per-image Python. All randomness of an epoch (order, crop offsets, flips) is drawn up front
from the CPU generator the loop passes in, so the same generator seed gives the same batches
bit for bit, whatever ran before: the loop relies on that to resume without data-order state.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from torch import Tensor

PAD = 4  # random-crop padding in pixels, as in He et al. 2016 and the paper


class DataSource:
    """One data set as the training loop sees it.

    ``train_batches`` yields one shuffled, augmented epoch, drawing its randomness only from
    ``generator``; ``test_batches`` yields the test set in a fixed order, unaugmented. Images
    are float32 NCHW, normalised; labels are int64; both on the source's device. The last
    partial batch is kept in both.
    """

    name: str
    num_classes: int
    image_size: int
    num_train: int
    num_test: int
    flip: bool  # whether training batches are mirrored at random (False where mirroring changes the class)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        raise NotImplementedError

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        raise NotImplementedError

    def steps_per_epoch(self, batch_size: int) -> int:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return math.ceil(self.num_train / batch_size)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, classes={self.num_classes}, size={self.image_size}, "
                f"train={self.num_train}, test={self.num_test})")


class TensorSource(DataSource):
    """A data set held whole on ``device`` as uint8 NCHW, augmented there in whole batches.

    ``mean`` and ``std`` are per channel in [0, 1] units (pixel / 255), as the usual constants
    are quoted. With ``augment`` the training images are padded once at load by ``PAD`` zero
    pixels (black, as torchvision's RandomCrop pads the PIL image) and each batch is cut out of
    that padded set by one indexing op on a sliding-window view.
    """

    def __init__(self, *, name: str, num_classes: int,
                 train_images: Tensor, train_labels: Tensor, test_images: Tensor, test_labels: Tensor,
                 mean: Sequence[float], std: Sequence[float], flip: bool,
                 device: torch.device, augment: bool = True):
        for split, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
            if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[2] != images.shape[3]:
                raise ValueError(f"{name} {split} images must be uint8 N x C x S x S, got "
                                 f"{images.dtype} {tuple(images.shape)}")
            if len(images) != len(labels):
                raise ValueError(f"{name} {split}: {len(images)} images but {len(labels)} labels")
        self.name = name
        self.num_classes = num_classes
        self.image_size = train_images.shape[-1]
        self.num_train = len(train_images)
        self.num_test = len(test_images)
        self.flip = flip
        self.augment = augment
        self.device = torch.device(device)
        self.mean, self.std = tuple(mean), tuple(std)  # [0, 1] units, per channel
        channels = train_images.shape[1]
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1)
        # normalised = (x / 255 - mean) / std = x * scale + shift: one fused addcmul per batch
        self._scale = (1.0 / (255.0 * std_t)).to(self.device)
        self._shift = (-mean_t / std_t).to(self.device)
        self._train = train_images.to(self.device)
        self._train_labels = train_labels.to(self.device, torch.int64)
        self._test = test_images.to(self.device)
        self._test_labels = test_labels.to(self.device, torch.int64)
        if augment:
            padded = torch.nn.functional.pad(self._train, (PAD, PAD, PAD, PAD))
            # windows[n, c, dy, dx] is the S x S crop of padded image n at offset (dy, dx): a view,
            # so one advanced-indexing op gathers a whole batch of crops.
            self._windows = padded.unfold(2, self.image_size, 1).unfold(3, self.image_size, 1)
            del self._train  # the padded copy holds the same pixels; keep one copy on the device

    def _normalise(self, images: Tensor) -> Tensor:
        return torch.addcmul(self._shift, images.float(), self._scale)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # Draw the whole epoch's randomness on the CPU first, always in this order, so the batches
        # depend on the generator alone (not on the device's RNG, nor on what ran before).
        order = torch.randperm(self.num_train, generator=generator)
        if self.augment:
            offsets = torch.randint(0, 2 * PAD + 1, (2, self.num_train), generator=generator)
            flips = torch.rand(self.num_train, generator=generator) < 0.5 if self.flip else None
        order = order.to(self.device)
        if self.augment:
            offsets = offsets.to(self.device)
            flips = flips.to(self.device) if flips is not None else None
        for start in range(0, self.num_train, batch_size):
            index = order[start:start + batch_size]
            if self.augment:
                dy, dx = offsets[0, start:start + batch_size], offsets[1, start:start + batch_size]
                images = self._windows[index, :, dy, dx]  # B x C x S x S
                if flips is not None:
                    # torch.where rather than masked assignment: no host sync on CUDA
                    images = torch.where(flips[start:start + batch_size, None, None, None], images.flip(3), images)
            else:
                images = self._train[index]
            yield self._normalise(images), self._train_labels[index]

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for start in range(0, self.num_test, batch_size):
            yield (self._normalise(self._test[start:start + batch_size]),
                   self._test_labels[start:start + batch_size])
