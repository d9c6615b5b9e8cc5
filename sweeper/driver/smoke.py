"""`sweeper run SPEC --smoke-test`: the whole study in miniature (sweeper.plan.smoke) through the
same driver as the real run, into its own experiment and storage folder; the CLI then writes its
report, so every part a real run uses (Ray, MLflow, checkpoints, the report) has run for every trial."""

from __future__ import annotations

import os

from sweeper.core.errors import SpecError
from sweeper.plan.smoke import smoke_spec
from sweeper.views import terminal


def run_smoke_test(spec_path: str, *, address: str | None, tracking_uri: str | None, storage: str,
                   dry_run: bool = False):
    """The smoke test of ``spec_path`` on this machine's Ray: (exit code, the miniature spec)."""
    from sweeper.driver.orchestrate import run_command
    from sweeper.spec import load_spec

    if address is not None:  # the cluster's nodes decide GPUs, CPUs and data: not measured from here yet
        raise SpecError(None, "--smoke-test", "runs on this machine's Ray only: leave out --address "
                        "(and RAY_ADDRESS), or submit it as a Ray job on the cluster")
    import torch

    spec, notes = smoke_spec(load_spec(spec_path), torch.cuda.is_available(), cluster_cpus=os.cpu_count())
    for line in notes:
        terminal.say(line)
    return run_command(spec, tracking_uri=tracking_uri, storage=storage, dry_run=dry_run), spec
