"""The GPU path in one prepared run: correctness, throughput, packing and memory on this device.

    python bench/gpu_check.py [--device cuda] [--out DIR] [--budget-s 420]   # on a GPU: < 8 min
    python bench/gpu_check.py --device cpu --quick --out DIR                 # the same, small: < 3 min

Writes DIR/gpu_check.json and DIR/gpu_check.md (card, driver, torch and CUDA versions first).
Sections, in the order they run (the cheap, decisive ones first, torch.compile last):

- correctness (eager, then compiled): every mode, a few hundred bf16 + channels_last steps on
  synthetic CIFAR-shaped data: the loss falls, frozen tensors are bitwise unchanged on the device,
  random_params' masked entries are unchanged, the trainable ones moved.
- divergence: lr=1e6 stops within one check interval of the first non-finite loss; status diverged.
- checkpoint: written on the device, resumed there, loaded on the CPU; with deterministic
  algorithms on, the resumed run equals the uninterrupted one bit for bit.
- data_pipeline: the on-device CIFAR pipeline's images/s.
- throughput (eager, then compiled): ResNet-20/56/110 at batch 128, full vs bn_only, images/s and
  the share of the card's dense bf16 peak (3 x forward FLOPs per image); loop_overhead: the real
  loop's images/s over bare steps.
- array: a K-member trial array (trainables/array) against K solo trials running at once on the
  same card (one process each, as `resources.gpu: 1/K` packs them) and against one solo trial
  alone, K = 4, 8, 16, 32, ResNet-20/56, bf16/fp32, eager/compiled, bn_only/full, "array / packed"
  per row; vmap's figures beside the fused layers'; one step of four mixed members (non-zero
  biases) equal to their solo steps in fp32 and bf16.
- memory: peak memory of one full-training step of ResNet-866, ResNet-14 w32, VGG-19 and ImageNet
  ResNet-50/200 at their studies' batch sizes and precision, and how many fit on this card.
- packing: a real `sweeper run` (local Ray, sqlite MLflow) of 8 short ResNet-20 bn_only trials at
  gpu 1, 0.25 and 0.125, with every trial's device read back from its MLflow tag.

Any section that fails records its error and the run goes on. A time budget skips (and says so)
what would not finish in time. On the CPU (``--device cpu --quick``) the sizes shrink, compile is
tried on one mode, packing runs 4 trials at cpu 1 and 0.5, and the memory section steps small
stand-ins of the same families (named in the table) without measuring memory (no allocator stats).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, before CUDA starts

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_check_sections as sections
from gpu_check_array import array as array_section
from gpu_check_array import detail as array_detail
from gpu_check_array import printed as array_printed
from gpu_check_array import table as array_table
from gpu_check_packing import packing

SECTIONS = (
    ("correctness_eager", lambda p: sections.correctness(p, compile=False), 30),
    ("divergence", sections.divergence, 15),
    ("checkpoint", sections.checkpoint_resume, 20),
    ("data_pipeline", sections.data_pipeline, 10),
    ("throughput_eager", lambda p: sections.throughput(p, compile=False), 30),
    ("loop_overhead", sections.loop_overhead, 15),
    ("array", array_section, 40),
    ("memory", sections.memory, 30),
    ("packing", packing, 60),
    ("correctness_compiled", lambda p: sections.correctness(p, compile=True), 60),
    ("throughput_compiled", lambda p: sections.throughput(p, compile=True), 60),
)
PRINTED = {"array": array_printed}  # a device run may bring back only its output: these results print too


def environment(device: torch.device) -> dict:
    env = {"device": device.type, "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version(), "python": platform.python_version(),
           "cpu_cores": os.cpu_count(), "card": "cpu", "driver": None}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(card=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                   compute_capability=f"{props.major}.{props.minor}", cards_visible=torch.cuda.device_count())
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=20).stdout.split()[0]
        except (OSError, IndexError, subprocess.SubprocessError) as e:
            env["driver"] = f"unknown ({type(e).__name__})"
    return env


def run(device: torch.device, quick: bool, out: Path, budget_s: float, only: list[str] | None = None) -> dict:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    plan = sections.Plan(device=device, quick=quick, deadline=started + budget_s, workdir=workdir)
    report = {"environment": environment(device), "quick": quick, "budget_s": budget_s}
    print(f"gpu_check on {report['environment']['card']} ({device}), budget {budget_s:.0f} s", flush=True)
    for name, check, needs in SECTIONS:
        if only and name not in only:
            continue
        t0 = time.monotonic()
        if not plan.afford(needs):
            result = {"skipped": f"time budget: {plan.left:.0f} s left, the section needs about {needs} s"}
        else:
            result = sections._guard(lambda: check(plan))
        result["seconds"] = round(time.monotonic() - t0, 1)
        report[name] = result
        verdict = "skipped" if "skipped" in result else ("ok" if result.get("passed") else "FAILED")
        print(f"  {name:<22} {verdict:<8} {result['seconds']:6.1f} s", flush=True)
        for line in PRINTED.get(name, lambda _: [])(result):
            print(f"    {line}", flush=True)
        _write(report, out)  # after every section: a run cut short still leaves what it got
    report["notes"] = plan.notes
    report["total_s"] = round(time.monotonic() - started, 1)
    _write(report, out)
    return report


def _write(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gpu_check.md").write_text(markdown(report))


def _f(value, spec: str = ".3g") -> str:
    return "-" if value is None else (format(value, spec) if isinstance(value, (int, float)) else str(value))


def markdown(r: dict) -> str:
    e = r["environment"]
    lines = [f"# gpu_check: {e['card']}", "",
             f"card {e['card']}, driver {e.get('driver')}, torch {e['torch']}, CUDA {e['cuda']}, cudnn {e['cudnn']}, "
             f"python {e['python']}{' (--quick)' if r.get('quick') else ''}", "",
             "| section | verdict | seconds | details |", "|---|---|---|---|"]
    for name, *_ in SECTIONS:
        s = r.get(name)
        if s is None:
            continue
        verdict = "skipped" if "skipped" in s else ("ok" if s.get("passed") else "FAILED")
        detail = s.get("skipped") or s.get("error") or _detail(name, s)
        lines.append(f"| {name} | {verdict} | {s.get('seconds')} | {detail} |")
    for name in ("throughput_eager", "throughput_compiled"):
        rows = r.get(name, {}).get("rows", [])
        if rows:
            lines += ["", f"**{name}** ({r[name].get('share_note')})", "",
                      "| model | mode | images/s | ms/step | TFLOP/s | share of bf16 peak |", "|---|---|---|---|---|---|"]
            lines += [f"| ResNet-{x['depth']} | {x['mode']} | {_f(x.get('images_per_s'), ',.0f')} | "
                      f"{_f(x.get('ms_per_step'), '.2f')} | {_f(x.get('tflops_per_s'))} | "
                      f"{_f(x.get('share_of_bf16_peak'), '.1%')} |" if "skipped" not in x else
                      f"| ResNet-{x['depth']} | {x['mode']} | skipped: {x['skipped']} | | | |" for x in rows]
    lines += array_table(r.get("array", {}))
    rows = r.get("memory", {}).get("rows", [])
    if rows:
        lines += ["", "**memory** (one full-training step at the study's batch size)", "",
                  "| model | batch run (study) | precision | peak GiB | trials per card |", "|---|---|---|---|---|"]
        lines += [f"| {x['model']}{' (quick: ' + x['quick_stand_in'] + ')' if 'quick_stand_in' in x else ''} | "
                  f"{x.get('batch')} ({x.get('study_batch')}) | {x.get('precision')} | "
                  f"{_f(x.get('peak_gib'), '.2f')} | {_f(x.get('trials_per_card'))} |"
                  + (f" {x['error']}" if "error" in x else "") if "skipped" not in x else
                  f"| {x['model']} | skipped: {x['skipped']} | | | |" for x in rows]
    runs = r.get("packing", {}).get("runs", [])
    if runs:
        lines += ["", f"**packing** ({r['packing'].get('trials')} trials, resources.{r['packing'].get('resource')})", "",
                  "| fraction | finished | aggregate images/s (epochs' span) | sweep wall s | devices |",
                  "|---|---|---|---|---|"]
        lines += [f"| {x.get('fraction')} | {x.get('trials_finished')} | {_f(x.get('aggregate_images_per_s'), ',.0f')} | "
                  f"{_f(x.get('sweep_wall_s'), '.0f')} | {'; '.join(x.get('devices', [])) or x.get('error', '')} |"
                  for x in runs]
    if r.get("notes"):
        lines += [""] + [f"- {n}" for n in r["notes"]]
    return "\n".join(lines) + "\n"


def _detail(name: str, s: dict) -> str:
    if name.startswith("correctness"):
        return "; ".join(f"{m}: loss {_f(v.get('train_loss_first_epoch'))}->{_f(v.get('train_loss_last_epoch'))}, "
                         f"frozen unchanged {v.get('frozen_unchanged')}" + (", masked unchanged "
                         f"{v.get('masked_entries_unchanged')}" if v.get("masked_tensors") else "")
                         if "skipped" not in v else f"{m}: skipped" for m, v in s.items() if isinstance(v, dict))
    if name == "divergence":
        return (f"first non-finite loss at step {s.get('first_nonfinite_step')}, stopped at {s.get('detected_at_step')} "
                f"(checks every {s.get('check_every')}), status {s.get('status')}")
    if name == "checkpoint":
        return (f"bitwise {s.get('bitwise_equal')} (max diff {_f(s.get('max_abs_weight_diff'))}), same history "
                f"{s.get('same_history')}, loads on cpu {s.get('loads_on_cpu')}")
    if name == "data_pipeline":
        return f"{_f(s.get('images_per_s'), ',.0f')} images/s on {s.get('on')}"
    if name == "array":
        return array_detail(s)
    if name == "loop_overhead":
        return (f"loop {_f(s.get('loop_images_per_s'), ',.0f')} images/s, bare steps "
                f"{_f(s.get('bare_step_images_per_s'), ',.0f')}: {_f(s.get('loop_over_bare'), '.2f')}x")
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="small sizes (the CPU check that keeps this script alive)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check"))
    parser.add_argument("--budget-s", type=float, default=None, help="default 420 (170 with --quick)")
    parser.add_argument("--only", nargs="+", choices=[name for name, *_ in SECTIONS], default=None,
                        help="run just these sections (a rerun of what failed)")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: --device cuda but torch sees no CUDA device (use --device cpu --quick)")
    if args.device == "cpu":
        # one thread: on a busy shared CPU two intra-op threads spin for cores, many times slower
        torch.set_num_threads(1)
    budget = args.budget_s if args.budget_s is not None else (170.0 if args.quick else 420.0)
    report = run(torch.device(args.device), args.quick, args.out, budget, args.only)
    print(f"wrote {args.out / 'gpu_check.json'} and gpu_check.md in {report['total_s']} s")


if __name__ == "__main__":
    main()
