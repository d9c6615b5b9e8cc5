"""Images/s of one K-member trial array against K solo trials, on this machine.

    python bench/bench_array.py            # ResNet-20 and -56, K = 1, 2, 4, 8, batch 128
    python bench/bench_array.py --quick    # the same at batch 32, fewer steps (a few minutes on 2 cores)

Three ways to train K same-shape trials, CIFAR shape (3 x 32 x 32, 10 classes, random pixels: a
step costs the same on any), SGD, fp32 on the CPU (the trial's precision elsewhere):
- array: one fused network of K members (trainables/array), all cores;
- sequential: K solo trials one after another, all cores (its images/s is one solo trial's);
- processes: K solo trials at once, one process each, cores split between them.
Printed per (depth, mode, K): images/s of each and the array's ratio to the other two, from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainables.array.measure import _seconds_per_step, array_step, members, solo_step  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402


def config(depth: int, mode: str, batch: int, device: str) -> TrialConfig:
    return TrialConfig.from_dict({"dataset": {"name": "cifar10"}, "model": {"family": "cifar_resnet", "depth": depth},
                                  "train": {"epochs": 1, "batch_size": batch, "device": device,
                                            "precision": "fp32" if device == "cpu" else "auto"},
                                  "mode": mode, "seed": 0})


def _child(args: argparse.Namespace) -> None:
    """One solo trial in its own process: waits for the common start, then times its steps."""
    torch.set_num_threads(args.threads)
    cfg = config(args.depth, args.mode, args.batch, args.device)
    step = solo_step(cfg, torch.device(args.device))
    step()  # warm-up before the common start
    time.sleep(max(0.0, args.start_at - time.time()))
    seconds = _seconds_per_step(step, torch.device(args.device), args.steps, 0)
    print(json.dumps({"images_per_s": args.batch / seconds}))


def processes(depth: int, mode: str, batch: int, k: int, steps: int, device: str) -> float:
    """Aggregate images/s of k solo trials trained at once in k processes."""
    threads = max(1, (os.cpu_count() or 1) // k)
    start_at = time.time() + 8 + 2 * k  # every child imported torch and built its model by then
    children = [subprocess.Popen([sys.executable, __file__, "--child", "--depth", str(depth), "--mode", mode,
                                  "--batch", str(batch), "--steps", str(steps), "--threads", str(threads),
                                  "--device", device, "--start-at", str(start_at)],
                                 stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
                for _ in range(k)]
    rates = [json.loads(child.communicate()[0].strip().splitlines()[-1])["images_per_s"] for child in children]
    return sum(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--depths", type=int, nargs="+", default=[20, 56])
    parser.add_argument("--modes", nargs="+", default=["full", "bn_only"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-processes", action="store_true", help="skip the K-processes column")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batch = args.batch or (32 if args.quick else 128)
    args.steps = args.steps or (2 if args.quick else 5)
    if args.child:
        return _child(args)
    device = torch.device(args.device)
    print(f"bench_array on {args.device} ({os.cpu_count()} cores, {torch.get_num_threads()} threads), "
          f"batch {args.batch}, {args.steps} timed steps after 1 warm-up; images/s")
    print(f"{'model':<10} {'mode':<8} {'K':>3} {'array':>9} {'sequential':>11} {'processes':>10} "
          f"{'array/seq':>10} {'array/proc':>11}")
    for depth in args.depths:
        for mode in args.modes:
            cfg = config(depth, mode, args.batch, args.device)
            sequential = args.batch / _seconds_per_step(solo_step(cfg, device), device, args.steps, 1)
            for k in args.ks:
                fused = k * args.batch / _seconds_per_step(array_step(members(cfg, k), device), device, args.steps, 1)
                procs = None if args.no_processes or device.type != "cpu" else \
                    processes(depth, mode, args.batch, k, args.steps, args.device)
                shown = f"{procs:10.0f}" if procs is not None else f"{'-':>10}"
                ratio = f"{fused / procs:11.2f}" if procs is not None else f"{'-':>11}"
                print(f"ResNet-{depth:<3} {mode:<8} {k:>3} {fused:9.0f} {sequential:11.0f} {shown} "
                      f"{fused / sequential:10.2f} {ratio}", flush=True)


if __name__ == "__main__":
    main()
