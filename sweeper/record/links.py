"""Direct links into the MLflow UI for a sweep: its training-runs page and its parent run.

The bare experiment link (``#/experiments/<id>``) lands on MLflow 3's GenAI overview; the
``/runs`` page is the runs table, where the sweep's parent expands to its trials. A tracking
server's URI is its UI; a local store (sqlite, a folder) has no UI until ``mlflow ui`` serves it,
so for those the command comes first and the links point at its default address.
"""

from __future__ import annotations

LOCAL_UI = "http://127.0.0.1:5000"


def ui_base(tracking_uri: str) -> str | None:
    """The UI's address for a tracking URI; None for a local store (see ``ui_command``)."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return None


def ui_command(tracking_uri: str) -> str | None:
    """``mlflow ui --backend-store-uri ...`` for a local store; None for a server."""
    if ui_base(tracking_uri) is not None or tracking_uri.startswith("databricks"):
        return None
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def experiment_url(base: str, experiment_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs"


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def lines(tracking_uri: str, experiment_id: str | None, parent_run_id: str | None = None) -> list[str]:
    """What to print wherever the tool points at MLflow (run, status, report, the demo)."""
    if experiment_id is None or tracking_uri.startswith("databricks"):
        return []
    base = ui_base(tracking_uri)
    if base is None:
        base = LOCAL_UI
        out = [f"MLflow UI: {ui_command(tracking_uri)}   (then open the links below)"]
    else:
        out = ["MLflow UI:"]
    out.append(f"  trials: {experiment_url(base, experiment_id)}")
    if parent_run_id:
        out.append(f"  sweep:  {run_url(base, experiment_id, parent_run_id)}")
    return out


def for_sweep(tracking_uri: str, name: str) -> list[str]:
    """``lines`` for sweep ``name``, looked up in the store (two reads); [] when it is not there
    or the store cannot be read."""
    from sweeper.record import tracking

    try:
        client = tracking.connect(tracking_uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            return []
        parent = tracking.find_parent_run(client, experiment.experiment_id)
    except Exception:  # noqa: BLE001 - links are a convenience; the command's answer stands
        return []
    return lines(tracking_uri, experiment.experiment_id, parent.info.run_id if parent else None)
