"""At a SIGTERM the driver puts the sweep's record right at once (its running trials and parent
run KILLED, its lease released, the interrupted line printed), since a SIGKILL follows; when the
store cannot take it, the ordinary end after Tune's stop does it instead."""

from __future__ import annotations

import logging

from sweeper.core.states import INTERRUPTED, RUNNING
from sweeper.driver.driver_exit import INTERRUPTED_LINE
from sweeper.driver.term_close import TermClose
from sweeper.record import names
from sweeper.record.trial_record import state_of


class RecordedLease:
    def __init__(self):
        self.released = 0

    def release(self):
        self.released += 1


def sweep_with_trials(client, states: dict[str, str]):
    experiment_id = client.create_experiment("term_close")
    parent = client.create_run(experiment_id, tags={names.TAG_ROLE: "sweep"}).info.run_id
    children = {}
    for key, status in states.items():
        run = client.create_run(experiment_id, tags={names.TAG_ROLE: "trial", names.TAG_TRIAL_KEY: key,
                                                     names.TAG_PARENT: parent})
        if status != "RUNNING":
            client.set_tag(run.info.run_id, names.TAG_STATUS, "finished")
            client.set_terminated(run.info.run_id, status)
        children[key] = run.info.run_id
    return experiment_id, parent, children


def test_a_sigterm_marks_running_trials_and_the_parent_killed_then_releases_the_lease(mlflow_client, capsys):
    experiment_id, parent, children = sweep_with_trials(mlflow_client, {"a": "RUNNING", "b": "FINISHED"})
    lease = RecordedLease()
    closing = TermClose(mlflow_client, experiment_id, parent, lease, INTERRUPTED_LINE)
    assert not closing.done()  # no SIGTERM yet: the ordinary end is in charge
    closing.start()
    closing.start()  # a second SIGTERM does not close twice
    assert closing.done()
    assert mlflow_client.get_run(parent).info.status == "KILLED"
    trial_a, trial_b = (mlflow_client.get_run(children[k]) for k in "ab")
    assert trial_a.info.status == "KILLED" and state_of(trial_a) == INTERRUPTED  # resumed next time
    assert trial_b.info.status == "FINISHED"  # what was done stays done
    assert lease.released == 1
    assert capsys.readouterr().err.strip() == INTERRUPTED_LINE


def test_a_store_that_fails_at_the_sigterm_leaves_the_close_to_the_ordinary_end(mlflow_client, caplog, capsys):
    experiment_id, parent, children = sweep_with_trials(mlflow_client, {"a": "RUNNING"})

    class Refusing:
        def __getattr__(self, name):
            raise ConnectionError("tracking server unreachable")

    lease = RecordedLease()
    closing = TermClose(Refusing(), experiment_id, parent, lease, INTERRUPTED_LINE)
    with caplog.at_level(logging.WARNING, logger="sweeper"):
        closing.start()
        assert not closing.done()
    assert lease.released == 0  # still held: the driver closes its runs after Tune's stop
    assert mlflow_client.get_run(parent).info.status == "RUNNING"
    assert state_of(mlflow_client.get_run(children["a"])) == RUNNING
    assert "could not mark the sweep interrupted at once" in caplog.text
    assert INTERRUPTED_LINE not in capsys.readouterr().err
