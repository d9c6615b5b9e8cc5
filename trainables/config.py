"""One trial's configuration, as typed data, validated once at the edge.

A trial is the mapping ``{dataset, model, train, mode, seed, checkpoint}``: what
``python -m trainables TRIAL.yaml`` reads and what the sweep layer resolves every
grid point into. ``TrialConfig.from_dict`` is the only way in; every problem it
finds is a ``ConfigError`` whose ``path`` names the offending key (``train.lr``,
``model.depth``) so that callers can point the user at the line they typed.

Every setting is declared once, on its field (``settings.setting``): its default, its help
text, and what it does to the trial's identity. ``KEY_EXCLUDED``, ``RESUME_IGNORES`` and
``IDENTITY_OMITS_AT_DEFAULT`` at the end are derived from those declarations.

Plain dataclasses rather than pydantic: ``trainables`` depends on torch and
torchvision only, so that a trial runs anywhere PyTorch does.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import types
from dataclasses import dataclass
from typing import Any, Mapping, Union, get_args, get_origin

from trainables import settings
from trainables.keys import copy_tree, did_you_mean, get_path, pop_path
from trainables.names import DATASETS, FULL, MODES
from trainables.settings import PLACE, RUN, setting

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "step", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")
BN_INITS = ("uniform", "ones")
FIDELITIES = ("sweeper", "open_lth")  # train.fidelity's help says what each one means


class ConfigError(ValueError):
    """A bad value in a trial configuration. ``path`` is dotted (``train.optimizer.name``)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class DatasetConfig:
    name: str = setting(help="the data set, one of names.DATASETS")
    root: str | None = setting(None, help="folder holding the data set; ~ is expanded", identity=PLACE)
    download: bool = setting(False, help="fetch cifar10/100 when missing and the network allows it",
                             identity=PLACE)
    image_size: int | None = setting(None, help="digits/synthetic side in pixels (default 32)")
    train_size: int | None = setting(None, help="keep only the first N training images (smoke runs)")
    test_size: int | None = setting(None, help="keep only the first N test images")
    stand_in: bool = setting(False, omit_at_default=True,
                             help="train on synthetic class patterns of this set's image side and class count "
                                  "instead of its files (`sweeper run --smoke-test` where the set is absent)")
    num_workers: int = setting(8, help="DataLoader workers for streamed (ImageNet) data", identity=PLACE)

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
    family: str = setting(help="the model family, one of models.shapes.FAMILIES")
    depth: int = setting(help="layers; models/shapes.py says which depths each family builds")
    width: int = setting(1, help="channel multiplier (cifar_resnet, vgg) or wide-ResNet factor (imagenet_resnet)")
    bn_init: str = setting("uniform", help='gamma ~ U[0, 1] as in the paper, or "ones"')

    def validate(self) -> None:
        # imported here: shapes.py (torch-free) raises this module's ConfigError
        from trainables.models.shapes import check_architecture

        _one_of("model.bn_init", self.bn_init, BN_INITS)
        check_architecture(self.family, self.depth, self.width)


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = setting("sgd", help="sgd or adam")
    momentum: float = setting(0.9, help="sgd only")
    nesterov: bool = setting(False, help="sgd only")
    beta1: float = setting(0.9, help="adam only")
    beta2: float = setting(0.999, help="adam only")

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
    name: str = setting("constant", help="constant, step or cosine (trainables/schedule.py)")
    milestones: tuple[int, ...] = setting((), help="step: epochs at which lr is multiplied by factor")
    step_size: int | None = setting(None, help="step: or multiply every step_size epochs")
    factor: float = setting(0.1, help="step: the multiplier")
    min_lr: float = setting(0.0, help="cosine: the floor, in absolute lr units")

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
    epochs: int = setting(help="passes over the training set")
    batch_size: int = setting(128, help="training images per step")
    lr: float = setting(0.1, help="the learning rate (the peak, with a warm-up or a schedule)")
    optimizer: OptimizerConfig = setting(default_factory=OptimizerConfig, help="the optimizer")
    weight_decay: float = setting(1e-4, help="plain L2 on every trainable tensor, as open_lth does")
    lr_schedule: ScheduleConfig = setting(default_factory=ScheduleConfig, help="the learning-rate schedule")
    warmup_epochs: float = setting(0, help="linear warm-up from ~0 to lr, in epochs (fractions allowed)")
    label_smoothing: float = setting(0.0, help="label smoothing of the training loss (not of the test loss)")
    augment: bool = setting(True, help="random crop (pad 4) + horizontal flip for 32x32 data")
    precision: str = setting("auto", help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32 or bf16")
    device: str = setting("auto", help="auto (cuda when available, else cpu), cpu or cuda", identity=RUN)
    compile: bool = setting(False, help="torch.compile the model", identity=RUN)
    eval_batch_size: int = setting(1024, help="test images per evaluation batch", identity=RUN)
    fidelity: str = setting(
        "sweeper", omit_at_default=True,
        help="whose small conventions the trial follows where this project and open_lth (the paper's "
             "code) differ by well under a point of accuracy (docs/fidelity.md lists every point). "
             "sweeper: CIFAR normalised with CIFAR's own mean/std, every bias starts at 0, warm-up's first "
             "step already has lr / warmup_steps. open_lth: CIFAR normalised with ImageNet's mean/std, "
             "biases (the frozen fc bias, VGG's conv biases) keep PyTorch's default "
             "U(-1/sqrt(fan_in), 1/sqrt(fan_in)), warm-up's first step has lr 0 (open_lth's "
             "min(1, step / warmup_steps)).")

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
    every_epochs: int = setting(1, help="save a checkpoint every N epochs; also always after the last")

    def validate(self) -> None:
        if self.every_epochs < 1:
            raise ConfigError("checkpoint.every_epochs", f"must be >= 1, got {self.every_epochs}")


@dataclass(frozen=True)
class TrialConfig:
    dataset: DatasetConfig = setting(help="what the trial trains and tests on")
    model: ModelConfig = setting(help="the network")
    train: TrainConfig = setting(help="how it trains")
    mode: str = setting(FULL, help="which parameters train, one of names.MODES (trainables/modes.py)")
    seed: int = setting(0, help="draws the weights, the random_params masks and every epoch's data order")
    checkpoint: CheckpointConfig = setting(default_factory=CheckpointConfig, help="how often a checkpoint is saved",
                                           identity=PLACE)

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
        return _to_plain(self)


# --- a trial's identity, derived from the declarations above ------------------------------

# Left out of a trial's key: they change where or how often, never what is computed.
KEY_EXCLUDED: tuple[str, ...] = settings.declared(TrialConfig, PLACE)
# Settings a checkpoint resumes across: the above, and how the trial runs (device, compile, ...).
RESUME_IGNORES: frozenset[str] = frozenset(settings.leaves(TrialConfig, KEY_EXCLUDED
                                                           + settings.declared(TrialConfig, RUN)))
# Settings added after trial keys were first pinned. A trial's identity (its sweep key, its
# checkpoint's config hash) leaves each one out while it holds its default, as open_lth hashes
# only non-default hyperparameters: adding a setting must not rename every finished run.
IDENTITY_OMITS_AT_DEFAULT: dict[str, Any] = settings.omitted_at_default(TrialConfig)


def identity_view(config: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a ``to_dict()``-shaped config minus the IDENTITY_OMITS_AT_DEFAULT settings
    that hold their default: what trial keys and checkpoint hashes are computed from."""
    kept = copy_tree(config)
    for path, default in IDENTITY_OMITS_AT_DEFAULT.items():
        if get_path(kept, path, _ABSENT) == default:
            pop_path(kept, path)
    return kept


_ABSENT = object()


# --- building dataclasses from untyped mappings -------------------------------------------


def _build(cls: type, data: Any, path: str) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(path, f"must be a mapping, got {_kind(data)}")
    hints = settings.type_hints(cls)
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


def _to_plain(value: Any) -> Any:
    # dataclasses.asdict deep-copies every leaf on the way; configs hold immutable leaves
    if dataclasses.is_dataclass(value):
        return {name: _to_plain(getattr(value, name)) for name in _field_names(type(value))}
    return copy_tree(value)


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))
