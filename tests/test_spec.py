"""A valid spec: the schema's defaults, grid expansion into trials, names and keys."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sweeper import Spec, SpecError, Trial, load_spec
from sweeper.spec import AshaScheduler, Distribution, parse_spec, resolve_axis
from sweeper.core.trial import trial_key

SPECS = Path(__file__).parent / "specs"

BASE = """\
name: t
dataset: {name: digits}
model: {family: cifar_resnet, depth: 8}
train: {epochs: 2, lr: 0.1}
"""


def spec(extra: str = "") -> Spec:
    return parse_spec(BASE + extra, "t.yaml")


def test_a_spec_without_grid_is_one_trial_of_the_base_config_with_the_schema_defaults():
    s = spec()
    (trial,) = s.trials()
    assert isinstance(trial, Trial)
    assert trial.name == "full-d8-w1-lr0.1-s0"
    assert trial.config["mode"] == "full" and trial.config["seed"] == 0
    assert trial.config["checkpoint"] == {"every_epochs": 1}
    assert s.search is None and s.scheduler.name == "fifo"
    assert (s.resources.cpu, s.resources.gpu) == (1.0, 0.0)
    assert (s.max_concurrent, s.max_failures, s.tracking.uri) == (None, 2, None)
    assert (s.metric, s.direction) == ("test_acc", "max")


def test_one_mapping_is_a_cartesian_product_in_the_order_typed():
    s = spec("grid: {mode: [bn_only, full], depth: [8, 14], seed: [0, 1]}\n")
    names = [t.name for t in s.trials()]
    assert names == [
        "bn_only-d8-w1-lr0.1-s0", "bn_only-d8-w1-lr0.1-s1", "bn_only-d14-w1-lr0.1-s0", "bn_only-d14-w1-lr0.1-s1",
        "full-d8-w1-lr0.1-s0", "full-d8-w1-lr0.1-s1", "full-d14-w1-lr0.1-s0", "full-d14-w1-lr0.1-s1",
    ]
    assert s.varying_axes() == ["mode", "model.depth", "seed"]


def test_a_list_of_mappings_is_their_union_without_duplicates():
    s = spec("grid:\n"
             "  - {mode: [bn_only, full], depth: [8]}\n"
             "  - {mode: [full], depth: [8, 14]}\n")  # full-d8 is in both
    assert [t.name for t in s.trials()] == ["bn_only-d8-w1-lr0.1-s0", "full-d8-w1-lr0.1-s0", "full-d14-w1-lr0.1-s0"]
    assert len({t.key for t in s.trials()}) == 3


def test_short_and_dotted_axes_reach_any_setting_and_other_varying_axes_get_a_name_part():
    s = spec("grid:\n"
             "  momentum: [0.0, 0.9]\n"
             "  dataset.image_size: [16]\n"
             "  batch_size: [32, 64]\n")
    names = [t.name for t in s.trials()]
    assert names[0] == "full-d8-w1-lr0.1-s0-mom0.0-bs32"
    assert len(set(names)) == 4
    t = s.trials()[3]
    assert t.config["train"]["optimizer"]["momentum"] == 0.9
    assert t.config["dataset"]["image_size"] == 16  # fixed in the grid: not part of the name
    assert t.params["train.batch_size"] == 64 and t.params["train.optimizer.momentum"] == 0.9


def test_axis_names_resolve_against_the_trial_config():
    assert resolve_axis("depth") == "model.depth"
    assert resolve_axis("lr") == "train.lr"
    assert resolve_axis("momentum") == "train.optimizer.momentum"
    assert resolve_axis("train.lr_schedule.name") == "train.lr_schedule.name"
    assert resolve_axis("mode") == "mode" and resolve_axis("seed") == "seed"
    with pytest.raises(ValueError, match="ambiguous axis 'name'"):
        resolve_axis("name")


def test_params_are_the_whole_resolved_config_flattened_to_scalars():
    t = spec().trials()[0]
    assert t.params["model.depth"] == 8 and t.params["train.lr"] == 0.1 and t.params["mode"] == "full"
    assert t.params["train.optimizer.name"] == "sgd"
    assert t.params["train.lr_schedule.milestones"] == "[]"  # lists as JSON text
    assert all(v is None or isinstance(v, (str, int, float, bool)) for v in t.params.values())


def test_trial_key_is_pinned_so_stored_results_keep_their_names():
    config = {"dataset": {"name": "cifar10", "root": "/data/c10", "download": True, "num_workers": 4},
              "model": {"family": "cifar_resnet", "depth": 110, "width": 1},
              "train": {"epochs": 160, "lr": 0.1}, "mode": "bn_only", "seed": 0, "checkpoint": {"every_epochs": 10}}
    assert trial_key(config) == "7e912597d7ce5e63"


def test_the_key_of_a_resolved_spec_trial_is_pinned():
    # Changing TrialConfig's fields or defaults changes this key, and with it the name of every
    # stored result: do it on purpose, and update the pin with a note in the changelog.
    assert spec().trials()[0].key == "533dbe372228fe1d"


def test_the_key_ignores_where_data_lives_and_how_often_checkpoints_are_written():
    plain = spec().trials()[0]
    moved = parse_spec(BASE.replace("{name: digits}", "{name: digits, root: /elsewhere, download: true, "
                                                       "num_workers: 2}") + "checkpoint: {every_epochs: 3}\n",
                       "t.yaml").trials()[0]
    assert moved.config["checkpoint"] == {"every_epochs": 3}
    assert moved.key == plain.key


def test_the_key_follows_resolved_values_not_spelling():
    assert spec().trials()[0].key == parse_spec(BASE.replace("lr: 0.1", "lr: 1.0e-1, batch_size: 128"),
                                                "t.yaml").trials()[0].key
    assert spec().trials()[0].key != spec("grid: {lr: [0.2]}\n").trials()[0].key


def test_spec_keeps_its_source_text_and_hash():
    path = SPECS / "small.yaml"
    s = load_spec(path)
    text = path.read_text()
    assert s.path == str(path) and s.text == text
    assert s.spec_hash == hashlib.sha256(text.encode()).hexdigest()
    assert len(s.trials()) == 6


def test_search_space_is_typed_data_keyed_by_dotted_path():
    s = spec("search:\n"
             "  algorithm: optuna\n"
             "  num_samples: 5\n"
             "  space:\n"
             "    lr: {loguniform: [0.01, 1.0]}\n"
             "    weight_decay: {uniform: [0.0, 0.001]}\n"
             "    batch_size: {choice: [32, 64]}\n"
             "    warmup_epochs: {randint: [0, 2]}\n"
             "  metric: test_loss\n")
    space = s.search.space
    assert list(space) == ["train.lr", "train.weight_decay", "train.batch_size", "train.warmup_epochs"]
    assert space["train.lr"] == Distribution(kind="loguniform", low=0.01, high=1.0)
    assert space["train.batch_size"].kind == "choice" and space["train.batch_size"].values == (32, 64)
    assert (space["train.warmup_epochs"].low, space["train.warmup_epochs"].high) == (0, 2)
    assert (s.metric, s.direction) == ("test_loss", "min")  # losses default to min
    assert s.sampled_trial_count() == 5


def test_make_trial_resolves_a_sampled_point_with_its_axes_in_the_name():
    s = spec("grid: {mode: [bn_only, full]}\n"
             "search: {algorithm: random, num_samples: 2, space: {lr: {loguniform: [0.01, 1.0]}, "
             "weight_decay: {uniform: [0.0, 0.001]}}}\n")
    base = s.trials()[1]
    t = s.make_trial({"train.lr": 0.0312, "train.weight_decay": 5e-4}, base=base)
    assert t.name == "full-d8-w1-lr0.0312-s0-wd0.0005"
    assert t.config["train"]["lr"] == 0.0312 and t.key != base.key
    with pytest.raises(SpecError) as e:
        s.make_trial({"train.lr": -1.0}, base=base)
    assert str(e.value) == "t.yaml: search.space.lr: must be a finite number > 0, got -1.0 (line 6)"


def test_asha_takes_the_search_metric_and_defaults():
    s = spec("scheduler: {name: asha, grace_period: 1}\nsearch: {metric: test_loss}\n")
    assert isinstance(s.scheduler, AshaScheduler)
    assert (s.scheduler.grace_period, s.scheduler.reduction_factor, s.scheduler.max_t) == (1, 4.0, None)
    assert (s.metric, s.direction) == ("test_loss", "min")


def test_resources_allow_fractional_gpus():
    s = spec("resources: {cpu: 2, gpu: 0.25}\nmax_concurrent: 8\nmax_failures: 0\n")
    assert (s.resources.cpu, s.resources.gpu, s.max_concurrent, s.max_failures) == (2.0, 0.25, 8, 0)


def test_a_plan_of_exactly_max_trials_grid_points_times_samples_is_accepted():
    from sweeper.spec import MAX_TRIALS, parse_spec

    spec = parse_spec("name: t\ndataset: {name: digits}\nmodel: {family: cifar_resnet, depth: 8}\n"
                      "train: {epochs: 2}\ngrid: {seed: [0, 1, 2, 3]}\n"
                      "search: {algorithm: optuna, num_samples: 2500, space: {lr: {loguniform: [0.01, 1.0]}}}\n")
    assert spec.sampled_trial_count() == MAX_TRIALS


@pytest.mark.parametrize("uri", ["http://mlflow:5000", "https://mlflow.example.org", "sqlite:///mlflow.db",
                                 "sqlite:////abs/m.db", "postgresql+psycopg2://u:p@db:5432/mlflow", "./mlruns",
                                 "file:///srv/mlruns", "databricks", "databricks://profile"])
def test_tracking_uris_mlflow_can_use_are_accepted(uri, monkeypatch):
    from sweeper.spec import parse_spec

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 opens folder stores only then

    spec = parse_spec("name: t\ndataset: {name: digits}\nmodel: {family: cifar_resnet, depth: 8}\n"
                      f"train: {{epochs: 2}}\ntracking: {{uri: '{uri}'}}\n")
    assert spec.tracking.uri == uri
