"""pydantic's validation errors, as the one-line SpecError a user reads.

pydantic reports a location (``('scheduler', 'asha', 'grace_period')``) and an error type; the
user typed ``scheduler.grace_period`` on some line. ``schema_error`` walks the location through
the schema's models to get the key path as typed (union tags and ``[key]`` dropped) and the keys
allowed there, then says what is wrong in the project's words (``must be an integer, got the
string '3'``, ``unknown key (did you mean 'gpu'?)``). It takes the root model as an argument, so
it knows the spec's models only through the location it walks; tests/test_spec_errors.py pins
every message.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from sweeper.spec.axes import resolve_axis
from sweeper.spec.foreign import key_hint
from sweeper.core.errors import SpecError, kind_of
from sweeper.spec.yamlio import YamlDocument
from trainables.keys import did_you_mean


def schema_error(doc: YamlDocument, e: ValidationError, root: type[BaseModel]) -> SpecError:
    """The first of pydantic's errors validating ``doc`` against ``root``, as one SpecError."""
    err = e.errors()[0]
    key, fields, union = _walk_loc(root, err["loc"])
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "extra_forbidden":
        name = key.rsplit(".", 1)[-1]
        message = f"unknown key{key_hint(key, value) or _unknown_key_hint(name, key, fields, union)}"
    elif kind == "missing":
        message = "is required"
    elif kind == "union_tag_invalid":
        key += ".name"
        message = _unknown_value("scheduler", ctx.get("tag"), re.findall(r"'([^']*)'", ctx.get("expected_tags", "")))
    elif kind == "union_tag_not_found":
        key += ".name"
        message = "is required (fifo or asha)"
    elif kind == "literal_error":
        message = _unknown_value(key.rsplit(".", 1)[-1], value, re.findall(r"'([^']*)'", ctx.get("expected", "")))
    elif kind == "value_error":
        message = str(ctx.get("error", err["msg"]))
    elif kind in ("int_type", "int_from_float", "int_parsing"):
        message = f"must be an integer, got {kind_of(value)}"
    elif kind in ("float_type", "float_parsing"):
        message = f"must be a number, got {kind_of(value)}"
    elif kind == "finite_number":
        message = f"must be a finite number, got {value}"
    elif kind in ("string_type",):
        message = f"must be a string, got {kind_of(value)}"
    elif kind in ("dict_type", "model_type", "model_attributes_type"):
        message = f"must be a mapping, got {kind_of(value)}"
    elif kind == "greater_than_equal":
        message = f"must be >= {_number(ctx['ge'])}, got {value}"
    elif kind == "greater_than":
        message = f"must be > {_number(ctx['gt'])}, got {value}"
    else:
        message = f"{err['msg']}, got {kind_of(value)}"
    return SpecError(doc.path, key or None, message, doc.line_of(key))


def _walk_loc(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, list[str], Any]:
    """pydantic's loc -> the key path as typed (``scheduler.grace_period``), the keys allowed
    where the last element sits (for did-you-mean) and the union the model there is a member of
    (None outside one). Drops discriminator tags and ``[key]``."""
    model: Any = root
    parts: list[str] = []
    fields: list[str] = list(root.model_fields)
    union: Any = None
    pending_tag = False
    for element in loc:
        if element == "[key]":
            continue
        if pending_tag:  # loc names the union member by its tag: not a key the user typed
            union, model, pending_tag = model, _member(model, element), False
            fields = list(model.model_fields) if model else []
            continue
        parts.append(f"[{element}]" if isinstance(element, int) else f".{element}")
        fields = list(model.model_fields) if _is_model(model) else []
        model, pending_tag = _step(model, element)
    path = "".join(parts).lstrip(".")
    return path, fields, union


def _step(model: Any, element: Any) -> tuple[Any, bool]:
    """The type one loc element down, and whether the next element is a union tag."""
    if _is_model(model) and element in model.model_fields:
        hint = model.model_fields[element].annotation
    elif get_origin(model) is dict:
        hint = get_args(model)[1]
    else:
        return None, False
    hint = _unwrap(hint)
    if get_origin(hint) is Union:
        members = _members(hint)
        if len(members) > 1:
            return hint, True
        hint = members[0] if members else None
    return hint, False


def _member(union: Any, tag: Any) -> Any:
    for m in _members(union):
        if tag in _tags(m):
            return m
    return None


def _members(union: Any) -> list[type[BaseModel]]:
    return [a for a in get_args(union) if _is_model(a)]


def _tags(member: type[BaseModel]) -> tuple[Any, ...]:
    """The discriminator values (``name``) a union member is chosen by: ("asha",)."""
    return get_args(member.model_fields["name"].annotation)


def _is_model(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, BaseModel)


def _unwrap(hint: Any) -> Any:
    while get_origin(hint) is Annotated:
        hint = get_args(hint)[0]
    if get_origin(hint) is Union:
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
        return Union[tuple(_unwrap(a) for a in args)]
    return hint


def _unknown_key_hint(name: str, key: str, fields: list[str], union: Any) -> str:
    if "." not in key and name in ("mode", "seed"):
        return f"; {name} is set per trial through grid, e.g. grid: {{{name}: [...]}}"
    if fields == ["name"]:  # fifo: a scheduler with nothing to set but its name
        owners = [_tags(m)[0] for m in _members(union) if name in m.model_fields]
        return f"; fifo takes no settings{f' ({name} is an {owners[0]} setting)' if owners else ''}"
    hint = did_you_mean(name, fields)
    if hint:
        return hint
    if "." not in key:  # top level: maybe a trial setting typed one level too high
        try:
            return f"; {name} belongs in {resolve_axis(name).rsplit('.', 1)[0]}"
        except ValueError:
            pass
    return f"; one of {', '.join(fields)}" if fields else ""


def _unknown_value(what: str, value: Any, allowed: list[str]) -> str:
    return f"unknown {what} {value!r}{did_you_mean(value, allowed)}; one of {', '.join(allowed)}"


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value
