"""One error base class: every exception sweeper defines derives from SweeperError, carries the
exit code the CLI leaves with, survives pickling (Ray copies a trial's exception by pickling it),
and is printed through one formatter, core.errors.one_line."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

from sweeper.core import states
from sweeper.core.errors import SpecError, SweepError, SweeperError, TrackingUnavailable, one_line
from sweeper.driver.driver_exit import DriverFailure
from sweeper.driver.lease import LeaseHeld, LeaseLost, ParentSuperseded
from trainables.checkpoint import CheckpointError
from trainables.config import ConfigError

SWEEPER = Path(__file__).resolve().parents[1] / "sweeper"


@pytest.mark.parametrize("error, code", [
    (SpecError("s.yaml", "grid[0].depth", "15 is not 6n+2", 12), states.EXIT_BAD_INPUT),
    (SweepError("no sweep named 'x'"), states.EXIT_BAD_INPUT),
    (LeaseHeld("sweep 'x' is being run by another driver"), states.EXIT_BAD_INPUT),
    (LeaseLost("sweep 'x' was taken over by h-1"), states.EXIT_LEASE_LOST),
    (TrackingUnavailable("MLflow did not take the results of run r"), states.EXIT_FAILED),
    (DriverFailure("the sweep's Tune loop on the head was lost: X"), states.EXIT_FAILED),
    (ParentSuperseded("abc123"), states.EXIT_BAD_INPUT),
])
def test_each_error_carries_its_exit_code_pickles_and_prints_its_message_alone(error, code):
    assert isinstance(error, SweeperError) and error.exit_code == code
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error) and str(copy) == str(error) and copy.exit_code == code
    assert one_line(error) == str(error)


def test_a_spec_error_keeps_its_parts_through_pickling():
    copy = pickle.loads(pickle.dumps(SpecError("s.yaml", "train.lr", "must be > 0", 4)))
    assert (copy.file, copy.key, copy.message, copy.line) == ("s.yaml", "train.lr", "must be > 0", 4)
    assert str(copy) == "s.yaml: train.lr: must be > 0 (line 4)"


def test_one_line_names_the_type_of_anything_not_ours_the_trainables_errors_included():
    assert one_line(ConnectionError("server not reachable\nmore")) == "ConnectionError: server not reachable"
    assert one_line(KeyError()) == "KeyError"
    assert one_line(ConnectionError("x" * 500)) == ("ConnectionError: " + "x" * 500)[:300]
    assert one_line(ConnectionError("refused\nmore"), typed=False) == "refused"
    assert one_line(ConfigError("train.lr", "must be > 0")).startswith("ConfigError: ")
    assert one_line(CheckpointError("/c", "unreadable")).startswith("CheckpointError: ")


def test_every_exception_class_in_sweeper_derives_from_sweeper_error():
    known = {"SweeperError", "SpecError", "SweepError", "TrackingUnavailable", "LeaseHeld", "LeaseLost",
             "ParentSuperseded", "DriverFailure"}
    outside = []
    for path in sorted(SWEEPER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith(("Error", "Exception", "Failure", "Lost",
                                                                      "Held", "Unavailable", "Superseded")):
                if node.name not in known:
                    outside.append(f"{path.relative_to(SWEEPER.parent)}: {node.name}")
    assert outside == []
    # and each name is defined once: one class per concept
    defined = [node.name for path in sorted(SWEEPER.rglob("*.py")) for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.ClassDef) and node.name in known]
    assert sorted(defined) == sorted(known)
