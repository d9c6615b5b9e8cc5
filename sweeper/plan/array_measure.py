"""Arrays measured (issue 21): solo and array training steps timed on this machine's device, and
what ``resources.array: auto`` chooses from them (``arrays.choose_sizes``), never from a guess.

The timing is the trainables' (``trainables.array.measure_array(config, k, steps=...)``, a dict
with ``solo_images_per_s``: one trial's steps, and ``array_images_per_s``: the images of all ``k``
members per second, on the same device and threads; on the CPU ``resources.cpu`` torch threads,
as a trial gets). Each group of trials that can share an array is timed once per candidate size
(``arrays.CANDIDATE_SIZES`` up to the group's size, or the spec's own K), with the configuration
of its costliest member (a ``full`` one if any: one member training the convs makes the array
compute every member's conv gradients).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

from sweeper.plan import arrays
from sweeper.plan.payload import TrialPayload

Progress = Callable[[str], Any] | None


def _groups(payloads: list[TrialPayload], key: Callable[[dict], str]) -> dict[str, list[TrialPayload]]:
    groups: dict[str, list[TrialPayload]] = {}
    for payload in payloads:
        groups.setdefault(key(payload.config), []).append(payload)
    return groups


def measure_sizes(spec, payloads: list[TrialPayload], *, steps: int = 3,
                  progress: Progress = None) -> dict[str, dict[int, dict[str, float]]]:
    """{array key: {K: {"solo_images_per_s", "array_images_per_s"}}} for every group of two or
    more compatible trials."""
    support = arrays.array_support()
    want = arrays.requested(spec)
    measured: dict[str, dict[int, dict[str, float]]] = {}
    with _threads(max(1, int(spec.resources.cpu))):
        for key, members in _groups(payloads, support.array_key).items():
            sizes = [k for k in arrays.CANDIDATE_SIZES if k <= len(members)] if want == "auto" else \
                [min(int(want), len(members))]
            costliest = max(members, key=lambda p: p.config["mode"] == "full")
            for k in (s for s in sizes if s > 1):
                if progress is not None:
                    progress(f"timing an array of {k} ({costliest.name} and {k - 1} more) against one trial ...")
                m = support.measure_array(costliest.config, k, steps=steps)
                measured.setdefault(key, {})[k] = {"solo_images_per_s": float(m["solo_images_per_s"]),
                                                   "array_images_per_s": float(m["array_images_per_s"])}
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


def measured_lines(spec, payloads: list[TrialPayload], measured: dict[str, dict[int, dict[str, float]]]) -> list[str]:
    """The table `validate --measure` prints, and auto's choice per group."""
    support = arrays.array_support()
    groups = _groups(payloads, support.array_key)
    chosen = arrays.choose_sizes(measured)
    lines = ["", "arrays measured (solo: one trial's steps; array: all K members' images per second; same device "
                 "and threads):"]
    rows = [["group (first trial)", "trials", "K", "solo images/s", "array images/s", "vs 1 trial",
             "vs K trials side by side"]]
    for key, by_size in measured.items():
        for k, m in sorted(by_size.items()):
            ratio = m["array_images_per_s"] / m["solo_images_per_s"] if m["solo_images_per_s"] else float("nan")
            rows.append([groups[key][0].name, str(len(groups[key])), str(k), f"{m['solo_images_per_s']:,.0f}",
                         f"{m['array_images_per_s']:,.0f}", f"{ratio:.2f}x", f"{ratio / k:.2f}x"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if arrays.requested(spec) == "auto":
        picked = ", ".join(f"{groups[key][0].name}: {'solo' if k == 1 else f'arrays of {k}'}"
                           for key, k in chosen.items()) or "solo (no two trials can share an array)"
        lines.append(f"  auto chooses: {picked} (the most images/s, if at least {arrays.AUTO_MARGIN:g}x what K "
                     "solo trials side by side would reach at best; else solo)")
        lines += ["  " + line for line in arrays.describe(spec, payloads, chosen=_sizes(groups, chosen))[1:]]
    return lines


def _sizes(groups: dict[str, list[TrialPayload]], chosen: dict[str, int]) -> dict[str, int]:
    return {key: chosen.get(key, 1) for key in groups}


def auto_sizes(spec, payloads: list[TrialPayload], *, steps: int = 2,
               progress: Progress = None) -> tuple[dict[str, int], list[str]]:
    """What `run` does with ``auto``: measure here, choose; the sizes and the lines to print."""
    measured = measure_sizes(spec, payloads, steps=steps, progress=progress)
    groups = _groups(payloads, arrays.array_support().array_key)
    chosen = _sizes(groups, arrays.choose_sizes(measured))
    return chosen, measured_lines(spec, payloads, measured)[1:]
