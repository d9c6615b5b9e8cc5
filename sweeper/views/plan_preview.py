"""What `sweeper run --dry-run` shows: what a real run would do to this study, read without
writing anything (no store is created, no tag changed).

``read_runs(spec, tracking_uri)`` reads the sweep's child runs when the store and the experiment
exist (``{}`` otherwise: every trial is new); ``describe_plan(spec, runs, ...)`` turns them into
lines: the trials kept (finished or still to train), new, and no longer in the spec (as
``sweeper run`` will tag them), the resources each trial or array asks Ray for, the work
estimate, and any preflight lines the caller has (a resource line, a data line).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from sweeper.core.states import DONE
from sweeper.plan import arrays
from sweeper.plan.estimate import estimate_spec
from sweeper.plan.lookup import trial_order
from sweeper.record.preflight import store_exists
from sweeper.record.trial_record import state_of
from sweeper.record.versions import current_keys, is_current
from sweeper.views.validate import estimate_lines

SHOWN = 8  # names listed per group; the rest are counted


def read_runs(spec, tracking_uri: str) -> dict[str, Any]:
    """trial key -> child run of ``spec``'s sweep, read only: {} when there is no store or no
    experiment yet (a dry run never creates either)."""
    if not store_exists(tracking_uri):
        return {}
    from sweeper.record import run_index, tracking

    client = tracking.connect(tracking_uri)
    experiment = client.get_experiment_by_name(spec.name)
    if experiment is None:
        return {}
    return run_index.trial_runs(client, experiment.experiment_id)


def describe_plan(spec, runs: Mapping[str, Any], *, largest: Mapping[str, float] | None = None,
                  preflight: Iterable[str] = (), name_new: bool = True) -> list[str]:
    """The dry run's lines. ``largest``: the biggest node's {"cpu", "gpu"} (arrays are capped to
    it, as the driver caps them); ``preflight``: lines the caller's checks gave; ``name_new``:
    list the new trials' names (not where the caller shows them in a table)."""
    trials = trial_order(spec)
    keys = current_keys(spec, trials, dict(runs))
    kept = [t for t in trials if t.key in runs]
    finished = [t for t in kept if state_of(runs[t.key]) in DONE]
    new = [t for t in trials if t.key not in runs]
    gone = [(k, r) for k, r in runs.items() if k not in keys]
    gone_done = sum(state_of(r) in DONE for _, r in gone)
    retag = sum(is_current(r) for _, r in gone)
    lines = [f"dry run of sweep {spec.name!r}: nothing is started or written",
             f"  {len(trials)} trials in the spec: {len(kept)} kept ({len(finished)} finished, "
             f"{len(kept) - len(finished)} to train or resume), {len(new)} new",
             f"  {len(gone)} in MLflow no longer in the spec ({gone_done} of them finished)"
             + (f"; a run would tag {retag} of them superseded" if retag else "")]
    lines += _names("new", [t.name for t in new] if name_new else []) + _names("no longer in the spec",
                                                           [r.info.run_name or k for k, r in gone])
    r = spec.resources
    lines += ["", f"resources per trial: {r.cpu:g} CPU, {r.gpu:g} GPU"
              + (f"; at most {spec.max_concurrent} at once" if spec.max_concurrent else "")]
    payloads = [t for t in trials if t.key not in {f.key for f in finished}]
    lines += ["  " + line for line in arrays.describe(spec, payloads)]
    if largest and isinstance(r.array, int) and r.array > 1:
        want = arrays.array_resources(r.cpu, r.gpu, r.array, largest)
        lines.append(f"  an array of {r.array} asks Ray for {want['cpu']:g} CPU, {want['gpu']:g} GPU")
    lines += [""] + estimate_lines(estimate_spec(spec))
    lines += [f"preflight: {line}" for line in preflight]
    return lines


def _names(what: str, names: list[str]) -> list[str]:
    if not names:
        return []
    more = f", ... ({len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return [f"    {what}: {', '.join(names[:SHOWN])}{more}"]
