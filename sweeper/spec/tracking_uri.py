"""What a spec's ``tracking.uri`` may hold: a URI MLflow can open, checked without importing MLflow
(``sweeper validate`` stays fast and torch-free). ``check_tracking_uri`` raises ValueError saying why
not; the schema turns it into the one-line error naming ``tracking.uri`` and its line."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# The schemes MLflow's tracking-store registry knows (a database URI may name its driver:
# postgresql+psycopg2://); no scheme at all is a folder path, MLflow's file store.
TRACKING_SCHEMES = ("file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks",
                    "databricks-uc", "uc")
_NEEDS_HOST = ("http", "https", "postgresql", "mysql", "mssql")


def check_tracking_uri(uri: str) -> None:
    """A tracking URI MLflow can open, checked without MLflow: ValueError says why not."""
    if not uri.strip():
        raise ValueError("must not be empty (leave tracking out for sqlite:///mlflow.db)")
    if ":" not in uri or re.match(r"^[A-Za-z]:[\\/]", uri):
        return  # a folder path (C:\... included): MLflow's file store
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if not scheme or ("://" not in uri and scheme != "file"):
        return  # a relative path with a colon in it
    base = scheme.split("+", 1)[0]
    if base not in TRACKING_SCHEMES:
        raise ValueError(f"MLflow has no tracking store for {scheme}://; the scheme must be one of "
                         f"{', '.join(TRACKING_SCHEMES)} (or a folder path), got {uri!r}")
    if base in _NEEDS_HOST and not parts.hostname:
        raise ValueError(f"{scheme}:// needs a host ({scheme}://host:port), got {uri!r}")
    if base == "sqlite" and not parts.path.strip("/"):
        raise ValueError(f"a sqlite URI needs a database file (sqlite:///mlflow.db), got {uri!r}")
