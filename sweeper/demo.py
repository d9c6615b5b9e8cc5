"""`python -m sweeper.demo` (what `make demo` runs): the quickstart study, end to end, on the
embedded defaults: Ray on this machine, MLflow in sqlite:///mlflow.db in the working folder,
trial storage in ./sweeper_results. The same code path as `sweeper run`; run it again and it
resumes (or finds nothing to do)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sweeper.core.errors import SpecError, SweepError
from sweeper.core.states import EXIT_BAD_INPUT

QUICKSTART = Path(__file__).resolve().parent.parent / "sweeps" / "quickstart.yaml"
STORAGE = "./sweeper_results"
TRACKING_URI = "sqlite:///mlflow.db"


def after_sweep(spec_path: str, tracking_uri: str) -> None:
    """The demo ends with the study's answer: `sweeper report` into reports/quickstart/."""
    from sweeper.report import report_command

    click.echo("")
    report_command(spec_path, tracking_uri=tracking_uri)


def main(spec_path: str = str(QUICKSTART)) -> int:
    from sweeper.driver.orchestrate import run_command
    from sweeper.views.status import status_command

    try:
        code = run_command(spec_path, tracking_uri=TRACKING_URI, storage=STORAGE)
        click.echo("")
        status_command(spec_path, tracking_uri=TRACKING_URI)
        after_sweep(spec_path, TRACKING_URI)
    except (SpecError, SweepError) as e:
        click.echo(str(e), err=True)
        return EXIT_BAD_INPUT
    here = Path.cwd()
    click.echo(f"\nResults: MLflow store {here / 'mlflow.db'} (artifacts in {here / 'mlartifacts'}), "
               f"trial checkpoints in {here / 'sweeper_results'}")
    from sweeper.record.links import for_sweep
    from sweeper.spec import load_spec

    click.echo("Open the MLflow UI (from this folder: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db):")
    for line in for_sweep(TRACKING_URI, load_spec(spec_path).name)[1:]:
        click.echo(line)
    return code


if __name__ == "__main__":
    sys.exit(main())
