"""How the driver sets Ray and Tune up: Ray started or attached, an array's grid points and
resources, the scheduler a spec names. Split from orchestrate, which runs the sweep with them."""

from __future__ import annotations

import os
import time

from sweeper.driver import cluster_address
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
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=level, log_to_driver=False)
    logging.getLogger(__name__).info("startup: Ray %s in %.1f s", "attached" if address else "started",
                                     time.monotonic() - started)
    return True


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


def scheduler(spec):
    section = spec.scheduler
    if section.name != "asha":  # fifo: the spec's schema admits no other
        return None
    from ray.tune.schedulers import ASHAScheduler

    max_t = section.max_t or max(int(t.config["train"]["epochs"]) for t in spec.trials())
    return ASHAScheduler(time_attr="epoch", max_t=max_t,
                         grace_period=section.grace_period, reduction_factor=section.reduction_factor)
