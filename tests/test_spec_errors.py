"""The corpus: ways to get a spec wrong, each with the exact one line the user sees.

Every case is a whole spec file (most are BASE plus a few lines, so line numbers start at 5).
The line names the file, the key path as typed, the problem, and the line the parser knows.
"""

from __future__ import annotations

import pytest

from sweeper.core.errors import SpecError
from sweeper.spec import parse_spec

BASE = """\
name: t
dataset: {name: digits}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 2, lr: 0.1}
"""
ONE_OF_MODES = "one of full, bn_only, bn_output, output_only, random_params"
PLAIN_ONLY = "a spec holds plain data only (mappings, lists, strings, numbers, booleans)"


def with_base(extra: str) -> str:
    return BASE + extra


def replacing(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new)


BOMB = "".join(
    ["name: t\ndataset: {name: digits}\nmodel: {family: cifar_resnet, depth: 8}\ntrain: {epochs: 2}\n",
     "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"]
    + [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10)]
)

CORPUS = [
    # --- YAML itself ---
    ("syntax", with_base("grid: {depth: [8, 14}\n"),
     "x.yaml: invalid YAML: expected ',' or ']', but got '}', while parsing a flow sequence (line 5)"),
    ("tab", with_base("train:\n\tlr: 0.1\n"),
     "x.yaml: invalid YAML: a tab character where YAML expects spaces (indent with spaces only) (line 6)"),
    ("mapping value in scalar", with_base("description: a: b\n"),
     "x.yaml: invalid YAML: mapping values are not allowed here (line 5)"),
    ("duplicate key", with_base("name: u\n"), "x.yaml: name: duplicate key 'name', first given at line 1 (line 5)"),
    ("python tag", with_base("description: !!python/object/apply:os.system [rm -rf /]\n"),
     f"x.yaml: description: the tag !!python/object/apply:os.system is not allowed: {PLAIN_ONLY} (line 5)"),
    ("python name tag", with_base("grid:\n  lr:\n    - !!python/name:math.pi\n"),
     f"x.yaml: grid.lr[0]: the tag !!python/name:math.pi is not allowed: {PLAIN_ONLY} (line 7)"),
    ("multi document", with_base("---\nname: u\n"),
     "x.yaml: holds more than one YAML document (a second '---'); a spec is one document (line 5)"),
    ("empty", "", "x.yaml: the file is empty; a spec is a mapping with at least name, dataset, model and train"),
    ("top level list", "- name: t\n",
     "x.yaml: the top level must be a mapping of keys (name, dataset, model, train, ...), got a list (line 1)"),
    ("top level scalar", "just words\n",
     "x.yaml: the top level must be a mapping of keys (name, dataset, model, train, ...), got the value "
     "'just words' (line 1)"),
    ("alias bomb", BOMB,
     # l4 is the first key past the cap: 9**5 = 59,049 strings (l9 would be 387 million)
     "x.yaml: l4: holds more than 50,000 values once its aliases are expanded (aliases of aliases?); "
     "refusing to expand it (line 9)"),
    # --- the sweep-level schema ---
    ("unknown top-level key", with_base("trian: {epochs: 3}\n"), "x.yaml: trian: unknown key (did you mean 'train'?) (line 5)"),
    ("trial setting at top level", with_base("lr: 0.1\n"), "x.yaml: lr: unknown key; lr belongs in train (line 5)"),
    ("mode at top level", with_base("mode: bn_only\n"),
     "x.yaml: mode: unknown key; mode is set per trial through grid, e.g. grid: {mode: [...]} (line 5)"),
    ("missing name", BASE.replace("name: t\n", ""), "x.yaml: name: is required"),
    ("missing train", BASE.replace("train: {epochs: 2, lr: 0.1}\n", ""), "x.yaml: train: is required"),
    ("bad name characters", replacing("name: t", "name: my sweep/1"),
     "x.yaml: name: must use only letters, digits, '_', '.' and '-', got 'my sweep/1' (line 1)"),
    ("name not a string", replacing("name: t", "name: 42"), "x.yaml: name: must be a string, got int 42 (line 1)"),
    ("section not a mapping", replacing("dataset: {name: digits}", "dataset: digits"),
     "x.yaml: dataset: must be a mapping, got the string 'digits' (line 2)"),
    ("negative cpu", with_base("resources: {cpu: -1}\n"), "x.yaml: resources.cpu: must be >= 0, got -1 (line 5)"),
    ("no cpu and no gpu", with_base("resources: {cpu: 0, gpu: 0}\n"),
     "x.yaml: resources: cpu and gpu are both 0: a trial needs some cpu or gpu to run on (line 5)"),
    ("gpu fraction above one", with_base("resources: {gpu: 1.5}\n"),
     "x.yaml: resources.gpu: more than one GPU must be a whole number, got 1.5 (line 5)"),
    ("infinite cpu", with_base("resources: {cpu: .inf}\n"), "x.yaml: resources.cpu: must be a finite number, got inf (line 5)"),
    ("unknown resource", with_base("resources:\n  cpu: 1\n  gpus: 1\n"),
     "x.yaml: resources.gpus: unknown key (did you mean 'gpu'?) (line 7)"),
    ("max_concurrent 0", with_base("max_concurrent: 0\n"), "x.yaml: max_concurrent: must be >= 1, got 0 (line 5)"),
    ("max_failures negative", with_base("max_failures: -1\n"), "x.yaml: max_failures: must be >= 0, got -1 (line 5)"),
    ("max_failures fraction", with_base("max_failures: 1.5\n"),
     "x.yaml: max_failures: must be an integer, got float 1.5 (line 5)"),
    ("checkpoint every 0", with_base("checkpoint: {every_epochs: 0}\n"),
     "x.yaml: checkpoint.every_epochs: must be >= 1, got 0 (line 5)"),
    ("tracking uri without a host", with_base("tracking: {uri: 'http://'}\n"),
     "x.yaml: tracking.uri: http:// needs a host (http://host:port), got 'http://' (line 5)"),
    ("tracking uri of an unknown scheme", with_base("tracking: {uri: 'ftp://files.example/mlruns'}\n"),
     "x.yaml: tracking.uri: MLflow has no tracking store for ftp://; the scheme must be one of file, sqlite, "
     "http, https, postgresql, mysql, mssql, databricks, databricks-uc, uc (or a folder path), "
     "got 'ftp://files.example/mlruns' (line 5)"),
    ("tracking uri sqlite without a file", with_base("tracking: {uri: 'sqlite://'}\n"),
     "x.yaml: tracking.uri: a sqlite URI needs a database file (sqlite:///mlflow.db), got 'sqlite://' (line 5)"),
    ("tracking url", with_base("tracking: {url: http://mlflow:5000}\n"),
     "x.yaml: tracking.url: unknown key (did you mean 'uri'?) (line 5)"),
    # --- the base trial config (TrialConfig) ---
    ("unknown train key", replacing("lr: 0.1", "lrr: 0.1"),
     "x.yaml: train.lrr: unknown key (did you mean 'lr'?) (line 4)"),
    ("unknown dataset", replacing("name: digits", "name: mnist"),
     "x.yaml: dataset.name: unknown dataset 'mnist'; one of cifar10, cifar100, imagenet, digits, synthetic (line 2)"),
    ("unknown family", replacing("family: cifar_resnet", "family: resnet"),
     "x.yaml: model.family: unknown model family 'resnet' (did you mean 'cifar_resnet'?); "
     "one of cifar_resnet, vgg, imagenet_resnet (line 3)"),
    ("depth not 6n+2", replacing("depth: 8", "depth: 9"),
     "x.yaml: model.depth: 9 is not 6n+2 for cifar_resnet (8, 14, 20, 32, 56, 110, ...) (line 3)"),
    ("depth missing", replacing("depth: 8", "width: 1"), "x.yaml: model.depth: is required (line 3)"),
    ("epochs 0", replacing("epochs: 2", "epochs: 0"), "x.yaml: train.epochs: must be >= 1, got 0 (line 4)"),
    ("lr negative", replacing("lr: 0.1", "lr: -0.1"), "x.yaml: train.lr: must be a finite number > 0, got -0.1 (line 4)"),
    ("lr nan", replacing("lr: 0.1", "lr: .nan"), "x.yaml: train.lr: must be a number, got NaN (line 4)"),
    ("batch size as text", replacing("lr: 0.1", "batch_size: '64'"),
     "x.yaml: train.batch_size: must be an integer, got str '64' (line 4)"),
    ("unknown optimizer", replacing("lr: 0.1", "optimizer: {name: adamw}"),
     "x.yaml: train.optimizer.name: unknown optimizer 'adamw' (did you mean 'adam'?); one of sgd, adam (line 4)"),
    ("unknown schedule", replacing("lr: 0.1", "lr_schedule: {name: linear}"),
     "x.yaml: train.lr_schedule.name: unknown lr_schedule 'linear'; one of constant, step, cosine (line 4)"),
    # --- grid ---
    ("depth not 6n+2 in the grid", with_base("grid:\n  - {mode: [full]}\n  - depth: [8, 14, 15]\n"),
     "x.yaml: grid[1].depth[2]: 15 is not 6n+2 for cifar_resnet (8, 14, 20, 32, 56, 110, ...) (line 7)"),
    ("depth in a block list", with_base("grid:\n  depth:\n    - 8\n    - 15\n"),
     "x.yaml: grid.depth[1]: 15 is not 6n+2 for cifar_resnet (8, 14, 20, 32, 56, 110, ...) (line 8)"),
    ("width below 1", with_base("grid: {width: [1, 0]}\n"),
     "x.yaml: grid.width[1]: width must be an integer 1..64, got 0 (line 5)"),
    ("unknown mode", with_base("grid: {mode: [bn_onyl]}\n"),
     f"x.yaml: grid.mode[0]: unknown mode 'bn_onyl' (did you mean 'bn_only'?); {ONE_OF_MODES} (line 5)"),
    ("grid lr nan", with_base("grid: {lr: [0.1, .nan]}\n"), "x.yaml: grid.lr[1]: must be a number, got NaN (line 5)"),
    ("unknown axis", with_base("grid: {deph: [8]}\n"), "x.yaml: grid.deph: unknown axis 'deph' (did you mean 'depth'?) (line 5)"),
    ("ambiguous axis", with_base("grid: {name: [sgd, adam]}\n"),
     "x.yaml: grid.name: ambiguous axis 'name': say train.optimizer.name or train.lr_schedule.name (line 5)"),
    ("dataset axis needs its path", with_base("grid: {train_size: [64]}\n"),
     "x.yaml: grid.train_size: unknown axis 'train_size' (did you mean 'dataset.train_size'?) (line 5)"),
    ("axis is a section", with_base("grid: {train.optimizer: [{name: sgd}]}\n"),
     "x.yaml: grid.train.optimizer: train.optimizer is a section, not a setting; use one of its keys "
     "(train.optimizer.name, train.optimizer.momentum, train.optimizer.nesterov, train.optimizer.beta1, ...) (line 5)"),
    ("axis that cannot change results", with_base("grid: {dataset.root: [/a, /b]}\n"),
     "x.yaml: grid.dataset.root: dataset.root cannot be an axis: it does not change a trial's result (line 5)"),
    ("axis not a list", with_base("grid: {depth: 8}\n"),
     "x.yaml: grid.depth: must be a list of values, got int 8 (write [8] for a single value) (line 5)"),
    ("empty axis", with_base("grid: {depth: []}\n"), "x.yaml: grid.depth: must list at least one value (line 5)"),
    ("empty grid list", with_base("grid: []\n"),
     "x.yaml: grid: must not be empty (leave grid out for a single trial) (line 5)"),
    ("grid item not a mapping", with_base("grid: [depth]\n"),
     "x.yaml: grid[0]: must be a mapping of axis: [values], got the string 'depth' (line 5)"),
    ("same axis twice", with_base("grid: {lr: [0.1], train.lr: [0.2]}\n"),
     "x.yaml: grid.train.lr: train.lr is already an axis here, as 'lr' (line 5)"),
    ("grid too large", with_base("grid: {seed: [" + ", ".join(map(str, range(101))) + "], "
                                 "batch_size: [" + ", ".join(map(str, range(1, 101))) + "]}\n"),
     "x.yaml: grid: expands to 10,100 trials; a sweep may have at most 10,000 (line 5)"),
    ("random samples too many", with_base("search: {algorithm: random, num_samples: 10001, "
                                          "space: {lr: {loguniform: [0.01, 1.0]}}}\n"),
     "x.yaml: search.num_samples: 1 grid point x 10,001 samples = 10,001 trials; a sweep may have at most "
     "10,000 (line 5)"),
    ("optuna samples x grid too many", with_base("grid: {seed: [0, 1, 2, 3]}\n"
                                                 "search: {algorithm: optuna, num_samples: 2501, "
                                                 "space: {lr: {loguniform: [0.01, 1.0]}}}\n"),
     "x.yaml: search.num_samples: 4 grid points x 2,501 samples = 10,004 trials; a sweep may have at most "
     "10,000 (line 6)"),
    ("base value wrong for one grid point", replacing("lr: 0.1", "warmup_epochs: 1") + "grid: {epochs: [2, 1]}\n",
     "x.yaml: train.warmup_epochs: must be in [0, epochs), got 1.0 [in grid: epochs=1] (line 4)"),
    ("base depth wrong for a grid family", with_base("grid: {family: [cifar_resnet, vgg]}\n"),
     "x.yaml: model.depth: 8 is not a VGG depth for vgg; one of 11, 13, 16, 19 [in grid: family=vgg] (line 3)"),
    # --- search ---
    ("loguniform reversed", with_base("search: {algorithm: optuna, space: {lr: {loguniform: [1.0, 0.1]}}}\n"),
     "x.yaml: search.space.lr: low < high must hold, got low=1.0, high=0.1 (line 5)"),
    ("loguniform from 0", with_base("search: {algorithm: optuna, space: {lr: {loguniform: [0, 0.1]}}}\n"),
     "x.yaml: search.space.lr: loguniform needs low > 0, got low=0 (line 5)"),
    ("randint of floats", with_base("search: {algorithm: random, space: {seed: {randint: [0, 2.5]}}}\n"),
     "x.yaml: search.space.seed: randint needs integers, got low=0, high=2.5 (line 5)"),
    ("misspelt distribution", with_base("search: {algorithm: random, space: {lr: {logunifrom: [0.01, 0.1]}}}\n"),
     "x.yaml: search.space.lr: unknown distribution 'logunifrom' (did you mean 'loguniform'?); "
     "one of loguniform, uniform, randint, choice (line 5)"),
    ("distribution with one bound", with_base("search: {algorithm: random, space: {lr: {uniform: [0.1]}}}\n"),
     "x.yaml: search.space.lr: uniform needs [low, high], got a list (line 5)"),
    ("empty choice", with_base("search: {algorithm: random, space: {mode: {choice: []}}}\n"),
     "x.yaml: search.space.mode: choice needs a non-empty list of values, got a list (line 5)"),
    ("sampled bound invalid", with_base("search: {algorithm: optuna, space: {lr: {uniform: [0.0, 0.1]}}}\n"),
     "x.yaml: search.space.lr.uniform[0]: must be a finite number > 0, got 0.0 (line 5)"),
    ("sampled choice invalid", with_base("search:\n  algorithm: random\n  space:\n    depth: {choice: [8, 15]}\n"),
     "x.yaml: search.space.depth.choice[1]: 15 is not 6n+2 for cifar_resnet (8, 14, 20, 32, 56, 110, ...) (line 8)"),
    ("unknown algorithm", with_base("search: {algorithm: tpe}\n"),
     "x.yaml: search.algorithm: unknown algorithm 'tpe'; one of grid, random, optuna (line 5)"),
    ("unknown metric", with_base("search: {metric: accuracy}\n"),
     "x.yaml: search.metric: unknown metric 'accuracy'; one of train_loss, train_acc, test_loss, test_acc, "
     "test_top5, lr, images_per_s, epoch_s, best_test_acc, final_test_acc, trainable_params, total_params, "
     "gamma_near_zero_frac, gamma_near_zero_frac_0.05, gamma_near_zero_frac_0.1, relu_zero_frac, epochs_completed (line 5)"),
    ("unknown direction", with_base("search: {direction: upward}\n"),
     "x.yaml: search.direction: unknown direction 'upward'; one of max, min (line 5)"),
    ("num_samples 0", with_base("search: {algorithm: random, num_samples: 0, space: {lr: {uniform: [0.01, 0.1]}}}\n"),
     "x.yaml: search.num_samples: must be >= 1, got 0 (line 5)"),
    ("axis both in grid and space",
     with_base("grid: {lr: [0.1]}\nsearch: {algorithm: random, space: {lr: {uniform: [0.01, 0.1]}}}\n"),
     "x.yaml: search.space.lr: lr is also a grid axis (grid.lr); an axis is either listed or sampled, not both (line 6)"),
    ("space with algorithm grid", with_base("search: {space: {lr: {uniform: [0.01, 0.1]}}}\n"),
     "x.yaml: search.space: sampled axes need algorithm random or optuna "
     "(with algorithm grid, list the values under grid) (line 5)"),
    ("random with nothing to sample", with_base("search: {algorithm: random}\n"),
     "x.yaml: search.space: random needs at least one axis to sample, e.g. space: {lr: {loguniform: [0.01, 1.0]}} "
     "(line 5)"),
    ("unknown space axis", with_base("search: {algorithm: random, space: {lrr: {uniform: [0.01, 0.1]}}}\n"),
     "x.yaml: search.space.lrr: unknown axis 'lrr' (did you mean 'lr'?) (line 5)"),
    # --- scheduler ---
    ("unknown scheduler", with_base("scheduler: {name: ashaa}\n"),
     "x.yaml: scheduler.name: unknown scheduler 'ashaa' (did you mean 'asha'?); one of fifo, asha (line 5)"),
    ("scheduler without name", with_base("scheduler: {grace_period: 1}\n"),
     "x.yaml: scheduler.name: is required (fifo or asha) (line 5)"),
    ("asha grace 0", with_base("scheduler: {name: asha, grace_period: 0}\n"),
     "x.yaml: scheduler.grace_period: must be >= 1, got 0 (line 5)"),
    ("asha reduction 1", with_base("scheduler: {name: asha, reduction_factor: 1}\n"),
     "x.yaml: scheduler.reduction_factor: must be > 1, got 1 (line 5)"),
    ("asha grace past the longest trial", with_base("scheduler: {name: asha, grace_period: 5}\n"),
     "x.yaml: scheduler.grace_period: 5 is more than the longest trial's epochs (2): asha would never stop a trial "
     "(line 5)"),
    ("asha grace past max_t", with_base("scheduler: {name: asha, grace_period: 2, max_t: 1}\n"),
     "x.yaml: scheduler.grace_period: grace_period <= max_t must hold, got grace_period=2, max_t=1 (line 5)"),
    ("fifo with asha settings", with_base("scheduler: {name: fifo, grace_period: 5}\n"),
     "x.yaml: scheduler.grace_period: unknown key; fifo takes no settings (grace_period is an asha setting) (line 5)"),
    ("asha misspelt setting", with_base("scheduler:\n  name: asha\n  grace: 1\n"),
     "x.yaml: scheduler.grace: unknown key; one of name, grace_period, reduction_factor, max_t, metric, direction "
     "(line 7)"),
    ("asha on a final metric", with_base("scheduler: {name: asha}\nsearch: {metric: best_test_acc}\n"),
     "x.yaml: search.metric: asha compares trials every epoch, so it needs a per-epoch metric (train_loss, train_acc, "
     "test_loss, test_acc, test_top5, lr, images_per_s, epoch_s), got best_test_acc (line 6)"),
]


def test_the_corpus_is_large_and_its_cases_distinct():
    assert len(CORPUS) >= 40
    assert len({case for case, _, _ in CORPUS}) == len(CORPUS)
    assert len({text for _, text, _ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case, text, message", CORPUS, ids=[c for c, _, _ in CORPUS])
def test_bad_spec_gives_exactly_this_line(case, text, message):
    with pytest.raises(SpecError) as e:
        parse_spec(text, "x.yaml")
    assert str(e.value) == message
    assert "\n" not in str(e.value)
