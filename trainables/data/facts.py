"""What each data set is, known without loading it or importing torch: how many training images
it has, how many classes, and its default image side. Work estimates and ``sweeper validate``
read these before a sweep; the loaders take their sizes and class counts from here too, so each
number has one definition.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSetFacts:
    train_images: int  # before dataset.train_size caps it
    num_classes: int
    image_size: int  # default side in pixels (dataset.image_size overrides it where allowed)


DIGITS_IMAGES = 1797  # scikit-learn's digits
DIGITS_TRAIN_FRACTION = 0.8  # 1797 images -> 1437 train, 360 test

# In names.DATASETS order (a test checks the keys are exactly those).
DATA_SETS = {
    "cifar10": DataSetFacts(50_000, 10, 32),
    "cifar100": DataSetFacts(50_000, 100, 32),
    "imagenet": DataSetFacts(1_281_167, 1000, 224),  # ILSVRC-2012 train; ImageFolderSource counts its own
    "digits": DataSetFacts(int(DIGITS_TRAIN_FRACTION * DIGITS_IMAGES), 10, 32),  # 32 px: the CIFAR ResNets' size
    "synthetic": DataSetFacts(512, 10, 32),  # tests' default; dataset.train_size sets any other count
}
