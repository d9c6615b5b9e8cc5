"""The one reading of a tracking URI's scheme, without MLflow: ``sweeper validate`` checks a spec's
``tracking.uri`` with it (``sweeper.spec.tracking_uri``) and every command's store is parsed with
it (``sweeper.record.store.TrackingStore``), so the two never disagree on what a URI is. And the
one reading of a storage location (``--storage``): a folder, ``file://``, or a remote URI that
pyarrow opens (``s3://``, ``gs://``)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

PATH = ""  # the scheme of a plain folder path: MLflow's file store


def tracking_scheme(uri: str) -> str:
    """The store's scheme, lower case and without a database driver (``postgresql+psycopg2`` ->
    ``postgresql``); ``PATH`` for a folder path (``C:\\...`` and a relative path with a colon
    in it included)."""
    if ":" not in uri or re.match(r"^[A-Za-z]:[\\/]", uri):
        return PATH
    scheme = urlsplit(uri).scheme.lower()
    if not scheme or ("://" not in uri and scheme != "file"):
        return PATH
    return scheme.split("+", 1)[0]


def is_remote_storage(storage: str) -> bool:
    """A storage URI on another filesystem (``s3://``...), not a folder path or ``file://``."""
    return "://" in storage and not storage.startswith("file://")


def storage_folder(storage: str) -> str:
    """A local storage location as a folder path (``file://`` dropped)."""
    return storage.removeprefix("file://")
