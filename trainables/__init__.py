"""One trial of the BN-only study in plain PyTorch: no Ray, no MLflow.

Public surface: ``run_trial`` (train one trial, report per epoch, checkpoint, return final
metrics), ``TrialConfig`` and ``ConfigError`` (the validated configuration), ``load_model`` (a
trained model rebuilt from a checkpoint folder) and ``CheckpointError``.

The torch-heavy names load on first use, so that ``import trainables.config`` (what the sweep
layer needs to validate a spec) does not pay for torch.
"""

from trainables.config import ConfigError, TrialConfig

__all__ = ["run_trial", "load_model", "TrialConfig", "ConfigError", "CheckpointError"]


def __getattr__(name: str):
    if name == "run_trial":
        from trainables.loop import run_trial

        return run_trial
    if name in ("load_model", "CheckpointError"):
        from trainables import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'trainables' has no attribute {name!r}")
