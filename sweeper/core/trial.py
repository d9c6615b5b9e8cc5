"""A trial: one resolved configuration, its stable identity and its readable name.

The key is what makes a sweep resumable: it names the MLflow child run, the checkpoint folder and
the Ray trial, so running the same spec again finds the same trials. It is a hash of the resolved
configuration minus the settings that cannot change a result (where the data lives, how often
checkpoints are written), so that moving the data or checkpointing more often keeps every name.
Settings added later enter the key only when they differ from their default, so adding one
renames nothing that ran before. Both are declared on the fields of ``trainables.config``
(``identity=PLACE``, ``omit_at_default``), which derives ``KEY_EXCLUDED`` and
``IDENTITY_OMITS_AT_DEFAULT`` from them.
``tests/test_spec.py`` pins the key of one fixed configuration: changing what goes into the key
renames every stored result, so do it only on purpose.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Union

from trainables import keys
from trainables.config import IDENTITY_OMITS_AT_DEFAULT, KEY_EXCLUDED, identity_view
from trainables.keys import copy_tree, pop_path

Scalar = Union[str, int, float, bool, None]

# The axes every name shows, in this order (docs/spec.md, "Trials: names and keys"): bn_only-d110-w1-lr0.1-s0.
NAME_CORE = (("mode", ""), ("model.depth", "d"), ("model.width", "w"), ("train.lr", "lr"), ("seed", "s"))
# Short prefixes for other axes when they vary within a sweep; any other axis uses its leaf name.
NAME_PREFIX = {
    "dataset.name": "",
    "model.family": "",
    "model.bn_init": "bn",
    "train.epochs": "e",
    "train.batch_size": "bs",
    "train.weight_decay": "wd",
    "train.optimizer.name": "",
    "train.optimizer.momentum": "mom",
    "train.lr_schedule.name": "",
    "train.warmup_epochs": "wu",
    "train.label_smoothing": "ls",
    "dataset.train_size": "n",
    "dataset.image_size": "px",
    "train.precision": "",
    "train.fidelity": "",
}


@dataclass(frozen=True)
class Trial:
    """One point of a sweep, the one shape a trial has from the plan to its worker (plain and
    picklable: it crosses into Ray as itself).

    ``config`` is the resolved trial configuration in ``TrialConfig.to_dict()`` shape (what
    ``trainables.loop.run_trial`` takes); ``params`` is the same, flattened to dotted keys with scalar
    values (lists as JSON text), as logged to MLflow; ``tags``, the child run's tags besides its
    key (a sampled trial's origin). The plan adds the child run's short params and note
    (``sweeper.record.child_run.presented``), so the worker logs what it is given.
    """

    key: str
    name: str
    config: dict[str, Any]
    params: dict[str, Scalar]
    tags: dict[str, str] = field(default_factory=dict)


def trial_key(config: Mapping[str, Any]) -> str:
    """16 hex digits of sha256 over the canonical JSON of ``config`` minus ``KEY_EXCLUDED``.

    ``config`` must be resolved (``TrialConfig.to_dict()``), so that ``lr: 1`` and ``lr: 1.0``,
    or an omitted default and the default typed out, give the same key. A setting added after
    keys were pinned is left out while it holds its default (``identity_view``).
    """
    kept = identity_view(config)
    for path in KEY_EXCLUDED:
        pop_path(kept, path)
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def flatten(config: Mapping[str, Any]) -> dict[str, Scalar]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``; lists become JSON text."""
    return {path: json.dumps(list(value)) if isinstance(value, (list, tuple)) else value
            for path, value in keys.flatten(config).items()}


def trial_name(params: Mapping[str, Scalar], extra_axes: Iterable[str] = ()) -> str:
    """``bn_only-d110-w1-lr0.1-s0``, then one part per axis in ``extra_axes`` (those that vary)."""
    parts = [f"{prefix}{_show(params.get(path))}" for path, prefix in NAME_CORE]
    core = {path for path, _ in NAME_CORE}
    for path in extra_axes:
        if path in core:
            continue
        prefix = NAME_PREFIX.get(path, path.rsplit(".", 1)[-1])
        parts.append(f"{prefix}{_show(params.get(path))}")
    return "-".join(parts)


def make_trial(config: Mapping[str, Any], extra_axes: Iterable[str] = (), key: str | None = None) -> Trial:
    """A Trial from a resolved configuration (``TrialConfig.to_dict()``); ``key``: its
    ``trial_key``, when the caller has computed it already."""
    config = copy_tree(config)
    params = flatten(config)
    return Trial(key=key or trial_key(config), name=trial_name(params, extra_axes), config=config, params=params)


def with_later_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """A run's logged params, plus each setting added later (IDENTITY_OMITS_AT_DEFAULT) at its
    default where the run was logged before the setting existed, so that old and new runs of
    one configuration group together in a report."""
    if not any(str(k).startswith("train.") for k in params):
        return dict(params)  # not a trial's configuration
    return {**IDENTITY_OMITS_AT_DEFAULT, **params}


def _show(value: Scalar) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as the same float: names stay unique
    if isinstance(value, str) and value.startswith("["):
        return "_".join(str(v) for v in json.loads(value)) or "none"
    return str(value)
