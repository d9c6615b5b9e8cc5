"""What a tracking URI may hold: one MLflow can open, checked without importing MLflow (``sweeper
validate`` stays fast and torch-free). ``check_tracking_uri`` raises ValueError saying why not and
what to write instead; the schema turns it into the one-line error naming ``tracking.uri`` and its
line, ``check_given_uri`` into one naming the flag or environment variable the URI came from.

The URI's scheme is read by ``sweeper.core.uris.tracking_scheme``, as
``sweeper.record.store.TrackingStore`` (what every command opens) reads it."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from sweeper.core.errors import SpecError
from sweeper.core.uris import PATH, tracking_scheme

# The schemes MLflow's tracking-store registry knows (a database URI may name its driver:
# postgresql+psycopg2://); no scheme at all is a folder path, MLflow's file store.
TRACKING_SCHEMES = ("file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks",
                    "databricks-uc", "uc")
_NEEDS_HOST = ("http", "https", "postgresql", "mysql", "mssql")
# MLflow 3 opens a folder (file:) store only with this variable set to true; otherwise its refusal
# comes from inside the first MLflow call of a run, long after validate said yes.
ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"
_HOST_PORT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*:\d+(/.*)?$")  # mlflow.internal:5000


def check_tracking_uri(uri: str) -> None:
    """A tracking URI MLflow can open, checked without MLflow: ValueError says why not."""
    if not uri.strip():
        raise ValueError("must not be empty (leave tracking out for sqlite:///mlflow.db)")
    if _HOST_PORT.match(uri):  # urlsplit reads "mlflow.internal" as a scheme; MLflow as a folder
        raise ValueError(f"{uri!r} has no scheme: did you mean http://{uri}?")
    base = tracking_scheme(uri)
    if base == PATH:
        _check_file_store(uri)
        return
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if base not in TRACKING_SCHEMES:
        raise ValueError(f"MLflow has no tracking store for {scheme}://; the scheme must be one of "
                         f"{', '.join(TRACKING_SCHEMES)} (or a folder path), got {uri!r}")
    if base in _NEEDS_HOST and not parts.hostname:
        raise ValueError(f"{scheme}:// needs a host ({scheme}://host:port), got {uri!r}")
    if base == "sqlite" and not parts.path.strip("/"):
        raise ValueError(f"a sqlite URI needs a database file (sqlite:///mlflow.db), got {uri!r}")
    if base == "file":
        _check_file_store(uri)


def file_store_allowed() -> bool:
    """As MLflow reads the opt-in: true or 1, any case."""
    return os.environ.get(ALLOW_FILE_STORE, "").strip().lower() in ("true", "1")


def _check_file_store(uri: str) -> None:
    if not file_store_allowed():
        raise ValueError(f"{uri!r} is a folder (file) store, which MLflow 3 opens only with "
                         f"{ALLOW_FILE_STORE}=true: use sqlite:///PATH/mlflow.db instead, or set "
                         f"{ALLOW_FILE_STORE}=true")


def check_given_uri(uri: str | None, source: str) -> None:
    """A URI given outside the spec (``--tracking-uri``, ``MLFLOW_TRACKING_URI``): SpecError
    naming ``source`` when MLflow could not open it; None passes (the next source decides)."""
    if uri is None:
        return
    try:
        check_tracking_uri(uri)
    except ValueError as e:
        raise SpecError(None, source, str(e)) from None


def check_uri_sources(cli_uri: str | None = None, *, flag: str = "--tracking-uri") -> None:
    """The URIs that would win over the spec's (which the schema checks): the flag's, then
    ``MLFLOW_TRACKING_URI``'s, each refused in one line naming where it came from."""
    if cli_uri is not None:
        check_given_uri(cli_uri, flag)
    else:
        check_given_uri(os.environ.get("MLFLOW_TRACKING_URI") or None, "MLFLOW_TRACKING_URI")
