"""A tracking call tried again through a short outage; one that outlasts its wait raises."""

import logging

import pytest

from sweeper.record import retrying


def test_a_call_through_a_short_outage_is_tried_again_and_each_failed_try_logged(monkeypatch, caplog):
    monkeypatch.setattr(retrying.time, "sleep", lambda s: None)
    answers = [ConnectionError("refused"), ConnectionError("refused"), "the runs"]

    def call():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with caplog.at_level(logging.WARNING, logger="sweeper"):
        assert retrying.through_outage(call, "reading the trials", wait_s=60) == "the runs"
    lines = [r.getMessage() for r in caplog.records if r.name == "sweeper.record.retrying"]
    assert lines == ["reading the trials: the tracking store did not answer (ConnectionError: refused); "
                     "trying again in 2 s"] * 2


def test_an_outage_longer_than_the_wait_raises_its_last_error_and_says_it_gave_up(caplog):
    def call():
        raise ConnectionError("still down")

    with caplog.at_level(logging.WARNING, logger="sweeper"), pytest.raises(ConnectionError, match="still down"):
        retrying.through_outage(call, "ending parent run x", wait_s=0.0, every_s=0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "sweeper.record.retrying"]
    assert lines == ["ending parent run x: the tracking store did not answer (ConnectionError: still down); "
                     "gave up after 0 s"]
