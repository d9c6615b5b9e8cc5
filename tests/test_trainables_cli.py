"""``python -m trainables TRIAL.yaml``: JSON lines for a good trial, one line and exit 2 for a bad one."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trainables.__main__ import main

GOOD_YAML = """\
dataset: {name: synthetic, image_size: 16, train_size: 64, test_size: 20}
model: {family: cifar_resnet, depth: 8}
train:
  epochs: 2
  batch_size: 32
  lr: 0.05
mode: bn_only
seed: 1
"""


def write(tmp_path: Path, text: str, name: str = "trial.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_trial_prints_one_json_object_per_epoch_then_the_final_metrics(tmp_path):
    trial = write(tmp_path, GOOD_YAML)
    result = subprocess.run([sys.executable, "-m", "trainables", str(trial), "--checkpoint-dir", str(tmp_path / "ck")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line.get("epoch") for line in lines] == [1, 2, None]
    assert lines[-1]["status"] == "finished" and lines[-1]["epochs_completed"] == 2
    assert (tmp_path / "ck" / "checkpoint.pt").is_file() and (tmp_path / "ck" / "gamma.json").is_file()


def test_json_trial_files_work_too(tmp_path, capsys):
    import yaml

    trial = write(tmp_path, json.dumps(yaml.safe_load(GOOD_YAML) | {"train": {"epochs": 1, "batch_size": 64}}),
                  "trial.json")
    assert main([str(trial)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and json.loads(lines[-1])["epochs_completed"] == 1


@pytest.mark.parametrize("text, message", [
    (GOOD_YAML.replace("lr: 0.05", "lr: -1"), "trial.yaml: train.lr: must be a finite number > 0, got -1.0 (line 6)"),
    (GOOD_YAML.replace("depth: 8", "depth: 9"),
     "trial.yaml: model.depth: 9 is not 6n+2 for cifar_resnet (8, 14, 20, 32, 56, 110, ...) (line 2)"),
    (GOOD_YAML.replace("mode: bn_only", "mode: bn_onyl"),
     "trial.yaml: mode: unknown mode 'bn_onyl' (did you mean 'bn_only'?); one of full, bn_only, bn_output, "
     "output_only, random_params (line 7)"),
    (GOOD_YAML.replace("  lr: 0.05", "  lr: 0.05\n  lrr: 1"), "trial.yaml: train.lrr: unknown key (did you mean 'lr'?) (line 7)"),
    (GOOD_YAML.replace("seed: 1", "seed: 1\nseed: 2"), "trial.yaml: seed: duplicate key (line 9)"),
    (GOOD_YAML.replace("epochs: 2", "epochs: [2"), "trial.yaml: invalid YAML: "),
    ("- just\n- a list\n", "trial.yaml: must be a mapping, got list"),
    ("seed: !!python/object:os.system x\n", "trial.yaml: invalid YAML: "),
])
def test_a_bad_trial_file_is_one_line_on_stderr_and_exit_code_2(tmp_path, capsys, text, message):
    trial = write(tmp_path, text)
    assert main([str(trial)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.strip().startswith(str(tmp_path / message.split(": ", 1)[0]) + ": " + message.split(": ", 1)[1])


def test_a_missing_file_is_one_line_and_exit_code_2(tmp_path, capsys):
    assert main([str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"{tmp_path / 'nope.yaml'}: no such file\n"


def test_a_checkpoint_folder_of_another_trial_is_one_line_and_exit_code_2(tmp_path, capsys):
    folder = tmp_path / "ck"
    assert main([str(write(tmp_path, GOOD_YAML.replace("epochs: 2", "epochs: 1"))), "--checkpoint-dir", str(folder)]) == 0
    capsys.readouterr()
    other = write(tmp_path, GOOD_YAML.replace("epochs: 2", "epochs: 1").replace("seed: 1", "seed: 2"), "other.yaml")
    assert main([str(other), "--checkpoint-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{folder}: holds a checkpoint of another trial (seed=1 there, 2 here)")
    assert err.count("\n") == 1
