"""The tracking store a command uses, read once: which URI (as given and as every process will
open it), what kind of store it is, whether it lives on this machine, and how to open a client on it.

``TrackingStore.resolve(cli, spec)`` is the one place the URI is chosen (``--tracking-uri``,
then ``MLFLOW_TRACKING_URI``, then the spec's ``tracking.uri``, then ``sqlite:///mlflow.db`` in
the working folder) and ``sweeper.core.uris.tracking_scheme`` the one reading of its
kind; everything after asks the object (``is_local``, ``sqlite_db``, ``ui_base``, ``client()``)
instead of looking at the string again. It is a frozen dataclass of strings, so it pickles into
Ray workers unchanged. MLflow is imported only when a client is opened.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from sweeper.core import environ
from sweeper.core.errors import SweepError, one_line
from sweeper.core.uris import PATH, tracking_scheme

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

# Kinds: the scheme (``sqlite``, ``http``, ``https``, ``postgresql``, ``databricks``, ...), with a
# folder path and a ``file:`` URI both ``file`` (MLflow's file store).
FILE = "file"
SQLITE = "sqlite"
SERVERS = ("http", "https")
LOCAL_KINDS = (FILE, SQLITE)

# MLflow's REST client retries for minutes by default (it is tuned for rate limits). Inside a
# trial we would rather keep training and retry from our own buffer, so calls fail fast there.
FAST_FAIL_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


@contextlib.contextmanager
def fast_fail_http(**overrides: str) -> Iterator[None]:
    """Temporarily make MLflow's HTTP client give up quickly (unless the user set the knobs).
    MLflow reads them from os.environ at each request, so this holds for the whole process while
    any thread is inside such a block (``environ.shared_temporarily``)."""
    with environ.shared_temporarily({**FAST_FAIL_ENV, **overrides}, users_win=True):
        yield


@dataclass(frozen=True)
class TrackingStore:
    """One tracking store. ``uri`` is what MLflow opens (a relative sqlite file or folder made
    absolute, because Ray workers run in other folders); ``given`` is the URI as the user wrote it;
    ``str(store)`` is ``uri``, so messages name it as before."""

    uri: str
    given: str = ""
    kind: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.given:
            object.__setattr__(self, "given", self.uri)
        if not self.kind:
            scheme = tracking_scheme(self.uri)
            object.__setattr__(self, "kind", FILE if scheme == PATH else scheme)

    def __str__(self) -> str:
        return self.uri

    @classmethod
    def parse(cls, uri: str | TrackingStore, workdir: str | Path | None = None) -> TrackingStore:
        """``uri`` read once (a store is returned as it is): relative local paths made absolute
        against ``workdir`` (else the working folder)."""
        if isinstance(uri, TrackingStore):
            return uri
        base = Path(workdir or os.getcwd())
        scheme = tracking_scheme(uri)
        resolved = uri
        if scheme == SQLITE:
            rel = _sqlite_file(uri)
            if rel is not None and not rel.startswith("/") and rel and rel != ":memory:":
                resolved = "sqlite:///" + str((base / rel).resolve())
        elif scheme == PATH:
            resolved = str((base / uri).resolve())  # a plain folder: MLflow's file store
        return cls(resolved, uri, FILE if scheme == PATH else scheme)

    @classmethod
    def resolve(cls, cli_uri: str | None = None, spec_uri: str | None = None,
                workdir: str | Path | None = None) -> TrackingStore:
        """--tracking-uri, then MLFLOW_TRACKING_URI, then the spec's tracking.uri, then
        sqlite:///mlflow.db in the working folder."""
        return cls.parse(origin_uri(cli_uri, spec_uri)[0], workdir)

    # --- what the store is ---------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        """A file on this machine (sqlite, a folder): other machines cannot open it."""
        return self.kind in LOCAL_KINDS

    @property
    def is_server(self) -> bool:
        """An MLflow tracking server (http/https), whose address is also its UI."""
        return self.kind in SERVERS

    @property
    def is_databricks(self) -> bool:
        return self.kind.startswith("databricks")

    @property
    def sqlite_db(self) -> Path | None:
        """The database file of a ``sqlite:///`` store (None for ``:memory:`` and other kinds)."""
        if self.kind != SQLITE:
            return None
        db = _sqlite_file(self.uri)
        return Path(db) if db and db != ":memory:" else None

    @property
    def local_path(self) -> Path | None:
        """Where a local store keeps its data: the sqlite file or the file store's folder."""
        if self.kind == SQLITE:
            return self.sqlite_db
        if self.kind != FILE:
            return None
        if self.uri.startswith("file://"):
            return Path(self.uri[len("file://"):])
        return Path(self.uri[len("file:"):] if self.uri.startswith("file:") else self.uri)

    @property
    def ui_base(self) -> str | None:
        """The UI's address: a server's own; None for a local store (``mlflow ui`` serves it)."""
        return self.uri.rstrip("/") if self.is_server else None

    @property
    def artifact_location(self) -> str | None:
        """A sqlite store keeps artifacts next to the database (absolute, so workers agree on it);
        file stores and tracking servers decide for themselves."""
        db = self.sqlite_db
        return db.parent.joinpath("mlartifacts").as_uri() if db is not None else None

    # --- opening it ----------------------------------------------------------------------------

    def client(self, *, checked: bool = True):
        """An MlflowClient on this store. ``checked`` (before any trial starts): one request with
        few, short tries, so a server that is down or refuses our credentials is one line now
        (SweepError), not minutes of MLflow's default retries; a cold server can still take some
        seconds to answer. Unchecked: a plain client, no request made (a trial's, the fence's: they
        wrap their own calls in ``fast_fail_http``)."""
        from mlflow.tracking import MlflowClient

        if not checked:
            return MlflowClient(tracking_uri=self.uri)
        try:
            with fast_fail_http(MLFLOW_HTTP_REQUEST_MAX_RETRIES="2", MLFLOW_HTTP_REQUEST_TIMEOUT="30"):
                client = MlflowClient(tracking_uri=self.uri)
                client.search_experiments(max_results=1)
        except Exception as e:  # noqa: BLE001 - every failure here means "cannot use this store"
            raise SweepError(f"tracking: cannot use MLflow at {self.uri}: {_unusable(e)}") from None
        return client


def origin_uri(cli_uri: str | None, spec_uri: str | None) -> tuple[str, str]:
    """The tracking URI in effect and where it came from (the setting a message names)."""
    if cli_uri:
        return cli_uri, "--tracking-uri"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"], "MLFLOW_TRACKING_URI"
    if spec_uri:
        return spec_uri, "tracking.uri (the spec's)"
    return DEFAULT_TRACKING_URI, "tracking (the default, with no --tracking-uri)"


def _sqlite_file(uri: str) -> str | None:
    """The file part of ``sqlite:///FILE`` (``/abs`` for ``sqlite:////abs``); None otherwise."""
    rest = uri.split(":", 1)[1] if ":" in uri else ""
    return rest[3:] if rest.startswith("///") else None


def _unusable(e: BaseException) -> str:
    lower = str(e).lower()
    if "401" in lower or "403" in lower or "unauthorized" in lower or "permission" in lower:
        return "credentials were refused (check MLFLOW_TRACKING_USERNAME/PASSWORD or TOKEN)"
    if "max retries" in lower or "connection" in lower or "failed to establish" in lower:
        return "server not reachable"
    return one_line(e, typed=False, limit=200)
