"""What `--address` says about where the trials run, checked before anything starts.

``ray://HOST:PORT`` is Ray Client: this process drives a cluster from outside it, and the
trials run on the cluster's machines. Those machines cannot open a path or a sqlite file on
this one, so a local ``--storage`` or a ``sqlite:///``/file tracking store is refused here,
with one line that says what to use instead, before any connection is attempted. A head on a
loopback address runs its trials on this machine, where local paths are fine.

An address that passes is then probed with one TCP connection, so that a head that is not
there is one line and exit 2 before the sweep's parent run exists.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import socket
from urllib.parse import urlsplit

from sweeper.core.uris import is_remote_storage
from sweeper.core.errors import SpecError, SweepError
from sweeper.record.store import TrackingStore, origin_uri

CLIENT_SCHEME = "ray://"
PROBE_TIMEOUT_S = 5.0


def is_ray_client(address: str | None) -> bool:
    return bool(address) and address.startswith(CLIENT_SCHEME)


def client_host_port(address: str) -> tuple[str, int]:
    """HOST and PORT of ``ray://HOST:PORT`` (SpecError when it is not of that form)."""
    parts = urlsplit(address)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise SpecError("--address", None, f"{address!r} is not of the form ray://HOST:PORT")
    return parts.hostname, port


def is_loopback(host: str) -> bool:
    """True when HOST is this machine. Literal IPs are read, never contacted; a name is
    resolved through the system resolver (/etc/hosts first), and counts only when every
    address it resolves to is a loopback one."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False  # unknown name: not this machine; the probe reports it
    addresses = {info[4][0].split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def is_local_storage(storage: str) -> bool:
    return not is_remote_storage(storage)


def check_address(address: str | None, storage: str, cli_tracking_uri: str | None,
                  spec_tracking_uri: str | None, store: TrackingStore | None = None) -> None:
    """Refuse what the cluster at ``address`` could not reach, then probe a Ray Client address.
    Raises SpecError/SweepError (one line, exit 2); returns when the sweep may start. ``store``:
    the tracking store the caller resolved from the same two URIs (else resolved here)."""
    if not is_ray_client(address):
        return
    host, port = client_host_port(address)
    if not is_loopback(host):
        if is_local_storage(storage):
            raise SpecError("--storage", None,
                            f"{storage} is a path on this machine, but the trials run on the cluster at "
                            f"{address}, whose nodes cannot read it: give storage every node reaches, "
                            "e.g. --storage s3://BUCKET/PREFIX")
        store = store or TrackingStore.resolve(cli_tracking_uri, spec_tracking_uri)
        if store.is_local:
            raise SpecError(origin_uri(cli_tracking_uri, spec_tracking_uri)[1], None,
                            f"{store} is a store on this machine, but the trials run on the cluster at "
                            f"{address} and log from there: give a tracking server every node reaches, "
                            "e.g. --tracking-uri http://mlflow:5000")
    if importlib.util.find_spec("grpc") is None:
        raise SweepError(f"ray: {address} needs Ray Client, which is not installed here: "
                         "pip install 'ray[client]' (or reinstall sweeper, which depends on it)")
    probe(host, port, address)


def probe(host: str, port: int, address: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return
    except OSError as e:
        reason = e.strerror or type(e).__name__
        if isinstance(e, socket.timeout):
            reason = f"no answer within {PROBE_TIMEOUT_S:.0f} s"
        raise SweepError(f"ray: cannot reach the Ray Client server at {address}: {reason} "
                         f"(is the head started with --ray-client-server-port={port}?)") from None
