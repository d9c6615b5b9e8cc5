"""`sweeper validate`: the trial table and work estimate, and one-line errors from the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from sweeper.cli import cli
import pytest

from sweeper.plan.estimate import ASSUMED_FLOPS_PER_S, STARTUP_S, SWEEP_LAYER_S, estimate_spec, flop_factor, trial_work
from sweeper.spec import load_spec, parse_spec

SMALL = Path(__file__).parent / "specs" / "small.yaml"


def test_validate_prints_the_count_first_then_every_trial_then_the_estimate():
    result = CliRunner().invoke(cli, ["validate", str(SMALL)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("6 trials in sweep 'small_study'")
    assert lines[1].split() == ["#", "name", "key", "mode", "depth", "seed"]
    spec = load_spec(SMALL)
    for i, trial in enumerate(spec.trials()):
        assert lines[2 + i].split()[:3] == [str(i), trial.name, trial.key]
    assert lines[2].split()[3:] == ["bn_only", "8", "0"]
    out = result.output
    assert "trials x epochs:        12" in out  # 6 trials x 2 epochs
    assert "training images seen:   17,244" in out  # x 1437 digits training images
    # small.yaml trains at precision auto: bf16 autocast on a GPU
    assert f"bf16 autocast at an assumed {ASSUMED_FLOPS_PER_S['bf16'] / 1e12:.0f} TFLOP/s sustained per GPU" in out


def test_the_estimate_is_trials_x_epochs_x_images_x_each_modes_forward_passes():
    from trainables.config import ModelConfig
    from trainables.models import flops_per_image

    spec = load_spec(SMALL)
    est = estimate_spec(spec)
    forward = {d: flops_per_image(ModelConfig(family="cifar_resnet", depth=d), 10, 32) for d in (8, 14)}
    depths = [t.config["model"]["depth"] for t in spec.trials()]
    assert est.trials == 6 and est.trial_epochs == 12
    factors = [flop_factor(t.config["mode"]) for t in spec.trials()]
    assert est.training_flops == sum(f * forward[d] * 1437 * 2 for f, d in zip(factors, depths))
    assert (est.forward_flops_min, est.forward_flops_max) == (forward[8], forward[14])
    assert est.gpu_hours == pytest.approx((est.training_flops / ASSUMED_FLOPS_PER_S["bf16"] + 6 * STARTUP_S) / 3600)


def test_train_size_caps_the_images_of_a_trial():
    config = {"dataset": {"name": "cifar10", "train_size": 1000}, "model": {"family": "cifar_resnet", "depth": 8},
              "train": {"epochs": 3}}
    assert trial_work(config).train_images == 1000
    config["dataset"]["train_size"] = 10**6
    assert trial_work(config).train_images == 50_000


def test_the_data_set_facts_agree_with_what_the_loaders_load():
    from trainables.config import DatasetConfig
    from trainables.data import load_data
    from trainables.data.facts import DATA_SETS
    from trainables.names import DATASETS

    assert tuple(DATA_SETS) == DATASETS
    for name in ("digits", "synthetic"):
        source = load_data(DatasetConfig(name=name), "cpu", seed=0)
        facts = DATA_SETS[name]
        assert (source.num_train, source.num_classes, source.image_size) == \
               (facts.train_images, facts.num_classes, facts.image_size)


def test_a_search_says_how_many_sampled_trials_it_adds():
    spec = parse_spec("name: s\ndataset: {name: digits}\nmodel: {family: cifar_resnet, depth: 8}\n"
                      "train: {epochs: 2}\ngrid: {mode: [bn_only, full]}\n"
                      "search: {algorithm: random, num_samples: 3, space: {lr: {loguniform: [0.01, 1.0]}, "
                      "epochs: {choice: [1, 4]}}}\n", "s.yaml")
    from sweeper.views.validate import describe

    lines = describe(spec)
    assert lines[0].startswith("2 grid points x 3 samples = 6 trials in sweep 's'")
    assert any(line.startswith("search: random draws 3 samples of train.lr ~ loguniform[0.01, 1.0], "
                               "train.epochs ~ choice[1, 4] for each grid point: 6 trials in all") for line in lines)
    est = estimate_spec(spec)
    assert est.trials == 6 and est.upper_bound
    assert est.trial_epochs == 6 * 4  # epochs is sampled: counted at its largest choice


def test_the_real_cli_prints_one_line_and_exits_2_on_a_bad_spec(tmp_path):
    (tmp_path / "sweeps").mkdir()
    lines = ["name: x", "dataset: {name: digits}", "model: {family: cifar_resnet}", "train:", "  epochs: 2",
             "grid:", "  - mode: [bn_only, full]", "    width: [1]", "    depth:", "      - 8", "      - 14",
             "      - 15", "    seed: [0]"]
    (tmp_path / "sweeps" / "x.yaml").write_text("\n".join(lines) + "\n")
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", "from sweeper.cli import main; main()", "validate", "sweeps/x.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "sweeps/x.yaml: grid[0].depth[2]: 15 is not 6n+2 for cifar_resnet (8, 14, 20, 32, 56, 110, ...) (line 12)"]
    assert "Traceback" not in proc.stderr


def test_the_cli_reports_a_missing_file_as_one_line(tmp_path):
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", "from sweeper.cli import main; main()", "validate", "nope.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert (proc.returncode, proc.stderr) == (2, "nope.yaml: no such file\n")


def test_validate_imports_no_torch():
    """Checking a spec and estimating its work read torch-free rules (model shapes, data set
    facts): `sweeper validate` of the paper's biggest grid must not pay for importing torch."""
    root = Path(__file__).resolve().parents[1]
    script = ("import sys\n"
              "from sweeper.cli import main\n"
              "sys.argv = ['sweeper', 'validate', 'sweeps/depth_vs_width.yaml']\n"
              "main()\n"
              "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("180 trials in sweep 'depth_vs_width'")
    assert proc.stderr.splitlines()[-1] == "[]"


def test_measure_times_every_architecture_and_mode_and_gives_the_cost_from_those_timings():
    import math
    import re

    result = CliRunner().invoke(cli, ["validate", "sweeps/quickstart.yaml", "--measure"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("measured cost, training only"))
    # the quick FLOP estimate stays, before the measured one
    assert any(line.startswith("work estimate, training only") for line in lines[:start])
    assert re.match(r"measured cost, training only \(timed on this machine's (CPU|GPU) ", lines[start])
    assert lines[start + 1].split()[-7:] == ["trials", "batch", "s/step", "images/s", "start-up", "peak", "memory"]
    rows = [line.split() for line in lines[start + 2:start + 10]]
    # quickstart: depths 8 and 14 x four modes, two seeds each, batch 64 on 16 px digits
    assert sorted((r[0], r[3]) for r in rows) == sorted(
        (f"cifar_resnet-{d}", m) for d in (8, 14) for m in ("bn_only", "full", "random_params", "output_only"))
    assert all(r[1:3] == ["digits", "16px"] and r[4:6] == ["2", "64"] and float(r[6]) > 0 for r in rows)
    # each row's start-up: the sweep layer's share and the digits loaded and the model built here
    assert all(r[9] == "s" and float(r[8]) >= SWEEP_LAYER_S for r in rows)  # data may be cached in-process
    hours = re.match(r"  device-hours: +([0-9.e-]+) \(", lines[start + 10])
    assert hours, lines[start + 10]
    steps_per_trial = math.ceil(1437 / 64) * 3  # digits' training images, batch 64, 3 epochs
    expected = sum(2 * steps_per_trial * float(r[6]) + 2 * float(r[8]) for r in rows) / 3600
    assert math.isclose(float(hours.group(1)), expected, rel_tol=0.05)
    wall = re.match(r"  wall time: +(\d+) s for the whole study at 2 trial\(s\) at once \(max_concurrent\), "
                    r"start-up included", lines[start + 11])
    assert wall, lines[start + 11]
    # 16 trials two at a time: at least half their summed time, never the "0 s" of steps alone
    assert float(wall.group(1)) >= 0.5 * expected * 3600 - 1 > 0
    assert lines[start + 12].startswith("  start-up per trial:")
    assert lines[start + 13].startswith("  peak memory per trial:")
    assert lines[start + 14].startswith("  resources.gpu:")
    assert lines[start + 15] == "shown: measured step times on this machine (the FLOP estimate above assumes a throughput)"


def test_without_measure_the_output_says_the_flop_estimate_is_shown():
    result = CliRunner().invoke(cli, ["validate", str(SMALL)])
    assert result.output.splitlines()[-1].startswith("shown: the FLOP estimate")


HUGE_RANDOM = """\
name: huge
dataset: {name: digits}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 1}
search:
  algorithm: random
  num_samples: 100000000
  space: {lr: {loguniform: [0.01, 1.0]}}
"""
# The command runs with the grid's expansion and the random plan made to fail: a refused plan
# must be refused from its counts alone, before a trial is built or a sample drawn.
NO_EXPANSION = """\
import sys
import sweeper.plan.planning, sweeper.spec.axes, sweeper.spec.schema
def never(*args, **kwargs):
    raise AssertionError("expanded a plan it should have refused")
sweeper.spec.axes.expand = sweeper.spec.schema.expand = never
sweeper.plan.planning.expected_trials = never
from sweeper.cli import main
main()
"""


def test_a_random_search_of_10_to_the_8_samples_is_refused_in_one_line_without_expanding(tmp_path):
    (tmp_path / "huge.yaml").write_text(HUGE_RANDOM)
    root = Path(__file__).resolve().parents[1]
    line = ("huge.yaml: search.num_samples: 1 grid point x 100,000,000 samples = 100,000,000 trials; "
            "a sweep may have at most 10,000 (line 7)")
    for command in (["validate", "huge.yaml"], ["run", "--dry-run", "huge.yaml"]):
        proc = subprocess.run([sys.executable, "-c", NO_EXPANSION, *command], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
        assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", line + "\n"), command
    assert not (tmp_path / "mlflow.db").exists()  # the dry run stopped before tracking, too
