"""`sweeper validate SPEC`: check a spec completely and show what it would run.

Prints the trial count first, then one row per grid point (index, name, key and the axes that
vary), what a search adds, and an estimate of the work. Any problem is a SpecError (one line,
exit code 2) raised by load_spec before anything is printed.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from sweeper.plan import arrays
from sweeper.plan.estimate import ASSUMED_FLOPS_PER_S, BACKWARD_FACTOR, estimate_spec, hours, si
from sweeper.spec import Spec, load_spec


def validate_command(spec_path: str, echo: Callable[[str], Any] = click.echo, measure: bool = False) -> Spec:
    spec = load_spec(spec_path)
    for line in describe(spec):
        echo(line)
    if measure:  # after the quick estimate, which stays on screen while the steps are timed
        from sweeper.plan.measure import describe_measured

        for line in describe_measured(spec, progress=lambda text: click.echo(text, err=True)):
            echo(line)
        if spec.resources.array != 1 and arrays.arrays_off_reason(spec) is None and arrays.array_support():
            from sweeper.plan import array_measure

            planned = _planned(spec)
            try:
                measured = array_measure.measure_sizes(spec, planned,
                                                       progress=lambda text: click.echo(text, err=True))
            except Exception as e:  # noqa: BLE001 - the rest of validate's output stands
                echo(f"arrays: could not time arrays here ({type(e).__name__}: {e}); auto would train solo")
            else:
                for line in array_measure.measured_lines(spec, planned, measured):
                    echo(line)
    else:
        echo("shown: the FLOP estimate (an assumed throughput); --measure times real steps on this machine")
    return spec


def describe(spec: Spec) -> list[str]:
    trials = spec.trials()
    sampled = spec.sampled_trial_count()
    count = f"{len(trials)} trial{'s' if len(trials) != 1 else ''}"
    if sampled:
        count = f"{len(trials)} grid point{'s' if len(trials) != 1 else ''} x {spec.search.num_samples} samples = " \
                f"{sampled} trials"
    lines = [f"{count} in sweep {spec.name!r} ({spec.path}, sha256 {spec.spec_hash[:12]})"]

    grid_axes = [p for p in spec.varying_axes() if spec.search is None or p not in spec.search.space]
    headers = ["#", "name", "key"] + [_short(p, grid_axes) for p in grid_axes]
    rows = [[str(i), t.name, t.key] + [_cell(t.params.get(p)) for p in grid_axes] for i, t in enumerate(trials)]
    lines += _table(headers, rows)

    if spec.search is not None and spec.search.space:
        s = spec.search
        space = ", ".join(f"{p} ~ {_dist(d)}" for p, d in s.space.items())
        lines.append("")
        lines.append(f"search: {s.algorithm} draws {s.num_samples} sample{'s' if s.num_samples != 1 else ''} of "
                     f"{space} for each grid point: {sampled} trials in all, "
                     f"optimising {spec.metric} ({spec.direction})")
    sched = spec.scheduler
    if sched.name == "asha":
        lines.append(f"scheduler: asha on {spec.metric} ({spec.direction}), grace_period={sched.grace_period}, "
                     f"reduction_factor={sched.reduction_factor:g}, max_t={sched.max_t or 'longest trial'}")

    array_lines = arrays.describe(spec, _planned(spec))
    if array_lines:
        lines += [""] + array_lines

    est = estimate_spec(spec)
    bound = " (upper bound: sampled axes change the work; each trial counted at its largest)" if est.upper_bound else ""
    flops = si(est.forward_flops_max, "FLOP")
    if est.forward_flops_min != est.forward_flops_max:
        flops = f"{si(est.forward_flops_min, 'FLOP')} .. {flops}"
    lines += [
        "",
        f"work estimate, training only{bound}:",
        f"  trials x epochs:        {est.trial_epochs:,}",
        f"  training images seen:   {est.images_seen:,}",
        f"  forward FLOPs / image:  {flops}",
        f"  training FLOPs:         {si(est.training_flops, 'FLOP')} ({BACKWARD_FACTOR}x forward, for forward + backward)",
        f"  GPU-hours:              {hours(est.gpu_hours)} at an assumed {si(ASSUMED_FLOPS_PER_S, 'FLOP/s')} "
        "sustained per GPU",
    ]
    return lines


def _planned(spec: Spec) -> list:
    """The trials arrays would group: the grid points (each num_samples times for a search, at the
    grid point's values: lr, weight decay and momentum never change a group)."""
    from sweeper.plan.payload import TrialPayload

    samples = spec.search.num_samples if spec.sampled_trial_count() else 1
    return [TrialPayload(t.key, t.name, dict(t.config), dict(t.params)) for t in spec.trials() for _ in range(samples)]


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [headers] + rows) for i in range(len(headers))]
    def fmt(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i == 0 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    return [fmt(headers)] + [fmt(r) for r in rows]


def _short(path: str, all_paths: list[str]) -> str:
    leaf = path.rsplit(".", 1)[-1]
    return leaf if sum(p.rsplit(".", 1)[-1] == leaf for p in all_paths) == 1 else path


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "-" if value is None else str(value)


def _dist(d: Any) -> str:
    if d.kind == "choice":
        return f"choice{list(d.values)}"
    return f"{d.kind}[{d.low}, {d.high}{')' if d.kind == 'randint' else ']'}"
