"""The layering rule, checked: `trainables/` is plain PyTorch and never reaches up.

A trial must run, and be tested, with no Ray, MLflow, Optuna or sweeper installed. Two checks:
the source (every import statement, including ones inside functions) and a real import of the
whole package in a fresh interpreter (what a Ray worker or `python -m trainables` does).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

TRAINABLES = Path(__file__).resolve().parents[1] / "trainables"
FORBIDDEN = ("ray", "mlflow", "optuna", "sweeper", "pydantic")


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_trainables_module_imports_the_sweep_layer():
    offenders = {str(p.relative_to(TRAINABLES.parent)): sorted(_imported_roots(p) & set(FORBIDDEN))
                 for p in sorted(TRAINABLES.rglob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_every_trainables_module_loads_none_of_the_sweep_layer():
    modules = sorted(".".join(p.relative_to(TRAINABLES.parent).with_suffix("").parts).removesuffix(".__init__")
                     for p in TRAINABLES.rglob("*.py") if p.name != "__main__.py")
    script = ("import importlib, sys\n"
              f"for m in {modules!r}: importlib.import_module(m)\n"
              f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=TRAINABLES.parent).stdout
    assert out.strip() == "[]"


# The trial's words, its configuration and the facts a sweep is sized from: what the sweep layer
# reads to validate and estimate a spec. Importing them must not load torch (`sweeper validate`).
TORCH_FREE = ("trainables", "trainables.names", "trainables.keys", "trainables.settings", "trainables.config",
              "trainables.models", "trainables.models.shapes", "trainables.data", "trainables.data.facts")


def test_the_modules_a_spec_is_validated_with_import_no_torch():
    script = ("import importlib, sys\n"
              f"for m in {TORCH_FREE!r}: importlib.import_module(m)\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=TRAINABLES.parent).stdout
    assert out.strip() == "[]"


# sweeper/'s subpackages, each allowed to import only those below it (docs/architecture.md is the
# map). The top (the CLI, the Python API, the demo) may import anything.
SWEEPER = TRAINABLES.parent / "sweeper"
MAY_IMPORT = {
    "core": set(),
    "spec": {"core"},
    "record": {"core"},
    "plan": {"core", "spec", "record"},
    "views": {"core", "spec", "record", "plan"},
    "report": {"core", "spec", "record", "plan", "views"},
    "driver": {"core", "spec", "record", "plan", "views"},
}
TOP = {"__init__.py", "__main__.py", "cli.py", "api.py", "demo.py"}


def _sweeper_imports(path: Path) -> set[str]:
    """The sweeper subpackages a module imports (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        modules = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] if node.module != "sweeper" else [f"sweeper.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        found |= {m.split(".")[1] for m in modules if m.startswith("sweeper.")}
    return found


def test_sweeper_is_a_tree_of_the_subpackages_the_map_names():
    top_level = {p.name for p in SWEEPER.iterdir() if p.suffix == ".py"}
    packages = {p.name for p in SWEEPER.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert top_level <= TOP and packages == set(MAY_IMPORT)


def test_sweeper_imports_point_down_only():
    wrong = {}
    for path in sorted(SWEEPER.rglob("*.py")):
        package = path.relative_to(SWEEPER).parts[0]
        if package in MAY_IMPORT:
            bad = _sweeper_imports(path) - MAY_IMPORT[package] - {package}
            if bad:
                wrong[str(path.relative_to(SWEEPER.parent))] = sorted(bad)
    assert wrong == {}


def test_every_subpackage_says_what_it_owns_and_may_import():
    for package in MAY_IMPORT:
        doc = ast.get_docstring(ast.parse((SWEEPER / package / "__init__.py").read_text())) or ""
        assert "Owns" in doc and "mport" in doc, package


def test_no_module_outgrows_one_readers_head():
    lengths = {str(p.relative_to(SWEEPER.parent)): len(p.read_text().splitlines())
               for root in (SWEEPER, TRAINABLES) for p in root.rglob("*.py")}
    assert {k: n for k, n in lengths.items() if n > 400} == {}


# --- private names stay in their module; functions stay readable ---------------------------------

ROOT = TRAINABLES.parent
PROJECT = ("sweeper", "trainables")


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def underscore_imports(path: Path) -> list[str]:
    """``from x import _y`` and ``x._y`` where x is another module of the project."""
    tree = ast.parse(path.read_text(), str(path))
    own = _module_of(path)
    modules: dict[str, str] = {}  # local name -> project module it is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] in PROJECT:
            for alias in node.names:
                if _private(alias.name) and node.module != own:
                    found.append(f"from {node.module} import {alias.name} (line {node.lineno})")
                elif _is_module(f"{node.module}.{alias.name}"):
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PROJECT and alias.asname:
                    modules[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                and modules.get(node.value.id, own) != own):
            found.append(f"{modules[node.value.id]}.{node.attr} (line {node.lineno})")
    return found


def test_no_module_uses_another_modules_private_names():
    offenders = {str(p.relative_to(ROOT)): found for package in PROJECT for p in sorted((ROOT / package).rglob("*.py"))
                 if (found := underscore_imports(p))}
    assert offenders == {}


def long_functions(path: Path, limit: int = 80) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})" for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit]


def test_no_function_is_longer_than_80_lines():
    offenders = {str(p.relative_to(ROOT)): found for package in PROJECT for p in sorted((ROOT / package).rglob("*.py"))
                 if (found := long_functions(p))}
    assert offenders == {}
