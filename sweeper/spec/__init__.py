"""The study as data: a user's YAML read safely and validated before anything starts.

Owns the spec's schema (``schema``: ``Spec`` and its parts, ``load_spec``/``parse_spec``), safe
YAML with line numbers (``yamlio``), the axes and their expansion into trials (``axes``), and
pydantic's errors turned into one line naming file, key and line (``messages``). Imports
``sweeper.core`` and the torch-free parts of ``trainables`` only; nothing here talks to MLflow,
Ray or a device. The schema's public names are re-exported here: ``from sweeper.spec import Spec``.
"""

from sweeper.spec.schema import (ALGORITHMS, AXES, DISTRIBUTIONS, MAX_TRIALS, NAME_PATTERN, AshaScheduler, AxisName,
                                  CheckpointSettings, Distribution, FifoScheduler, GridAxis, GridBlock, Resources,
                                  Scheduler, Search, Spec, TrackingSettings, load_spec, parse_spec, resolve_axis)

__all__ = ["ALGORITHMS", "AXES", "DISTRIBUTIONS", "MAX_TRIALS", "NAME_PATTERN", "AshaScheduler", "AxisName", "CheckpointSettings", "Distribution", "FifoScheduler", "GridAxis", "GridBlock", "Resources", "Scheduler", "Search", "Spec", "TrackingSettings", "load_spec", "parse_spec", "resolve_axis"]
