"""Other tools' words in a spec (Ray Tune, Optuna, W&B sweeps, PyTorch), through the real
`sweeper validate`: Optuna's and W&B's directions validate; every other foreign word is one line
naming the file, the key as typed, sweeper's key or form, and the line, with exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sweeper.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
BASE = """\
name: t
dataset: {name: digits}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 2, lr: 0.1}
"""
RANDOM_LR = "search:\n  algorithm: random\n  space:\n    lr: {loguniform: [0.01, 0.1]}\n"

CASES = [
    ("ray mode", BASE + "search:\n  metric: test_acc\n  mode: max\n",
     "x.yaml: search.mode: unknown key (did you mean direction: max? mode is Ray Tune's word) (line 7)"),
    ("ray mode on asha", BASE + "scheduler: {name: asha, mode: min}\n",
     "x.yaml: scheduler.mode: unknown key (did you mean direction: min? mode is Ray Tune's word) (line 5)"),
    ("ray max_concurrent_trials", BASE + "max_concurrent_trials: 4\n",
     "x.yaml: max_concurrent_trials: unknown key (did you mean max_concurrent: 4? max_concurrent_trials is "
     "Ray Tune's word) (line 5)"),
    ("wandb log_uniform_values", BASE + "search:\n  algorithm: random\n  space:\n"
                                        "    lr: {distribution: log_uniform_values, min: 0.01, max: 0.3}\n",
     "x.yaml: search.space.lr: distribution: log_uniform_values is W&B's form "
     "(did you mean {loguniform: [0.01, 0.3]}?) (line 8)"),
    ("wandb int_uniform", BASE + "search:\n  algorithm: random\n  space:\n"
                                 "    epochs: {distribution: int_uniform, min: 1, max: 3}\n",
     "x.yaml: search.space.epochs: distribution: int_uniform is W&B's form (did you mean {randint: [1, 4]}?) (line 8)"),
    ("wandb values in space", BASE + "search:\n  algorithm: random\n  space:\n    lr: {values: [0.05, 0.1]}\n",
     "x.yaml: search.space.lr: values: is W&B's form (did you mean {choice: [0.05, 0.1]}?) (line 8)"),
    ("wandb values in grid", BASE + "grid:\n  lr:\n    values: [0.05, 0.1]\n",
     "x.yaml: grid.lr: values: is W&B's form (did you mean lr: [0.05, 0.1]? a grid axis is the list itself) (line 6)"),
    ("pytorch gamma", BASE.replace("train: {epochs: 2, lr: 0.1}\n",
                                   "train:\n  epochs: 2\n  lr_schedule:\n    name: step\n    step_size: 1\n"
                                   "    gamma: 0.5\n"),
     "x.yaml: train.lr_schedule.gamma: unknown key (did you mean factor: 0.5? gamma is PyTorch's StepLR word) "
     "(line 9)"),
]


def _validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    (tmp_path / "x.yaml").write_text(text)
    return subprocess.run([sys.executable, "-c", "from sweeper.cli import main; main()", "validate", "x.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("case, text, line", CASES, ids=[c for c, _, _ in CASES])
def test_a_foreign_word_is_one_line_naming_sweepers_form_and_exit_2(tmp_path, case, text, line):
    proc = _validate(tmp_path, text)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", line + "\n")


@pytest.mark.parametrize("word, ours", [("maximize", "max"), ("minimize", "min"), ("max", "max"), ("min", "min")])
def test_optuna_and_wandb_directions_validate_as_sweepers(word, ours):
    spec = parse_spec(BASE + RANDOM_LR + f"  direction: {word}\n", "x.yaml")
    assert spec.direction == ours
    asha = parse_spec(BASE + f"scheduler: {{name: asha, direction: {word}}}\n", "x.yaml")
    assert asha.direction == ours


def test_direction_maximize_validates_through_the_cli(tmp_path):
    proc = _validate(tmp_path, BASE + RANDOM_LR + "  metric: test_loss\n  direction: maximize\n")
    assert proc.returncode == 0, proc.stderr
    assert "optimising test_loss (max)" in proc.stdout
