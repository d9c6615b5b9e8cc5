"""Trial arrays: K same-shape trials trained as one fused network.

- ``key.py`` (torch-free): ``array_key``, ``compatible``, ``why_not``, ``group_by_key``: which
  trials can share an array.
- ``fused.py``: the fused Conv2d / BatchNorm2d / Linear and ``fuse_model``; members' weights in
  and out of the fused tensors.
- ``optim.py``: SGD and Adam with per-member lr, weight decay, momentum and gradient masks, as
  multi-tensor ops that read nothing back from the device.
- ``batches.py``: the members' batches of a step gathered and augmented as one.
- ``runner.py``: ``run_array(configs, reports, checkpoint_dirs, *, fence=None)``, ``run_trial``'s
  contract per member.
- ``measure.py``: ``measure_array(configs, rounds, steps)``, images/s of an array against its
  members alone and side by side; ``ops_per_step``, a step's launches.

Importing this package costs no torch; ``run_array`` and ``measure_array`` import it when called.
"""

from __future__ import annotations

from typing import Any

from trainables.array.key import array_fields, array_key, compatible, group_by_key, why_not

__all__ = ["array_fields", "array_key", "compatible", "group_by_key", "why_not", "run_array", "measure_array"]


def run_array(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    from trainables.array.runner import run_array as run

    return run(*args, **kwargs)


def measure_array(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from trainables.array.measure import measure_array as measure

    return measure(*args, **kwargs)
