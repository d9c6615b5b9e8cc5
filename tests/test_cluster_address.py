"""Where the trials run, read from `--address`, and the refusals that follow, checked without a
network: every address here is either loopback or refused before it would be contacted."""

from __future__ import annotations

import socket

import pytest

from sweeper.driver import cluster_address
from sweeper.core.errors import SpecError, SweepError

REMOTE = "ray://10.255.255.1:10001"


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test: the refusals must come before one."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a connection was attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("localhost", True),
    ("10.255.255.1", False), ("192.0.2.7", False), ("2001:db8::1", False),
])
def test_loopback_hosts_are_this_machine(host, loopback):
    assert cluster_address.is_loopback(host) is loopback


@pytest.mark.parametrize("address", ["ray://10.0.0.1", "ray://:10001", "ray://host:port"])
def test_a_ray_client_address_needs_host_and_port(address):
    with pytest.raises(SpecError, match=r"^--address: .* is not of the form ray://HOST:PORT$"):
        cluster_address.check_address(address, "s3://b/p", "http://mlflow:5000", None)


@pytest.mark.parametrize("storage", ["./sweeper_results", "/data/results", "file:///data/results"])
def test_local_storage_is_refused_for_a_remote_head(no_network, storage):
    with pytest.raises(SpecError) as error:
        cluster_address.check_address(REMOTE, storage, "http://mlflow:5000", None)
    assert str(error.value).startswith(f"--storage: {storage} is a path on this machine")
    assert "s3://" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("cli, spec, origin", [
    ("sqlite:///mlflow.db", None, "--tracking-uri"),
    (None, "sqlite:///runs.db", "tracking.uri (the spec's)"),
    (None, None, "tracking (the default, with no --tracking-uri)"),
    ("./mlruns", None, "--tracking-uri"),
    ("file:///srv/mlruns", None, "--tracking-uri"),
])
def test_a_local_tracking_store_is_refused_for_a_remote_head(no_network, monkeypatch, cli, spec, origin):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SpecError) as error:
        cluster_address.check_address(REMOTE, "s3://b/p", cli, spec)
    assert str(error.value).startswith(f"{origin}: ")
    assert "is a store on this machine" in str(error.value) and "http://" in str(error.value)


def test_the_environment_tracking_uri_is_named_as_such(no_network, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    with pytest.raises(SpecError, match=r"^MLFLOW_TRACKING_URI: sqlite:////"):
        cluster_address.check_address(REMOTE, "s3://b/p", None, None)


def test_addresses_that_are_not_ray_client_are_left_alone(no_network, monkeypatch):
    probed = []
    monkeypatch.setattr(cluster_address, "probe", lambda host, port, address: probed.append((host, port)))
    for address in (None, "auto", "127.0.0.1:6379", "10.0.0.1:6379"):
        # no refusal (it would raise SpecError) and no connection attempt
        assert cluster_address.check_address(address, "./sweeper_results", "sqlite:///mlflow.db", None) is None
        assert not cluster_address.is_ray_client(address)
    assert probed == []


def test_a_loopback_head_takes_local_paths_and_is_probed(monkeypatch):
    probed = []
    monkeypatch.setattr(cluster_address, "probe", lambda host, port, address: probed.append((host, port)))
    monkeypatch.setattr(cluster_address.importlib.util, "find_spec", lambda name: object())
    cluster_address.check_address("ray://localhost:10001", "./sweeper_results", "sqlite:///mlflow.db", None)
    assert probed == [("localhost", 10001)]


def test_a_closed_loopback_port_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(SweepError) as error:
            cluster_address.probe("127.0.0.1", port, f"ray://127.0.0.1:{port}")
    assert str(error.value) == (f"ray: cannot reach the Ray Client server at ray://127.0.0.1:{port}: "
                                f"Connection refused (is the head started with --ray-client-server-port={port}?)")
