"""What ``train.fidelity`` changes: the small conventions where open_lth (the paper's code) and
this project part ways, each worth well under a point of accuracy (docs/fidelity.md).

``sweeper`` (the default) keeps this project's conventions; ``open_lth`` follows the paper's code
so that a replication can match it detail for detail. Everything else is the same under both.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainables.config import FIDELITIES


@dataclass(frozen=True)
class Conventions:
    cifar_normalisation: str  # "own": CIFAR's mean/std; "imagenet": ImageNet's, as open_lth's cifar10.py
    bias_init: str  # "zeros", or "uniform": PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    warmup_from_zero: bool  # warm-up factor step / warmup_steps (open_lth: lr 0 at the first step)


CONVENTIONS = {
    "sweeper": Conventions(cifar_normalisation="own", bias_init="zeros", warmup_from_zero=False),
    "open_lth": Conventions(cifar_normalisation="imagenet", bias_init="uniform", warmup_from_zero=True),
}
assert tuple(CONVENTIONS) == FIDELITIES, "every train.fidelity value needs its conventions here"


def conventions(fidelity: str) -> Conventions:
    if fidelity not in CONVENTIONS:
        raise ValueError(f"unknown fidelity {fidelity!r}; one of {', '.join(CONVENTIONS)}")
    return CONVENTIONS[fidelity]
