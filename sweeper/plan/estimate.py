"""How much work a sweep is, before it starts: trial-epochs, images, FLOPs and GPU-hours.

Training FLOPs are counted as BACKWARD_FACTOR x the forward FLOPs of every training image seen
(forward + backward ~ 3x forward; an upper bound for the frozen-weight modes, which skip the
weight gradients of frozen layers). Evaluation passes are not counted. GPU-hours assume one
stated sustained throughput, printed next to the figure: an order of magnitude, not a promise.
"""

from __future__ import annotations

import copy
import functools
import itertools
from dataclasses import dataclass
from typing import Any, Mapping

from sweeper.spec import Spec
from sweeper.core.trial import Trial
from trainables.config import ModelConfig
from trainables.data.facts import DATA_SETS
from trainables.keys import set_path
from trainables.models.shapes import flops_per_image

BACKWARD_FACTOR = 3  # forward + backward ~ 3 x forward
# Sustained training throughput assumed per GPU, in FLOP/s: bf16 small ResNets reach about a
# quarter of an A100's 312 TFLOP/s peak at best, and far less at batch 128 on CIFAR sizes.
ASSUMED_FLOPS_PER_S = 40e12


# Sampled axes that change the amount of work; any other sampled axis (lr, ...) does not.
_WORK_AXES = ("train.epochs", "model.", "dataset.name", "dataset.train_size", "dataset.image_size")


@dataclass(frozen=True)
class TrialWork:
    epochs: int
    train_images: int
    forward_flops: int  # per image

    @property
    def training_flops(self) -> int:
        return BACKWARD_FACTOR * self.forward_flops * self.train_images * self.epochs


@dataclass(frozen=True)
class Estimate:
    trials: int  # trials that will run (grid points x samples with a search)
    trial_epochs: int
    images_seen: int  # training images, summed over epochs and trials
    forward_flops_min: int  # per image, over the sweep's models
    forward_flops_max: int
    training_flops: int
    upper_bound: bool  # sampled axes change the work: each sampled trial counted at its largest

    @property
    def gpu_hours(self) -> float:
        return self.training_flops / ASSUMED_FLOPS_PER_S / 3600


def trial_work(config: Mapping[str, Any]) -> TrialWork:
    """The work of one trial from its resolved configuration (``Trial.config``)."""
    dataset = config["dataset"]
    flops = _forward_flops(ModelConfig(**config["model"]), DATA_SETS[dataset["name"]].num_classes,
                           image_side(dataset))
    return TrialWork(epochs=config["train"]["epochs"], train_images=train_images(dataset), forward_flops=flops)


def train_images(dataset: Mapping[str, Any]) -> int:
    """Training images per epoch of a resolved config's ``dataset``: the set's, or train_size fewer."""
    images = DATA_SETS[dataset["name"]].train_images
    return min(images, dataset["train_size"]) if dataset.get("train_size") else images


def image_side(dataset: Mapping[str, Any]) -> int:
    """A resolved config's image side: ``dataset.image_size``, or the data set's own."""
    return dataset.get("image_size") or DATA_SETS[dataset["name"]].image_size


def estimate_spec(spec: Spec) -> Estimate:
    """The whole sweep: every grid point, times num_samples draws when a search samples axes."""
    trials = spec.trials()
    samples = spec.search.num_samples if spec.sampled_trial_count() else 1
    space = spec.search.space if spec.search is not None else {}
    work_axes = {p: d for p, d in space.items() if p.startswith(_WORK_AXES)}
    works = [_largest_work(t, work_axes) for t in trials]
    return _total(works, samples, upper_bound=bool(work_axes))


def _largest_work(trial: Trial, work_axes: Mapping[str, Any]) -> TrialWork:
    if not work_axes:
        return trial_work(trial.config)
    candidates = []
    for values in itertools.product(*(d.bounds() for d in work_axes.values())):
        config = copy.deepcopy(trial.config)
        for path, value in zip(work_axes, values):
            set_path(config, path, value)
        candidates.append(trial_work(config))
    return max(candidates, key=lambda w: w.training_flops)


def _total(works: list[TrialWork], samples: int, upper_bound: bool) -> Estimate:
    if not works:
        return Estimate(0, 0, 0, 0, 0, 0, upper_bound)
    return Estimate(
        trials=len(works) * samples,
        trial_epochs=samples * sum(w.epochs for w in works),
        images_seen=samples * sum(w.epochs * w.train_images for w in works),
        forward_flops_min=min(w.forward_flops for w in works),
        forward_flops_max=max(w.forward_flops for w in works),
        training_flops=samples * sum(w.training_flops for w in works),
        upper_bound=upper_bound,
    )


@functools.cache
def _forward_flops(model: ModelConfig, num_classes: int, size: int) -> int:
    return flops_per_image(model, num_classes, size)


def hours(value: float) -> str:
    """``1234.5`` -> ``1,234.5``; below one hour two significant digits (``0.042``)."""
    return f"{value:,.1f}" if value >= 1 else f"{value:.2g}"


def si(value: float, unit: str = "") -> str:
    """``1.23e15`` -> ``1.23 P``: readable FLOP counts."""
    for factor, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()
