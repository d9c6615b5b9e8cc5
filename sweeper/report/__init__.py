"""`sweeper report`: a finished (or running) sweep as the paper's tables, figures and scorecard.

Owns reading a sweep's results into frames (``collect``), the seed aggregates (``tables``), the
figures (``figures``), the comparison with the paper (``scorecard`` + ``reference.csv``), the
markdown (``markdown``) and the files it writes and attaches to the parent run (``build``).
Imports ``core``, ``spec``, ``record``, ``plan`` and ``views``; never the driver.

Public surface:
- ``report_command(spec_or_name, tracking_uri=None, out_dir=None)``: what the CLI calls.
- ``build_report(client, name, tracking_uri, out_dir, ...) -> Report``: the same from Python.
- ``load_reference()``: the paper's numbers shipped as ``reference.csv``.
- ``resolve_target(spec_or_name)``: how a sweep
  is named on the command line (a spec file, a ``Spec`` or a name), shared with ``sweeper.api``.
"""

from __future__ import annotations

import re
from pathlib import Path

from sweeper.core.errors import SpecError
from sweeper.report.build import Report, build_report
from sweeper.report.scorecard import load_reference
from sweeper.spec import NAME_PATTERN

__all__ = ["Report", "build_report", "load_reference", "report_command", "resolve_target"]



def report_command(spec_or_name: str, tracking_uri: str | None = None, out_dir: str | None = None,
                   all_versions: bool = False) -> Report:
    """Resolve the sweep and the tracking store, write the report, print where it went."""
    import click

    from sweeper.core.states import DIVERGED, FINISHED, RUNNING
    from sweeper.record.preflight import check_store_exists
    from sweeper.record.store import TrackingStore

    name, spec_uri, planned, keys = resolve_target(spec_or_name)
    store = TrackingStore.resolve(tracking_uri, spec_uri)
    check_store_exists(store, name)  # as status does: reading must not create a store, nor open a missing one
    client = store.client()
    uri = store.uri
    out = Path(out_dir) if out_dir else Path("reports") / name
    report = build_report(client, name, uri, out, planned=None if all_versions else planned,
                          all_versions=all_versions, keys=keys)
    counts = report.sweep.counts()
    click.echo(f"report: {out / 'report.md'} ({counts[FINISHED]} finished, {counts[DIVERGED]} diverged, "
               f"{counts[RUNNING]} running trials; {len(report.figures)} figures)")
    click.echo(f"stored on MLflow run {report.sweep.parent_run_id} under report/")
    from sweeper.record.links import lines

    for line in lines(uri, report.sweep.experiment_id, report.sweep.parent_run_id):
        click.echo(line)
    return report


def resolve_target(spec_or_name) -> tuple[str, str | None, int | None, set[str] | None]:
    """(sweep name, the spec's tracking URI, trials the spec plans, their keys) from a spec path,
    a ``Spec`` or a name."""
    from sweeper.spec import Spec, load_spec

    if isinstance(spec_or_name, Spec):
        spec = spec_or_name
    else:
        spec_or_name = str(spec_or_name)
        path = Path(spec_or_name)
        if not (path.suffix in (".yaml", ".yml") or path.is_file()):
            if not re.match(NAME_PATTERN, spec_or_name):
                raise SpecError(None, None, f"{spec_or_name!r} is neither a spec file nor a sweep name ([A-Za-z0-9_.-]+)")
            return spec_or_name, None, None, None
        if not path.is_file():
            raise SpecError(spec_or_name, None, "no such spec file")
        spec = load_spec(path)
    from sweeper.plan.planning import expected_trials

    planned = spec.sampled_trial_count() or len(spec.trials())
    keys = {t.key for t in expected_trials(spec)} | {t.key for t in spec.trials()}
    return spec.name, spec.tracking.uri, planned, keys
