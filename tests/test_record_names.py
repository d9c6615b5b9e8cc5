"""The MLflow record's names, pinned as written: scripts, dashboards and old sweeps read them.

sweeper.record.names is the one place they are defined; no other module spells one out.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sweeper.record import names

ROOT = Path(__file__).resolve().parents[1]

PINNED_TAGS = {
    "TAG_PARENT": "mlflow.parentRunId", "TAG_NOTE": "mlflow.note.content", "TAG_RUN_NAME": "mlflow.runName",
    "TAG_EXPERIMENT_KIND": "mlflow.experimentKind", "TAG_ROLE": "sweeper.role",
    "TAG_SPEC_HASH": "sweeper.spec_hash", "TAG_SPEC_HISTORY": "sweeper.spec_history", "TAG_LIVE": "sweeper.live",
    "TAG_BEST_TRIAL": "sweeper.best_trial", "TAG_LEASE_PREFIX": "sweeper.lease.", "TAG_LEASE_HOLDER": "sweeper.holder",
    "TAG_TRIAL_KEY": "sweeper.trial_key", "TAG_STATUS": "status", "TAG_EARLY_STOPPED": "sweeper.early_stopped",
    "TAG_LAST_ERROR": "sweeper.last_error", "TAG_NODE_ID": "sweeper.node_id", "TAG_DEVICE": "sweeper.device",
    "TAG_ATTEMPTS": "sweeper.attempts", "TAG_CHECKPOINT_SET_ASIDE": "sweeper.checkpoint_set_aside",
    "TAG_SUPERSEDED": "sweeper.superseded", "TAG_SHORT_PARAMS": "sweeper.short_params",
    "TAG_GRID_KEY": "sweeper.grid_key", "TAG_SAMPLED": "sweeper.sampled", "TAG_ARRAY": "sweeper.array",
}


def test_every_tag_name_is_the_one_users_and_old_sweeps_know():
    new = {k: v for k, v in names.TAGS.items() if k not in PINNED_TAGS}
    assert {k: v for k, v in names.TAGS.items() if k in PINNED_TAGS} == PINNED_TAGS
    # a tag added since: pin it above once it is meant to stay
    assert set(new) <= {"TAG_ARRAY", "TAG_LEASE_HOLDER", "TAG_LEASE_TOKEN"}, new


def test_metric_step_artifact_and_filter_names_are_unchanged():
    assert (names.METRIC_EPOCH, names.METRIC_START_EPOCH, names.FINAL_STEP) == ("sweeper.epoch", "sweeper.start_epoch", 0)
    assert (names.ROLE_SWEEP, names.ROLE_TRIAL, names.EXPERIMENT_KIND_TRAINING) == (
        "sweep", "trial", "custom_model_development")
    assert (names.ARTIFACT_SPEC, names.ARTIFACT_REPORT, names.ARTIFACT_CHECKPOINT, names.ARTIFACT_GAMMA) == (
        "spec", "report", "checkpoint", "gamma")
    assert (names.ARTIFACT_INDEX_DIR, names.ARTIFACT_INDEX_NAME) == ("sweeper", "runs.json.gz")
    assert names.TRIAL_RUNS == "tags.`sweeper.role` = 'trial'"
    assert names.SWEEP_RUNS == "tags.`sweeper.role` = 'sweep'"


def test_no_module_but_the_record_spells_out_a_sweeper_tag():
    found = []
    for path in sorted((ROOT / "sweeper").rglob("*.py")):
        if path.parent.name == "record" and path.name in ("names.py", "mlflow_internals.py"):
            continue  # the record's names; MLflow's own module paths and tags, checked in test_mlflow_internals
        for node in ast.walk(ast.parse(path.read_text())):
            # "status" is also a column and a final-metric key; every other tag name is distinctive
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and re.fullmatch(r"(sweeper|mlflow)\.([a-z_.]*[a-zA-Z_]+)?\.?", node.value)
                    and node.value not in {"mlflow.db", "sweeper.report"}):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert found == []  # import the name from sweeper.record.names


def test_the_docs_list_every_name():
    text = (ROOT / "docs" / "mlflow.md").read_text()
    missing = [v for v in names.TAGS.values() if f"`{v}" not in text]
    missing += [v for v in (names.METRIC_EPOCH, names.METRIC_START_EPOCH) if f"`{v}`" not in text]
    assert missing == []
