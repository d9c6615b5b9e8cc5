"""A study spec: the typed schema of a sweep file, and its expansion into trials.

Two schemas meet here, each declared once:
- the sweep-level keys (name, grid, search, scheduler, resources, ...) are the pydantic models
  below, with ``extra="forbid"`` and strict types;
- ``dataset``, ``model`` and ``train`` are the base trial configuration, whose schema is
  ``trainables.config.TrialConfig``: every expanded trial goes through ``TrialConfig.from_dict``.

``load_spec`` validates everything (YAML, schema, every trial, the search space at its bounds,
the scheduler against the trials) before returning, so nothing starts on a bad spec. Every problem
becomes one ``SpecError`` naming the key path the user typed and its line.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional, Union, get_args, get_origin, get_type_hints

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from sweeper.errors import SpecError
from sweeper.trial import KEY_EXCLUDED, Trial, make_trial, trial_key
from sweeper.yamlio import YamlDocument, load_yaml, parse_yaml
from trainables.config import CheckpointConfig, ConfigError, TrialConfig
from trainables.names import DEFAULT_METRIC, METRICS, PER_EPOCH_METRICS, direction as default_direction


ALGORITHMS = ("grid", "random", "optuna")
DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice")
MAX_TRIALS = 10_000  # grid points in one spec; more is a typo (an axis of 10,000 values), not a study

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"


# --- grid axes: names resolved against TrialConfig ---------------------------------------------


def _leaf_paths(cls: type, prefix: str) -> list[str]:
    """Dotted paths of every setting (leaf) of a TrialConfig section."""
    hints = get_type_hints(cls)
    paths = []
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(hints[f.name]):
            paths += _leaf_paths(hints[f.name], path)
        else:
            paths.append(path)
    return paths


_ALL_LEAVES = tuple(p for p in _leaf_paths(TrialConfig, "") if not p.startswith("checkpoint."))
_SECTIONS = tuple(sorted({p.rsplit(".", 1)[0] for p in _ALL_LEAVES if "." in p}))
# Leaves that cannot change a trial's result are left out of its key, so they cannot be axes.
_NOT_AXES = tuple(p for p in _ALL_LEAVES if any(p == x or p.startswith(x + ".") for x in KEY_EXCLUDED))
AXES = tuple(p for p in _ALL_LEAVES if p not in _NOT_AXES)
_SHORT: dict[str, list[str]] = {}
for _path in AXES:
    if _path in ("mode", "seed") or _path.startswith(("model.", "train.")):
        _SHORT.setdefault(_path.rsplit(".", 1)[-1], []).append(_path)


def resolve_axis(name: str) -> str:
    """``depth`` -> ``model.depth``; ``train.optimizer.momentum`` stays. ValueError says why not."""
    if name in AXES and ("." in name or name in ("mode", "seed")):
        return name
    if name in _NOT_AXES or name == "checkpoint" or name.startswith("checkpoint."):
        raise ValueError(f"{name} cannot be an axis: it does not change a trial's result")
    if name in _SECTIONS or name in ("dataset", "model", "train"):
        inside = [p for p in AXES if p.startswith(name + ".")]
        raise ValueError(f"{name} is a section, not a setting; use one of its keys ({', '.join(inside[:4])}, ...)")
    if "." not in name:
        found = _SHORT.get(name, [])
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ValueError(f"ambiguous axis {name!r}: say {' or '.join(found)}")
        elsewhere = [p for p in AXES if p.rsplit(".", 1)[-1] == name]
        if elsewhere:
            raise ValueError(f"unknown axis {name!r} (did you mean {elsewhere[0]!r}?)")
    choices = list(_SHORT) + [p for p in AXES if "." in p]
    return _raise_unknown("axis", name, choices)


def _raise_unknown(what: str, name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown {what} {name!r}{hint}")


AxisName = Annotated[str, AfterValidator(resolve_axis)]


# --- the sweep-level schema --------------------------------------------------------------------


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Distribution(_Schema):
    """One sampled axis. YAML: ``{loguniform: [low, high]}``, ``{uniform: [low, high]}``,
    ``{randint: [low, high]}`` (integers, ``high`` excluded, as in Ray Tune) or ``{choice: [v, ...]}``."""

    kind: Literal["loguniform", "uniform", "randint", "choice"]
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
        if not isinstance(data, Mapping) or len(data) != 1:
            raise ValueError(f"{form}, got {_kind(data)}")
        ((kind, args),) = data.items()
        if kind not in DISTRIBUTIONS:
            close = difflib.get_close_matches(str(kind), DISTRIBUTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown distribution {kind!r}{hint}; one of {', '.join(DISTRIBUTIONS)}")
        if kind == "choice":
            if not isinstance(args, list) or not args:
                raise ValueError(f"choice needs a non-empty list of values, got {_kind(args)}")
            return {"kind": kind, "values": tuple(args)}
        if not isinstance(args, list) or len(args) != 2:
            raise ValueError(f"{kind} needs [low, high], got {_kind(args)}")
        low, high = args
        for label, v in (("low", low), ("high", high)):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{kind} needs numbers, got {label}={_kind(v)}")
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
    algorithm: Literal["grid", "random", "optuna"] = "grid"
    num_samples: int = Field(1, ge=1)  # sampled points per grid point (random, optuna)
    space: dict[AxisName, Distribution] = {}  # keyed by dotted path: {"train.lr": Distribution(...)}
    metric: Literal[METRICS] = DEFAULT_METRIC  # type: ignore[valid-type]
    direction: Optional[Literal["max", "min"]] = None  # default: min for losses and epoch_s, else max


class FifoScheduler(_Schema):
    name: Literal["fifo"]


class AshaScheduler(_Schema):
    name: Literal["asha"]
    grace_period: int = Field(1, ge=1)  # epochs every trial runs before it may be stopped
    reduction_factor: float = Field(4.0, gt=1, allow_inf_nan=False)
    max_t: Optional[int] = Field(None, ge=1)  # default: the longest trial's epochs
    metric: Optional[Literal[METRICS]] = None  # type: ignore[valid-type]  # default: search.metric
    direction: Optional[Literal["max", "min"]] = None


Scheduler = Annotated[Union[FifoScheduler, AshaScheduler], Field(discriminator="name")]


class Resources(_Schema):
    cpu: float = Field(1.0, ge=0, allow_inf_nan=False)  # per trial
    gpu: float = Field(0.0, ge=0, allow_inf_nan=False)  # per trial; fractions pack trials onto one card


class CheckpointSettings(_Schema):
    every_epochs: int = Field(CheckpointConfig.every_epochs, ge=1)


class TrackingSettings(_Schema):
    uri: Optional[str] = None


@dataclass(frozen=True)
class GridAxis:
    path: str  # resolved dotted path: "model.depth"
    typed: str  # as written in the spec: "depth"
    values: tuple[Any, ...]


@dataclass(frozen=True)
class GridBlock:
    where: str  # "grid" for a single mapping, "grid[i]" in a list
    axes: tuple[GridAxis, ...]


class Spec(_Schema):
    """A validated study. Build it with ``load_spec``; ``trials()`` lists its grid points."""

    name: str = Field(pattern=NAME_PATTERN)  # MLflow experiment and parent run
    description: str = ""
    dataset: dict[str, Any]  # base trial config: TrialConfig's schema, checked per trial
    model: dict[str, Any]
    train: dict[str, Any]
    grid: Any = None  # as typed; resolved into grid_blocks()
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

    def grid_blocks(self) -> list[GridBlock]:
        return list(self._blocks)

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
        config = copy.deepcopy(base.config if base is not None else self._base_config())
        for path, value in overrides.items():
            _set_path(config, resolve_axis(path), value)
        try:
            resolved = _check_trial(config).to_dict()
        except ConfigError as e:
            key = self._space_key(e.path)
            raise self._config_error(key, e) from None
        return make_trial(resolved, self._name_axes)

    # -- building -------------------------------------------------------------------------------

    def _line(self, key: str | None) -> int | None:
        return self._doc.line_of(key) if self._doc is not None and key else None

    def _error(self, key: str | None, message: str) -> SpecError:
        return SpecError(self._path, key, message, self._line(key))

    def _config_error(self, key: str, e: ConfigError, suffix: str = "") -> SpecError:
        return self._error(key, e.message + suffix)

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
        self._blocks = tuple(_grid_blocks(self.grid, self._error))
        self._check_search()
        self._trials = tuple(self._expand())
        self._check_space_bounds()
        self._check_scheduler()
        self._check_resources()

    def _expand(self) -> list[Trial]:
        total = 0
        for block in self._blocks:
            size = math.prod(len(a.values) for a in block.axes)
            if size > MAX_TRIALS:
                raise self._error(block.where, f"expands to {size:,} trials; a sweep may have at most {MAX_TRIALS:,}")
            total += size
        if total > MAX_TRIALS:
            raise self._error("grid", f"expands to {total:,} trials; a sweep may have at most {MAX_TRIALS:,}")

        base = self._base_config()
        resolved: list[dict[str, Any]] = []
        seen: set[str] = set()

        for block in self._blocks:
            for indices in itertools.product(*(range(len(a.values)) for a in block.axes)):
                config = copy.deepcopy(base)
                try:
                    for axis, j in zip(block.axes, indices):
                        _set_path(config, axis.path, copy.deepcopy(axis.values[j]))
                    trial_config = TrialConfig.from_dict(config).to_dict()
                except ConfigError as e:
                    raise self._trial_error(e, block, indices) from None
                key = trial_key(trial_config)
                if key not in seen:
                    seen.add(key)
                    resolved.append(trial_config)

        grid_paths = [a.path for b in self._blocks for a in b.axes]
        space_paths = list(self.search.space) if self.search else []
        varying = []
        for path in dict.fromkeys(grid_paths):
            if len({_hashable(_get_path(c, path)) for c in resolved}) > 1:
                varying.append(path)
        self._name_axes = tuple(dict.fromkeys(varying + space_paths))
        trials = [make_trial(c, self._name_axes) for c in resolved]
        return _unique_names(trials)

    def _trial_error(self, e: ConfigError, block: GridBlock, indices: tuple[int, ...]) -> SpecError:
        path = e.path
        for axis, j in zip(block.axes, indices):
            if path == axis.path or path.startswith((axis.path + ".", axis.path + "[")):
                key = f"{block.where}.{axis.typed}[{j}]{path[len(axis.path):]}"
                return self._config_error(key, e)
        # A base key is at fault, perhaps only together with this grid point's values: say which
        # point unless the base config alone gives the same complaint.
        try:
            TrialConfig.from_dict(self._base_config())
            alone = None
        except ConfigError as base_error:
            alone = (base_error.path, base_error.message)
        suffix = ""
        if block.axes and alone != (e.path, e.message):
            point = ", ".join(f"{a.typed}={_show(a.values[j])}" for a, j in zip(block.axes, indices))
            suffix = f" [in {block.where}: {point}]"
        return self._config_error(path, e, suffix)

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
                                               f"got {_kind(odd[0])}")
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

    def _check_space_bounds(self) -> None:
        """Every sampled axis must give a valid trial at its bounds, on every grid point."""
        if self.search is None:
            return
        for path, dist in self.search.space.items():
            key = self._space_key(path)
            for i, value in enumerate(dist.bounds()):
                item = f"{key}.{dist.kind}[{i}]"
                for trial in self._trials:
                    config = copy.deepcopy(trial.config)
                    _set_path(config, path, value)
                    try:
                        _check_trial(config)
                    except ConfigError as e:
                        if e.path == path or e.path.startswith((path + ".", path + "[")):
                            raise self._config_error(item, e) from None
                        raise self._error(item, f"{e.path}: {e.message} (with {key.rsplit('.', 1)[-1]}={_show(value)})") \
                            from None

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
        raise _schema_error(doc, e) from None
    spec._path, spec._text, spec._doc = doc.path, doc.text, doc
    spec._resolve()
    return spec


def _grid_blocks(raw: Any, error: Any) -> list[GridBlock]:
    if raw is None:
        return [GridBlock("grid", ())]
    if isinstance(raw, dict):
        items = [("grid", raw)]
    elif isinstance(raw, list):
        if not raw:
            raise error("grid", "must not be empty (leave grid out for a single trial)")
        items = [(f"grid[{i}]", item) for i, item in enumerate(raw)]
    else:
        raise error("grid", f"must be a mapping of axis: [values] or a list of such mappings, got {_kind(raw)}")
    blocks = []
    for where, item in items:
        if not isinstance(item, dict):
            raise error(where, f"must be a mapping of axis: [values], got {_kind(item)}")
        if not item:
            raise error(where, "has no axes (give axis: [values], or leave grid out for a single trial)")
        axes: dict[str, GridAxis] = {}
        for typed, values in item.items():
            key = f"{where}.{typed}"
            try:
                path = resolve_axis(typed)
            except ValueError as e:
                raise error(key, str(e)) from None
            if path in axes:
                raise error(key, f"{path} is already an axis here, as {axes[path].typed!r}")
            if not isinstance(values, list):
                raise error(key, f"must be a list of values, got {_kind(values)} (write [{_show(values)}] "
                                 "for a single value)")
            if not values:
                raise error(key, "must list at least one value")
            axes[path] = GridAxis(path=path, typed=typed, values=tuple(values))
        blocks.append(GridBlock(where, tuple(axes.values())))
    return blocks


def _unique_names(trials: list[Trial]) -> list[Trial]:
    """Names show every varying axis, so they differ; should two still meet, the key decides."""
    count: dict[str, int] = {}
    for t in trials:
        count[t.name] = count.get(t.name, 0) + 1
    return [dataclasses.replace(t, name=f"{t.name}-{t.key[:6]}") if count[t.name] > 1 else t for t in trials]


# --- pydantic errors as one line ---------------------------------------------------------------


def _schema_error(doc: YamlDocument, e: ValidationError) -> SpecError:
    err = e.errors()[0]
    key, fields = _walk_loc(err["loc"])
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "extra_forbidden":
        name = key.rsplit(".", 1)[-1]
        message = f"unknown key{_unknown_key_hint(name, key, fields)}"
    elif kind == "missing":
        message = "is required"
    elif kind == "union_tag_invalid":
        key += ".name"
        message = _unknown_value("scheduler", ctx.get("tag"), re.findall(r"'([^']*)'", ctx.get("expected_tags", "")))
    elif kind == "union_tag_not_found":
        key += ".name"
        message = "is required (fifo or asha)"
    elif kind == "literal_error":
        message = _unknown_value(key.rsplit(".", 1)[-1], value, re.findall(r"'([^']*)'", ctx.get("expected", "")))
    elif kind == "value_error":
        message = str(ctx.get("error", err["msg"]))
    elif kind in ("int_type", "int_from_float", "int_parsing"):
        message = f"must be an integer, got {_kind(value)}"
    elif kind in ("float_type", "float_parsing"):
        message = f"must be a number, got {_kind(value)}"
    elif kind == "finite_number":
        message = f"must be a finite number, got {value}"
    elif kind in ("string_type",):
        message = f"must be a string, got {_kind(value)}"
    elif kind in ("dict_type", "model_type", "model_attributes_type"):
        message = f"must be a mapping, got {_kind(value)}"
    elif kind == "greater_than_equal":
        message = f"must be >= {_number(ctx['ge'])}, got {value}"
    elif kind == "greater_than":
        message = f"must be > {_number(ctx['gt'])}, got {value}"
    else:
        message = f"{err['msg']}, got {_kind(value)}"
    return SpecError(doc.path, key or None, message, doc.line_of(key))


def _walk_loc(loc: tuple[Any, ...]) -> tuple[str, list[str]]:
    """pydantic's loc -> the key path as typed (``scheduler.grace_period``) and the keys allowed
    where the last element sits (for did-you-mean). Drops discriminator tags and ``[key]``."""
    model: Any = Spec
    parts: list[str] = []
    fields: list[str] = list(Spec.model_fields)
    pending_tag = False
    for element in loc:
        if element == "[key]":
            continue
        if pending_tag:  # loc names the union member by its tag: not a key the user typed
            model, pending_tag = _member(model, element), False
            fields = list(model.model_fields) if model else []
            continue
        parts.append(f"[{element}]" if isinstance(element, int) else f".{element}")
        fields = list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []
        model, pending_tag = _step(model, element)
    path = "".join(parts).lstrip(".")
    return path, fields


def _step(model: Any, element: Any) -> tuple[Any, bool]:
    """The type one loc element down, and whether the next element is a union tag."""
    if isinstance(model, type) and issubclass(model, BaseModel) and element in model.model_fields:
        hint = model.model_fields[element].annotation
    elif get_origin(model) is dict:
        hint = get_args(model)[1]
    else:
        return None, False
    hint = _unwrap(hint)
    if get_origin(hint) is Union:
        members = [a for a in get_args(hint) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(members) > 1:
            return hint, True
        hint = members[0] if members else None
    return hint, False


def _member(union: Any, tag: Any) -> Any:
    for m in get_args(union):
        if isinstance(m, type) and issubclass(m, BaseModel) and tag in get_args(m.model_fields["name"].annotation):
            return m
    return None


def _unwrap(hint: Any) -> Any:
    while get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    if get_origin(hint) is Union:
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
        return Union[tuple(_unwrap(a) for a in args)]
    return hint


def _unknown_key_hint(name: str, key: str, fields: list[str]) -> str:
    if "." not in key and name in ("mode", "seed"):
        return f"; {name} is set per trial through grid, e.g. grid: {{{name}: [...]}}"
    if fields == ["name"]:  # fifo
        return f"; fifo takes no settings{' (' + name + ' is an asha setting)' if name in AshaScheduler.model_fields else ''}"
    close = difflib.get_close_matches(name, fields, n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if "." not in key:  # top level: maybe a trial setting typed one level too high
        try:
            return f"; {name} belongs in {resolve_axis(name).rsplit('.', 1)[0]}"
        except ValueError:
            pass
    return f"; one of {', '.join(fields)}" if fields else ""


def _unknown_value(what: str, value: Any, allowed: list[str]) -> str:
    close = difflib.get_close_matches(str(value), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {value!r}{hint}; one of {', '.join(allowed)}"


# --- small helpers -----------------------------------------------------------------------------


def _resolves_to(typed: str) -> str | None:
    try:
        return resolve_axis(typed)
    except ValueError:
        return None


def _check_trial(config: Mapping[str, Any]) -> TrialConfig:
    """TrialConfig.from_dict on a config that may be resolved already (to_dict output)."""
    return TrialConfig.from_dict(config)


def _set_path(config: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = config
    walked = []
    for p in parents:
        walked.append(p)
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(walked), f"must be a mapping, got {_kind(child)}")
        node = child
    node[leaf] = value


def _get_path(config: Mapping[str, Any], path: str) -> Any:
    node: Any = config
    for p in path.split("."):
        node = node.get(p) if isinstance(node, Mapping) else None
    return node


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _hashable(value: Any) -> Any:
    return repr(value) if isinstance(value, (list, dict)) else value


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return repr(value) if isinstance(value, float) else str(value)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'}"
    if isinstance(value, (int, float)):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
