"""Prepare a data set once per node: every trial that wants a download waits on one file lock.

torchvision writes its archive in place and extracts over whatever is there, so trials that
start together on a cold node would download and unpack over each other. Here the first trial
takes ``<dataset.root>.lock`` (a file beside the root, so it works before the root exists) and
prepares the set; the others block on the lock, then find the ``.prepared-<name>`` marker and
go straight to reading. The marker is written (atomically) only after preparation succeeded, so
a trial killed half-way leaves no marker and the next one prepares again; torchvision checks the
md5 of the archive and of every extracted file, so that redo repairs a torn download.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from filelock import FileLock


def prepared_once(root: str | os.PathLike, name: str, prepare: Callable[[], None]) -> None:
    """Run ``prepare()`` unless this node already did it for ``name`` under ``root``."""
    root = Path(root)
    marker = root / f".prepared-{name}"
    if marker.exists():
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root) + ".lock"):
        if marker.exists():  # another trial prepared it while we waited
            return
        prepare()
        root.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
        tmp.write_text("prepared\n")
        os.replace(tmp, marker)
