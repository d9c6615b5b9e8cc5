"""Arrays measured: solo and array training epochs timed on this machine's device, and what
``resources.array: auto`` chooses from them (``arrays.choose_sizes``), never from a guess.

The timing is the trainables' (``trainables.array.measure_array(configs, rounds=, steps=)``: the
loop's and the runner's own training epochs, solo and array interleaved over rounds, medians and
the rounds' spread; see trainables/array/measure.py), on the same device and threads a trial gets
(on the CPU ``resources.cpu`` torch threads). Each group of trials that can share an array is timed
once per candidate size (``arrays.candidate_sizes``, up to the group's size, or the spec's own K)
with the group's first K trials at the progress they share: their real modes, as they would train.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping

from sweeper.plan import arrays
from sweeper.core.trial import Trial

Progress = Callable[[str], Any] | None


def _groups(payloads: list[Trial], key: Callable[[dict], str],
            progress: Mapping[str, int] | None = None) -> dict[str, list[Trial]]:
    """Trials by array key; of each key, those at the most common progress (what would group)."""
    groups: dict[str, list[Trial]] = {}
    for payload in payloads:
        groups.setdefault(key(payload.config), []).append(payload)
    done = progress or {}
    for name, members in groups.items():
        counts: dict[int, int] = {}
        for m in members:
            counts[done.get(m.key, 0)] = counts.get(done.get(m.key, 0), 0) + 1
        common = max(counts, key=counts.get)
        groups[name] = [m for m in members if done.get(m.key, 0) == common]
    return groups


def measure_sizes(spec, payloads: list[Trial], *, rounds: int = 3, steps: int = 3,
                  progress: Progress = None, done: Mapping[str, int] | None = None) -> dict[str, dict[int, dict[str, float]]]:
    """{array key: {K: measure_array's figures}} for every group of two or more compatible trials;
    ``progress(line)`` hears what is being timed; ``done``: trial key -> epochs done (plan_units')."""
    support = arrays.array_support()
    want = arrays.requested(spec)
    gpu = float(spec.resources.gpu) > 0
    measured: dict[str, dict[int, dict[str, float]]] = {}
    with _threads(max(1, int(spec.resources.cpu))):
        for key, members in _groups(payloads, support.array_key, done).items():
            sizes = [k for k in arrays.candidate_sizes(gpu) if k <= len(members)] if want == "auto" else \
                [min(int(want), len(members))]
            for k in (s for s in sizes if s > 1):
                if progress is not None:
                    progress(f"timing an array of {k} ({members[0].name} and {k - 1} more) against each alone ...")
                m = support.measure_array([p.config for p in members[:k]], rounds=rounds, steps=steps)
                measured.setdefault(key, {})[k] = {name: m[name] for name in (
                    "solo_images_per_s", "packed_images_per_s", "array_images_per_s", "noise") if name in m}
    return measured


@contextmanager
def _threads(count: int) -> Iterator[None]:
    """Torch threads as one trial gets them on the CPU (sweeper.plan.measure does the same)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measured_lines(spec, payloads: list[Trial], measured: dict[str, dict[int, dict[str, float]]]) -> list[str]:
    """The table `validate --measure` prints, and auto's choice per group."""
    support = arrays.array_support()
    groups = _groups(payloads, support.array_key)
    chosen = arrays.choose_sizes(measured)
    lines = ["", "arrays measured (solo: one trial alone; packed: K solo trials side by side at best; array: all "
                 "K members' images per second; same device and threads; medians of interleaved rounds):"]
    rows = [["group (first trial)", "trials", "K", "solo images/s", "array images/s", "array / packed", "noise"]]
    for key, by_size in measured.items():
        for k, m in sorted(by_size.items()):
            packed = arrays.packed_rate(k, m)
            ratio = m["array_images_per_s"] / packed if packed else float("nan")
            rows.append([groups[key][0].name, str(len(groups[key])), str(k), f"{m['solo_images_per_s']:,.0f}",
                         f"{m['array_images_per_s']:,.0f}", f"{ratio:.2f}x", f"±{m.get('noise', 0.0):.0%}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if arrays.requested(spec) == "auto":
        picked = ", ".join(f"{groups[key][0].name}: {'solo' if k == 1 else f'arrays of {k}'}"
                           for key, k in chosen.items()) or "solo (no two trials can share an array)"
        lines.append(f"  auto chooses: {picked} (the most images/s, if its array / packed ratio less its noise "
                     f"is at least {arrays.AUTO_MARGIN:g}; else solo)")
        lines += ["  " + line for line in arrays.describe(spec, payloads, chosen=_sizes(groups, chosen))[1:]]
    return lines


def _sizes(groups: dict[str, list[Trial]], chosen: dict[str, int]) -> dict[str, int]:
    return {key: chosen.get(key, 1) for key in groups}


def auto_sizes(spec, payloads: list[Trial], *, rounds: int = 3, steps: int = 3,
               progress: Progress = None, done: Mapping[str, int] | None = None) -> tuple[dict[str, int], list[str]]:
    """What `run` does with ``auto``: measure here, choose; the sizes and the lines to print."""
    measured = measure_sizes(spec, payloads, rounds=rounds, steps=steps, progress=progress, done=done)
    groups = _groups(payloads, arrays.array_support().array_key)
    chosen = _sizes(groups, arrays.choose_sizes(measured))
    return chosen, measured_lines(spec, payloads, measured)[1:]
