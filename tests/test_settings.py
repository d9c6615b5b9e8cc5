"""Settings declared once, on the config's fields: what leaves a trial's key and its resume check.

The identity constants are derived from the declarations (``trainables/settings.py``). Trial keys
name MLflow runs and checkpoint folders, and config hashes decide whether a checkpoint resumes:
the lists below are written out so that any change to a declaration shows up here, and the
pinned keys and hashes were computed before the declarations replaced the hand-kept lists.
"""

from __future__ import annotations

import pytest

from sweeper.core.trial import trial_key, with_later_defaults
from trainables import settings
from trainables.checkpoint import config_hash
from trainables.config import IDENTITY_OMITS_AT_DEFAULT, KEY_EXCLUDED, RESUME_IGNORES, TrialConfig

BASE = {"dataset": {"name": "cifar10"}, "model": {"family": "cifar_resnet", "depth": 110}, "train": {"epochs": 160}}


def test_the_derived_lists_are_the_ones_trial_keys_and_checkpoints_were_made_with():
    assert set(KEY_EXCLUDED) == {"checkpoint", "dataset.root", "dataset.download", "dataset.num_workers"}
    assert RESUME_IGNORES == frozenset({"checkpoint.every_epochs", "dataset.root", "dataset.download",
                                        "dataset.num_workers", "train.device", "train.compile",
                                        "train.eval_batch_size"})
    assert IDENTITY_OMITS_AT_DEFAULT == {"train.fidelity": "sweeper", "dataset.stand_in": False}


def test_run_settings_are_in_the_key_but_not_in_the_resume_check():
    assert settings.declared(TrialConfig, settings.RUN) == ("train.device", "train.compile", "train.eval_batch_size")


def test_every_setting_says_what_it_is():
    missing = [path for path, f, _ in settings.walk(TrialConfig) if not f.metadata.get("help")]
    assert missing == []


def merged(extra: dict) -> dict:
    def merge(a: dict, b: dict) -> dict:
        return {**a, **{k: merge(a.get(k, {}), v) if isinstance(v, dict) else v for k, v in b.items()}}
    return merge(BASE, extra)


@pytest.mark.parametrize("extra, key, digest", [
    ({}, "c388a34f49c01c54", "0a2e61d074f78adc3bf197fecba3f28214ed5cb2c74766427b00b2e61b48d8dc"),
    ({"dataset": {"root": "/data", "download": True, "num_workers": 2}, "checkpoint": {"every_epochs": 5}},
     "c388a34f49c01c54", "0a2e61d074f78adc3bf197fecba3f28214ed5cb2c74766427b00b2e61b48d8dc"),
    ({"train": {"device": "cuda", "compile": True, "eval_batch_size": 256}},
     "56326a5445fc51c0", "0a2e61d074f78adc3bf197fecba3f28214ed5cb2c74766427b00b2e61b48d8dc"),
    ({"train": {"fidelity": "open_lth"}},
     "9432524dd72b13ad", "20657c74e3b74a1907d4b1de0ebc7c0e9891e1b5073c402b54cd87995a0bba3f"),
    ({"mode": "bn_only", "seed": 3, "train": {"lr": 0.05, "lr_schedule": {"name": "step", "milestones": [80, 120]}}},
     "4ff5c787a1a5ab1c", "ebb3138565eaa26215f199f97e8b64708e1c4f5eb57d8a63cd2965171a3f2b89"),
])
def test_keys_and_checkpoint_hashes_are_the_ones_pinned_before_the_declarations(extra, key, digest):
    config = TrialConfig.from_dict(merged(extra))
    assert (trial_key(config.to_dict()), config_hash(config)) == (key, digest)


def test_runs_logged_before_a_later_setting_group_with_its_default():
    assert with_later_defaults({"train.lr": 0.1}) == {"train.lr": 0.1, "train.fidelity": "sweeper",
                                                      "dataset.stand_in": False}
    assert with_later_defaults({"train.fidelity": "open_lth"}) == {"train.fidelity": "open_lth", "dataset.stand_in": False}
    assert with_later_defaults({"sweeper.role": "sweep"}) == {"sweeper.role": "sweep"}


def test_a_declaration_is_checked():
    with pytest.raises(ValueError, match="identity"):
        settings.setting(1, help="x", identity="where")
    with pytest.raises(ValueError, match="plain default"):
        settings.setting(help="x", omit_at_default=True)
