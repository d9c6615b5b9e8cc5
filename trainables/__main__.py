"""``python -m trainables TRIAL.yaml [--checkpoint-dir DIR]``: one trial, no Ray, no MLflow.

Prints one JSON object per epoch and a last one with the final metrics. A bad trial file (missing,
not YAML/JSON, duplicate keys, a ConfigError) or an unusable checkpoint folder prints one line,
``FILE: key: message (line N)``, and exits with code 2, without a traceback.

PyYAML is imported here only: the CLI is the edge where user files come in, the library itself
depends on torch, torchvision and numpy alone. A ``.json`` file needs no PyYAML at all.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from trainables.config import ConfigError, TrialConfig

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """One line for the user: what is wrong, in which file, at which key and line."""


def _read_trial(path: Path) -> tuple[Any, Any]:
    """The file's data and, for YAML, its node tree (for line numbers)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: cannot read: {e}") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text), None
        except json.JSONDecodeError as e:
            raise BadInput(f"{path}: invalid JSON: {e.msg} (line {e.lineno})") from None
    import yaml  # lazy: see the module docstring

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _reject_duplicate_keys(root, path)
        return yaml.safe_load(text), root
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise BadInput(f"{path}: invalid YAML: {e.problem or e.context}{where}") from None
    except yaml.YAMLError as e:
        raise BadInput(f"{path}: invalid YAML: {e}") from None


def _reject_duplicate_keys(node: Any, path: Path, key_path: str = "") -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            where = f"{key_path}.{key}" if key_path else key
            if key in seen:
                raise BadInput(f"{path}: {where}: duplicate key (line {key_node.start_mark.line + 1})")
            seen.add(key)
            _reject_duplicate_keys(value_node, path, where)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _reject_duplicate_keys(item, path, f"{key_path}[{index}]")


def _line_of(root: Any, key_path: str) -> int | None:
    """The 1-based line of a dotted key path (``train.lr_schedule.milestones[1]``) in a YAML tree."""
    import yaml

    node, line = root, None
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", key_path):
        if isinstance(node, yaml.MappingNode) and not part.startswith("["):
            match = next(((k, v) for k, v in node.value if str(k.value) == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and part.startswith("["):
            index = int(part[1:-1])
            if index >= len(node.value):
                break
            node = node.value[index]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _config_error_line(path: Path, error: ConfigError, root: Any) -> str:
    parts = [str(path)] + ([error.path] if error.path else []) + [error.message]
    text = ": ".join(parts)
    line = _line_of(root, error.path) if root is not None and error.path else None
    return f"{text} (line {line})" if line else text


def _print_json(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainables", description="Run one trial.")
    parser.add_argument("trial", type=Path, help="trial configuration, YAML or JSON")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="folder for checkpoints and gamma.json; an existing checkpoint resumes")
    args = parser.parse_args(argv)

    root = None
    try:
        data, root = _read_trial(args.trial)
        config = TrialConfig.from_dict(data)
        from trainables.checkpoint import CheckpointError
        from trainables.loop import run_trial

        try:
            final = run_trial(config, report=lambda metrics, _checkpoint: _print_json(metrics),
                              checkpoint_dir=args.checkpoint_dir)
        except CheckpointError as e:
            raise BadInput(str(e)) from None
    except BadInput as e:
        print(e, file=sys.stderr)
        return EXIT_BAD_INPUT
    except ConfigError as e:  # from validation, or raised by the data loader about dataset.*
        print(_config_error_line(args.trial, e, root), file=sys.stderr)
        return EXIT_BAD_INPUT
    _print_json(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
