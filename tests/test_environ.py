"""core.environ.temporarily: what sweeper sets in the environment for a block is gone after it."""

from __future__ import annotations

import os

import pytest

from sweeper.core import environ


@pytest.mark.parametrize("users_win, inside", [(False, "ours"), (True, "user")])
def test_values_hold_inside_the_block_and_the_environment_is_as_before_after_it(monkeypatch, users_win, inside):
    """users_win: a value the user already set is kept; an unset one is set either way."""
    monkeypatch.setenv("SWEEPER_T_SET", "user")
    monkeypatch.delenv("SWEEPER_T_UNSET", raising=False)
    with environ.temporarily({"SWEEPER_T_SET": "ours", "SWEEPER_T_UNSET": "ours"}, users_win=users_win):
        assert (os.environ["SWEEPER_T_SET"], os.environ["SWEEPER_T_UNSET"]) == (inside, "ours")
    assert os.environ["SWEEPER_T_SET"] == "user" and "SWEEPER_T_UNSET" not in os.environ


def test_the_environment_is_put_back_when_the_block_raises(monkeypatch):
    monkeypatch.delenv("SWEEPER_T_UNSET", raising=False)
    with pytest.raises(RuntimeError), environ.temporarily({"SWEEPER_T_UNSET": "ours"}, users_win=False):
        raise RuntimeError("inside")
    assert "SWEEPER_T_UNSET" not in os.environ
