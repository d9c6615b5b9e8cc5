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
