"""`sweeper validate SPEC`: check a spec completely and show what it would run.

Prints the trial count first, then one row per grid point (index, name, key and the axes that
vary), what a search adds, and an estimate of the work. Any problem is a SpecError (one line,
exit code 2) raised by load_spec before anything is printed.
"""

from __future__ import annotations

from typing import Any, Callable

import click

from sweeper.plan import arrays
from sweeper.plan.estimate import (ASSUMED_FLOPS_PER_S, MODE_FLOPS, PEAK_FLOPS_PER_S, RATE_WORDS, Estimate,
                                   estimate_spec, hours, si)
from sweeper.core.errors import SpecError
from sweeper.spec import Spec, load_spec
from sweeper.spec.tracking_uri import check_uri_sources


def validate_command(spec_path: str, echo: Callable[[str], Any] = click.echo, measure: bool = False,
                     check_data: bool = False) -> Spec:
    spec = load_spec(spec_path)  # the spec's tracking.uri is checked by its schema
    check_uri_sources(None)  # MLFLOW_TRACKING_URI, which a run would take over the spec's
    if check_data:  # before anything is printed: a missing set is the one line and exit 2
        check_data_here(spec)
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


def datasets_of(spec: Spec) -> list[dict]:
    """The distinct ``dataset`` settings the spec's trials read (name, root, download)."""
    seen: dict[tuple, dict] = {}
    for trial in spec.trials():
        d = trial.config["dataset"]
        seen.setdefault((d["name"], d.get("root"), bool(d.get("download"))), dict(d))
    return list(seen.values())


def check_data_here(spec: Spec) -> None:
    """`validate --check-data`: each data set the trials read is where the loader looks on this
    machine, in its layout (trainables.data.layout; nothing is downloaded); else SpecError naming
    ``dataset.root``, this machine and the layout. `sweeper run` checks every node the same way."""
    import socket

    from trainables.data import layout

    for dataset in (d for d in datasets_of(spec) if not d.get("stand_in")):
        problem = layout.describe(dataset, f"this machine ({socket.gethostname()})")
        if problem is not None:
            raise SpecError(spec.path, None, problem)


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

    lines += [""] + estimate_lines(estimate_spec(spec))
    return lines


def estimate_lines(est: Estimate) -> list[str]:
    """The work estimate as printed: which factor each mode's FLOPs took and which rate each
    precision was costed at, so a reader can redo the sum (docs/spec.md, "The cost estimate")."""
    bound = " (upper bound: sampled axes change the work; each trial counted at its largest)" if est.upper_bound else ""
    flops = si(est.forward_flops_max, "FLOP")
    if est.forward_flops_min != est.forward_flops_max:
        flops = f"{si(est.forward_flops_min, 'FLOP')} .. {flops}"
    factors = ", ".join(f"{m} {MODE_FLOPS[m][0]}x" for m in est.modes)
    rates = "; ".join(f"{RATE_WORDS[p]} at an assumed {si(ASSUMED_FLOPS_PER_S[p], 'FLOP/s')} sustained per GPU "
                      f"({ASSUMED_FLOPS_PER_S[p] / PEAK_FLOPS_PER_S[p]:.0%} of an A100's "
                      f"{si(PEAK_FLOPS_PER_S[p], 'FLOP/s')} peak)" for p in est.precisions)
    return [
        f"work estimate, training only{bound}:",
        f"  trials x epochs:        {est.trial_epochs:,}",
        f"  training images seen:   {est.images_seen:,}",
        f"  forward FLOPs / image:  {flops}",
        f"  training FLOPs:         {si(est.training_flops, 'FLOP')} (forward FLOPs x {factors}: "
        "what autograd computes per mode)",
        f"  GPU-hours:              {hours(est.gpu_hours)}: {rates}; plus {est.startup_s:g} s of start-up "
        "per trial (an assumed figure; --measure times it)",
    ]


def _planned(spec: Spec) -> list:
    """The trials arrays would group: the grid points (each num_samples times for a search, at the
    grid point's values: lr, weight decay and momentum never change a group)."""
    samples = spec.search.num_samples if spec.sampled_trial_count() else 1
    return [t for t in spec.trials() for _ in range(samples)]


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
