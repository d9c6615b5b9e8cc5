"""Which trials can train as one array: the settings that fix the fused network's shapes and its
step count. Torch-free, so the sweeper's planner groups trials with it before anything trains.

Members of an array may differ in what ``PER_MEMBER`` lists: the mode, the seed (hence the
weights, the masks and the data order), lr, weight decay, momentum, label smoothing,
``model.bn_init``, the checkpoint cadence. Everything else is shared, notably:

- ``dataset.*`` (one data source, the same images per step count), ``train.augment``;
- ``model.family`` / ``depth`` / ``width``: the layer shapes;
- ``train.epochs`` / ``batch_size``: the step count and the batch's shape;
- ``train.lr_schedule`` / ``warmup_epochs``: one schedule shape (each member's lr is still its
  own: its own ``LRSchedule`` evaluated per step);
- ``train.precision`` / ``device`` / ``compile`` / ``fidelity``: one forward pass, one arithmetic;
- ``train.eval_batch_size``: one fused evaluation pass serves every member, and a member's test
  metrics must be computed at its own evaluation batch size, so differing ones train apart;
- ``train.optimizer.name`` / ``nesterov`` / ``beta1`` / ``beta2``: one update rule (the fused
  optimizer carries lr, weight decay and momentum per member, not the rule itself).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

from trainables.config import TrialConfig
from trainables.keys import flatten

# What the fused network carries per member; every other setting must be equal across an array.
# Listing these (not the shared ones) keeps a setting added later shared until the array learns to
# carry it: the safe side, an array that is too strict never trains a member wrongly.
PER_MEMBER = ("mode", "seed", "train.lr", "train.weight_decay", "train.optimizer.momentum",
              "train.label_smoothing", "model.bn_init", "checkpoint.every_epochs")


def _config(config: TrialConfig | Mapping[str, Any]) -> TrialConfig:
    return config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)


def array_fields(config: TrialConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The settings members of one array must share, flattened (``train.batch_size``: 128, ...)."""
    flat = flatten(_config(config).to_dict())
    return {k: v for k, v in sorted(flat.items()) if k not in PER_MEMBER}


def array_key(config: TrialConfig | Mapping[str, Any]) -> str:
    """A short stable key: trials with equal keys can train in one array (``arr-`` + 16 hex)."""
    text = json.dumps(array_fields(config), sort_keys=True, default=str)
    return "arr-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def why_not(a: TrialConfig | Mapping[str, Any], b: TrialConfig | Mapping[str, Any]) -> str | None:
    """None when ``a`` and ``b`` can share an array, else one line naming what differs."""
    fa, fb = array_fields(a), array_fields(b)
    differing = [k for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)]
    if not differing:
        return None
    shown = ", ".join(f"{k} {fa.get(k)!r} vs {fb.get(k)!r}" for k in differing[:3])
    more = f" and {len(differing) - 3} more" if len(differing) > 3 else ""
    return f"cannot share an array: {shown}{more} (these fix the fused network's shapes or its step count)"


def compatible(configs: Iterable[TrialConfig | Mapping[str, Any]]) -> str:
    """The array key all ``configs`` share; ``ValueError`` naming the first pair that cannot."""
    configs = [_config(c) for c in configs]
    if not configs:
        raise ValueError("an array needs at least one trial")
    for index, other in enumerate(configs[1:], start=1):
        reason = why_not(configs[0], other)
        if reason is not None:
            raise ValueError(f"trial 0 and trial {index} {reason}")
    return array_key(configs[0])


def group_by_key(configs: Iterable[TrialConfig | Mapping[str, Any]], max_size: int) -> list[list[int]]:
    """Indices of ``configs`` grouped into arrays of at most ``max_size`` same-key trials, in order."""
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    groups: dict[str, list[list[int]]] = {}
    for index, config in enumerate(configs):
        chunks = groups.setdefault(array_key(config), [[]])
        if len(chunks[-1]) == max_size:
            chunks.append([])
        chunks[-1].append(index)
    return [chunk for chunks in groups.values() for chunk in chunks]
