"""What one trial travels with from the plan to its worker: plain, picklable data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrialPayload:
    key: str
    name: str
    config: dict
    params: dict
    tags: dict = field(default_factory=dict)  # extra child-run tags (sampled trials: their origin)


def payload_dict(payload: TrialPayload) -> dict[str, Any]:
    return {"key": payload.key, "name": payload.name, "config": payload.config, "params": payload.params,
            "tags": payload.tags}
