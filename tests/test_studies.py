"""Every study in sweeps/ loads, validates and expands to the trials its header promises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweeper.plan.estimate import estimate_spec
from sweeper.spec import load_spec

SWEEPS = Path(__file__).resolve().parent.parent / "sweeps"
STUDIES = sorted(SWEEPS.glob("*.yaml"))

# name -> (grid points, trials in all: grid points x samples for a search). A new study gets a
# line here: its size is part of what it promises.
EXPECTED = {
    "quickstart": (16, 16),  # 4 modes x 2 depths x 2 seeds
    "depth_vs_width": (180, 180),  # 5 modes x (7 depths at width 1 + 5 more widths at depth 14) x 3 seeds
    "vgg": (40, 40),  # 5 modes x VGG-11/13/16/19 x 2 seeds
    "imagenet_resnets": (10, 10),  # bn_only, full x ResNet-18/34/50/101/200 x 1 seed
    "lr_search": (2, 48),  # bn_only x depths 14, 110; 24 Optuna samples each
    "precision": (12, 12),  # bn_only x ResNet-110, 866 x fp32, bf16 x 3 seeds
    "notebook": (5, 5),  # bn_only, full x lr 0.05, 0.1 at depth 8, and bn_only at depth 14
}
PAPER_STUDIES = ("depth_vs_width", "vgg", "imagenet_resnets")


def test_there_are_studies():
    assert {p.stem for p in STUDIES} >= {"quickstart", "vgg", "imagenet_resnets", "lr_search"}


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_validates_and_expands_to_its_trials(path: Path):
    spec = load_spec(path)
    assert spec.name == path.stem, "a study's name is its file name, so `sweeper report NAME` finds it"
    assert path.stem in EXPECTED, f"add {path.stem} and its trial count to EXPECTED"
    grid_points, total = EXPECTED[path.stem]
    trials = spec.trials()
    assert len(trials) == grid_points
    assert (spec.sampled_trial_count() or len(trials)) == total
    assert len({t.key for t in trials}) == len(trials) and len({t.name for t in trials}) == len(trials)


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_header_says_its_question_and_its_cost(path: Path):
    header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    assert header, "a study starts with a comment saying what it answers and what it costs"
    assert "Cost" in header, f"{path.name}: no cost line in the header"
    spec = load_spec(path)
    total = spec.sampled_trial_count() or len(spec.trials())
    stated = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) trials", header)]
    assert total in stated, f"the header's trial count {stated} is stale: the spec has {total}"
    assert "GPU-hours" in header


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_study_header_quotes_what_validate_estimates(path: Path):
    header = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
    estimate = estimate_spec(load_spec(path))
    assert f"{estimate.trial_epochs:,} trial-epochs" in header, f"{path.name}: stale trial-epochs"
    hours = estimate.gpu_hours
    shown = {f"{hours:,.1f}", f"{hours:,.0f}"} if hours >= 1 else {f"{hours:.2g}"}
    assert any(h in header for h in shown), f"{path.name}: the header's GPU-hours are not validate's {shown}"


def test_paper_studies_use_the_papers_schedules():
    vgg = load_spec(SWEEPS / "vgg.yaml").trials()[0].config["train"]
    assert (vgg["epochs"], vgg["lr"], vgg["batch_size"], vgg["lr_schedule"]["milestones"]) == (160, 0.1, 128, [80, 120])
    imagenet = load_spec(SWEEPS / "imagenet_resnets.yaml").trials()[0].config["train"]
    assert (imagenet["epochs"], imagenet["lr"], imagenet["batch_size"], imagenet["warmup_epochs"]) == (90, 0.4, 1024, 5)
    assert imagenet["lr_schedule"]["milestones"] == [30, 60, 80]
    paper = load_spec(SWEEPS / "depth_vs_width.yaml").trials()
    assert {t.params["mode"] for t in paper} == {"full", "bn_only", "random_params", "output_only", "bn_output"}
    assert {t.params["model.depth"] for t in paper} == {14, 32, 56, 110, 218, 434, 866}
    assert {t.params["model.width"] for t in paper} == {1, 2, 4, 8, 16, 32}
    assert {t.config["train"]["epochs"] for t in paper} == {160}
    search = load_spec(SWEEPS / "lr_search.yaml")
    assert search.search.algorithm == "optuna" and search.scheduler.name == "asha"
    assert {t.params["mode"] for t in search.trials()} == {"bn_only"}


@pytest.mark.parametrize("name", PAPER_STUDIES)
def test_paper_studies_train_in_fp32_with_open_lths_conventions(name):
    trials = load_spec(SWEEPS / f"{name}.yaml").trials()
    assert {t.config["train"]["precision"] for t in trials} == {"fp32"}
    assert {t.config["train"]["fidelity"] for t in trials} == {"open_lth"}


def test_quickstart_keeps_this_projects_conventions_and_its_keys():
    trials = load_spec(SWEEPS / "quickstart.yaml").trials()
    assert {t.config["train"]["fidelity"] for t in trials} == {"sweeper"}
    assert "train.fidelity" not in trials[0].name


def test_precision_study_compares_fp32_and_bf16_on_deep_bn_only_resnets():
    trials = load_spec(SWEEPS / "precision.yaml").trials()
    cells = {}
    for t in trials:
        key = (t.params["mode"], t.params["model.depth"], t.params["train.precision"])
        cells.setdefault(key, set()).add(t.params["seed"])
    assert cells == {("bn_only", d, p): {0, 1, 2} for d in (110, 866) for p in ("fp32", "bf16")}
    # its fp32 arm is depth_vs_width's BN-only ResNet-110 and -866: the same trials
    paper = {t.key for t in load_spec(SWEEPS / "depth_vs_width.yaml").trials()}
    assert {t.key for t in trials if t.params["train.precision"] == "fp32"} <= paper
