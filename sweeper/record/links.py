"""Direct links into the MLflow UI for a sweep: its training-runs page and its parent run.

The bare experiment link (``#/experiments/<id>``) lands on MLflow 3's GenAI overview; the
``/runs`` page is the runs table, where the sweep's parent expands to its trials. A tracking
server's URI is its UI; a local store (sqlite, a folder) has no UI until ``mlflow ui`` serves it,
so for those the command comes first and the links point at its default address.
"""

from __future__ import annotations

import logging

from sweeper.core.errors import one_line
from sweeper.record.store import TrackingStore

log = logging.getLogger(__name__)

LOCAL_UI = "http://127.0.0.1:5000"


def ui_base(tracking_uri: str | TrackingStore) -> str | None:
    """The UI's address for a tracking URI; None for a local store (see ``ui_command``)."""
    return TrackingStore.parse(tracking_uri).ui_base


def ui_command(tracking_uri: str | TrackingStore) -> str | None:
    """``mlflow ui --backend-store-uri ...`` for a local store; None for a server."""
    store = TrackingStore.parse(tracking_uri)
    if store.is_server or store.is_databricks:
        return None
    return f"mlflow ui --backend-store-uri {store}"


def experiment_url(base: str, experiment_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def lines(tracking_uri: str | TrackingStore, experiment_id: str | None,
          parent_run_id: str | None = None) -> list[str]:
    """What to print wherever the tool points at MLflow (run, status, report, the demo)."""
    store = TrackingStore.parse(tracking_uri)
    if experiment_id is None or store.is_databricks:
        return []
    base = store.ui_base
    if base is None:
        base = LOCAL_UI
        out = [f"MLflow UI: {ui_command(store)}   (then open the links below)"]
    else:
        out = ["MLflow UI:"]
    out.append(f"  trials: {experiment_url(base, experiment_id)}")
    if parent_run_id:
        out.append(f"  sweep:  {run_url(base, experiment_id, parent_run_id)}")
    return out


def for_sweep(tracking_uri: str | TrackingStore, name: str) -> list[str]:
    """``lines`` for sweep ``name``, looked up in the store (two reads); [] when it is not there
    or the store cannot be read."""
    from sweeper.record import tracking

    try:
        client = TrackingStore.parse(tracking_uri).client()
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            return []
        parent = tracking.find_parent_run(client, experiment.experiment_id)
    except Exception as e:  # noqa: BLE001 - links are a convenience; the command's answer stands
        log.debug("no MLflow links for %s (%s)", name, one_line(e))
        return []
    return lines(tracking_uri, experiment.experiment_id, parent.info.run_id if parent else None)
