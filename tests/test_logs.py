"""No silent failure: every broad handler in sweeper/ logs what it swallowed (or says why not),
and the ``sweeper`` logging namespace goes where each use needs it (sweeper.core.logs)."""

from __future__ import annotations

import ast
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.core import logs

ROOT = Path(__file__).resolve().parents[1]
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}
REASON = re.compile(r"#.*noqa: BLE001 - \S")


def _broad(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in ("Exception", "BaseException") for n in names)


def _logs_or_raises(handler: ast.ExceptHandler) -> bool:
    for node in (n for stmt in handler.body for n in ast.walk(stmt)):
        if isinstance(node, ast.Raise):
            return True  # it does not keep going: the error travels on
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LOG_METHODS:
            return True
    return False


def silent_handlers(path: Path, root: Path = ROOT) -> list[str]:
    text = path.read_text()
    lines = text.splitlines()
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ExceptHandler) and _broad(node):
            header = lines[node.lineno - 1]
            if not _logs_or_raises(node) and not REASON.search(header):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {header.strip()}")
    return found


def test_every_broad_handler_in_sweeper_logs_raises_or_gives_its_reason():
    files = sorted((ROOT / "sweeper").rglob("*.py"))
    assert len(files) > 30
    silent = [line for path in files for line in silent_handlers(path)]
    assert silent == [], "broad except blocks that neither log, re-raise nor say why:\n" + "\n".join(silent)


def test_the_check_finds_a_silent_handler(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("try:\n    pass\nexcept Exception:\n    pass\n"
                      "try:\n    pass\nexcept:\n    x = 1\n"
                      "try:\n    pass\nexcept (OSError, Exception):  # noqa: BLE001\n    pass\n"
                      "try:\n    pass\nexcept Exception:  # noqa: BLE001 - expected: a probe\n    pass\n"
                      "try:\n    pass\nexcept Exception as e:\n    log.warning('x %s', e)\n"
                      "try:\n    pass\nexcept BaseException:\n    raise\n"
                      "try:\n    pass\nexcept ValueError:\n    pass\n")
    found = silent_handlers(sample, root=tmp_path)
    assert [line.split(":")[1] for line in found] == ["3", "7", "11"]


LIBRARY_USE = """\
import logging, sys
import sweeper
from sweeper.record import tracking  # a module that logs
logging.getLogger("sweeper.record.tracking").warning("a warning nobody asked to see")
print(logging.getLogger().handlers, logging.getLogger().level, logging.getLogger("sweeper").level)
"""


def test_as_a_library_sweeper_prints_nothing_and_leaves_the_root_logger_alone():
    proc = subprocess.run([sys.executable, "-c", LIBRARY_USE], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # not even Python's last-resort handler
    assert proc.stdout == f"[] {logging.WARNING} {logging.NOTSET}\n"


def test_a_notebook_that_configured_logging_gets_the_records_through_its_own_handlers(caplog):
    with caplog.at_level(logging.WARNING):
        logging.getLogger("sweeper.record.dashboard").warning("through the caller's handler")
    assert [r.name for r in caplog.records] == ["sweeper.record.dashboard"]


@pytest.fixture
def clean_namespace():
    """The namespace as a fresh process has it: a CLI test run earlier in this process (in any
    order, pytest-xdist's included) leaves the CLI's handler, which configure_cli would reuse,
    and the namespace's level lowered to INFO."""
    root = logging.getLogger(logs.NAMESPACE)
    handlers, level = list(root.handlers), root.level
    root.handlers[:] = [h for h in handlers if type(h) is logging.NullHandler]
    root.setLevel(logging.NOTSET)
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_cli_shows_warnings_as_one_line_on_stderr_and_not_info(clean_namespace, capsys):
    import io

    stream = io.StringIO()
    logs.configure_cli(stream)
    assert logs.configure_cli(stream) is logs.configure_cli()  # once per process
    log = logging.getLogger("sweeper.driver.trial_events")
    log.info("only for the log file")
    try:
        raise ConnectionError("server not reachable\nsecond line of a long MLflow message")
    except ConnectionError as e:
        log.warning("could not record run abc as stopped early (%s)", logs.cause(e))
    assert stream.getvalue() == ("sweeper: warning: could not record run abc as stopped early "
                                 "(ConnectionError: server not reachable)\n")


def test_the_drivers_file_takes_info_and_up_while_the_block_runs(clean_namespace, tmp_path):
    path = tmp_path / "sweep" / "ray-driver.log"
    log = logging.getLogger("sweeper.driver.orchestrate")
    with logs.to_file(path):
        assert not path.parent.exists()  # made with the first record: a run that logs nothing leaves no folder
        with logs.to_file(path):  # nested: one handler
            log.info("kept")
        log.debug("too fine")
    log.warning("after the block")
    text = path.read_text()
    assert text.count("INFO sweeper.driver.orchestrate: kept") == 1
    assert "too fine" not in text and "after the block" not in text
    assert clean_namespace.level == logging.NOTSET  # restored
