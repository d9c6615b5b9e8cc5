"""How a trial setting is declared: its default, its help text and what it does to the trial's
identity, once, on its dataclass field (as open_lth declares each hyperparameter once and
derives a run's identity from the declaration).

A setting's ``identity`` is one of:

- ``RESULT`` (the default): it can change what the trial computes. It is part of the trial's key
  (the MLflow run, the checkpoint folder) and of its checkpoint's config hash.
- ``RUN``: how the trial runs on its machine (device, compile, evaluation batch). A GPU and a CPU
  trial are different trials, so it is part of the key; but the numbers they compute are the
  same trial's, so a checkpoint written under another value still resumes.
- ``PLACE``: where the trial reads or writes, how often it saves, how many workers feed it. A
  trial moved or re-tuned so is the same trial: out of the key and out of the resume check.

``omit_at_default`` marks a setting added after keys were first pinned: the identity leaves it
out while it holds its default, so adding it renamed nothing that ran before.

A section (a dataclass field) declared ``RUN`` or ``PLACE`` covers every setting in it. The
functions below walk the declarations; ``trainables.config`` derives its identity constants
from them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterator, get_type_hints

RESULT, RUN, PLACE = "result", "run", "place"
IDENTITIES = (RESULT, RUN, PLACE)


def setting(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, help: str,
            identity: str = RESULT, omit_at_default: bool = False) -> Any:
    """A dataclass field with its help text and its identity (see the module docstring)."""
    if identity not in IDENTITIES:
        raise ValueError(f"identity must be one of {', '.join(IDENTITIES)}, got {identity!r}")
    if omit_at_default and default is dataclasses.MISSING:
        raise ValueError("omit_at_default needs a plain default")
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"help": help, "identity": identity, "omit_at_default": omit_at_default})


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """``get_type_hints(cls)``, once per class: evaluating string annotations compiles code each
    time, and a 10,000-trial spec spent most of its expansion there, once per dataclass per trial."""
    return get_type_hints(cls)


def walk(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """Every field of ``cls`` and of its sections, depth first: (dotted path, field, type)."""
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        hint = type_hints(cls)[f.name]
        yield path, f, hint
        if dataclasses.is_dataclass(hint):
            yield from walk(hint, path)


def identity_of(f: dataclasses.Field) -> str:
    return f.metadata.get("identity", RESULT)


def declared(cls: type, identity: str) -> tuple[str, ...]:
    """Dotted paths declared with ``identity`` (RUN or PLACE); a section stands for its settings."""
    found: list[str] = []
    for path, f, _ in walk(cls):
        if identity_of(f) == identity and not any(path.startswith(p + ".") for p in found):
            found.append(path)
    return tuple(found)


def leaves(cls: type, under: tuple[str, ...]) -> tuple[str, ...]:
    """The settings (not sections) of ``cls`` at or inside any path of ``under``."""
    return tuple(path for path, _, hint in walk(cls) if not dataclasses.is_dataclass(hint)
                 and any(path == p or path.startswith(p + ".") for p in under))


def omitted_at_default(cls: type) -> dict[str, Any]:
    """``{dotted path: default}`` of every setting declared ``omit_at_default``."""
    return {path: f.default for path, f, _ in walk(cls) if f.metadata.get("omit_at_default")}
