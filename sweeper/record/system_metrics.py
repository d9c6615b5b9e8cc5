"""MLflow's own system metrics on a trial's child run: CPU and memory (psutil), GPU
utilisation and memory where a card is present (pynvml), under ``system/`` (names.SYSTEM_METRICS_PREFIX),
so the run's "System metrics" tab shows whether the card was busy while it trained.

``mlflow.system_metrics.SystemMetricsMonitor`` samples in a thread of the trial's process every
``SWEEPER_SYSTEM_METRICS_S`` seconds (default 10) and stops when the trial ends. Monitoring only
observes: a monitor that cannot start (no psutil) leaves the trial as it is.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Collection, Iterator

from sweeper.core import settings
from sweeper.core.errors import one_line

log = logging.getLogger(__name__)


@contextmanager
def monitored(run_ids: list[str], tracking_uri: str, interval_s: float | None = None,
              resume: Collection[str] | None = None) -> Iterator[None]:
    """System metrics sampled onto every run in ``run_ids`` while the block runs (an array's
    members share one process, so each of their runs gets the same samples). ``resume``: the
    runs that hold samples already (an earlier attempt's), whose steps go on from the last one;
    None: every run is read to find out (the others start at step 0 either way)."""
    monitors = []
    for run_id in run_ids:
        try:
            from mlflow.system_metrics import system_metrics_monitor
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            logging.getLogger(system_metrics_monitor.__name__).setLevel(logging.WARNING)  # no "Started ..." lines
            monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s or settings.SYSTEM_METRICS_S.get(),
                                           resume_logging=resume is None or run_id in resume,
                                           tracking_uri=tracking_uri)
            monitor.start()
            monitors.append(monitor)
        except Exception as e:  # noqa: BLE001 - observing must never stop training (logged)
            log.warning("no system metrics for run %s (%s)", run_id, one_line(e))
    trained = False
    try:
        yield
        trained = True
    finally:
        for monitor in monitors:
            try:
                monitor.finish()
                if trained:
                    _publish_last_window(monitor)
            except Exception as e:  # noqa: BLE001 - the trial's results are in; only the samples end (logged)
                log.info("system metrics monitor did not stop cleanly (%s)", one_line(e))


def _publish_last_window(monitor) -> None:
    """MLflow's monitor publishes a window only once a whole sampling interval has passed with
    the run still RUNNING, and drops the window it is in when stopped: a trial shorter than the
    interval would show no system metrics at all. One more sample, and the window published.
    Not after a failure: a fenced trial writes nothing more."""
    monitor.collect_metrics()
    monitor.publish_metrics(monitor.aggregate_metrics())
    monitor.mlflow_logger.flush()
