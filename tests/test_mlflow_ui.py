"""The MLflow UI as a user opens it on a finished sweep: a real browser (Debian's chromium, driven
by Playwright) on a real `mlflow ui` over the store a real `sweeper run` + `sweeper report` wrote.

It checks what the links `sweeper` prints lead to: the experiment opens on its training runs, the
parent run expands to every trial with its final test_acc, the chart view draws test_acc, and the
parent run's page shows the sweep's summary. Screenshots go to the test's folder, and to docs/img/
when SWEEPER_UPDATE_SCREENSHOTS=1 (that is how the README's pictures are made).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from sweeper.record import links, run_index, tracking

pytestmark = pytest.mark.slow

DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"
VIEWPORT = {"width": 1280, "height": 720}


def chromium() -> str:
    """Debian's chromium (.ci/setup_services.sh installs it; Playwright cannot download its own)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no chromium on PATH: run .ci/setup_services.sh (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def finished_sweep(workdir, tracking_uri, mlflow_client, ray_local):
    from sweeper.driver.orchestrate import run_command
    from sweeper.report import report_command

    spec = workdir / "ui_demo.yaml"
    spec.write_text("""\
name: ui_demo
description: BN-only against full training, on digits (UI test)
dataset: {name: digits, image_size: 8, train_size: 192, test_size: 96}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 2, batch_size: 64, lr: 0.1, augment: false}
grid: {mode: [bn_only, full], seed: [0]}
resources: {cpu: 1}
max_concurrent: 2
""")
    assert run_command(str(spec), tracking_uri=tracking_uri, storage=str(workdir / "results")) == 0
    report_command(str(spec), tracking_uri=tracking_uri, out_dir=str(workdir / "report"))
    experiment = mlflow_client.get_experiment_by_name("ui_demo")
    parent = tracking.find_parent_run(mlflow_client, experiment.experiment_id)
    trials = {r.info.run_name: r.data.metrics["final_test_acc"]
              for r in run_index.trial_runs(mlflow_client, experiment.experiment_id).values()}
    return experiment.experiment_id, parent.info.run_id, trials


@pytest.fixture
def mlflow_ui(tracking_uri, tmp_path):
    port = free_port()
    log = open(tmp_path / "mlflow-ui.log", "w")
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "ui", "--backend-store-uri", tracking_uri,
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "mlflow-ui.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow ui did not answer /health in time"
            time.sleep(1)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def check_ui(page, base: str, name: str, experiment_id: str, parent_id: str, trials: dict[str, float],
             shots: Path) -> None:
    """The walk through the UI; also run by hand against a live server to make the screenshots."""
    page.set_default_timeout(int(os.environ.get("UI_TIMEOUT_MS", "180000")))  # a loaded CI machine renders slowly; nothing here is timed

    # 1. the link `sweeper` prints: the training-runs page, not MLflow 3's GenAI overview
    page.goto(links.experiment_url(base, experiment_id))
    page.get_by_role("heading", name="Training runs").wait_for()
    assistant = page.get_by_role("button", name="Close")  # MLflow 3.17 opens a chat panel on the side
    if assistant.count():
        assistant.first.click()
    page.get_by_text("3 matching runs").wait_for()
    page.wait_for_timeout(1000)
    page.screenshot(path=shots / "mlflow_training_runs.png")

    # 2. the parent expands to every trial; the final_test_acc column shows each one's result
    page.locator("button[data-component-id*=runnamecellrenderer]").first.click()
    for trial in trials:
        page.locator(f"a:has-text('{trial[:12]}')").first.wait_for()
    page.get_by_role("button", name="Columns").click()
    for column in ("Dataset", "Source", "Models", "mode", "final_test_acc"):  # room for the results
        toggle_column(page, column)
    page.keyboard.press("Escape")
    for trial, acc in trials.items():
        # the grid draws the pinned name column and the other columns as two rows of one index
        named = page.locator("[role=row]").filter(has=page.locator(f"a:has-text('{trial[:12]}')")).first
        row = page.locator(f"[role=row][row-index='{named.get_attribute('row-index')}']")
        row.get_by_text(re.compile("^" + re.escape(repr(acc)[:6]))).first.wait_for()  # shown as stored, cut
    page.wait_for_timeout(1000)
    page.screenshot(path=shots / "mlflow_trials_expanded.png")

    # 3. the chart view draws the trials' test_acc
    page.locator("label:has(input[name=runs-view-mode][value=CHART])").click()
    page.get_by_placeholder("Search metric charts").fill("test_acc")
    chart = page.get_by_text("test_acc", exact=True).first
    chart.wait_for()
    chart.evaluate("title => title.scrollIntoView({block: 'start'})")  # the test_acc curves, not the bars above
    # charts render after their data arrive: wait until the curves (plotly line traces) are drawn
    page.wait_for_function("n => document.querySelectorAll('.scatterlayer .trace path.js-line').length >= n",
                           arg=len(trials))
    page.wait_for_timeout(2000)
    page.screenshot(path=shots / "mlflow_charts.png")

    # 4. the parent run's page: the report's summary and scorecard as its description
    page.goto(links.run_url(base, experiment_id, parent_id))
    page.get_by_text("Replication scorecard").first.wait_for()
    page.get_by_text(f"Sweep report: {name}").first.wait_for()
    more = page.get_by_text("Show more", exact=True)
    if more.count():
        more.first.click()  # the description is folded after a few lines
    page.wait_for_timeout(1000)
    page.screenshot(path=shots / "mlflow_sweep_run.png")


def toggle_column(page, name: str) -> None:
    """The Columns menu is a tree with checkboxes (no checkbox role): tick or untick one node."""
    page.get_by_placeholder("Search columns").fill(name)
    node = page.locator("[class*=tree-treenode]").filter(has=page.get_by_text(name, exact=True))
    node.locator("[class*=tree-checkbox]").first.click()


def test_the_mlflow_ui_opens_the_sweep_on_its_trials_charts_and_summary(finished_sweep, mlflow_ui, tmp_path):
    from playwright.sync_api import sync_playwright

    experiment_id, parent_id, trials = finished_sweep
    shots = tmp_path / "shots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORT)
            check_ui(page, mlflow_ui, "ui_demo", experiment_id, parent_id, trials, shots)
        finally:
            browser.close()
    pictures = sorted(shots.glob("*.png"))
    assert [p.name for p in pictures] == ["mlflow_charts.png", "mlflow_sweep_run.png",
                                          "mlflow_training_runs.png", "mlflow_trials_expanded.png"]
    if os.environ.get("SWEEPER_UPDATE_SCREENSHOTS") == "1":
        for picture in pictures:
            shutil.copyfile(picture, DOCS_IMG / picture.name)
