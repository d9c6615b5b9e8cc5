"""Other tools' words in a spec, answered with sweeper's: people arrive from Ray Tune, Optuna,
W&B sweeps and PyTorch and type what those tools take. Each known word gets a one-line "did you
mean" naming sweeper's key or form (with the user's own values where they are known), instead of
a bare "unknown key". Plain functions of what was typed; the messages module and the schema call
them where an error is about to be raised.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

# Optuna's and W&B's words for a direction, accepted and normalised to sweeper's.
DIRECTION_WORDS = {"max": "max", "min": "min", "maximize": "max", "minimize": "min"}

# (the key's last part, the last part of its parent or "" at the top level) -> (sweeper's key, whose word)
_KEYS = {
    ("mode", "search"): ("direction", "Ray Tune's"),
    ("mode", "scheduler"): ("direction", "Ray Tune's"),
    ("max_concurrent_trials", ""): ("max_concurrent", "Ray Tune's"),
    ("gamma", "lr_schedule"): ("factor", "PyTorch's StepLR"),
}

# W&B's distribution names -> sweeper's, and how W&B's {min, max} become sweeper's [low, high]
_WANDB = {"log_uniform_values": "loguniform", "uniform": "uniform", "int_uniform": "randint",
          "categorical": "choice"}


def normalise_direction(value: Any) -> Any:
    """``maximize`` -> ``max``, ``minimize`` -> ``min``; anything else is left for the schema to refuse."""
    return DIRECTION_WORDS.get(value, value) if isinstance(value, str) else value


def key_hint(key: str, value: Any = None) -> str:
    """`` (did you mean direction: max? mode is Ray Tune's word)`` for a foreign key typed at
    ``key`` (a dotted path as typed), or ``""``."""
    parent, _, name = key.rpartition(".")
    found = _KEYS.get((name, re.sub(r"\[\d+\]", "", parent).rpartition(".")[2]))
    if found is None:
        return ""
    ours, whose = found
    shown = f"{ours}: {_flow(normalise_direction(value))}" if _plain(value) else ours
    return f" (did you mean {shown}? {name} is {whose} word)"


def distribution_message(data: Any) -> str:
    """For W&B's ``{distribution: ..., min, max}`` or ``{values: [...]}`` typed as a sampled axis:
    ``distribution: log_uniform_values is W&B's form (did you mean {loguniform: [0.01, 0.1]}?)``,
    or ``""`` when ``data`` is not W&B's."""
    if not isinstance(data, Mapping):
        return ""
    if set(data) == {"values"} and isinstance(data["values"], list):
        return f"values: is W&B's form (did you mean {{choice: {_flow(data['values'])}}}?)"
    kind = data.get("distribution")
    if kind is None:
        return ""
    ours = _WANDB.get(kind)
    if ours == "choice" and isinstance(data.get("values"), list):
        return f"distribution: {kind} is W&B's form (did you mean {{choice: {_flow(data['values'])}}}?)"
    low, high = data.get("min"), data.get("max")
    if ours is None or ours == "choice" or not (_number(low) and _number(high)):
        return (f"distribution: {_flow(kind)} is W&B's form; sweeper's are {{loguniform: [low, high]}}, "
                "{uniform: [low, high]}, {randint: [low, high]}, {choice: [value, ...]}")
    if ours == "randint" and isinstance(high, int):
        high = high + 1  # W&B's int_uniform includes max; randint excludes high, as Ray Tune's does
    return f"distribution: {kind} is W&B's form (did you mean {{{ours}: {_flow([low, high])}}}?)"


def grid_values_message(typed: str, values: Any) -> str:
    """A grid axis written as W&B's ``{values: [...]}``: the list sweeper takes there, or ``""``."""
    if isinstance(values, Mapping) and set(values) == {"values"} and isinstance(values["values"], list):
        return f"values: is W&B's form (did you mean {typed}: {_flow(values['values'])}? a grid axis is the list itself)"
    return ""


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _flow(value: Any) -> str:
    """A value as YAML flow style, the way the user would type it back."""
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str):
        return value
    return repr(value)
