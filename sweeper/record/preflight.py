"""Checks made before Ray starts: every path a sweep will write is usable, and reading commands
never create a store.

A bad ``--storage`` used to surface as a pyarrow traceback from inside Ray after the sweep's
parent run was already marked RUNNING; here it is one line (SweepError, exit 2) before anything
has started or been written to MLflow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sweeper.core.uris import is_remote_storage, storage_folder
from sweeper.core.errors import SweepError, one_line
from sweeper.record.store import TrackingStore


def check_storage(storage: str, *, create: bool) -> None:
    """``storage`` can hold the sweep's checkpoints. A local folder (or the nearest existing folder
    above it) is probed with a real write unless ``create`` is false (a dry run writes nothing);
    remote URIs are opened with pyarrow, which every trial uses. Nothing is created here."""
    if is_remote_storage(storage):
        _check_remote(storage)
        return
    path = Path(storage_folder(storage)).expanduser()
    existing = path
    while not existing.exists():  # the nearest folder that is there decides
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == path else f"cannot be created: {existing} is a file"
        raise SweepError(f"--storage {storage}: {what}, not a folder")
    if not create:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise SweepError(f"--storage {storage}: {existing} is not writable")
        return
    try:  # a real write into the folder, or the nearest one that exists; nothing is left
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".sweeper-probe-"):
            pass
    except OSError as e:
        raise SweepError(f"--storage {storage}: cannot write there ({e.strerror or e})") from None


def _check_remote(storage: str) -> None:
    try:
        import pyarrow.fs as pafs

        fs, base = pafs.FileSystem.from_uri(storage)
        fs.get_file_info(base)
    except Exception as e:  # noqa: BLE001 - any failure means trials could not reach it either
        raise SweepError(f"--storage {storage}: cannot use it ({one_line(e, typed=False, limit=200)})") from None


def check_store_exists(uri: str | TrackingStore, name: str) -> None:
    """Opening a sqlite URI or a folder path creates a store; `status` and `report` must only
    read, so a store that is not there is an error, not a new empty database."""
    path = TrackingStore.parse(uri).local_path
    if path is not None and not path.exists():
        raise SweepError(f"no sweep named {name!r}: no MLflow store at {path}")


def store_exists(uri: str | TrackingStore) -> bool:
    """Whether opening ``uri`` only reads: a server or database always, a sqlite file or a folder
    only once it is there."""
    try:
        check_store_exists(uri, "")
    except SweepError:
        return False
    return True


def check_tracking_location(uri: str | TrackingStore) -> None:
    """A sqlite store whose folder is missing: one line now, rather than an SQLAlchemy error."""
    store = TrackingStore.parse(uri)
    db = store.sqlite_db
    if db is not None and not db.parent.is_dir():
        raise SweepError(f"tracking: cannot use MLflow at {store}: folder {db.parent} does not exist")


def create_sqlite_store_once(uri: str | TrackingStore) -> None:
    """Two drivers started together on a new sqlite store would both build MLflow's schema and
    one would fail inside MLflow's migration; the first builds it under a file lock beside the
    database, the second waits and then finds it built."""
    store = TrackingStore.parse(uri)
    db = store.sqlite_db
    if db is None or db.exists():
        return
    from filelock import FileLock

    with FileLock(str(db) + ".lock"):
        store.client()
