"""gpu_check's array section (issue 21): one K-member trial array against solo trials on this device.

- throughput: images/s of ResNet-20 (bn_only and full, the trial's precision: bf16 on CUDA) alone
  and as K = 4, 8, 16 member arrays (members differ in seed), and the array's speedup;
- equivalence, in fp32 and bf16: four members with mixed modes, seeds and lrs take one step as an
  array and each alone (the loop's own _train_epoch) on the device; every trained tensor's largest
  difference (relative to the tensor's scale) and frozen tensors bitwise unchanged.
  On CUDA "fp32" allows TF32 (precision.py), so fp32 agrees to about 1e-3, not 1e-5.
--quick on the CPU: ResNet-8 at 16 px, batch 16, K = 1 and 4.
"""

from __future__ import annotations

from typing import Any

import torch

from gpu_check_sections import Plan, _guard
from trainables import loop
from trainables.array.measure import measure_array
from trainables.array.runner import Member, _Array, _train_epoch
from trainables.config import TrialConfig

# (mode, seed, lr): what the equivalence check's members differ in
MEMBERS = (("full", 0, 0.1), ("bn_only", 1, 0.5), ("random_params", 2, 0.25), ("bn_output", 3, 0.5))
TOLERANCE = {"fp32": 1e-5, "fp32_tf32": 2e-3, "bf16": 5e-2}  # pass bounds of the equivalence check


def _config(plan: Plan, mode: str, seed: int, lr: float, precision: str, *, depth: int | None = None,
            batch: int | None = None, steps: int = 1) -> dict:
    batch = batch or (16 if plan.quick else 128)
    return {"dataset": {"name": "synthetic", "image_size": 16 if plan.quick else 32, "train_size": batch * steps,
                        "test_size": batch},
            "model": {"family": "cifar_resnet", "depth": depth or (8 if plan.quick else 20)},
            "train": {"epochs": 1, "batch_size": batch, "lr": lr, "precision": precision,
                      "device": plan.device.type, "augment": False},
            "mode": mode, "seed": seed}


def throughput(plan: Plan) -> dict:
    ks = (4,) if plan.quick else (4, 8, 16)
    steps, warmup = (2, 1) if plan.quick else (10, 3)
    rows = []
    for mode in ("bn_only", "full"):
        config = _config(plan, mode, 0, 0.1, "auto")
        for k in ks:
            if not plan.afford(15):
                rows.append({"mode": mode, "k": k, "skipped": "time budget"})
                continue
            row = _guard(lambda: measure_array(config, k, steps=steps, warmup=warmup, device=plan.device))
            rows.append({"mode": mode, **row, "k": k})
    return {"rows": rows, "passed": any("speedup" in r for r in rows)}


def equivalence(plan: Plan, precision: str) -> dict:
    configs = [TrialConfig.from_dict(_config(plan, m, s, lr, precision, batch=16 if plan.quick else 64))
               for m, s, lr in MEMBERS]
    first = loop._build(configs[0])
    setups = [first] + [loop._build(c, data=first.data) for c in configs[1:]]
    before = [{n: p.detach().clone() for n, p in s.model.named_parameters()} for s in setups]
    array = _Array([Member(c, s, None, None) for c, s in zip(configs, setups)])
    _train_epoch(array, 1)  # one step: train_size == batch_size
    fused = dict(array.model.named_parameters())
    worst, frozen = 0.0, True
    per_member = {}
    for index, config in enumerate(configs):
        solo = loop._build(config, data=first.data)
        loop._train_epoch(solo, 1)
        member_worst = 0.0
        for name, param in solo.model.named_parameters():
            got = fused[name][index].detach()
            if param.requires_grad:
                scale = param.detach().abs().max().clamp_min(1e-3)
                member_worst = max(member_worst, float((got - param.detach()).abs().max() / scale))
            else:
                frozen &= bool(torch.equal(got, before[index][name]) and torch.equal(param, before[index][name]))
        per_member[config.mode] = member_worst
        worst = max(worst, member_worst)
    bound = TOLERANCE["bf16" if precision == "bf16" else "fp32_tf32" if plan.device.type == "cuda" else "fp32"]
    return {"precision": precision, "max_rel_diff": worst, "per_member": per_member, "bound": bound,
            "frozen_unchanged": frozen, "passed": frozen and worst <= bound}


def array(plan: Plan) -> dict:
    out: dict[str, Any] = {"throughput": _guard(lambda: throughput(plan))}
    for precision in ("fp32", "bf16"):
        out[f"equivalence_{precision}"] = _guard(lambda: equivalence(plan, precision))
    out["passed"] = all(v.get("passed") for v in out.values())
    return out


def detail(s: dict) -> str:
    """The section's line in gpu_check.md."""
    parts = []
    for row in s.get("throughput", {}).get("rows", []):
        if "speedup" in row:
            parts.append(f"{row['mode']} K={row['k']}: {row['array_images_per_s']:,.0f} vs solo "
                         f"{row['solo_images_per_s']:,.0f} images/s ({row['speedup']:.2f}x)")
    for precision in ("fp32", "bf16"):
        e = s.get(f"equivalence_{precision}", {})
        if "max_rel_diff" in e:
            parts.append(f"{precision} member vs solo max rel diff {e['max_rel_diff']:.1e} (bound {e['bound']:g}), "
                         f"frozen unchanged {e['frozen_unchanged']}")
        elif "error" in e:
            parts.append(f"{precision}: {e['error']}")
    return "; ".join(parts)
