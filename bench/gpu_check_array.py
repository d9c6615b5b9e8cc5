"""gpu_check's array section: a K-member trial array against what a user would otherwise run.

- throughput: per (model, precision, eager/compiled, mode, K) the array's images/s (one fused
  network, trainables/array, timed as the runner trains: data, loss, optimizer) against K solo
  trials running at once on the same device, one process each (what ``resources.gpu: 1/K`` packs
  on a card: "packed"), and against one solo trial alone; ``array / packed`` is the goal's figure.
  On a GPU: ResNet-20 and -56 at width 1, bf16 and fp32, eager and torch.compile, bn_only and full,
  K = 4, 8, 16, 32, the most telling rows first (ResNet-20, bf16, eager); what the time budget
  cannot reach is listed as skipped.
- vmap: torch.func's route (stack_module_state + vmap) against the fused layers, forward and
  backward, seconds per step (bench/bench_array_vmap.py's figure, recorded here).
- equivalence, in fp32 and bf16: four members with mixed modes, seeds and lrs, every BN and fc bias
  non-zero, take one step as an array and each alone (the loop's own train_epoch) on the device;
  every trained tensor's largest difference (relative to the tensor's scale) and frozen tensors
  bitwise unchanged. On CUDA "fp32" allows TF32 (precision.py), so fp32 agrees to about 1e-3.
--quick on the CPU: ResNet-8 at 16 px, batch 16, fp32 eager, K = 4.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from bench_array import config as bench_config
from bench_array import processes
from bench_array_vmap import compare as vmap_compare
from gpu_check_sections import Plan, _guard
from trainables import loop
from trainables.array.measure import measure_array, members
from trainables.array.runner import Member, Array, train_epoch
from trainables.config import TrialConfig

# (mode, seed, lr): what the equivalence check's members differ in
MEMBERS = (("full", 0, 0.1), ("bn_only", 1, 0.5), ("random_params", 2, 0.25), ("bn_output", 3, 0.5))
TOLERANCE = {"fp32": 1e-5, "fp32_tf32": 2e-3, "bf16": 5e-2}  # pass bounds of the equivalence check
SECTION_SHARE_S = 200.0  # on a GPU, at most this much of the run's budget for the throughput rows


def _config(plan: Plan, mode: str, seed: int, lr: float, precision: str, *, batch: int | None = None) -> dict:
    batch = batch or (16 if plan.quick else 128)
    return {"dataset": {"name": "synthetic", "image_size": 16 if plan.quick else 32, "train_size": batch,
                        "test_size": batch},
            "model": {"family": "cifar_resnet", "depth": 8 if plan.quick else 20},
            "train": {"epochs": 1, "batch_size": batch, "lr": lr, "precision": precision,
                      "device": plan.device.type, "augment": False},
            "mode": mode, "seed": seed}


def _grid(plan: Plan) -> list[tuple[int, str, bool, str, int]]:
    if plan.quick:
        return [(8, "fp32", False, mode, 4) for mode in ("bn_only", "full")]
    return [(depth, precision, compiled, mode, k) for depth in (20, 56) for precision in ("bf16", "fp32")
            for compiled in (False, True) for mode in ("bn_only", "full") for k in (4, 8, 16, 32)]


def _row(plan: Plan, depth: int, precision: str, compiled: bool, mode: str, k: int) -> dict:
    batch, side = (16, 16) if plan.quick else (128, 32)
    steps, rounds = (1, 2) if plan.quick else (5, 3)
    device = plan.device.type
    cfg = bench_config(depth, mode, batch, device, precision, compiled, side=side)
    row = measure_array(members(cfg, k), rounds=rounds, steps=steps, device=plan.device)
    packed = processes(depth, mode, batch, k, steps, device, rounds=rounds, precision=precision, compile=compiled,
                       side=side, lead_s=3.0 if plan.quick else 8.0)
    alone = row["solo_images_per_s"]
    return {"array_images_per_s": row["array_images_per_s"], "packed_images_per_s": packed,
            "alone_images_per_s": alone, "array_over_packed": row["array_images_per_s"] / packed,
            "array_over_alone": row["array_images_per_s"] / alone, "noise": row["noise"]}


def throughput(plan: Plan) -> dict:
    rows = []
    stop = time.monotonic() + (plan.left if plan.quick else min(SECTION_SHARE_S, plan.left - 60))
    for depth, precision, compiled, mode, k in _grid(plan):
        head = {"depth": depth, "precision": precision, "compiled": compiled, "mode": mode, "k": k}
        need = 10 + k * (1 if plan.quick else 2) + (30 if compiled else 0)
        if time.monotonic() + need > stop or not plan.afford(need):
            rows.append({**head, "skipped": "time budget"})
            continue
        rows.append({**head, **_guard(lambda: _row(plan, depth, precision, compiled, mode, k))})
    return {"rows": rows, "passed": any("array_over_packed" in r for r in rows)}


def vmap(plan: Plan) -> dict:
    rows = []
    for k in (4,) if plan.quick else (4, 8, 16):
        if not plan.afford(10):
            rows.append({"k": k, "skipped": "time budget"})
            continue
        vmap_s, fused_s = vmap_compare(8 if plan.quick else 20, k, 8 if plan.quick else 128, 1 if plan.quick else 5,
                                       plan.device)
        rows.append({"k": k, "vmap_s": vmap_s, "fused_s": fused_s, "vmap_over_fused": vmap_s / fused_s})
    return {"rows": rows, "passed": any("vmap_s" in r for r in rows)}


@torch.no_grad()
def _nonzero_biases(model: torch.nn.Module, seed: int) -> None:
    """Every BN and fc bias drawn away from zero: a bias a path drops or mis-casts shows."""
    generator = torch.Generator().manual_seed(1000 + seed)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.Linear)) and module.bias is not None:
            module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.5)


def equivalence(plan: Plan, precision: str) -> dict:
    configs = [TrialConfig.from_dict(_config(plan, m, s, lr, precision, batch=16 if plan.quick else 64))
               for m, s, lr in MEMBERS]
    first = loop.build_setup(configs[0])
    setups = [first] + [loop.build_setup(c, data=first.data) for c in configs[1:]]
    for setup, config in zip(setups, configs):
        _nonzero_biases(setup.model, config.seed)
    before = [{n: p.detach().clone() for n, p in s.model.named_parameters()} for s in setups]
    array = Array([Member(c, s, None, None) for c, s in zip(configs, setups)])
    train_epoch(array, 1)  # one step: train_size == batch_size
    fused = dict(array.model.named_parameters())
    worst, frozen = 0.0, True
    per_member = {}
    for index, config in enumerate(configs):
        solo = loop.build_setup(config, data=first.data)
        _nonzero_biases(solo.model, config.seed)
        loop.train_epoch(solo, 1)
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
            "frozen_unchanged": frozen, "nonzero_biases": True, "passed": frozen and worst <= bound}


def array(plan: Plan) -> dict:
    out: dict[str, Any] = {}
    for precision in ("fp32", "bf16"):  # the decisive check first
        out[f"equivalence_{precision}"] = _guard(lambda: equivalence(plan, precision))
    out["throughput"] = _guard(lambda: throughput(plan))
    out["vmap"] = _guard(lambda: vmap(plan))
    out["passed"] = all(v.get("passed") for v in out.values())
    return out


def detail(s: dict) -> str:
    """The section's line in gpu_check.md (the rows' table follows it)."""
    parts = []
    for precision in ("fp32", "bf16"):
        e = s.get(f"equivalence_{precision}", {})
        if "max_rel_diff" in e:
            parts.append(f"{precision} member vs solo (non-zero biases) max rel diff {e['max_rel_diff']:.1e} "
                         f"(bound {e['bound']:g}), frozen unchanged {e['frozen_unchanged']}")
        elif "error" in e:
            parts.append(f"{precision}: {e['error']}")
    done = [r for r in s.get("throughput", {}).get("rows", []) if "array_over_packed" in r]
    if done:
        best = max(done, key=lambda r: r["array_over_packed"])
        parts.append(f"best array / packed {best['array_over_packed']:.2f}x (ResNet-{best['depth']} {best['mode']} "
                     f"{best['precision']} K={best['k']}); {len(done)} rows measured")
    for r in s.get("vmap", {}).get("rows", []):
        if "vmap_s" in r:
            parts.append(f"vmap K={r['k']}: {r['vmap_s'] * 1e3:.0f} ms vs fused {r['fused_s'] * 1e3:.0f} ms")
    return "; ".join(parts)


def printed(s: dict) -> list[str]:
    """The lines the run prints under the section's verdict: the equivalence verdicts and the
    throughput table, so that a run's output alone (all a device run may bring back) carries them."""
    lines = []
    for precision in ("fp32", "bf16"):
        e = s.get(f"equivalence_{precision}")
        if e is None:
            continue
        if "max_rel_diff" in e:
            lines.append(f"equivalence {precision}: {'passed' if e['passed'] else 'FAILED'}: member vs solo "
                         f"(non-zero biases) max rel diff {e['max_rel_diff']:.1e} (bound {e['bound']:g}), "
                         f"frozen unchanged {e['frozen_unchanged']}")
        else:
            lines.append(f"equivalence {precision}: FAILED: {e.get('error') or e.get('skipped')}")
    return lines + [line for line in table(s) if line]


def table(s: dict) -> list[str]:
    """The throughput rows as a markdown table: array / packed per row."""
    rows = s.get("throughput", {}).get("rows", [])
    if not rows:
        return []
    lines = ["", "**array** (images/s; packed: K solo trials at once, one process each; alone: one solo trial)", "",
             "| model | precision | compiled | mode | K | array | packed | alone | array / packed | array / alone |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| ResNet-{r['depth']} | {r['precision']} | {r['compiled']} | {r['mode']} | {r['k']} |"
        if "array_over_packed" in r:
            lines.append(f"{head} {r['array_images_per_s']:,.0f} | {r['packed_images_per_s']:,.0f} | "
                         f"{r['alone_images_per_s']:,.0f} | {r['array_over_packed']:.2f} | {r['array_over_alone']:.2f} |")
        else:
            lines.append(f"{head} {r.get('skipped') or r.get('error')} | | | | |")
    return lines
