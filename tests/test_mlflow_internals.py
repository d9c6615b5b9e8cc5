"""The MLflow internals sweeper relies on (sweeper.record.mlflow_internals) are all still there,
and that list is complete.

The first test resolves each entry against the installed MLflow, so an upgrade that renames or
moves one fails with that entry's path as the test id. The second reads sweeper/ and bench/ and
checks that every use of something outside MLflow's public API found there is listed.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

from sweeper.record.mlflow_internals import INTERNALS, Internal

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("sweeper", "bench")
# What MLflow documents as its client API: imports from these need no entry.
PUBLIC_IMPORTS = ("mlflow.entities.", "mlflow.tracking.MlflowClient", "mlflow.artifacts.")
# Names sweeper binds MLflow's store and system-metrics monitor to: an attribute read on them that
# sweeper does not define itself is MLflow's.
MLFLOW_OBJECTS = ("store", "monitor")
SQL_TABLE = re.compile(r"\bSELECT\b.*?\bFROM\s+(\w+)", re.IGNORECASE | re.DOTALL)
UI_ROUTE = re.compile(r"/ajax-api/[\w./-]+")
LIST = ROOT / "sweeper" / "record" / "mlflow_internals.py"


def _builders(tmp: Path) -> dict:
    """How to get an instance of each class whose entries name ``Class().attribute``."""
    from mlflow.store.tracking.rest_store import RestStore
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    return {
        "mlflow.tracking.MlflowClient": lambda: MlflowClient(tracking_uri=uri),
        "mlflow.system_metrics.system_metrics_monitor.SystemMetricsMonitor":
            lambda: SystemMetricsMonitor("0" * 32, tracking_uri=uri),
        "mlflow.store.tracking.rest_store.RestStore": lambda: RestStore(lambda: None),
    }


def _import_longest(parts: list[str]) -> tuple[object, list[str]]:
    """The longest importable module prefix of ``parts``, and the attribute names after it."""
    for n in range(len(parts), 0, -1):
        try:
            return importlib.import_module(".".join(parts[:n])), parts[n:]
        except ModuleNotFoundError as e:
            if e.name is None or not ".".join(parts[:n]).startswith(e.name):
                raise  # the module is there but something it imports is not
    raise ModuleNotFoundError(parts[0])


def resolve(path: str, tmp: Path) -> object:
    if "()" in path:
        cls_path, rest = path.split("()", 1)
        builder = _builders(tmp).get(cls_path)
        assert builder is not None, f"tests/test_mlflow_internals.py has no way to build a {cls_path}"
        obj, names = builder(), rest.lstrip(".").split(".")
    else:
        obj, names = _import_longest(path.split("."))
    for name in names:
        obj = getattr(obj, name)
    return obj


def _ui_bundle() -> str:
    import mlflow

    build = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    return "".join(p.read_text(errors="replace") for p in sorted(build.glob("*.js")))


def _routes() -> set[str]:
    from mlflow.server import app

    return {rule.rule for rule in app.url_map.iter_rules()}


def problems(entry: Internal, tmp: Path) -> list[str]:
    """What no longer holds of ``entry`` in the installed MLflow (empty: all of it holds)."""
    if entry.path.startswith("/"):
        return [] if entry.path in _routes() else [f"mlflow.server serves no route {entry.path}"]
    if entry.path.startswith("ui:"):
        value = entry.path[len("ui:"):]
        if f'"{value}"' not in _ui_bundle():
            return [f"MLflow's UI does not use {value!r}"]
    else:
        try:
            value = resolve(entry.path, tmp)
        except (AssertionError, ImportError, AttributeError) as e:
            return [f"{entry.path} cannot be resolved: {type(e).__name__}: {e}"]
    found = []
    if entry.expect is not None and value != entry.expect:
        found.append(f"{entry.path} is {value!r}, sweeper assumes {entry.expect!r}")
    if entry.mirror is not None and value != resolve(entry.mirror, tmp):
        found.append(f"{entry.path} is {value!r}, {entry.mirror} is {resolve(entry.mirror, tmp)!r}")
    if entry.params:
        taken = list(inspect.signature(value).parameters)
        if [p for p in taken if p in entry.params] != list(entry.params):
            found.append(f"{entry.path} takes {taken}, sweeper passes {list(entry.params)}")
    return found


@pytest.mark.parametrize("entry", INTERNALS, ids=[e.path for e in INTERNALS])
def test_every_listed_mlflow_internal_is_still_there(entry, tmp_path):
    assert problems(entry, tmp_path) == []


@pytest.mark.parametrize("entry", [
    Internal("mlflow.utils.rest_utils.http_request_moved", "", ""),
    Internal("mlflow.utils.rest_utils.http_request", "", "", params=("endpoint", "host_creds")),
    Internal("mlflow.tracking.MlflowClient()._tracking_client.stores", "", ""),
    Internal("/ajax-api/2.0/mlflow/metrics/get-history-bulk-intervals", "", ""),
    Internal("ui:mlflow.experimentKinds", "", ""),
    Internal("mlflow.utils.mlflow_tags.MLFLOW_RUN_NAME", "", "", mirror="sweeper.record.names.TAG_NOTE"),
    Internal("mlflow.server.handlers.MAX_RESULTS_PER_RUN", "", "", expect=1),
], ids=lambda e: e.path)
def test_an_entry_that_no_longer_holds_fails(entry, tmp_path):
    assert len(problems(entry, tmp_path)) == 1


# --- the list is complete ----------------------------------------------------------------------


def _sources() -> list[Path]:
    return [p for d in SCANNED for p in sorted((ROOT / d).rglob("*.py")) if p != LIST]


def _defined_by_the_project() -> set[str]:
    """Every name the project's own code defines: a private attribute or method it reads with
    one of these names is its own, not MLflow's."""
    names = set()
    for path in [*_sources(), *sorted((ROOT / "trainables").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return names


def _module_of(path: Path) -> str:
    if not path.is_relative_to(ROOT):
        return path.stem
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def uses(path: Path, own: set[str]) -> list[tuple[int, str, str]]:
    """(line, what kind of use, the name an entry must cover) for each MLflow internal ``path``
    uses: an import from outside MLflow's public API, a private attribute the project does not
    define, an attribute of MLflow's store or monitor, a UI route, a reserved tag sweeper names,
    a table of MLflow's database read directly."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        dotted = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "mlflow":
            dotted = [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            dotted = [a.name for a in node.names if a.name.split(".")[0] == "mlflow"]
        found += [(node.lineno, "import", d) for d in dotted if not (d == "mlflow" or d.startswith(PUBLIC_IMPORTS))]
        if isinstance(node, ast.Attribute) and node.attr not in own:
            if node.attr.startswith("_") and not node.attr.endswith("__"):
                found.append((node.lineno, "private attribute", node.attr))
            elif isinstance(node.value, ast.Name) and node.value.id in MLFLOW_OBJECTS:
                found.append((node.lineno, f"attribute of {node.value.id}", node.attr))
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [(node.lineno, "route", r) for r in UI_ROUTE.findall(node.value)]
            found += [(node.lineno, "table", t) for t in SQL_TABLE.findall(node.value)]
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and str(node.value.value).startswith("mlflow.")):
            found += [(node.lineno, "tag", f"{_module_of(path)}.{t.id}") for t in node.targets
                      if isinstance(t, ast.Name) and t.id.startswith("TAG_")]
    return found


def covered(kind: str, name: str) -> bool:
    if kind == "import":
        return any(e.path == name or e.path.startswith(name + ".") or e.path.startswith(name + "()")
                   for e in INTERNALS)
    if kind == "route":
        return any(e.path == name for e in INTERNALS)
    if kind == "tag":
        return any(e.mirror == name for e in INTERNALS)
    if kind == "table":
        return any(e.path.endswith(".__tablename__") and e.expect == name for e in INTERNALS)
    return any(name in e.path.replace("()", "").split(".") for e in INTERNALS)


def test_every_mlflow_internal_that_sweeper_and_bench_use_is_listed():
    own = _defined_by_the_project()
    missing = [f"{path.relative_to(ROOT)}:{line}: {kind} {name}"
               for path in _sources() for line, kind, name in uses(path, own) if not covered(kind, name)]
    assert missing == [], "add these to sweeper/record/mlflow_internals.py:\n" + "\n".join(missing)


def test_the_scan_finds_each_kind_of_use(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from mlflow.utils.rest_utils import http_request\n"
                      "from mlflow.store.db.utils import something_new\n"
                      "from mlflow.entities import Metric\n"
                      "import mlflow.server.auth\n"
                      "x = client._tracking_client._new_private\n"
                      "store.get_host_creds(); store.brand_new_call(); monitor.brand_new_call()\n"
                      "ROUTE = '/ajax-api/2.0/mlflow/runs/new'\n"
                      "TAG_NEW = 'mlflow.newTag'\n"
                      "db.execute('SELECT * FROM runs'); db.execute('SELECT * FROM metrics')\n")
    found = [(kind, name) for _, kind, name in uses(sample, own=set()) if not covered(kind, name)]
    assert sorted(found) == sorted([
        ("import", "mlflow.store.db.utils.something_new"), ("import", "mlflow.server.auth"),
        ("private attribute", "_new_private"), ("attribute of store", "brand_new_call"),
        ("attribute of monitor", "brand_new_call"), ("route", "/ajax-api/2.0/mlflow/runs/new"),
        ("tag", "sample.TAG_NEW"), ("table", "metrics")])
