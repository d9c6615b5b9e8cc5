"""Every trial's child run carries MLflow's own system metrics: CPU and memory on any
machine (psutil), GPU utilisation and memory where a card is present (pynvml), so the run's
"System metrics" tab shows whether the device was busy. Checked here on the CPU, with one trial
trained in-process by `sweeper train` (the same tracking as under `sweeper run`)."""

from __future__ import annotations

import pytest

from sweeper.driver.train import train_command
from sweeper.record import names, run_index

pytestmark = pytest.mark.slow  # a real trial and MLflow store: about half a minute here


def test_a_trials_run_records_cpu_and_memory_system_metrics(workdir, tracking_uri, mlflow_client, monkeypatch):
    # A trial far shorter than the sampling interval: MLflow's monitor alone would publish nothing
    # (it drops the window it is in when stopped); the window the trial ended in is published.
    monkeypatch.setenv("SWEEPER_SYSTEM_METRICS_S", "600")
    spec = workdir / "sysm.yaml"
    spec.write_text("name: sysm\ndataset: {name: digits, image_size: 8, train_size: 192, test_size: 96}\n"
                    "model: {family: cifar_resnet, depth: 8}\ntrain: {epochs: 2, batch_size: 64, augment: false}\n"
                    "grid: {mode: [bn_only]}\n")
    assert train_command(str(spec), 0, tracking_uri=tracking_uri, storage=str(workdir / "results")) == 0
    experiment = mlflow_client.get_experiment_by_name("sysm").experiment_id
    (run,) = run_index.trial_runs(mlflow_client, experiment).values()
    recorded = {k for k in run.data.metrics if k.startswith(names.SYSTEM_METRIC_PREFIX)}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
            "system/system_memory_usage_percentage"} <= recorded
    steps = mlflow_client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage")
    assert len(steps) == 1 and 0 <= steps[0].value <= 100 * 64
    assert run.data.tags[names.TAG_STATUS] == "finished"  # observing changed nothing of the trial
