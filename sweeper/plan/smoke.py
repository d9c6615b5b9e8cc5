"""`sweeper run SPEC --smoke-test`: the whole study in miniature, planned here (no Ray, no MLflow).

``smoke_spec(spec, cluster_has_gpu)`` returns the study every part of a real run can be tried on in
minutes: every trial of the spec kept (the same grid and samples, so every trial gets its own
child run, checkpoint and report row), each trained for one short epoch of SMOKE_STEPS steps and
tested on a few images, the batch capped so the widest model's step stays small, into the
experiment ``<name>-smoke`` (its checkpoints under ``<storage>/<name>-smoke/``, never the real
sweep's). What the miniature changes that a user could mistake for the real study is said in the
notes, one line each: the GPU dropped on a cluster without one, the CPUs capped to the largest
node, stand-in data where the real set is absent.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterable

import yaml

from sweeper.plan.estimate import estimate_spec
from sweeper.spec import Spec, parse_spec
from sweeper.spec.axes import resolve_axis
from sweeper.spec.yamlio import parse_yaml
from trainables.data.facts import DATA_SETS
from trainables.data.layout import missing

SMOKE_SUFFIX = "-smoke"
SMOKE_STEPS = 2  # training steps in the one epoch
# A step of the widest model may cost at most this many forward FLOPs: about a second on one CPU
# core. The batch is the largest that keeps it there, at least 2 (BatchNorm needs two images to
# normalise over) and at most the spec's own batch and MAX_BATCH.
STEP_FORWARD_FLOPS = 32e9
EVAL_FORWARD_FLOPS = 64e9  # the evaluation's budget, in test images of the widest model
MAX_BATCH = 32
MIN_BATCH = 2
MAX_TEST_IMAGES = 256
_ON_DISK = ("cifar10", "cifar100", "imagenet")


def smoke_spec(spec: Spec, cluster_has_gpu: bool, *, cluster_cpus: float | None = None,
               stand_in: Iterable[str] | None = None) -> tuple[Spec, list[str]]:
    """(the miniature study, one note line per change a user should know of).

    ``cluster_cpus``: the most CPUs one node has (resources.cpu is capped to it); ``stand_in``:
    the data sets to replace by synthetic data of their shape, None to use those this machine
    lacks (``trainables.data.layout``; the driver passes what its per-node check found).
    """
    data = copy.deepcopy(parse_yaml(spec.text, spec.path or "<spec>").data)
    widest = estimate_spec(spec).forward_flops_max or 1
    batch = _clamp(STEP_FORWARD_FLOPS // widest, MIN_BATCH, min(MAX_BATCH, _largest_batch(spec)))
    test_images = _clamp(EVAL_FORWARD_FLOPS // widest, MIN_BATCH, MAX_TEST_IMAGES)
    notes = [f"smoke test: {_count(spec)} trials of {spec.name!r}, one epoch of {SMOKE_STEPS} steps at batch "
             f"{batch} and {test_images} test images each, into experiment {spec.name + SMOKE_SUFFIX!r}"]

    data["name"] = spec.name + SMOKE_SUFFIX
    data["description"] = f"smoke test of {spec.name}: one short epoch per trial"
    train = data.setdefault("train", {})
    train.update(epochs=1, batch_size=batch, eval_batch_size=max(batch, min(test_images, 256)), warmup_epochs=0)
    schedule = train.get("lr_schedule")
    if isinstance(schedule, dict) and schedule.get("name") == "step":  # its epochs lie past the one
        train["lr_schedule"] = {**schedule, "milestones": [], "step_size": 1}
    dataset = data.setdefault("dataset", {})
    dataset.update(train_size=batch * SMOKE_STEPS, test_size=test_images)
    _shrink_grid(data, batch)
    if isinstance(data.get("scheduler"), dict) and data["scheduler"].get("name") == "asha":
        data["scheduler"] = {**data["scheduler"], "grace_period": 1, "max_t": 1}

    resources = data.setdefault("resources", {})
    if spec.resources.gpu > 0 and not cluster_has_gpu:
        resources.update(gpu=0)
        resources.setdefault("cpu", spec.resources.cpu)
        notes.append(f"smoke test: resources.gpu {spec.resources.gpu:g} dropped to 0: no node of this cluster "
                     "has a GPU, so every trial trains on CPUs")
    if cluster_cpus is not None and spec.resources.cpu > cluster_cpus >= 1:
        resources["cpu"] = math.floor(cluster_cpus)
        notes.append(f"smoke test: resources.cpu {spec.resources.cpu:g} capped to {resources['cpu']}, the most "
                     "CPUs one node has")

    names = {t.config["dataset"]["name"] for t in spec.trials()}
    absent = sorted(set(stand_in) if stand_in is not None else {n for n in names if _absent_here(spec, n)})
    absent = [n for n in absent if n in _ON_DISK and n in names]
    if absent:
        dataset.update(stand_in=True, download=False)  # nothing to fetch: the patterns are drawn in memory
        facts = ", ".join(f"{n}: {DATA_SETS[n].num_classes} classes of {DATA_SETS[n].image_size}x"
                          f"{DATA_SETS[n].image_size} px" for n in absent)
        notes.append(f"smoke test: {', '.join(absent)} not found, so stand-in data of its shape and class count "
                     f"trains instead ({facts}; synthetic class patterns)")
    text = f"# smoke test of {spec.path or spec.name} (sweeper run --smoke-test)\n" + yaml.safe_dump(data, sort_keys=False)
    return parse_spec(text, spec.path or "<spec>"), notes


def _clamp(value: float, low: int, high: int) -> int:
    return int(max(low, min(high, value)))


def _count(spec: Spec) -> int:
    return spec.sampled_trial_count() or len(spec.trials())


def _largest_batch(spec: Spec) -> int:
    return max(t.config["train"]["batch_size"] for t in spec.trials())


def _absent_here(spec: Spec, name: str) -> bool:
    dataset = next(t.config["dataset"] for t in spec.trials() if t.config["dataset"]["name"] == name)
    return missing(dataset) is not None


def _shrink_grid(data: dict[str, Any], batch: int) -> None:
    """Grid axes that would undo the miniature: epochs become 1, 2, ... and batch sizes keep their
    order under the cap, so no two trials of the spec become one."""
    grid = data.get("grid")
    blocks = grid if isinstance(grid, list) else [grid] if isinstance(grid, dict) else []
    for block in blocks:
        for typed, values in list(block.items()):
            path = resolve_axis(typed)
            if path == "train.epochs":
                block[typed] = _ranks(values, 1)
            elif path == "train.batch_size":
                capped = [min(v, batch) for v in values]
                block[typed] = capped if len(set(capped)) == len(set(values)) else _ranks(values, MIN_BATCH)
            elif path in ("dataset.train_size", "dataset.test_size", "train.warmup_epochs"):
                block[typed] = _ranks(values, 0 if path == "train.warmup_epochs" else 1, 0.1 if "warmup" in path else 1)


def _ranks(values: list[Any], start: float, step: float = 1) -> list[Any]:
    """Each value's rank among the distinct ones, from ``start`` by ``step``: distinct stays distinct."""
    order = {v: i for i, v in enumerate(sorted(set(values)))}
    return [type(start)(start + step * order[v]) if step == 1 else round(start + step * order[v], 3) for v in values]
