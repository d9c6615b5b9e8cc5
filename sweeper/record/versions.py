"""Study versions: what an edited spec keeps, adds and leaves behind, and how MLflow marks it.

A trial's key hashes its resolved configuration, so editing a spec (``epochs: 3`` -> ``4``, a new
depth) gives the changed trials new keys: they are new trials, and the runs of the old keys stay
in MLflow. ``sweeper run`` then tags every child run that the spec no longer defines with
``sweeper.superseded`` (the spec hash that left it out) and removes the tag from runs the spec
defines again. ``status`` and ``report`` show only unmarked runs unless ``--all`` is given, so a
3-epoch run never stands in a 4-epoch table unannounced.

The parent run keeps the order of spec versions in ``sweeper.spec_history`` (short hashes), which
is how a run knows the spec changed since the previous one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from sweeper.record import names
from sweeper.core.states import DONE
from sweeper.record.trial_record import state_of

_SHORT = 12
_HISTORY_CHARS = 4000  # MLflow tag values are bounded; the oldest versions drop off first


@dataclass(frozen=True)
class VersionChange:
    previous: str | None  # the short hash of the spec that ran before, if it differs
    kept: int
    new: int
    gone: int
    gone_finished: int

    def lines(self, name: str) -> list[str]:
        if self.previous is None and not self.gone:
            return []
        head = (f"{name}: the spec changed since the last run (was {self.previous})"
                if self.previous else f"{name}: MLflow holds trials this spec no longer defines")
        lines = [f"{head}: {self.kept} trials kept, {self.new} new, "
                 f"{self.gone} no longer in the spec ({self.gone_finished} of them finished)"]
        if self.gone:
            lines.append(f"  those stay in MLflow, tagged {names.TAG_SUPERSEDED}; `sweeper status {name}` and "
                         f"`sweeper report {name}` leave them out unless given --all")
        return lines


def is_current(run: Any) -> bool:
    return names.TAG_SUPERSEDED not in run.data.tags


def current_keys(spec, trials: Iterable[Any], runs: dict[str, Any]) -> set[str]:
    """Keys the spec defines now: its trials and, for Optuna, the samples drawn on its grid."""
    keys = {t.key for t in trials}
    if spec.search is not None and spec.search.algorithm == "optuna":
        grid = {t.key for t in spec.trials()}
        keys |= {k for k, run in runs.items() if run.data.tags.get(names.TAG_GRID_KEY) in grid}
    return keys


def apply(client, parent_run_id: str, spec, trials: list[Any], runs: dict[str, Any],
          write: bool = True) -> VersionChange:
    """Record this spec version on the parent run, (un)mark child runs, and say what changed.
    ``runs`` (trial key -> run, as ``run_index`` reads them) get the tags written to them too, so
    that the driver's next run index holds them."""
    keys = current_keys(spec, trials, runs)
    short = spec.spec_hash[:_SHORT]
    history = client.get_run(parent_run_id).data.tags.get(names.TAG_SPEC_HISTORY, "")
    versions = [v for v in history.split(",") if v]
    previous = versions[-1] if versions and versions[-1] != short else None
    if write and (not versions or versions[-1] != short):
        text = ",".join(versions + [short])
        client.set_tag(parent_run_id, names.TAG_SPEC_HISTORY, text[-_HISTORY_CHARS:].lstrip(","))
    gone = gone_finished = 0
    for key, run in runs.items():
        if key in keys:
            if write and not is_current(run):
                client.delete_tag(run.info.run_id, names.TAG_SUPERSEDED)
                del run.data.tags[names.TAG_SUPERSEDED]
            continue
        gone += 1
        gone_finished += state_of(run) in DONE
        if write and is_current(run):
            client.set_tag(run.info.run_id, names.TAG_SUPERSEDED, spec.spec_hash)
            run.data.tags[names.TAG_SUPERSEDED] = spec.spec_hash
    kept = sum(1 for key in keys if key in runs)
    return VersionChange(previous, kept, len(keys) - kept, gone, gone_finished)
