"""Trial arrays: which remaining trials train together as one fused network.

An array is a scheduling choice, not an identity: its members keep their keys, child runs,
checkpoint folders and states; one array is one Ray trial. Each ``sweeper run`` groups the trials
still to run, so a killed array's members are regrouped as what remains allows and a finished
member is never trained again. Which trials can share an array is the trainables' rule
(``trainables.array.array_key``, torch-free); the grouping, the resources an array asks for and
the unit Ray Tune sees are here.

A Tune grid point is a *unit*: a trial key (solo, exactly as before) or an array id, whose
member keys travel beside the grid in an ``arrays`` dict (``tune_arrays``; ``members_of``).
No Ray, no training here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from sweeper.core.trial import Trial

ARRAY_PREFIX = "array-"  # a grid point naming an array, not a trial key
CANDIDATE_SIZES = (2, 4, 8, 16)  # what `auto` times against its members alone
GPU_CANDIDATE_SIZES = CANDIDATE_SIZES + (32,)  # a GPU's launch-bound small nets may gain up to here
AUTO_MARGIN = 1.1  # an array must beat K solo trials side by side (packed) by this much, after the noise


def candidate_sizes(gpu: bool) -> tuple[int, ...]:
    return GPU_CANDIDATE_SIZES if gpu else CANDIDATE_SIZES


def arrays_off_reason(spec) -> str | None:
    """One line when the spec's search or scheduler rules arrays out, else None."""
    if spec.scheduler.name == "asha":
        return ("arrays are off: ASHA stops trials one at a time at its rungs, and an array trains "
                "its members epoch by epoch together (use the fifo scheduler)")
    if spec.search is not None and spec.search.algorithm == "optuna":
        return ("arrays are off: Optuna draws each trial from the results so far, one at a time, and "
                "an array needs its members known before it starts (use grid or random search)")
    return None


def array_support() -> Any | None:
    """``trainables.array`` when this tree has it, else None."""
    try:
        import trainables.array as support
    except ImportError:
        return None
    return support if hasattr(support, "run_array") and hasattr(support, "array_key") else None


def requested(spec) -> int | str:
    return spec.resources.array


def array_id(keys: list[str]) -> str:
    """A stable name of an array: its members' keys, hashed."""
    return ARRAY_PREFIX + hashlib.sha256(",".join(sorted(keys)).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Unit:
    """What one Ray trial trains: one trial (``array`` None) or an array of trials."""

    members: tuple[Trial, ...]
    array: str | None = None

    @property
    def grid_point(self) -> str:
        return self.array or self.members[0].key


def group(payloads: list[Trial], sizes: Mapping[str, int] | int,
          key: Callable[[dict], str] | None = None, progress: Mapping[str, int] | None = None) -> list[Unit]:
    """``payloads`` in arrays of at most ``sizes`` (one K, or K per array key) same-key trials
    at the same progress, in order; a group of one stays a solo trial.

    ``progress`` maps a trial key to its epochs done (absent: 0, a fresh trial). Only trials with
    equal epochs done share an array: an array trains from its earliest member's epoch, so a
    member resumed at epoch 90 grouped with a fresh one would hold K trials' resources for 90
    epochs of one trial's training."""
    if isinstance(sizes, int) and sizes <= 1:
        return [Unit((p,)) for p in payloads]
    key = key or array_support().array_key
    done = progress or {}
    chunks: dict[tuple[str, int], list[list[Trial]]] = {}
    for payload in payloads:
        k = key(payload.config)
        size = sizes if isinstance(sizes, int) else sizes.get(k, 1)
        groups = chunks.setdefault((k, int(done.get(payload.key, 0))), [[]])
        if len(groups[-1]) >= max(1, size):
            groups.append([])
        groups[-1].append(payload)
    units = []
    for groups in chunks.values():
        for members in groups:
            keys = [m.key for m in members]
            units.append(Unit(tuple(members), array_id(keys) if len(members) > 1 else None))
    return units


def members_of(config: Mapping[str, Any], arrays: Mapping[str, dict] | None) -> list[str] | None:
    """The member keys of the array a Tune config names, or None for a solo grid point."""
    point = config.get("grid")
    if arrays and isinstance(point, str) and point.startswith(ARRAY_PREFIX):
        return list(arrays[point]["members"])
    return None


def array_resources(cpu: float, gpu: float, size: int, largest: Mapping[str, float] | None = None) -> dict:
    """What an array of ``size`` asks Ray for: ``size`` times one trial's cpu and gpu, the gpu at
    most one card (an array trains on one device) unless one trial already asks for more, both at
    most the largest node's (``largest``: {"cpu", "gpu"}), or Ray would never place it."""
    want_cpu = cpu * size
    want_gpu = min(gpu * size, max(gpu, 1.0)) if gpu > 0 else 0.0
    if largest:
        want_cpu = min(want_cpu, max(cpu, float(largest.get("cpu", want_cpu))))
        if want_gpu:
            want_gpu = min(want_gpu, max(gpu, float(largest.get("gpu", want_gpu))))
    return {"cpu": want_cpu, "gpu": want_gpu}


def largest_node(nodes: list[dict]) -> dict[str, float]:
    """The most CPUs and GPUs one live Ray node has (``ray.nodes()``)."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    return {"cpu": max((r.get("CPU", 0.0) for r in alive), default=0.0),
            "gpu": max((r.get("GPU", 0.0) for r in alive), default=0.0)}


def describe(spec, payloads: list[Trial], chosen: Mapping[str, int] | int | None = None) -> list[str]:
    """What `validate` says about arrays: off and why, or the groups and what each asks Ray for."""
    want = requested(spec)
    if want == 1:
        return []
    off = arrays_off_reason(spec)
    if off is not None:
        return [off]
    support = array_support()
    if support is None:
        return ["arrays are off: this install's trainables cannot train arrays (no trainables.array)"]
    cpu, gpu = float(spec.resources.cpu), float(spec.resources.gpu)
    if want == "auto" and chosen is None:
        by_key = _count_by_key(payloads, support.array_key)
        return [f"arrays: auto: {len(by_key)} group(s) of compatible trials; `validate --measure` times solo "
                "and array steps here and picks each group's size, `run` measures the same way as it starts"]
    sizes = chosen if chosen is not None else int(want)
    units = group(payloads, sizes, support.array_key)
    arrays = [u for u in units if u.array]
    solo = len(units) - len(arrays)
    lines = [f"arrays: {sum(len(u.members) for u in arrays)} of {len(payloads)} trials in {len(arrays)} array(s)"
             f"{f', {solo} solo' if solo else ''} (resources.array: {want}); one array is one Ray trial"]
    for size in sorted({len(u.members) for u in arrays}, reverse=True):
        res = array_resources(cpu, gpu, size)
        count = sum(len(u.members) == size for u in arrays)
        lines.append(f"  {count} array(s) of {size}: each asks Ray for cpu {res['cpu']:g}, gpu {res['gpu']:g} "
                     f"({size} x one trial's cpu {cpu:g}, gpu {gpu:g}; gpu at most one card; "
                     "both capped at the largest node's)")
    return lines


def array_of(spec, remaining: list[Trial], progress: Mapping[str, int] | None = None) -> dict[str, str]:
    """Trial key -> the array `run` would train it in, for a fixed ``resources.array`` (what
    `run --dry-run` shows); empty when arrays are off, solo, or ``auto`` (decided by measuring).
    ``progress``: trial key -> epochs done, as ``group`` takes it."""
    want, support = requested(spec), array_support()
    if want in (1, "auto") or arrays_off_reason(spec) is not None or support is None:
        return {}
    units = group(remaining, int(want), support.array_key, progress)
    return {m.key: u.array for u in units if u.array for m in u.members}


def _count_by_key(payloads: list[Trial], key: Callable[[dict], str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for payload in payloads:
        counts[key(payload.config)] = counts.get(key(payload.config), 0) + 1
    return counts


def packed_rate(k: int, m: Mapping[str, float]) -> float:
    """K solo trials side by side at best: the sum of the members' solo images/s where measured,
    else K times one trial's."""
    return float(m.get("packed_images_per_s", k * float(m["solo_images_per_s"])))


def choose_sizes(measured: Mapping[str, Mapping[int, Mapping[str, float]]]) -> dict[str, int]:
    """``auto``'s choice per array key from measurement: {key: {K: {"solo_images_per_s",
    "array_images_per_s", optionally "packed_images_per_s" and "noise"}}} -> {key: K}.

    The rule: of the sizes whose array / packed ratio, less its noise (the relative half-spread
    of that ratio over the interleaved rounds: a measurement that repeats only within +-n is
    trusted only n below its median), is at least AUTO_MARGIN, the one with the most images/s;
    else 1 (solo). Packed is K solo trials side by side at best, the conservative side, so auto
    never picks an array that packing might beat."""
    chosen = {}
    for key, by_size in measured.items():
        best, best_rate = 1, 0.0
        for size, m in sorted(by_size.items()):
            rate = float(m["array_images_per_s"])
            packed = packed_rate(size, m)
            ratio = rate / packed if packed > 0 else 0.0
            if ratio * (1 - float(m.get("noise", 0.0))) >= AUTO_MARGIN and rate > best_rate:
                best, best_rate = size, rate
        chosen[key] = best
    return chosen


def plan_units(spec, remaining: list[Trial], echo: Callable[[str], Any],
               progress: Mapping[str, int] | None = None) -> list[Unit] | None:
    """What `run` trains: the remaining trials grouped into arrays, or None to run them all solo
    (today's path, unchanged), saying why in one line when the spec asked for arrays.

    ``progress``: trial key -> epochs done (its checkpoint's epoch, which the run's ``sweeper.epoch``
    metric mirrors); absent or None, every trial is fresh. Trials at different progress never share
    an array (``group``)."""
    want = requested(spec)
    if want == 1:
        return None
    off = arrays_off_reason(spec)
    support = array_support()
    if off is not None or support is None:
        echo(off or "arrays are off: this install's trainables cannot train arrays (no trainables.array)")
        return None
    if want == "auto":
        from sweeper.plan import array_measure

        try:
            sizes, lines = array_measure.auto_sizes(spec, remaining, done=progress)
        except Exception as e:  # noqa: BLE001 - a failed measurement means solo, said once
            echo(f"arrays: auto could not measure here ({type(e).__name__}: {e}); training solo")
            return None
        for line in lines:
            echo(line)
    else:
        sizes = int(want)
    units = group(remaining, sizes, support.array_key, progress)
    arrays = [u for u in units if u.array]
    if not arrays:
        echo("arrays: no two remaining trials can share an array; training solo")
        return None
    solo = len(units) - len(arrays)
    echo(f"arrays: {sum(len(u.members) for u in arrays)} of {len(remaining)} remaining trials in "
         f"{len(arrays)} array(s){f', {solo} solo' if solo else ''}; each array is one Ray trial")
    return units


def tune_arrays(units: list[Unit], cpu: float, gpu: float, largest: Mapping[str, float] | None) -> dict[str, dict]:
    """The ``arrays`` dict the trainable and the driver's callback get: array id -> its member
    keys and the resources it asks for."""
    return {u.array: {"members": [m.key for m in u.members], **array_resources(cpu, gpu, len(u.members), largest)}
            for u in units if u.array}
