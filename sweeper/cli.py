"""The `sweeper` command line. Each command is a thin shell over one module.

Every problem written for the user arrives here as a SweeperError (SpecError, SweepError, ...)
and leaves as one line on stderr (``core.errors.one_line``) with the code it carries (2 for bad
input); nothing a user typed produces a traceback.
"""

from __future__ import annotations

import sys

import click

from sweeper.core.errors import SweeperError, one_line
from sweeper.core.states import EXIT_INTERRUPTED, EXIT_OK


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sweeper")
def cli() -> None:
    """Hyperparameter sweeps for 'Training BatchNorm and Only BatchNorm'."""


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--measure", is_flag=True, help="Also time a few training steps of each architecture here and give the cost from them.")
@click.option("--check-data", is_flag=True,
              help="Also check that each data set is under dataset.root on this machine, in the layout its loader reads.")
def validate(spec: str, measure: bool, check_data: bool) -> None:
    """Validate SPEC and print its trials with an estimate of the work."""
    from sweeper.views.validate import validate_command

    validate_command(spec, measure=measure, check_data=check_data)


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--address", envvar="RAY_ADDRESS", default=None, help="Ray cluster to attach to (else Ray starts here).")
@click.option("--tracking-uri", default=None, help="MLflow tracking URI (else MLFLOW_TRACKING_URI, spec, sqlite:///mlflow.db).")
@click.option("--storage", default="./sweeper_results", show_default=True, help="Trial storage: a path or a URI every node reaches (s3://...).")
@click.option("--dry-run", is_flag=True, help="Validate, connect to tracking, print the plan; start no trial.")
@click.option("--smoke-test", is_flag=True,
              help="The whole study in miniature on whatever the cluster has: every trial, one short epoch, "
                   "into its own experiment <name>-smoke.")
def run(spec: str, address: str | None, tracking_uri: str | None, storage: str, dry_run: bool,
        smoke_test: bool) -> None:
    """Run (or resume) the sweep in SPEC."""
    if smoke_test:
        from sweeper.driver.smoke import run_smoke_test
        from sweeper.report import report_command

        code, smoke = run_smoke_test(spec, address=address, tracking_uri=tracking_uri, storage=storage,
                                     dry_run=dry_run)
        if code == EXIT_OK and not dry_run:  # the report is part of what a real sweep ends with
            report_command(smoke, tracking_uri=tracking_uri)
        sys.exit(code)
    from sweeper.driver.orchestrate import run_command

    sys.exit(run_command(spec, address=address, tracking_uri=tracking_uri, storage=storage, dry_run=dry_run))


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--trial", "trial", required=True,
              help="The trial: its index as `sweeper status` and `validate` number it, its name or its key.")
@click.option("--tracking-uri", default=None)
@click.option("--storage", default="./sweeper_results", show_default=True)
def train(spec: str, trial: str, tracking_uri: str | None, storage: str) -> None:
    """Run one trial of SPEC in this process, without Ray, logging to MLflow."""
    from sweeper.driver.train import train_command

    sys.exit(train_command(spec, trial, tracking_uri=tracking_uri, storage=storage))


@cli.command()
@click.argument("spec_or_name")
@click.option("--tracking-uri", default=None)
@click.option("--all", "all_versions", is_flag=True, help="Also list trials of earlier versions of the spec.")
@click.option("--watch", is_flag=True, help="Redraw the live view of the sweep from MLflow until no trial runs.")
@click.option("--every", "every_s", type=float, default=5.0, show_default=True, help="Seconds between redraws with --watch.")
def status(spec_or_name: str, tracking_uri: str | None, all_versions: bool, watch: bool, every_s: float) -> None:
    """Show the trials of a sweep and their states, read back from MLflow."""
    if watch:
        from sweeper.views.watch import watch_command

        sys.exit(watch_command(spec_or_name, tracking_uri=tracking_uri, every_s=every_s))
    from sweeper.views.status import status_command

    status_command(spec_or_name, tracking_uri=tracking_uri, all_versions=all_versions)


@cli.command()
@click.argument("spec_or_name")
@click.option("--tracking-uri", default=None)
@click.option("--out", "out_dir", default=None, help="Output folder (default reports/<name>/).")
@click.option("--all", "all_versions", is_flag=True, help="Include trials of earlier versions of the spec (marked).")
def report(spec_or_name: str, tracking_uri: str | None, out_dir: str | None, all_versions: bool) -> None:
    """Write the paper's tables, figures and replication scorecard for a sweep."""
    from sweeper.report import report_command

    report_command(spec_or_name, tracking_uri=tracking_uri, out_dir=out_dir, all_versions=all_versions)


def main() -> None:
    from sweeper.core.logs import configure_cli
    from sweeper.record.tracking import no_run_links

    configure_cli()  # what a handler that keeps going logged, as a line on stderr (sweeper.core.logs)
    no_run_links()
    try:
        cli.main(standalone_mode=False)
    except SweeperError as e:
        click.echo(one_line(e, limit=None), err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)  # a usage error is click's 2, which is EXIT_BAD_INPUT


if __name__ == "__main__":
    main()
