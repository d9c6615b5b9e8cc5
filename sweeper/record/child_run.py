"""How a trial's child run reads in the MLflow UI: short params for the axes that vary, and a
one-line description.

The full resolved config stays logged under dotted names (``model.depth``, ``train.lr``); next to
it, each varying dotted axis is logged again under its short name (``depth``, ``lr``) so that
"Group by" and the parallel-coordinates view offer plain names. These aliases are listed in the
tag ``sweeper.short_params`` so that readers of the config (the report) can leave them out. They
change neither the trial key (a hash of the config) nor the run name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping
from sweeper.record import names
from trainables.names import MODE_WORDS



def short_params(params: Mapping[str, Any], axes: Iterable[str]) -> dict[str, Any]:
    """``{"depth": 8, "lr": 0.1}`` for the dotted axes among ``axes``; a short name that would
    clash with a config key or another alias is not used."""
    out: dict[str, Any] = {}
    for path in axes:
        if "." not in path or path not in params:
            continue
        parts = path.split(".")
        alias = parts[-1] if parts[-1] != "name" else parts[-2]  # train.optimizer.name -> optimizer
        if alias in params or alias in out:
            continue
        out[alias] = params[path]
    return out


def describe(params: Mapping[str, Any]) -> str:
    """One line: what this trial trains, on what, for how long."""
    mode = params.get("mode")
    model = f"{params.get('model.family', 'model')}-{params.get('model.depth', '?')}"
    if params.get("model.width") not in (None, 1, "1"):
        model += f" width x{params.get('model.width')}"
    what = f"{mode}: {MODE_WORDS.get(str(mode), str(mode))}" if mode else "trial"
    return (f"{what}; {model} on {params.get('dataset.name', '?')}, lr {params.get('train.lr', '?')}, "
            f"{params.get('train.epochs', '?')} epochs, seed {params.get('seed', '?')}")


def presented(trial, axes: Iterable[str]):
    """The trial (``sweeper.core.trial.Trial``) as its child run shows it: its short params and
    note added (a new Trial); the plan calls it once per trial."""
    short = short_params(trial.params, axes)
    tags = {**trial.tags, names.TAG_NOTE: describe(trial.params)}
    if short:
        tags[names.TAG_SHORT_PARAMS] = ",".join(short)
    return dataclasses.replace(trial, params={**trial.params, **short}, tags=tags)
