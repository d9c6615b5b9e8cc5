"""Which trials can share an array (trainables/array/key.py): torch-free, for the sweep planner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trainables.array import array_key, compatible, group_by_key, why_not
from trainables.array.key import PER_MEMBER

ROOT = Path(__file__).resolve().parents[1]


def trial(**over) -> dict:
    config = {"dataset": {"name": "cifar10"}, "model": {"family": "cifar_resnet", "depth": 20},
              "train": {"epochs": 10, "batch_size": 128, "lr": 0.1}, "mode": "full", "seed": 0}
    for path, value in over.items():
        *parents, leaf = path.split("__")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return config


def test_importing_the_key_module_loads_no_torch():
    code = ("import sys; import trainables.array; from trainables.array import array_key, compatible; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("differs", [
    {"mode": "bn_only"}, {"seed": 3}, {"train__lr": 0.5}, {"train__weight_decay": 0.0},
    {"train__optimizer": {"momentum": 0.0}}, {"train__label_smoothing": 0.1}, {"model__bn_init": "ones"},
    {"checkpoint": {"every_epochs": 5}},
])
def test_members_may_differ_in_what_the_array_carries_per_member(differs):
    assert why_not(trial(), trial(**differs)) is None
    assert array_key(trial()) == array_key(trial(**differs))


@pytest.mark.parametrize("differs, named", [
    ({"model__depth": 56}, "model.depth 20 vs 56"), ({"model__width": 2}, "model.width 1 vs 2"),
    ({"model__family": "vgg", "model__depth": 11}, "model.family 'cifar_resnet' vs 'vgg'"),
    ({"train__batch_size": 64}, "train.batch_size 128 vs 64"), ({"train__epochs": 20}, "train.epochs 10 vs 20"),
    ({"dataset": {"name": "cifar100"}}, "dataset.name 'cifar10' vs 'cifar100'"),
    ({"train__precision": "bf16"}, "train.precision 'auto' vs 'bf16'"),
    ({"train__lr_schedule": {"name": "cosine"}}, "train.lr_schedule.name 'constant' vs 'cosine'"),
    ({"train__optimizer": {"name": "adam"}}, "train.optimizer.name 'sgd' vs 'adam'"),
    ({"train__fidelity": "open_lth"}, "train.fidelity 'sweeper' vs 'open_lth'"),
    # one fused evaluation pass serves every member: differing evaluation batches train apart
    ({"train__eval_batch_size": 100}, "train.eval_batch_size"),
])
def test_what_fixes_shapes_or_step_count_keeps_trials_apart_with_a_one_line_reason(differs, named):
    reason = why_not(trial(), trial(**differs))
    assert reason is not None and named in reason and "\n" not in reason
    assert array_key(trial()) != array_key(trial(**differs))
    with pytest.raises(ValueError, match="trial 0 and trial 1 cannot share an array"):
        compatible([trial(), trial(**differs)])


def test_every_per_member_setting_is_a_real_setting():
    from trainables.config import TrialConfig
    from trainables.keys import flatten

    assert set(PER_MEMBER) <= set(flatten(TrialConfig.from_dict(trial()).to_dict()))


def test_the_planner_groups_same_key_trials_into_arrays_of_at_most_k():
    configs = [trial(seed=s) for s in range(5)] + [trial(model__depth=56)] + [trial(mode="bn_only")]
    assert group_by_key(configs, 4) == [[0, 1, 2, 3], [4, 6], [5]]
    assert compatible(configs[:5]) == array_key(configs[0]) and array_key(configs[0]).startswith("arr-")
