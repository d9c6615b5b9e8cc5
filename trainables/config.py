"""One trial's configuration, as typed data, validated once at the edge.

A trial is the mapping ``{dataset, model, train, mode, seed, checkpoint}``: what
``python -m trainables TRIAL.yaml`` reads and what the sweep layer resolves every
grid point into. ``TrialConfig.from_dict`` is the only way in; every problem it
finds is a ``ConfigError`` whose ``path`` names the offending key (``train.lr``,
``model.depth``) so that callers can point the user at the line they typed.

Plain dataclasses rather than pydantic: ``trainables`` depends on torch and
torchvision only, so that a trial runs anywhere PyTorch does.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os
import types
from dataclasses import dataclass, field
from typing import Any, Mapping, Union, get_args, get_origin, get_type_hints

from trainables.keys import did_you_mean, get_path, pop_path
from trainables.names import DATASETS, MODES

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "step", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
BN_INITS = ("uniform", "ones")
# train.fidelity: whose small conventions a trial follows where this project and open_lth (the
# paper's code) differ by well under a point of accuracy; docs/fidelity.md lists every point.
#   sweeper:  CIFAR normalised with CIFAR's own mean/std, every bias starts at 0, warm-up's first
#             step already has lr / warmup_steps.
#   open_lth: CIFAR normalised with ImageNet's mean/std, biases (the frozen fc bias, VGG's conv
#             biases) keep PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), warm-up's first
#             step has lr 0 (open_lth's min(1, step / warmup_steps)).
FIDELITIES = ("sweeper", "open_lth")

# Settings added after trial keys were first pinned. A trial's identity (its sweep key, its
# checkpoint's config hash) leaves each one out while it holds this default, as open_lth hashes
# only non-default hyperparameters: adding a setting must not rename every finished run.
IDENTITY_OMITS_AT_DEFAULT: dict[str, Any] = {"train.fidelity": "sweeper"}


class ConfigError(ValueError):
    """A bad value in a trial configuration. ``path`` is dotted (``train.optimizer.name``)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    root: str | None = None  # folder holding the data set; ~ is expanded
    download: bool = False  # fetch cifar10/100 when missing and the network allows it
    image_size: int | None = None  # digits/synthetic side in pixels (default 32)
    train_size: int | None = None  # keep only the first N training images (smoke runs)
    test_size: int | None = None  # keep only the first N test images
    num_workers: int = 8  # DataLoader workers for streamed (ImageNet) data

    def validate(self) -> None:
        _one_of("dataset.name", self.name, DATASETS)
        if self.name == "imagenet" and not self.root:
            raise ConfigError("dataset.root", "imagenet needs a root folder with train/ and val/")
        for key in ("image_size", "train_size", "test_size"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ConfigError(f"dataset.{key}", f"must be >= 1, got {value}")
        if self.num_workers < 0:
            raise ConfigError("dataset.num_workers", f"must be >= 0, got {self.num_workers}")

    @property
    def expanded_root(self) -> str | None:
        return os.path.expanduser(self.root) if self.root else None


@dataclass(frozen=True)
class ModelConfig:
    family: str
    depth: int
    width: int = 1  # channel multiplier (cifar_resnet, vgg) or wide-ResNet factor (imagenet_resnet)
    bn_init: str = "uniform"  # gamma ~ U[0, 1] as in the paper, or "ones"

    def validate(self) -> None:
        # imported here: shapes.py (torch-free) raises this module's ConfigError
        from trainables.models.shapes import check_architecture

        _one_of("model.bn_init", self.bn_init, BN_INITS)
        check_architecture(self.family, self.depth, self.width)


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "sgd"
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    beta1: float = 0.9  # adam only
    beta2: float = 0.999  # adam only

    def validate(self) -> None:
        _one_of("train.optimizer.name", self.name, OPTIMIZERS)
        for key in ("momentum", "beta1", "beta2"):
            value = getattr(self, key)
            if not (0.0 <= value < 1.0):
                raise ConfigError(f"train.optimizer.{key}", f"must be in [0, 1), got {value}")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("train.optimizer.nesterov", "nesterov needs momentum > 0")


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "constant"
    milestones: tuple[int, ...] = ()  # step: epochs at which lr is multiplied by factor
    step_size: int | None = None  # step: or multiply every step_size epochs
    factor: float = 0.1  # step: the multiplier
    min_lr: float = 0.0  # cosine: the floor, in absolute lr units

    def validate(self, epochs: int) -> None:
        _one_of("train.lr_schedule.name", self.name, SCHEDULES)
        if self.name == "step":
            if bool(self.milestones) == (self.step_size is not None):
                raise ConfigError("train.lr_schedule", "step needs exactly one of milestones or step_size")
            if list(self.milestones) != sorted(set(self.milestones)) or any(m < 1 for m in self.milestones):
                raise ConfigError("train.lr_schedule.milestones",
                                  f"must be strictly increasing epochs >= 1, got {list(self.milestones)}")
            if self.step_size is not None and self.step_size < 1:
                raise ConfigError("train.lr_schedule.step_size", f"must be >= 1, got {self.step_size}")
            if not (0.0 < self.factor <= 1.0):
                raise ConfigError("train.lr_schedule.factor", f"must be in (0, 1], got {self.factor}")
        if self.min_lr < 0:
            raise ConfigError("train.lr_schedule.min_lr", f"must be >= 0, got {self.min_lr}")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int = 128
    lr: float = 0.1
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    weight_decay: float = 1e-4  # plain L2 on every trainable tensor, as open_lth does
    lr_schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    warmup_epochs: float = 0  # linear warm-up from ~0 to lr, in epochs (fractions allowed)
    label_smoothing: float = 0.0
    augment: bool = True  # random crop (pad 4) + horizontal flip for 32x32 data
    precision: str = "auto"  # bf16 autocast on CUDA, fp32 on CPU
    device: str = "auto"  # cuda when available, else cpu
    compile: bool = False  # torch.compile the model
    eval_batch_size: int = 1024
    fidelity: str = "sweeper"  # or open_lth: see FIDELITIES above and docs/fidelity.md

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError("train.epochs", f"must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError("train.batch_size", f"must be >= 1, got {self.batch_size}")
        if self.eval_batch_size < 1:
            raise ConfigError("train.eval_batch_size", f"must be >= 1, got {self.eval_batch_size}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError("train.lr", f"must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError("train.weight_decay", f"must be a finite number >= 0, got {self.weight_decay}")
        if not (0 <= self.warmup_epochs < self.epochs):
            raise ConfigError("train.warmup_epochs", f"must be in [0, epochs), got {self.warmup_epochs}")
        if not (0.0 <= self.label_smoothing < 1.0):
            raise ConfigError("train.label_smoothing", f"must be in [0, 1), got {self.label_smoothing}")
        _one_of("train.precision", self.precision, PRECISIONS)
        _one_of("train.device", self.device, DEVICES)
        _one_of("train.fidelity", self.fidelity, FIDELITIES)
        self.optimizer.validate()
        self.lr_schedule.validate(self.epochs)
        bad = [m for m in self.lr_schedule.milestones if m > self.epochs]
        if bad:
            raise ConfigError("train.lr_schedule.milestones", f"{bad} lie past epochs={self.epochs}")


@dataclass(frozen=True)
class CheckpointConfig:
    every_epochs: int = 1  # also always saved after the last epoch

    def validate(self) -> None:
        if self.every_epochs < 1:
            raise ConfigError("checkpoint.every_epochs", f"must be >= 1, got {self.every_epochs}")


@dataclass(frozen=True)
class TrialConfig:
    dataset: DatasetConfig
    model: ModelConfig
    train: TrainConfig
    mode: str = "full"
    seed: int = 0
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrialConfig":
        """Build and validate; raises ConfigError naming the first bad key."""
        config = _build(cls, data, "")
        config.validate()
        return config

    def validate(self) -> None:
        self.dataset.validate()
        self.model.validate()
        self.train.validate()
        self.checkpoint.validate()
        _one_of("mode", self.mode, MODES)
        if self.seed < 0:
            raise ConfigError("seed", f"must be >= 0, got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples as lists) that from_dict accepts back."""
        return _plain(dataclasses.asdict(self))


def identity_view(config: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a ``to_dict()``-shaped config minus the IDENTITY_OMITS_AT_DEFAULT settings
    that hold their default: what trial keys and checkpoint hashes are computed from."""
    kept = copy.deepcopy(dict(config))
    for path, default in IDENTITY_OMITS_AT_DEFAULT.items():
        if get_path(kept, path, _ABSENT) == default:
            pop_path(kept, path)
    return kept


_ABSENT = object()


# --- building dataclasses from untyped mappings -------------------------------------------


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    # evaluating string annotations compiles code each time: a 10,000-trial spec spent most of
    # its expansion here, once per dataclass per trial
    return get_type_hints(cls)


def _build(cls: type, data: Any, path: str) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(path, f"must be a mapping, got {_kind(data)}")
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(where, f"unknown key{did_you_mean(key, fields)}")
    values = {}
    for name, f in fields.items():
        where = f"{path}.{name}" if path else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(where, "is required")
            continue
        values[name] = _coerce(hints[name], data[name], where)
    return cls(**values)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            if len(args) < len(get_args(hint)):
                return None
            raise ConfigError(path, "must not be empty")
        return _coerce(args[0], value, path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"must be a list, got {_kind(value)}")
        (item,) = [a for a in get_args(hint) if a is not Ellipsis]
        return tuple(_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"must be true or false, got {_kind(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(path, f"must be an integer, got {_kind(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"must be a number, got {_kind(value)}")
        value = float(value)
        if math.isnan(value):
            raise ConfigError(path, "must be a number, got NaN")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"must be a string, got {_kind(value)}")
        return value
    raise TypeError(f"unsupported config type {hint!r} at {path}")  # a bug here, not user input


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, (bool, int, float, str)):
        return f"{type(value).__name__} {value!r}"
    return type(value).__name__


def _one_of(path: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        parts = path.split(".")
        what = parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]
        raise ConfigError(path, f"unknown {what} {value!r}"
                                f"{did_you_mean(value, allowed)}; one of {', '.join(allowed)}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
