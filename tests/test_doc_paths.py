"""Every module path the project names exists.

Docstrings, comments and docs name modules (`sweeper.record.tracking`, `trainables.array.key`)
and things in them (`sweeper.record.tracking.TrialLogger`). When a module moves, a stale name is
a wrong map for the next reader, and nothing else would notice: so every dotted `sweeper.x...` /
`trainables.x...` path in the .py files (their strings and comments) and in the .md files
(README.md, docs/, bench/, docker/) must resolve, read from the source (nothing is imported), to
a module or package, or to a module plus a name it defines or imports (one level further for a
class: `Class.method`).

The MLflow tag, metric and artifact names that share the prefix (`sweeper.trial_key`,
`sweeper.lease.<driver>`) are not module paths: they are the string values of
`sweeper/record/names.py` and `trainables/names.py`, collected here and left out.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sweeper", "trainables")
NAMES_MODULES = (ROOT / "sweeper" / "record" / "names.py", ROOT / "trainables" / "names.py")
SKIP_DIRS = {".venv", ".git", "sweeper.egg-info", "node_modules", "__pycache__"}
MD_PLACES = ("README.md", "docs", "bench", "docker")

# A dotted path starting at a package, not part of a longer word, file name or path
# (`docs/sweeper.md`, `sweeper.egg-info`, `x.sweeper.y`).
PATH = re.compile(r"(?<![\w./-])(?:sweeper|trainables)(?:\.[A-Za-z_]\w*)+(?![\w-]|\.\w|/)")


def _name_values() -> tuple[set[str], tuple[str, ...]]:
    """The string constants of the names modules: exact names, and prefixes (ending in '.')."""
    values: set[str] = set()
    for path in NAMES_MODULES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                values.add(node.value)
    # "sweeper." alone (every metric sweeper adds starts so) is too wide to leave anything out by.
    return values, tuple(v for v in values if v.endswith(".") and v.count(".") > 1 and v.startswith(PACKAGES))


NAME_VALUES, NAME_PREFIXES = _name_values()


def _is_record_name(path: str) -> bool:
    return path in NAME_VALUES or path.startswith(NAME_PREFIXES)


def _project_files(suffix: str) -> list[Path]:
    """The project's files ending in ``suffix``, without walking into .venv, .git and the like."""
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = sorted(d for d in subfolders if d not in SKIP_DIRS)
        found += [Path(folder) / name for name in sorted(files) if name.endswith(suffix)]
    return found


def _md_files() -> list[Path]:
    files = []
    for place in MD_PLACES:
        target = ROOT / place
        files += [target] if target.is_file() else [p for p in _project_files(".md") if target in p.parents]
    return files


def _paths_in_text(text: str) -> list[tuple[int, str]]:
    """(line offset in text, dotted path), less the MLflow names: a path followed by a dot may be
    a prefix name written out (`sweeper.lease.` + driver id)."""
    found = []
    for match in PATH.finditer(text):
        dotted = match.group()
        if _is_record_name(dotted) or (text[match.end():match.end() + 1] == "." and _is_record_name(dotted + ".")):
            continue
        found.append((text.count("\n", 0, match.start()), dotted))
    return found


def _paths_in_python(path: Path) -> list[tuple[int, str]]:
    """(line, dotted path) from the file's comments and string literals (docstrings included).

    A string literal whose whole value is an MLflow name (a tag key such as "sweeper.trial_key")
    is a name, not a path, and is left out with the others."""
    found = []
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    for token in tokens:
        if token.type in (tokenize.COMMENT, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)):
            found += [(token.start[0] + offset, dotted) for offset, dotted in _paths_in_text(token.string)]
    return found


def _paths_in_markdown(path: Path) -> list[tuple[int, str]]:
    return [(number + offset, dotted) for number, line in enumerate(path.read_text().splitlines(), 1)
            for offset, dotted in _paths_in_text(line)]


@cache
def _module_file(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _defined_names(module: Path) -> dict[str, ast.AST | None]:
    """Top-level names a module defines or imports (a class maps to its node, for its members)."""
    names: dict[str, ast.AST | None] = {}
    for node in ast.parse(module.read_text(), str(module)).body:
        _collect(node, names)
    return names


def _collect(node: ast.AST, names: dict[str, ast.AST | None]) -> None:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        names[node.name] = None
    elif isinstance(node, ast.ClassDef):
        names[node.name] = node
    elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name):
                    names[leaf.id] = None
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        for alias in node.names:
            names[(alias.asname or alias.name).split(".")[0]] = None
    elif isinstance(node, (ast.If, ast.Try)):  # names defined under `if TYPE_CHECKING:` / try-import
        for child in ast.iter_child_nodes(node):
            _collect(child, names)


def _class_members(node: ast.ClassDef) -> set[str]:
    members: dict[str, ast.AST | None] = {}
    for child in node.body:
        _collect(child, members)
    return set(members)


def resolves(dotted: str) -> bool:
    """A module or package, or one plus a name defined in it (and one member of a class)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = _module_file(".".join(parts[:cut]))
        if module is None:
            continue
        rest = parts[cut:]
        if not rest:
            return True
        defined = _defined_names(module)
        if rest[0] not in defined:
            return False
        if len(rest) == 1:
            return True
        node = defined[rest[0]]
        return len(rest) == 2 and isinstance(node, ast.ClassDef) and rest[1] in _class_members(node)
    return False


def _unresolved() -> list[str]:
    problems = set()
    # This file is left out: its own examples of stale paths are meant not to resolve.
    named = [(p, hit) for p in _project_files(".py") if p != Path(__file__).resolve() for hit in _paths_in_python(p)]
    named += [(p, hit) for p in _md_files() for hit in _paths_in_markdown(p)]
    for path, (line, dotted) in named:
        if not resolves(dotted):
            problems.add((str(path.relative_to(ROOT)), line, dotted))
    return [f"{path}:{line}: {dotted}" for path, line, dotted in sorted(problems)]


def test_the_resolver_knows_a_module_a_name_in_it_and_a_stale_path():
    assert resolves("sweeper.record.tracking")
    assert resolves("sweeper.record")
    assert resolves("sweeper.record.tracking.TrialLogger")
    assert resolves("trainables.array.key.array_key")
    assert not resolves("sweeper.tracking")
    assert not resolves("sweeper.trial_record")
    assert not resolves("sweeper.record.tracking.NoSuchThing")


def test_record_names_are_not_taken_for_module_paths():
    assert _is_record_name("sweeper.trial_key")
    assert _is_record_name("sweeper.lease.3f2a")  # a lease tag: the prefix plus a driver id
    assert not _is_record_name("sweeper.record.tracking")


def test_the_collector_finds_paths_in_comments_and_strings_not_file_or_tag_names(tmp_path):
    source = tmp_path / "x.py"
    source.write_text('"""Uses sweeper.record.tracking."""\n# see trainables.loop.run_trial\n'
                      'import sweeper.spec\nPATH = "docs/sweeper.md"\nTAG = "sweeper.trial_key"\n'
                      '# each driver writes its own sweeper.lease.<host>-<pid> tag\n')
    assert sorted(d for _, d in _paths_in_python(source)) == ["sweeper.record.tracking",
                                                              "trainables.loop.run_trial"]


def test_every_module_path_named_in_code_and_docs_exists():
    assert _unresolved() == []


def test_the_readme_shows_a_shipped_study_as_it_is():
    """The study README shows is the file in sweeps/ that its name says, line for line (its
    header comment aside), so what a reader copies is what runs."""
    block = re.search(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL).group(1)
    name = re.search(r"^name: (\S+)", block, re.MULTILINE).group(1)
    shipped = (ROOT / "sweeps" / f"{name}.yaml").read_text().splitlines()
    assert block.splitlines() == [line for line in shipped if not line.startswith("#")]
