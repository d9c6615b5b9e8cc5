"""Environment variables set for the length of a block and put back as they were after it: the
one way sweeper changes what MLflow, Ray and Tune read from the environment for a while."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Mapping


@contextlib.contextmanager
def temporarily(values: Mapping[str, str], *, users_win: bool) -> Iterator[None]:
    """``values`` in ``os.environ`` while the block runs; afterwards each variable is as before
    (removed if it was unset). ``users_win``: a variable the user already set keeps its value."""
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if not (users_win and k in os.environ):
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
