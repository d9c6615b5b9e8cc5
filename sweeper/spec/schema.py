"""A study spec: the typed schema of a sweep file, and loading one.

Two schemas meet here, each declared once:
- the sweep-level keys (name, grid, search, scheduler, resources, ...) are the pydantic models
  below, with ``extra="forbid"`` and strict types;
- ``dataset``, ``model`` and ``train`` are the base trial configuration, whose schema is
  ``trainables.config.TrialConfig``: every expanded trial goes through ``TrialConfig.from_dict``.

``load_spec`` validates everything (YAML, schema, every trial, the search space at its bounds,
the scheduler against the trials) before returning, so nothing starts on a bad spec. Every problem
becomes one ``SpecError`` naming the key path the user typed and its line.

The rest of the spec lives beside this module, one concept each: ``sweeper.spec.axes`` (axis names,
the grid's expansion into trials, sampled values), ``sweeper.spec.messages`` (pydantic's errors as
one line), ``sweeper.spec.yamlio`` (the YAML and its lines). Their public names used elsewhere
(``resolve_axis``, ``AXES``, ``MAX_TRIALS``, ``GridAxis``, ``GridBlock``) are importable from here too.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from sweeper.spec.axes import (AXES, MAX_TRIALS, GridAxis, GridBlock, check_plan_size, check_space_bounds, expand,
                               grid_blocks, resolve_axis, sampled_trial)
from sweeper.core.errors import SpecError, kind_of
from sweeper.spec.foreign import distribution_message, key_hint, normalise_direction
from sweeper.spec.messages import schema_error
from sweeper.spec.tracking_uri import check_tracking_uri
from sweeper.core.trial import Trial
from sweeper.spec.yamlio import YamlDocument, load_yaml, parse_yaml
from trainables.config import CheckpointConfig, ConfigError
from trainables.keys import did_you_mean, get_path
from trainables.names import DEFAULT_METRIC, METRICS, PER_EPOCH_METRICS, direction as default_direction

__all__ = ["ALGORITHMS", "AXES", "DISTRIBUTIONS", "MAX_TRIALS", "NAME_PATTERN", "AshaScheduler", "AxisName",
           "CheckpointSettings", "Distribution", "FifoScheduler", "GridAxis", "GridBlock", "Resources", "Scheduler",
           "Search", "Spec", "TrackingSettings", "load_spec", "parse_spec", "resolve_axis"]

ALGORITHMS = ("grid", "random", "optuna")
DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice")

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"

AxisName = Annotated[str, AfterValidator(resolve_axis)]  # a search.space key: "lr" -> "train.lr"
# Optuna's and W&B's maximize/minimize are taken too, and read as sweeper's max/min
Direction = Annotated[Literal["max", "min"], BeforeValidator(normalise_direction)]


# --- the sweep-level schema --------------------------------------------------------------------


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Distribution(_Schema):
    """One sampled axis. YAML: ``{loguniform: [low, high]}``, ``{uniform: [low, high]}``,
    ``{randint: [low, high]}`` (integers, ``high`` excluded, as in Ray Tune) or ``{choice: [v, ...]}``."""

    kind: Literal[DISTRIBUTIONS]  # type: ignore[valid-type]
    low: Optional[Union[int, float]] = None  # loguniform, uniform, randint
    high: Optional[Union[int, float]] = None
    values: tuple[Any, ...] = ()  # choice

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "kind" in data:
            return data  # already in field form (built in code)
        form = ("must be one of {loguniform: [low, high]}, {uniform: [low, high]}, {randint: [low, high]}, "
                "{choice: [value, ...]}")
        foreign = distribution_message(data)
        if foreign:
            raise ValueError(foreign)
        if not isinstance(data, Mapping) or len(data) != 1:
            raise ValueError(f"{form}, got {kind_of(data)}")
        ((kind, args),) = data.items()
        if kind not in DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {kind!r}{did_you_mean(kind, DISTRIBUTIONS)}; "
                             f"one of {', '.join(DISTRIBUTIONS)}")
        if kind == "choice":
            if not isinstance(args, list) or not args:
                raise ValueError(f"choice needs a non-empty list of values, got {kind_of(args)}")
            return {"kind": kind, "values": tuple(args)}
        if not isinstance(args, list) or len(args) != 2:
            raise ValueError(f"{kind} needs [low, high], got {kind_of(args)}")
        low, high = args
        for label, v in (("low", low), ("high", high)):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{kind} needs numbers, got {label}={kind_of(v)}")
        return {"kind": kind, "low": low, "high": high}

    @model_validator(mode="after")
    def _invariants(self) -> "Distribution":
        if self.kind == "choice":
            seen = []
            for v in self.values:
                if v in seen:
                    raise ValueError(f"choice values must differ, got {v!r} twice")
                seen.append(v)
            return self
        low, high = self.low, self.high
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"low and high must be finite numbers, got low={low}, high={high}")
        if self.kind == "randint" and not (isinstance(low, int) and isinstance(high, int)):
            raise ValueError(f"randint needs integers, got low={low}, high={high}")
        if not low < high:
            raise ValueError(f"low < high must hold, got low={low}, high={high}")
        if self.kind == "loguniform" and low <= 0:
            raise ValueError(f"loguniform needs low > 0, got low={low}")
        return self

    def bounds(self) -> list[Any]:
        """The values a sample can reach at the edges (every value, for a choice)."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "randint":
            return [self.low, self.high - 1]
        return [self.low, self.high]


class Search(_Schema):
    algorithm: Literal[ALGORITHMS] = "grid"  # type: ignore[valid-type]
    num_samples: int = Field(1, ge=1)  # sampled points per grid point (random, optuna)
    space: dict[AxisName, Distribution] = {}  # keyed by dotted path: {"train.lr": Distribution(...)}
    metric: Literal[METRICS] = DEFAULT_METRIC  # type: ignore[valid-type]
    direction: Optional[Direction] = None  # default: min for losses and epoch_s, else max


class FifoScheduler(_Schema):
    name: Literal["fifo"]


class AshaScheduler(_Schema):
    name: Literal["asha"]
    grace_period: int = Field(1, ge=1)  # epochs every trial runs before it may be stopped
    reduction_factor: float = Field(4.0, gt=1, allow_inf_nan=False)
    max_t: Optional[int] = Field(None, ge=1)  # default: the longest trial's epochs
    metric: Optional[Literal[METRICS]] = None  # type: ignore[valid-type]  # default: search.metric
    direction: Optional[Direction] = None


Scheduler = Annotated[Union[FifoScheduler, AshaScheduler], Field(discriminator="name")]


class Resources(_Schema):
    cpu: float = Field(1.0, ge=0, allow_inf_nan=False)  # per trial
    gpu: float = Field(0.0, ge=0, allow_inf_nan=False)  # per trial; fractions pack trials onto one card
    # trials trained as one fused network (sweeper.plan.arrays): K >= 1 (1: solo) or "auto" (measured)
    array: Union[Annotated[int, Field(ge=1)], Literal["auto"]] = 1


class CheckpointSettings(_Schema):
    every_epochs: int = Field(CheckpointConfig.every_epochs, ge=1)


class TrackingSettings(_Schema):
    uri: Optional[str] = None

    @field_validator("uri")
    @classmethod
    def _usable_by_mlflow(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            check_tracking_uri(value)
        return value


class Spec(_Schema):
    """A validated study. Build it with ``load_spec``; ``trials()`` lists its grid points."""

    name: str  # MLflow experiment and parent run; _name_chars checks NAME_PATTERN
    description: str = ""
    dataset: dict[str, Any]  # base trial config: TrialConfig's schema, checked per trial
    model: dict[str, Any]
    train: dict[str, Any]
    grid: Any = None  # as typed; resolved into blocks of axes (sweeper.spec.axes.grid_blocks)
    search: Optional[Search] = None
    scheduler: Scheduler = FifoScheduler(name="fifo")
    resources: Resources = Resources()
    max_concurrent: Optional[int] = Field(None, ge=1)  # default: as many as resources allow
    max_failures: int = Field(2, ge=0)  # retries of a crashed trial, from its last checkpoint
    checkpoint: CheckpointSettings = CheckpointSettings()
    tracking: TrackingSettings = TrackingSettings()

    _path: str = PrivateAttr("")
    _text: str = PrivateAttr("")
    _doc: Optional[YamlDocument] = PrivateAttr(None)
    _blocks: tuple[GridBlock, ...] = PrivateAttr(())
    _trials: tuple[Trial, ...] = PrivateAttr(())
    _name_axes: tuple[str, ...] = PrivateAttr(())
    _objective: tuple[str, str] = PrivateAttr((DEFAULT_METRIC, "max"))

    @field_validator("name", mode="before")
    @classmethod
    def _name_chars(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.match(NAME_PATTERN, value):
            raise ValueError(f"must use only letters, digits, '_', '.' and '-', got {value!r}")
        return value

    # -- what others read -----------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._path

    @property
    def text(self) -> str:
        """The spec file's text, exactly as read (logged as an artifact of the parent run)."""
        return self._text

    @property
    def spec_hash(self) -> str:
        return hashlib.sha256(self._text.encode("utf-8")).hexdigest()

    @property
    def metric(self) -> str:
        """The metric the sweep optimises (search and ASHA): search.metric, scheduler.metric or test_acc."""
        return self._objective[0]

    @property
    def direction(self) -> str:
        return self._objective[1]

    def trials(self) -> list[Trial]:
        """The grid points, in a stable order: grid blocks in order, then the cartesian product of
        their axes in the order typed; a point already listed by an earlier block is dropped."""
        return list(self._trials)

    def varying_axes(self) -> list[str]:
        """Dotted paths whose values differ between trials (grid axes, then sampled axes)."""
        return list(self._name_axes)

    def sampled_trial_count(self) -> int:
        """Trials a random or optuna search runs: num_samples draws of the space per grid point."""
        if self.search is None or not self.search.space:
            return 0
        return self.search.num_samples * len(self._trials)

    def make_trial(self, overrides: Mapping[str, Any], base: Trial | None = None) -> Trial:
        """A trial from ``base`` (default: the spec's base config) with dotted-path ``overrides``
        (sampled values: ``{"train.lr": 0.031}``), validated like every grid trial."""
        try:
            return sampled_trial(base.config if base is not None else self._base_config(), overrides, self._name_axes)
        except ConfigError as e:
            raise self._error(self._space_key(e.path), e.message) from None

    # -- building -------------------------------------------------------------------------------

    def _line(self, key: str | None) -> int | None:
        return self._doc.line_of(key) if self._doc is not None and key else None

    def _error(self, key: str | None, message: str) -> SpecError:
        if key and message == "unknown key":  # a trial setting, refused by TrialConfig
            message += key_hint(key, self._typed_value(key))
        return SpecError(self._path, key, message, self._line(key))

    def _typed_value(self, key: str) -> Any:
        return get_path(self._doc.data, key) if self._doc is not None else None

    def _base_config(self) -> dict[str, Any]:
        return {"dataset": copy.deepcopy(self.dataset), "model": copy.deepcopy(self.model),
                "train": copy.deepcopy(self.train), "checkpoint": {"every_epochs": self.checkpoint.every_epochs}}

    def _space_key(self, path: str) -> str:
        """The typed key of a sampled axis (``search.space.lr``), or the base key."""
        raw_space = (self._doc.data.get("search") or {}).get("space") if self._doc else None
        if isinstance(raw_space, dict):
            for typed in raw_space:
                if _resolves_to(typed) == path:
                    return f"search.space.{typed}"
        return path

    def _resolve(self) -> None:
        self._blocks = tuple(grid_blocks(self.grid, self._error))
        self._check_search()
        space = self.search.space if self.search is not None else {}
        # grid points x samples, counted before the grid is expanded or a sample drawn
        check_plan_size(self._blocks, self.search.num_samples if space else 0, self._error)
        trials, self._name_axes = expand(self._blocks, self._base_config(), space, self._error)
        self._trials = tuple(trials)
        check_space_bounds(space, self._trials, self._space_key, self._error)
        self._check_scheduler()
        self._check_resources()

    def _check_search(self) -> None:
        search = self.search
        metric, direction = DEFAULT_METRIC, None
        if search is not None:
            metric, direction = search.metric, search.direction
            raw_space = self._doc.data["search"].get("space", {}) if self._doc else {}
            typed = {_resolves_to(k): k for k in raw_space} if isinstance(raw_space, dict) else {}
            if search.algorithm == "grid":
                if search.space:
                    raise self._error("search.space", "sampled axes need algorithm random or optuna "
                                                      "(with algorithm grid, list the values under grid)")
                if search.num_samples != 1:
                    raise self._error("search.num_samples", f"must be 1 with algorithm grid (it samples nothing), "
                                                            f"got {search.num_samples}")
            elif not search.space:
                raise self._error("search.space", f"{search.algorithm} needs at least one axis to sample, "
                                                  "e.g. space: {lr: {loguniform: [0.01, 1.0]}}")
            grid_axes = {a.path: f"{b.where}.{a.typed}" for b in self._blocks for a in b.axes}
            for path, dist in search.space.items():
                key = f"search.space.{typed.get(path, path)}"
                if path in grid_axes:
                    raise self._error(key, f"{typed.get(path, path)} is also a grid axis ({grid_axes[path]}); "
                                           "an axis is either listed or sampled, not both")
                if search.algorithm == "optuna" and dist.kind == "choice":
                    odd = [v for v in dist.values if not isinstance(v, (str, int, float, bool, type(None)))]
                    if odd:
                        raise self._error(key, f"optuna chooses among plain values (numbers, strings, booleans), "
                                               f"got {kind_of(odd[0])}")
        scheduler = self.scheduler
        if isinstance(scheduler, AshaScheduler):
            if scheduler.metric is not None:
                if search is not None and "metric" in self._doc.data["search"] and scheduler.metric != metric:
                    raise self._error("scheduler.metric", f"{scheduler.metric} differs from search.metric {metric}; "
                                                          "a sweep optimises one metric: give it once")
                metric = scheduler.metric
            if scheduler.direction is not None:
                if direction is not None and scheduler.direction != direction:
                    raise self._error("scheduler.direction", f"{scheduler.direction} differs from search.direction "
                                                             f"{direction}: give it once")
                direction = scheduler.direction
            if metric not in PER_EPOCH_METRICS:
                where = "scheduler.metric" if scheduler.metric else "search.metric"
                raise self._error(where, f"asha compares trials every epoch, so it needs a per-epoch metric "
                                         f"({', '.join(PER_EPOCH_METRICS)}), got {metric}")
        if direction is None:
            direction = default_direction(metric)
        self._objective = (metric, direction)

    def _check_scheduler(self) -> None:
        scheduler = self.scheduler
        if not isinstance(scheduler, AshaScheduler):
            return
        longest = max(t.config["train"]["epochs"] for t in self._trials)
        if scheduler.max_t is not None and scheduler.grace_period > scheduler.max_t:
            raise self._error("scheduler.grace_period", f"grace_period <= max_t must hold, "
                                                        f"got grace_period={scheduler.grace_period}, max_t={scheduler.max_t}")
        if scheduler.grace_period > longest:
            raise self._error("scheduler.grace_period", f"{scheduler.grace_period} is more than the longest trial's "
                                                        f"epochs ({longest}): asha would never stop a trial")

    def _check_resources(self) -> None:
        r = self.resources
        if r.cpu == 0 and r.gpu == 0:
            raise self._error("resources", "cpu and gpu are both 0: a trial needs some cpu or gpu to run on")
        if r.gpu > 1 and not float(r.gpu).is_integer():
            raise self._error("resources.gpu", f"more than one GPU must be a whole number, got {r.gpu}")


# --- loading -----------------------------------------------------------------------------------


def load_spec(path: str | Path) -> Spec:
    """Read, parse and validate a spec file completely. Raises SpecError (one line) on any problem."""
    return _validated(load_yaml(path))


def parse_spec(text: str, file: str = "<spec>") -> Spec:
    """As load_spec, from text (tests, specs stored in MLflow)."""
    return _validated(parse_yaml(text, file))


def _validated(doc: YamlDocument) -> Spec:
    try:
        spec = Spec.model_validate(doc.data)
    except ValidationError as e:
        raise schema_error(doc, e, Spec) from None
    spec._path, spec._text, spec._doc = doc.path, doc.text, doc
    spec._resolve()
    return spec


def _resolves_to(typed: str) -> str | None:
    try:
        return resolve_axis(typed)
    except ValueError:
        return None
