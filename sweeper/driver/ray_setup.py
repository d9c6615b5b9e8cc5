"""How the driver sets Ray up: Ray started or attached (for a new sweep on a Ray of its own,
while the lease settles), and an array's grid points and resources for Tune."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import time
from pathlib import Path
from typing import Callable

from sweeper.driver import cluster_address
from sweeper.driver.hold import made_recently
from sweeper.views import terminal
from sweeper.plan import arrays as plan_arrays


def init_ray(address: str | None, quiet: bool = False) -> bool:
    """Attach to ``address`` when given, else start Ray here. True when we started it. ``quiet``
    (no log file to take Ray's output): only Ray's errors are logged."""
    import logging

    import ray

    level = logging.ERROR if quiet else logging.WARNING

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # trials use absolute paths only
    started = time.monotonic()
    if cluster_address.is_ray_client(address):
        from sweeper.driver import ray_client

        ray_client.connect(address)
    elif address:
        ray.init(address=address, logging_level=level, log_to_driver=False)
    else:
        # "local": a Ray of this driver's own, even where `ray start` left a cluster on this machine
        # (ray.init() would attach to that one and refuse num_cpus)
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, logging_level=level,
                 log_to_driver=False)
    logging.getLogger(__name__).info("startup: Ray %s in %.1f s", "attached" if address else "started",
                                     time.monotonic() - started)
    return True


def starts_with_lease(address: str | None, client, parent_run_id: str) -> bool:
    """Whether Ray starts while the lease settles: only a Ray of this driver's own (attaching to
    a cluster waits for the lease, so a driver refused the sweep never attaches) and only for a
    sweep whose parent run was made in the last minute (a re-run of an older sweep starts Ray
    only once it knows there is work). A driver refused the sweep this way answers a few seconds
    later than it would (its Ray starts and stops first)."""
    return not address and not os.environ.get("RAY_ADDRESS") and made_recently(client, parent_run_id)


def take_while_ray_starts(take: Callable[[], str], log_path: Path, ray_log: bool,
                          cleanup: contextlib.ExitStack) -> str:
    """``take()`` (the lease: mostly a settle wait) in a thread while Ray starts here; its result,
    or its error once Ray is stopped again. Ray stays up for the sweep; ``cleanup`` stops it at
    the latest (the driver stops it earlier, after the fit)."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sweeper-lease") as pool:
        taking = pool.submit(take)
        try:
            with terminal.ray_output(log_path, ray_log):
                init_ray(None, quiet=not ray_log)
        finally:
            concurrent.futures.wait([taking])  # an error of Ray's start comes once the hold knows its lease
        cleanup.callback(_shutdown)
        try:
            return taking.result()
        except BaseException:
            _shutdown()  # refused the sweep (or the store failed): this driver's Ray goes
            raise


def _shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def array_points(units, spec):
    """The ``arrays`` dict (trainable and callback) and the resources per grid point: an array
    asks for its own (sweeper.plan.arrays.array_resources), a solo trial for the spec's."""
    import ray
    from ray.tune.execution.placement_groups import resource_dict_to_pg_factory

    arrays = plan_arrays.tune_arrays(units, float(spec.resources.cpu), float(spec.resources.gpu), plan_arrays.largest_node(ray.nodes()))
    solo = {"cpu": float(spec.resources.cpu), "gpu": float(spec.resources.gpu)}

    def resources(config: dict):
        chosen = arrays.get(config.get("grid"))
        return resource_dict_to_pg_factory({"cpu": chosen["cpu"], "gpu": chosen["gpu"]} if chosen else solo)

    return {"arrays": arrays}, resources
