"""Axes: the settings a sweep may vary, and the expansion of a spec's grid into trials.

An axis is a dotted path of ``trainables.config.TrialConfig`` (``model.depth``), typed in full or
by its last part (``depth``): ``AXES`` lists them and ``resolve_axis`` maps what the user typed
onto one. The rest turns the typed ``grid`` into blocks of axes, expands each block's cartesian
product into resolved, de-duplicated, uniquely named trials, and checks every sampled axis at the
bounds of its distribution. ``sampled_trial`` is the one way to give a trial sampled values: the
spec (``Spec.make_trial``) and the Ray worker (``planning.resolve_sampled``) both use it.

No pydantic here, so a worker resolves sampled trials without the schema. A problem found while
expanding goes to ``error(key, message)``, a callback of the spec that adds its file and line.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from sweeper.core.errors import SpecError, kind_of, show
from sweeper.spec.foreign import grid_values_message
from sweeper.core.trial import Trial, make_trial, trial_key
from trainables import settings
from trainables.config import KEY_EXCLUDED, ConfigError, TrialConfig
from trainables.keys import copy_tree, did_you_mean, get_path, set_path

MAX_TRIALS = 10_000  # grid points in one spec; more is a typo (an axis of 10,000 values), not a study

ErrorAt = Callable[[Optional[str], str], SpecError]  # (key as typed, message) -> the spec's one-line error


# --- axis names, resolved against TrialConfig --------------------------------------------------


_ALL_LEAVES = tuple(path for path, _, hint in settings.walk(TrialConfig)
                    if not dataclasses.is_dataclass(hint) and not path.startswith("checkpoint."))
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
    raise ValueError(f"unknown axis {name!r}{did_you_mean(name, choices)}")


def set_axis(config: dict[str, Any], path: str, value: Any) -> None:
    """``keys.set_path``, with a part on the way that is not a mapping reported as TrialConfig
    reports one: ``ConfigError("train.optimizer", "must be a mapping, got the string 'sgd'")``."""
    try:
        set_path(config, path, value)
    except KeyError as e:
        prefix = e.args[0]
        raise ConfigError(prefix, f"must be a mapping, got {kind_of(get_path(config, prefix))}") from None


def sampled_trial(base: Mapping[str, Any], values: Mapping[str, Any], name_axes: Iterable[str]) -> Trial:
    """The trial ``base`` (a trial config) becomes with ``values`` set (dotted or short axis names:
    ``{"train.lr": 0.031}``), validated by TrialConfig and named with ``name_axes``. ConfigError
    for a bad value, ValueError for a name that is not an axis."""
    config = copy_tree(base)
    for path, value in values.items():
        set_axis(config, resolve_axis(path), value)
    return make_trial(TrialConfig.from_dict(config).to_dict(), name_axes)


# --- the grid: blocks of axes and their cartesian products --------------------------------------


@dataclass(frozen=True)
class GridAxis:
    path: str  # resolved dotted path: "model.depth"
    typed: str  # as written in the spec: "depth"
    values: tuple[Any, ...]


@dataclass(frozen=True)
class GridBlock:
    where: str  # "grid" for a single mapping, "grid[i]" in a list
    axes: tuple[GridAxis, ...]


def grid_blocks(raw: Any, error: ErrorAt) -> list[GridBlock]:
    """The spec's ``grid`` as typed (nothing, a mapping of axis: [values] or a list of them) as blocks."""
    if raw is None:
        return [GridBlock("grid", ())]
    if isinstance(raw, dict):
        items = [("grid", raw)]
    elif isinstance(raw, list):
        if not raw:
            raise error("grid", "must not be empty (leave grid out for a single trial)")
        items = [(f"grid[{i}]", item) for i, item in enumerate(raw)]
    else:
        raise error("grid", f"must be a mapping of axis: [values] or a list of such mappings, got {kind_of(raw)}")
    blocks = []
    for where, item in items:
        if not isinstance(item, dict):
            raise error(where, f"must be a mapping of axis: [values], got {kind_of(item)}")
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
                raise error(key, grid_values_message(typed, values) or f"must be a list of values, got "
                                 f"{kind_of(values)} (write [{show(values)}] for a single value)")
            if not values:
                raise error(key, "must list at least one value")
            axes[path] = GridAxis(path=path, typed=typed, values=tuple(values))
        blocks.append(GridBlock(where, tuple(axes.values())))
    return blocks


def grid_size(blocks: Sequence[GridBlock], error: ErrorAt) -> int:
    """The grid points ``blocks`` list (before duplicates are dropped), counted without expanding
    them; more than MAX_TRIALS is an error naming the block (or the grid) that is too large."""
    total = 0
    for block in blocks:
        size = math.prod(len(a.values) for a in block.axes)
        if size > MAX_TRIALS:
            raise error(block.where, f"expands to {size:,} trials; a sweep may have at most {MAX_TRIALS:,}")
        total += size
    if total > MAX_TRIALS:
        raise error("grid", f"expands to {total:,} trials; a sweep may have at most {MAX_TRIALS:,}")
    return total


def check_plan_size(blocks: Sequence[GridBlock], samples: int, error: ErrorAt) -> int:
    """Every trial a spec defines, counted before anything is expanded: the grid points, times
    ``samples`` draws of the search space for each (random and optuna; 0 without sampled axes).
    The one cap, MAX_TRIALS, holds for all of them alike; returns the count."""
    points = grid_size(blocks, error)
    if samples and points * samples > MAX_TRIALS:
        per = f"{points:,} grid point{'s' if points != 1 else ''} x {samples:,} samples"
        raise error("search.num_samples", f"{per} = {points * samples:,} trials; a sweep may have at most "
                                          f"{MAX_TRIALS:,}")
    return points * samples if samples else points


def expand(blocks: Sequence[GridBlock], base: Mapping[str, Any], sampled: Iterable[str],
           error: ErrorAt) -> tuple[list[Trial], tuple[str, ...]]:
    """The trials of ``blocks`` over the ``base`` trial config, in a stable order (blocks in order,
    each block's cartesian product in the order typed, a point an earlier block listed dropped),
    and the axes their names show: grid axes whose values differ, then the ``sampled`` paths."""
    grid_size(blocks, error)
    resolved: dict[str, dict[str, Any]] = {}  # key -> resolved config, the first grid point of each key
    for block in blocks:
        for indices in itertools.product(*(range(len(a.values)) for a in block.axes)):
            config = copy_tree(base)
            try:
                for axis, j in zip(block.axes, indices):
                    set_axis(config, axis.path, copy_tree(axis.values[j]))
                trial_config = TrialConfig.from_dict(config).to_dict()
            except ConfigError as e:
                raise _trial_error(e, block, indices, base, error) from None
            resolved.setdefault(trial_key(trial_config), trial_config)

    grid_paths = dict.fromkeys(a.path for b in blocks for a in b.axes)
    varying = [p for p in grid_paths if len({_hashable(get_path(c, p)) for c in resolved.values()}) > 1]
    name_axes = tuple(dict.fromkeys(varying + list(sampled)))
    return _unique_names([make_trial(c, name_axes, key) for key, c in resolved.items()]), name_axes


def _trial_error(e: ConfigError, block: GridBlock, indices: tuple[int, ...], base: Mapping[str, Any],
                 error: ErrorAt) -> SpecError:
    for axis, j in zip(block.axes, indices):
        if _within(e.path, axis.path):
            return error(f"{block.where}.{axis.typed}[{j}]{e.path[len(axis.path):]}", e.message)
    # A base key is at fault, perhaps only together with this grid point's values: say which
    # point unless the base config alone gives the same complaint.
    try:
        TrialConfig.from_dict(copy_tree(base))
        alone = None
    except ConfigError as base_error:
        alone = (base_error.path, base_error.message)
    suffix = ""
    if block.axes and alone != (e.path, e.message):
        point = ", ".join(f"{a.typed}={show(a.values[j])}" for a, j in zip(block.axes, indices))
        suffix = f" [in {block.where}: {point}]"
    return error(e.path, e.message + suffix)


def _unique_names(trials: list[Trial]) -> list[Trial]:
    """Names show every varying axis, so they differ; should two still meet, the key decides."""
    count: dict[str, int] = {}
    for t in trials:
        count[t.name] = count.get(t.name, 0) + 1
    return [dataclasses.replace(t, name=f"{t.name}-{t.key[:6]}") if count[t.name] > 1 else t for t in trials]


# --- sampled axes ----------------------------------------------------------------------------


def check_space_bounds(space: Mapping[str, Any], trials: Iterable[Trial], key_of: Callable[[str], str],
                       error: ErrorAt) -> None:
    """Every sampled axis must give a valid trial at its bounds, on every grid point. ``space``
    maps a dotted path to its distribution; ``key_of`` gives the key the user typed for a path."""
    trials = list(trials)
    for path, dist in space.items():
        key = key_of(path)
        for i, value in enumerate(dist.bounds()):
            item = f"{key}.{dist.kind}[{i}]"
            for trial in trials:
                config = copy_tree(trial.config)
                set_axis(config, path, value)
                try:
                    TrialConfig.from_dict(config)
                except ConfigError as e:
                    if _within(e.path, path):
                        raise error(item, e.message) from None
                    raise error(item, f"{e.path}: {e.message} (with {key.rsplit('.', 1)[-1]}={show(value)})") \
                        from None


def _within(path: str, axis: str) -> bool:
    """Whether ``path`` is ``axis`` or inside it (``train.lr_schedule.milestones[0]``)."""
    return path == axis or path.startswith((axis + ".", axis + "["))


def _hashable(value: Any) -> Any:
    return repr(value) if isinstance(value, (list, dict)) else value
