"""Attaching through Ray Client: a session the head failed to start is tried again, and what still
fails is one line with the head's own reason (Ray puts it at the end of a traceback)."""

from __future__ import annotations

import logging

import pytest

from sweeper.core.errors import SweepError
from sweeper.driver import ray_client

ADDRESS = "ray://127.0.0.1:10001"
HEAD_TRACEBACK = (
    "Initialization failure from server:\n"
    "Traceback (most recent call last):\n"
    '  File "ray/util/client/server/proxier.py", line 770, in Datapath\n'
    "    raise RuntimeError(\n"
    "RuntimeError: Starting Ray client server failed. See ray_client_server_23001.err for detailed logs.\n")


@pytest.fixture
def attempts(monkeypatch):
    """ray.init through Ray Client replaced by a script of outcomes; no waiting between tries."""
    tried: list[str] = []

    def script(*outcomes):
        queue = list(outcomes)

        def init(address):
            tried.append(address)
            outcome = queue.pop(0)
            if outcome is not None:
                raise outcome

        monkeypatch.setattr(ray_client, "_init", init)
        return tried

    monkeypatch.setattr(ray_client.time, "sleep", lambda s: None)
    return script


def test_a_session_the_head_failed_to_start_is_tried_again_and_logged(attempts, caplog):
    tried = attempts(ConnectionAbortedError(HEAD_TRACEBACK), None)
    with caplog.at_level(logging.WARNING, logger="sweeper"):
        ray_client.connect(ADDRESS)
    assert tried == [ADDRESS, ADDRESS]
    (record,) = [r for r in caplog.records if r.name == "sweeper.driver.ray_client"]
    assert "Starting Ray client server failed" in record.getMessage()
    assert "trying again" in record.getMessage() and "(2 of 3)" in record.getMessage()


def test_a_head_that_never_starts_a_session_is_one_line_with_its_reason(attempts):
    tried = attempts(*[ConnectionAbortedError(HEAD_TRACEBACK)] * ray_client.CONNECT_TRIES)
    with pytest.raises(SweepError) as error:
        ray_client.connect(ADDRESS)
    assert len(tried) == ray_client.CONNECT_TRIES
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"ray: cannot connect to {ADDRESS}: ConnectionAbortedError: "
                              "Initialization failure from server:")
    assert message.endswith("RuntimeError: Starting Ray client server failed. "
                            "See ray_client_server_23001.err for detailed logs.")


def test_other_failures_are_not_tried_again(attempts):
    tried = attempts(ConnectionError("ray client connection timeout"))
    with pytest.raises(SweepError, match="connection timeout .*RAY_AUTH_TOKEN"):
        ray_client.connect(ADDRESS)
    assert tried == [ADDRESS]
