"""How much work a sweep is, before it starts: trial-epochs, images, FLOPs and GPU-hours.

Training FLOPs are ``flop_factor(mode)`` x the forward FLOPs of every training image seen: what
autograd computes in a step of that mode (``MODE_FLOPS``, the one place the factor is said).
Evaluation passes are not counted. GPU-hours divide each trial's FLOPs by the sustained rate
assumed for its precision (``ASSUMED_FLOPS_PER_S``, printed next to the figure) and add the
per-trial start-up (``STARTUP_S``, or what ``--measure`` timed): an order of magnitude, not a
promise. docs/spec.md says what each figure assumes.
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
from trainables.names import BN_ONLY, BN_OUTPUT, FULL, OUTPUT_ONLY, RANDOM_PARAMS

# A training step of each mode in forward passes: the forward (1), the gradient with respect to
# every layer's input down to the lowest tensor that trains (1: a conv's input gradient costs
# what its forward does), and the weight gradient of every tensor autograd differentiates (1).
# trainables/modes.py's registry says what trains: frozen tensors have requires_grad=False and
# autograd skips their weight gradient; random_params keeps requires_grad on every conv weight
# (its masks zero the gradient after autograd has computed all of it), so it pays full's price;
# output_only differentiates only model.fc, so the backward stops there (fc's FLOPs are a
# rounding error next to the convolutions'). The same words as names.MODE_WORDS, in FLOPs.
MODE_FLOPS = {
    FULL: (3, "forward + input and weight gradients"),
    BN_ONLY: (2, "forward + input gradients; frozen conv weights need no weight gradient"),
    BN_OUTPUT: (2, "forward + input gradients; frozen conv weights need no weight gradient"),
    OUTPUT_ONLY: (1, "forward only; the backward stops at the classifier"),
    RANDOM_PARAMS: (3, "forward + input and weight gradients (masked after autograd computes them)"),
}

# Sustained training throughput assumed per GPU, in FLOP/s, by the precision a trial computes in.
# The reference card is an A100 (dense tensor-core peaks: bf16 312 TFLOP/s, TF32 156 TFLOP/s,
# NVIDIA's A100 datasheet); small ResNets at batch 128 on 32 px images sustain about an eighth
# of that peak at best (40 of 312). fp32 trials run on TF32 tensor cores on CUDA
# (trainables/precision.py allows TF32 for every trial), half bf16's rate; `precision: auto`
# trains in bf16 autocast on a GPU.
PEAK_FLOPS_PER_S = {"bf16": 312e12, "fp32": 156e12}
SUSTAINED_FRACTION = 40 / 312
ASSUMED_FLOPS_PER_S = {p: peak * SUSTAINED_FRACTION for p, peak in PEAK_FLOPS_PER_S.items()}
RATE_WORDS = {"bf16": "bf16 autocast", "fp32": "fp32 on TF32 tensor cores"}

# What a trial costs besides its training steps, in seconds, when --measure has not timed it.
# The sweep layer's share (a Ray worker, the child run, its first and last writes): 24 one-epoch
# digits trials, 2 at a time on a 2-core CPU, took 2.1-2.7 s each more through `sweeper run`
# than the same trials in one process. The rest: the data set put on the device and the model
# built (CIFAR-10 from disk onto a device and a CIFAR ResNet: about 2.5 s); --measure times it.
SWEEP_LAYER_S = 2.5
STARTUP_S = 5.0


def flop_factor(mode: str) -> int:
    """A training step of ``mode`` in forward passes (MODE_FLOPS)."""
    return MODE_FLOPS[mode][0]


def compute_precision(config: Mapping[str, Any]) -> str:
    """The precision a trial's FLOPs run at on a GPU: ``auto`` is bf16 autocast there."""
    precision = config["train"].get("precision", "auto")
    return "fp32" if precision == "fp32" else "bf16"


# Sampled axes that change the amount of work; any other sampled axis (lr, ...) does not.
_WORK_AXES = ("train.epochs", "model.", "dataset.name", "dataset.train_size", "dataset.image_size")


@dataclass(frozen=True)
class TrialWork:
    epochs: int
    train_images: int
    forward_flops: int  # per image
    mode: str = FULL
    precision: str = "bf16"  # compute_precision of the trial

    @property
    def training_flops(self) -> int:
        return flop_factor(self.mode) * self.forward_flops * self.train_images * self.epochs

    @property
    def gpu_seconds(self) -> float:
        return self.training_flops / ASSUMED_FLOPS_PER_S[self.precision]


@dataclass(frozen=True)
class Estimate:
    trials: int  # trials that will run (grid points x samples with a search)
    trial_epochs: int
    images_seen: int  # training images, summed over epochs and trials
    forward_flops_min: int  # per image, over the sweep's models
    forward_flops_max: int
    training_flops: int
    upper_bound: bool  # sampled axes change the work: each sampled trial counted at its largest
    gpu_seconds: float = 0.0  # training steps, each trial at its precision's assumed rate
    modes: tuple[str, ...] = ()  # the modes trained, in names.MODES order
    precisions: tuple[str, ...] = ()  # the rates assumed (ASSUMED_FLOPS_PER_S keys)
    startup_s: float = STARTUP_S  # per trial

    @property
    def gpu_hours(self) -> float:
        """Training steps plus each trial's start-up, on one GPU each."""
        return (self.gpu_seconds + self.trials * self.startup_s) / 3600


def trial_work(config: Mapping[str, Any]) -> TrialWork:
    """The work of one trial from its resolved configuration (``Trial.config``)."""
    dataset = config["dataset"]
    flops = _forward_flops(ModelConfig(**config["model"]), DATA_SETS[dataset["name"]].num_classes,
                           image_side(dataset))
    return TrialWork(epochs=config["train"]["epochs"], train_images=train_images(dataset), forward_flops=flops,
                     mode=config.get("mode", FULL), precision=compute_precision(config))


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
    used_modes = {w.mode for w in works}
    return Estimate(
        trials=len(works) * samples,
        trial_epochs=samples * sum(w.epochs for w in works),
        images_seen=samples * sum(w.epochs * w.train_images for w in works),
        forward_flops_min=min(w.forward_flops for w in works),
        forward_flops_max=max(w.forward_flops for w in works),
        training_flops=samples * sum(w.training_flops for w in works),
        upper_bound=upper_bound,
        gpu_seconds=samples * sum(w.gpu_seconds for w in works),
        modes=tuple(m for m in MODE_FLOPS if m in used_modes),
        precisions=tuple(sorted({w.precision for w in works})),
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
