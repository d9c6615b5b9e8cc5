"""One order of trials everywhere: the spec's (``planning.expected_trials``), and a trial named
by its index in that order, its name or its key.

`sweeper validate` lists grid points in this order, `sweeper status` numbers its rows by it and
`sweeper train SPEC --trial N` trains row N, so the row a user reads is the trial that trains.
The spec a sweep last ran with is kept on its parent run (``spec/<hash>.yaml``), so `status NAME`
orders by it too (``spec_as_run``).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from sweeper.core.errors import SpecError
from sweeper.core.trial import Trial
from sweeper.plan.planning import expected_trials
from trainables.keys import did_you_mean

log = logging.getLogger(__name__)
MIN_KEY_PREFIX = 6  # a key prefix this long names a trial when it names only one


def trial_order(spec) -> list[Trial]:
    """The spec's trials in the order every command numbers them."""
    return expected_trials(spec)


def find_trial(spec, ref: str | int, *, option: str = "--trial") -> tuple[int, Trial]:
    """(index, trial) for ``ref``: an index into ``trial_order``, a trial's name, its key or a
    unique key prefix of at least MIN_KEY_PREFIX characters; SpecError naming ``option`` else."""
    trials = trial_order(spec)
    text = str(ref).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(trials):
            raise SpecError(None, option, f"{index} is out of range: the spec has trials 0..{len(trials) - 1}")
        return index, trials[index]
    for i, trial in enumerate(trials):
        if text in (trial.name, trial.key):
            return i, trial
    if len(text) >= MIN_KEY_PREFIX:
        matches = [(i, t) for i, t in enumerate(trials) if t.key.startswith(text)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise SpecError(None, option, f"key prefix {text!r} names {len(matches)} trials: give more of the key")
    hint = did_you_mean(text, [t.name for t in trials])
    raise SpecError(None, option, f"no trial {text!r} in sweep {spec.name!r}{hint}: give an index "
                    f"0..{len(trials) - 1} (as `sweeper status` numbers them), a trial name or a key")


def spec_as_run(client: Any, parent_run: Any):
    """The spec the sweep last ran with, read from its parent run, or None when it cannot be had
    (an old store, an artifact store this machine cannot reach): the caller then keeps MLflow's
    order, which is all it had before."""
    from sweeper.record import names
    from sweeper.spec import parse_spec

    spec_hash = parent_run.data.tags.get(names.TAG_SPEC_HASH) if parent_run is not None else None
    if not spec_hash:
        return None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(parent_run.info.run_id, f"{names.ARTIFACT_SPEC}/{spec_hash}.yaml", tmp)
            return parse_spec(Path(path).read_text(), f"{names.ARTIFACT_SPEC}/{spec_hash}.yaml")
    except Exception as e:  # noqa: BLE001 - without it the rows keep MLflow's order, said in the log
        log.info("the spec of run %s could not be read back (%s): rows in MLflow's order",
                 parent_run.info.run_id, e)
        return None
