"""bench/gpu_check.py --device cpu --quick: the prepared GPU check runs whole on the CPU, so it
cannot rot while no GPU is at hand (on a GPU, run it without --device cpu --quick)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from trainables.names import MODES

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # about 3 minutes alone; far more on a loaded shared machine
def test_the_quick_cpu_gpu_check_fills_every_section_with_real_results(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": "", "MLFLOW_TRACKING_URI": ""}
    # a generous budget: on a loaded shared machine the guard must not skip what this test checks
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--device", "cpu", "--quick", "--out", str(out),
                           "--budget-s", "1200"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert (out / "gpu_check.md").read_text().startswith("# gpu_check: cpu\n\ncard cpu, driver")
    assert report["environment"]["device"] == "cpu" and report["environment"]["torch"]
    sections = ["correctness_eager", "divergence", "checkpoint", "data_pipeline", "throughput_eager",
                "loop_overhead", "array", "memory", "packing", "correctness_compiled", "throughput_compiled"]
    for name in sections:
        assert "skipped" not in report[name] and "error" not in report[name], (name, report[name])
        assert report[name]["passed"] is True, (name, report[name])

    for mode in MODES:
        check = report["correctness_eager"][mode]
        assert check["train_loss_last_epoch"] < check["train_loss_first_epoch"], mode
        assert check["frozen_unchanged"] is True and check["trainable_changed"] is True
        assert check["precision"] == "bf16" and check["weights_on"] == "cpu"
        assert check["frozen_tensors"] > 0 or mode == "full"
    assert report["correctness_eager"]["random_params"]["masked_tensors"] > 0
    assert report["correctness_eager"]["random_params"]["masked_entries_unchanged"] is True
    assert report["correctness_compiled"]["bn_only"]["compiled"] is True
    assert report["correctness_compiled"]["bn_only"]["loss_fell"] is True

    divergence = report["divergence"]
    assert divergence["status"] == "diverged"
    assert divergence["first_nonfinite_step"] <= divergence["detected_at_step"] < divergence["steps_per_epoch"]

    checkpoint = report["checkpoint"]
    assert checkpoint["resumed_epochs"] == [2, 3] and checkpoint["loads_on_cpu"] is True
    assert checkpoint["bitwise_equal"] is True and checkpoint["same_history"] is True  # deterministic on the CPU

    assert report["data_pipeline"]["images_per_s"] > 0
    for name in ("throughput_eager", "throughput_compiled"):
        rows = report[name]["rows"]
        assert rows and all(r["images_per_s"] > 0 and r["tflops_per_s"] > 0 for r in rows)
        assert all("share_of_bf16_peak" not in r for r in rows)  # a CPU has no entry in the peak table
    assert {(r["depth"], r["mode"]) for r in report["throughput_eager"]["rows"]} == \
           {(d, m) for d in (8, 20) for m in ("full", "bn_only")}
    assert report["loop_overhead"]["loop_images_per_s"] > 0

    memory = report["memory"]["rows"]
    assert [r["model"] for r in memory] == ["ResNet-866 w1", "ResNet-14 w32", "VGG-19", "ImageNet ResNet-50",
                                            "ImageNet ResNet-200"]
    assert [r["study_batch"] for r in memory] == [128, 128, 128, 1024, 1024]  # read from sweeps/*.yaml
    assert all(r["loss_finite"] is True for r in memory)

    packing = report["packing"]
    assert packing["resource"] == "cpu" and len(packing["runs"]) == 2
    for run in packing["runs"]:
        assert run["exit_code"] == 0 and run["trials_finished"] == packing["trials"]
        assert run["devices"] == ["cpu"]  # every trial's sweeper.device tag, read back from MLflow
        assert run["aggregate_images_per_s"] > 0 and math.isfinite(run["aggregate_images_per_s"])


def printed_ratios(stdout: str) -> dict[str, float]:
    """mode -> the "array / packed" cell of each row of the table the run printed."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip().startswith("|")]
    header = next(line for line in lines if "| array / packed |" in line)
    column = [cell.strip() for cell in header.split("|")].index("array / packed")
    rows = [[cell.strip() for cell in line.split("|")] for line in lines if line.startswith("| ResNet-")]
    return {row[4]: float(row[column]) for row in rows}


@pytest.mark.slow
@pytest.mark.timeout(600)  # about 30 s alone; minutes on a loaded shared machine
def test_the_array_section_runs_on_the_cpu_and_finds_members_equal_to_solo(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--device", "cpu", "--quick", "--only", "array",
                           "--out", str(out), "--budget-s", "600"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=580)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # what the run prints: all a device run may bring back
    assert re.search(r"^  array +ok +[0-9.]+ s$", proc.stdout, re.M), proc.stdout
    for precision in ("fp32", "bf16"):
        assert re.search(rf"^    equivalence {precision}: passed: member vs solo .* max rel diff [0-9.e+-]+ "
                         r"\(bound [0-9.e+-]+\), frozen unchanged True$", proc.stdout, re.M), proc.stdout
    ratios = printed_ratios(proc.stdout)
    assert set(ratios) == {"bn_only", "full"} and all(math.isfinite(r) and r > 0 for r in ratios.values()), ratios
    section = json.loads((out / "gpu_check.json").read_text())["array"]
    assert section["passed"] is True, section
    rows = section["throughput"]["rows"]
    assert {(r["mode"], r["k"]) for r in rows} == {("bn_only", 4), ("full", 4)}
    for row in rows:  # the array against K solo trials at once (4 processes) and against one alone
        assert row["array_images_per_s"] > 0 and row["packed_images_per_s"] > 0 and row["alone_images_per_s"] > 0
        assert row["array_over_packed"] == row["array_images_per_s"] / row["packed_images_per_s"]
        assert abs(ratios[row["mode"]] - row["array_over_packed"]) <= 0.0051  # the printed row is this row
    assert section["vmap"]["rows"][0]["vmap_s"] > 0 and section["vmap"]["rows"][0]["fused_s"] > 0
    assert "| array / packed |" in (out / "gpu_check.md").read_text()
    for precision in ("fp32", "bf16"):
        check = section[f"equivalence_{precision}"]
        assert check["frozen_unchanged"] is True and check["max_rel_diff"] <= check["bound"]
        assert check["nonzero_biases"] is True
        assert set(check["per_member"]) == {"full", "bn_only", "random_params", "bn_output"}
    assert section["equivalence_fp32"]["max_rel_diff"] <= 1e-5  # the CPU has no TF32
    assert "| array | ok |" in (out / "gpu_check.md").read_text()
