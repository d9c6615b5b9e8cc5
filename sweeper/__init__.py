"""sweeper: one YAML study becomes a resumable Ray Tune sweep tracked in MLflow.

The small public surface; everything else lives in the modules named in docs/architecture.md.
From Python (docs/python.md): ``load_results``, ``load_history``, ``best``, ``load_model`` and ``run``.
"""

from sweeper.core import logs as _logs  # noqa: F401 - the namespace's NullHandler, before any module logs
from sweeper.api import RunResult, best, load_history, load_model, load_results, run
from sweeper.core.errors import SpecError, SweepError
from sweeper.core.trial import Trial
from sweeper.spec import Spec, load_spec

__all__ = ["RunResult", "SpecError", "Spec", "SweepError", "Trial", "best", "load_history", "load_model", "load_results",
           "load_spec", "run"]
