"""The mode registry: one entry per mode in names.MODES, no fallback for a name it lacks."""

from __future__ import annotations

import pytest

from trainables.config import ModelConfig
from trainables.models import build_model
from trainables.modes import MODE_REGISTRY, apply_mode
from trainables.names import MODES


def test_the_registry_holds_exactly_the_shared_mode_names():
    assert tuple(MODE_REGISTRY) == MODES  # same names, same order


def test_an_unknown_mode_raises_instead_of_training_as_another():
    model = build_model(ModelConfig("cifar_resnet", 8), num_classes=10, seed=0)
    with pytest.raises(ValueError, match="unknown mode 'bn_plus'"):
        apply_mode(model, "bn_plus", seed=0)
