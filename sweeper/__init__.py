"""sweeper: one YAML study becomes a resumable Ray Tune sweep tracked in MLflow.

The small public surface; everything else lives in the modules named in docs/architecture.md.
"""

from sweeper.core.errors import SpecError
from sweeper.spec import Spec, load_spec
from sweeper.core.trial import Trial

__all__ = ["SpecError", "Spec", "Trial", "load_spec"]
