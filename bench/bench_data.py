"""Benchmark (a): images/s of our on-device CIFAR pipeline against a torchvision DataLoader.

Both sides make the same thing from the same 50,000 x 32 x 32 x 3 uint8 array (CIFAR-10's size
and layout): shuffled training batches of 128, randomly cropped (padding 4), randomly flipped,
normalised, as float32 NCHW on the device.

- ours: ``TensorSource``, the class behind ``load_data`` for cifar10/cifar100, digits, synthetic.
- torchvision: a Dataset that does exactly what ``torchvision.datasets.CIFAR10.__getitem__`` does
  (``Image.fromarray`` on one HWC image, then the transform), with the usual per-image transforms
  RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize, through a DataLoader with
  shuffle=True. It runs with num_workers=0 and num_workers=2 (this machine's core count is
  printed) and the faster of the two is the baseline. Worker start-up and the first batch are
  not timed, for either side.

Threads: each in-process run is measured with 1 torch thread and with torch's default, and each
side keeps its best. On a shared 2-core machine two intra-op threads can be many times slower
than one (they spin waiting for a core), which would make either side look worse than it is.
DataLoader workers always run one thread each (PyTorch sets that). The load average is printed:
figures from a busy machine are lower for both sides.

    .venv/bin/python bench/bench_data.py [--device cuda] [--baseline-batches 60]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from trainables.data.cifar import MEAN_STD
from trainables.data.source import TensorSource

NUM_IMAGES, BATCH = 50_000, 128
MEAN, STD = MEAN_STD["cifar10"]


class PerImageCIFAR(Dataset):
    """What torchvision's CIFAR10 does per item: uint8 HWC -> PIL image -> transform."""

    def __init__(self, data: np.ndarray, targets: list[int], transform):
        self.data, self.targets, self.transform = data, targets, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.data[index])), self.targets[index]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ours(data: np.ndarray, targets: list[int], device: torch.device, batches: int) -> float:
    images = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()  # as load_cifar stores it
    source = TensorSource(name="cifar10", num_classes=10, train_images=images,
                          train_labels=torch.tensor(targets), test_images=images[:1],
                          test_labels=torch.tensor(targets[:1]), mean=MEAN, std=STD, flip=True,
                          device=device)
    for _ in zip(range(10), source.train_batches(BATCH, torch.Generator().manual_seed(0))):
        pass  # warm-up (allocator, kernels), not timed
    count = 0
    sync(device)
    start = time.perf_counter()
    # Each epoch draws its permutation, offsets and flips up front: that is timed too.
    epoch = 1
    while count < batches * BATCH:
        for x, y in source.train_batches(BATCH, torch.Generator().manual_seed(epoch)):
            count += len(y)
            if count >= batches * BATCH:
                break
        epoch += 1
    sync(device)
    return count / (time.perf_counter() - start)


def torchvision_loader(data: np.ndarray, targets: list[int], device: torch.device,
                       workers: int, batches: int) -> float:
    from torchvision import transforms

    transform = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    loader = DataLoader(PerImageCIFAR(data, targets, transform), batch_size=BATCH, shuffle=True,
                        num_workers=workers, pin_memory=device.type == "cuda", drop_last=False)
    iterator = iter(loader)
    next(iterator)  # worker start-up and the first batch are not timed
    count = 0
    start = time.perf_counter()
    for _ in range(batches):
        x, y = next(iterator)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        count += len(y)
    sync(device)
    elapsed = time.perf_counter() - start
    del iterator
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, default=200, help="timed batches of ours (391 = one epoch)")
    parser.add_argument("--baseline-batches", type=int, default=30, help="timed batches per baseline run")
    args = parser.parse_args()
    device = torch.device(args.device)

    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (NUM_IMAGES, 32, 32, 3), dtype=np.uint8)
    targets = rng.integers(0, 10, NUM_IMAGES).tolist()

    default_threads = torch.get_num_threads()
    thread_counts = sorted({1, default_threads})
    print(f"device {device}; {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; "
          f"torch {torch.__version__}; batch {BATCH}, {NUM_IMAGES} images")
    ours_rates, baseline = {}, {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        ours_rates[threads] = ours(data, targets, device, args.batches)
        print(f"ours (on-device, whole batches), {threads} thread(s):     {ours_rates[threads]:10,.0f} images/s")
    for threads in thread_counts:
        torch.set_num_threads(threads)
        baseline[f"num_workers=0, {threads} thread(s)"] = torchvision_loader(
            data, targets, device, 0, args.baseline_batches)
    torch.set_num_threads(default_threads)
    baseline["num_workers=2"] = torchvision_loader(data, targets, device, 2, args.baseline_batches)
    for name, rate in baseline.items():
        print(f"torchvision DataLoader, {name}: {rate:10,.0f} images/s")
    best_ours = max(ours_rates, key=ours_rates.get)
    best_baseline = max(baseline, key=baseline.get)
    ratio = ours_rates[best_ours] / baseline[best_baseline]
    print(f"speed-up, best of ours ({best_ours} thread(s)) over the best baseline ({best_baseline}): "
          f"{ratio:.1f}x  (goal >= 5x)")


if __name__ == "__main__":
    main()
