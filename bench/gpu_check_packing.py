"""gpu_check's packing section: a real `sweeper run` (local Ray, sqlite MLflow) of short ResNet-20
bn_only trials at several resources.gpu fractions (cpu fractions on a CPU), each trial's device
read back from its MLflow tag, and the aggregate images/s of each fraction."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from gpu_check_sections import Plan, _guard


def packing(plan: Plan) -> dict:
    """A real `sweeper run` (local Ray, sqlite MLflow) of short ResNet-20 bn_only trials per fraction."""
    cuda = plan.device.type == "cuda"
    trials = 4 if plan.quick else 8
    fractions = (1.0, 0.5) if plan.quick else (1.0, 0.25, 0.125)
    runs = []
    for fraction in fractions:
        if not plan.afford(45):
            runs.append({"fraction": fraction, "skipped": "time budget"})
            continue
        runs.append(_guard(lambda: _packing_run(plan, fraction, trials, cuda)))
    ran = [r for r in runs if "skipped" not in r]
    return {"resource": "gpu" if cuda else "cpu", "trials": trials, "runs": runs,
            "passed": bool(ran) and all(r.get("passed") for r in ran), **({} if ran else {"skipped": "time budget"})}


def _packing_run(plan: Plan, fraction: float, trials: int, cuda: bool) -> dict:
    from mlflow.tracking import MlflowClient

    from sweeper.record.names import TAG_DEVICE

    name = f"gpu_check_packing_{str(fraction).replace('.', '_')}"
    folder = Path(tempfile.mkdtemp(prefix=name, dir=plan.workdir))
    train_size, epochs = (64, 1) if plan.quick else (128 * 40, 2)
    resources = f"{{cpu: 1, gpu: {fraction}}}" if cuda else f"{{cpu: {fraction}, gpu: 0}}"
    (folder / "spec.yaml").write_text(textwrap.dedent(f"""\
        name: {name}
        dataset: {{name: synthetic, image_size: {16 if plan.quick else 32}, train_size: {train_size}, test_size: 256}}
        model: {{family: cifar_resnet, depth: 20}}
        train: {{epochs: {epochs}, batch_size: 128, lr: 0.1, precision: bf16, device: {plan.device.type}, eval_batch_size: 256}}
        grid:
          - {{mode: [bn_only], seed: {list(range(trials))}}}
        resources: {resources}
        max_concurrent: {trials}
        """))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    start = time.monotonic()
    timeout = max(30, min(240, plan.left))
    # its own session, so that a run cut short by the budget is stopped with the Ray it started
    proc = subprocess.Popen([sys.executable, "-c", "from sweeper.cli import main; main()", "run", "spec.yaml",
                             "--tracking-uri", uri, "--storage", str(folder / "results")],
                            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise TimeoutError(f"`sweeper run` did not finish within the time budget ({timeout:.0f} s)") from None
    wall = time.monotonic() - start
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], "tags.`sweeper.role` = 'trial'") if experiment else []
    spans, images = [], 0
    for run in runs:
        for m in client.get_metric_history(run.info.run_id, "epoch_s"):
            spans.append((m.timestamp / 1e3 - m.value, m.timestamp / 1e3))
            images += train_size
    devices = sorted({r.data.tags.get(TAG_DEVICE, "?") for r in runs})
    statuses = sorted(r.data.tags.get("status", "?") for r in runs)
    span = (max(e for _, e in spans) - min(s for s, _ in spans)) if spans else 0.0
    on_device = bool(runs) and all(d.startswith(plan.device.type) for d in devices)
    return {"fraction": fraction, "exit_code": proc.returncode, "trials_finished": statuses.count("finished"),
            "devices": devices, "sweep_wall_s": wall, "training_span_s": span,
            "aggregate_images_per_s": images / span if span else None,
            "sweep_images_per_s": images / wall, "stderr_tail": stderr[-400:] if proc.returncode else "",
            "passed": proc.returncode == 0 and statuses.count("finished") == trials and on_device}


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the run's process group (the driver lets Ray shut down), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.communicate(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
