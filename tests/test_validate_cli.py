"""`sweeper validate`: the trial table and work estimate, and one-line errors from the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from sweeper.cli import cli
from sweeper.plan.estimate import ASSUMED_FLOPS_PER_S, estimate_spec, trial_work
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
    assert f"at an assumed {ASSUMED_FLOPS_PER_S / 1e12:.0f} TFLOP/s sustained per GPU" in out


def test_the_estimate_is_trials_x_epochs_x_images_x_three_forward_passes():
    from trainables.config import ModelConfig
    from trainables.models import flops_per_image

    spec = load_spec(SMALL)
    est = estimate_spec(spec)
    forward = {d: flops_per_image(ModelConfig(family="cifar_resnet", depth=d), 10, 32) for d in (8, 14)}
    depths = [t.config["model"]["depth"] for t in spec.trials()]
    assert est.trials == 6 and est.trial_epochs == 12
    assert est.training_flops == sum(3 * forward[d] * 1437 * 2 for d in depths)
    assert (est.forward_flops_min, est.forward_flops_max) == (forward[8], forward[14])
    assert abs(est.gpu_hours - est.training_flops / ASSUMED_FLOPS_PER_S / 3600) < 1e-12


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
    assert lines[start + 1].split()[-6:] == ["trials", "batch", "s/step", "images/s", "peak", "memory"]
    rows = [line.split() for line in lines[start + 2:start + 10]]
    # quickstart: depths 8 and 14 x four modes, two seeds each, batch 64 on 16 px digits
    assert sorted((r[0], r[3]) for r in rows) == sorted(
        (f"cifar_resnet-{d}", m) for d in (8, 14) for m in ("bn_only", "full", "random_params", "output_only"))
    assert all(r[1:3] == ["digits", "16px"] and r[4:6] == ["2", "64"] and float(r[6]) > 0 for r in rows)
    hours = re.match(r"  device-hours: +([0-9.e-]+) \(", lines[start + 10])
    assert hours, lines[start + 10]
    steps_per_trial = math.ceil(1437 / 64) * 3  # digits' training images, batch 64, 3 epochs
    expected = sum(2 * steps_per_trial * float(r[6]) for r in rows) / 3600
    assert math.isclose(float(hours.group(1)), expected, rel_tol=0.05)
    assert re.match(r"  wall time: +\d+ (s|min|h) at 2 trial\(s\) at once \(max_concurrent\)", lines[start + 11])
    assert lines[start + 12].startswith("  peak memory per trial:")
    assert lines[start + 13].startswith("  resources.gpu:")
    assert lines[start + 14] == "shown: measured step times on this machine (the FLOP estimate above assumes a throughput)"


def test_without_measure_the_output_says_the_flop_estimate_is_shown():
    result = CliRunner().invoke(cli, ["validate", str(SMALL)])
    assert result.output.splitlines()[-1].startswith("shown: the FLOP estimate")
