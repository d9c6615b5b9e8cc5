"""Safe YAML loading for user specs, keeping the line of every key.

PyYAML's ``safe_load`` already refuses to build Python objects, but it forgets where each value
came from, silently keeps the last of two duplicate keys, and expands aliases without limit when
the result is walked (a "billion laughs" file is a few hundred bytes). So we compose the node tree
with a ``SafeLoader`` subclass and build the plain data ourselves, which lets us:

- record ``{key path: line}`` for every mapping key and list item (``grid[0].depth[2]``);
- reject duplicate keys, naming both lines;
- accept only plain-data tags (map, seq, str, int, float, bool, null, merge);
- count every node we build, aliases included, and stop at ``MAX_NODES``;
- turn every problem into one ``SpecError(file, key, message, line)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sweeper.core.errors import SpecError

MAX_BYTES = 1 << 20  # a spec is a small text file; refuse to read a 100 MB one into memory
MAX_NODES = 50_000  # values built after alias expansion: far above any real spec, far below a bomb
MAX_DEPTH = 64  # nesting levels; real specs use about 5

_YAML = "tag:yaml.org,2002:"
_PLAIN_TAGS = {_YAML + t for t in ("map", "seq", "str", "int", "float", "bool", "null")}
_MERGE_TAG = _YAML + "merge"
_TIMESTAMP_TAG = _YAML + "timestamp"

# YAML 1.1 (PyYAML) reads `1e-4` as a string because it lacks a dot; YAML 1.2 and every user
# reads it as a number. Accept both forms so that `weight_decay: 1e-4` means what it says.
_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats and a nesting cap. Composes nodes and constructs scalars."""

    def __init__(self, text: str, file: str):
        self.file = file
        super().__init__(text)

    def fetch_flow_collection_start(self, TokenClass):  # PyYAML names this argument
        # PyYAML's scanner is quadratic in flow nesting ("[[[[..."): stop before it starts to crawl.
        if self.flow_level >= MAX_DEPTH:
            raise SpecError(self.file, None, f"nesting is deeper than {MAX_DEPTH} levels", self.get_mark().line + 1)
        super().fetch_flow_collection_start(TokenClass)


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, _FLOAT_RE if tag == _YAML + "float" else regexp) for tag, regexp in resolvers]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class YamlDocument:
    """A parsed spec file: plain data, the line of every key path, and the exact text."""

    path: str
    text: str
    data: dict[str, Any]
    lines: dict[str, int]

    def line_of(self, key_path: str | None) -> int | None:
        """Line of ``key_path`` or, when it was not typed (a default), of its nearest parent."""
        path = key_path or ""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = _parent(path)
        return None


def load_yaml(path: str | Path) -> YamlDocument:
    """Read and parse a spec file. Every problem is a SpecError naming the file and the line."""
    file = str(path)
    text = _read_text(file)
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> YamlDocument:
    if text.startswith("\ufeff"):
        text = text[1:]
    loader = None
    try:
        loader = _SpecLoader(text, file)
        root = _compose_single(loader, file)
        if root is None:
            raise SpecError(file, None, "the file is empty; a spec is a mapping with at least name, dataset, model "
                                        "and train")
        if not isinstance(root, yaml.MappingNode):
            raise SpecError(file, None, "the top level must be a mapping of keys (name, dataset, model, train, ...), "
                                        f"got {_node_kind(root)}", _line(root))
        builder = _Builder(file, loader)
        data = builder.build(root, "", depth=0)
    except yaml.MarkedYAMLError as e:
        raise _syntax_error(file, e) from None
    except yaml.YAMLError as e:  # ReaderError: control characters
        raise _reader_error(file, text, e) from None
    except RecursionError:  # the composer recurses once per nesting level
        raise SpecError(file, None, "nesting is too deep to be a spec") from None
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDocument(path=file, text=text, data=data, lines=builder.lines)


# --- reading ----------------------------------------------------------------------------------


def _read_text(file: str) -> str:
    p = Path(file)
    if p.is_dir():
        raise SpecError(file, None, "is a folder, not a spec file")
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(file, None, "no such file") from None
    except OSError as e:
        raise SpecError(file, None, f"cannot read: {e.strerror or e}") from None
    if len(raw) > MAX_BYTES:
        raise SpecError(file, None, f"is larger than {MAX_BYTES // 1024} KiB; a spec is a small text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SpecError(file, None, f"is not UTF-8 text: byte 0x{raw[e.start]:02x} cannot be decoded", line) from None


# --- composing --------------------------------------------------------------------------------


def _compose_single(loader: _SpecLoader, file: str) -> yaml.Node | None:
    loader.get_event()  # stream start
    root = None
    if not loader.check_event(yaml.StreamEndEvent):
        root = loader.compose_document()
    if not loader.check_event(yaml.StreamEndEvent):
        event = loader.get_event()
        raise SpecError(file, None, "holds more than one YAML document (a second '---'); a spec is one document",
                        event.start_mark.line + 1)
    return root


def _syntax_error(file: str, e: yaml.MarkedYAMLError) -> SpecError:
    problem = (e.problem or "").strip()
    mark = e.problem_mark or e.context_mark
    line = mark.line + 1 if mark else None
    if "'\\t'" in problem:
        return SpecError(file, None, "invalid YAML: a tab character where YAML expects spaces (indent with spaces only)", line)
    message = f"invalid YAML: {problem}"
    if e.context and e.context_mark and e.context_mark.line + 1 != line:
        message += f", {e.context} from line {e.context_mark.line + 1}"
    elif e.context:
        message += f", {e.context}"
    return SpecError(file, None, message, line)


def _reader_error(file: str, text: str, e: yaml.YAMLError) -> SpecError:
    position = getattr(e, "position", None)
    character = getattr(e, "character", None)
    line = text.count("\n", 0, position) + 1 if isinstance(position, int) else None
    what = f"the control character {character:#06x}" if isinstance(character, int) else "a control character"
    return SpecError(file, None, f"invalid YAML: {what} is not allowed in YAML text", line)


# --- building plain data ----------------------------------------------------------------------


class _Builder:
    def __init__(self, file: str, loader: _SpecLoader):
        self.file = file
        self.loader = loader
        self.lines: dict[str, int] = {}
        self.nodes_built = 0
        self.active: set[int] = set()  # nodes on the current path: an alias back into one is a cycle

    def build(self, node: yaml.Node, path: str, depth: int) -> Any:
        self.nodes_built += 1
        if self.nodes_built > MAX_NODES:
            top = _top_key(path)
            raise SpecError(self.file, top or None, f"holds more than {MAX_NODES:,} values once its aliases are "
                                                    "expanded (aliases of aliases?); refusing to expand it",
                            self.lines.get(top, _line(node)))
        if depth > MAX_DEPTH:
            raise SpecError(self.file, None, f"nesting is deeper than {MAX_DEPTH} levels", _line(node))
        self._check_tag(node, path)
        if id(node) in self.active:
            raise SpecError(self.file, path or None, "an alias refers to the list or mapping that contains it", _line(node))
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                items = []
                for i, item in enumerate(node.value):
                    item_path = f"{path}[{i}]"
                    self.lines.setdefault(item_path, _line(item))
                    items.append(self.build(item, item_path, depth + 1))
                return items
            return self._mapping(node, path, depth)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: str, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.append(value_node)
                continue
            key = self._key(key_node, path)
            key_path = f"{path}.{key}" if path else key
            if key in first_line:
                raise SpecError(self.file, key_path, f"duplicate key {key!r}, first given at line {first_line[key]}",
                                _line(key_node))
            first_line[key] = _line(key_node)
            self.lines[key_path] = _line(key_node)
            result[key] = self.build(value_node, key_path, depth + 1)
        # `<<: *base` fills in keys not given here (YAML merge keys); explicit keys win.
        for source in merged:
            sources = source.value if isinstance(source, yaml.SequenceNode) else [source]
            for s in sources:
                if not isinstance(s, yaml.MappingNode):
                    raise SpecError(self.file, path or None, "a merge key '<<' needs a mapping or a list of mappings",
                                    _line(s))
                outer_lines, self.lines = self.lines, {}
                try:
                    values = self.build(s, path, depth)
                finally:
                    merged_lines, self.lines = self.lines, outer_lines
                for key, value in values.items():
                    if key in result:
                        continue
                    result[key] = value
                    key_path = f"{path}.{key}" if path else key
                    for p, line in merged_lines.items():
                        if p == key_path or p.startswith((key_path + ".", key_path + "[")):
                            self.lines.setdefault(p, line)
        return result

    def _key(self, key_node: yaml.Node, path: str) -> str:
        if not isinstance(key_node, yaml.ScalarNode):
            raise SpecError(self.file, path or None, f"keys must be plain words, got {_node_kind(key_node)}",
                            _line(key_node))
        self._check_tag(key_node, path)
        key = self._scalar(key_node, path)
        if not isinstance(key, str):
            shown = "nothing" if key is None else f"{type(key).__name__} {key!r}"
            raise SpecError(self.file, path or None, f"keys must be words, got {shown}", _line(key_node))
        return key

    def _scalar(self, node: yaml.ScalarNode, path: str) -> Any:
        if node.tag == _TIMESTAMP_TAG:
            return node.value  # a date is just text in a spec (a sweep named 2021-05-01)
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as e:
            raise SpecError(self.file, path or None, f"cannot read {node.value!r} as {_short_tag(node.tag)}: "
                                                     f"{e.problem}", _line(node)) from None
        except ValueError as e:  # e.g. !!int on a word
            raise SpecError(self.file, path or None, f"cannot read {node.value!r} as {_short_tag(node.tag)}: {e}",
                            _line(node)) from None
        except KeyError:  # !!bool on a word PyYAML has no truth value for
            raise SpecError(self.file, path or None, f"cannot read {node.value!r} as {_short_tag(node.tag)}: "
                                                     "not true or false", _line(node)) from None

    def _check_tag(self, node: yaml.Node, path: str) -> None:
        if node.tag in _PLAIN_TAGS or node.tag == _TIMESTAMP_TAG:
            return
        raise SpecError(self.file, path or None,
                        f"the tag {_short_tag(node.tag)} is not allowed: a spec holds plain data only "
                        "(mappings, lists, strings, numbers, booleans)", _line(node))


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    return f"the value {node.value!r}"


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_YAML):] if tag.startswith(_YAML) else tag


def _top_key(path: str) -> str:
    return re.split(r"[.\[]", path, maxsplit=1)[0]


def _parent(path: str) -> str:
    """``grid[0].depth[2]`` -> ``grid[0].depth`` -> ``grid[0]`` -> ``grid`` -> ``""``."""
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""
