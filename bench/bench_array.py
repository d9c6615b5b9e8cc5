"""Images/s of one K-member trial array against K solo trials, on this machine; and the launches
(non-view aten ops) of one training step.

    python bench/bench_array.py              # ResNet-20 and -56, K = 1, 2, 4, 8, batch 128
    python bench/bench_array.py --quick      # ResNet-20, batch 32, fewer steps (minutes on 2 cores)
    python bench/bench_array.py --count-ops  # non-view ops per step: solo, K = 4 and 16, ResNet-20

Three ways to train K same-shape trials, CIFAR shape (3 x 32 x 32, 10 classes, random pixels: a
step costs the same on any), SGD, fp32 on the CPU (the trial's precision elsewhere), timed as the
runner and the loop train (trainables.array.measure: whole epochs with data, loss and optimizer,
solo and array in interleaved rounds, medians):
- array: one fused network of K members (trainables/array), all cores;
- sequential: K solo trials one after another, all cores (its images/s is one solo trial's);
- processes: K solo trials at once, one process each (what `resources.gpu: 1/K` packs on a card;
  on the CPU the cores are split between them).
Printed per (depth, mode, K): images/s of each and the array's ratio to the other two, from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainables import loop  # noqa: E402
from trainables.array.measure import measure_array, members, ops_per_step, stand_in_data  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402


def config(depth: int, mode: str, batch: int, device: str, precision: str | None = None, compile: bool = False,
           seed: int = 0, side: int | None = None) -> TrialConfig:
    data = {"name": "synthetic", "image_size": side} if side else {"name": "cifar10"}
    return TrialConfig.from_dict({"dataset": data, "model": {"family": "cifar_resnet", "depth": depth},
                                  "train": {"epochs": 1, "batch_size": batch, "device": device, "compile": compile,
                                            "precision": precision or ("fp32" if device == "cpu" else "auto")},
                                  "mode": mode, "seed": seed})


def _child(args: argparse.Namespace) -> None:
    """One solo trial in its own process: waits for the common start, then times its epochs."""
    torch.set_num_threads(args.threads)
    cfg = config(args.depth, args.mode, args.batch, args.device, args.precision, args.compile, side=args.side)
    device = torch.device(args.device)
    setup = loop.build_setup(cfg, data=stand_in_data(cfg, device, args.steps))
    loop.train_epoch(setup, 1)  # warm-up (cudnn.benchmark, compile) before the common start
    time.sleep(max(0.0, args.start_at - time.time()))
    seconds = []
    for epoch in range(args.rounds):
        start = time.perf_counter()
        loop.train_epoch(setup, epoch + 2)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"images_per_s": args.batch * args.steps / statistics.median(seconds)}))


def processes(depth: int, mode: str, batch: int, k: int, steps: int, device: str, *, rounds: int = 3,
              precision: str | None = None, compile: bool = False, side: int | None = None,
              lead_s: float = 8.0) -> float:
    """Aggregate images/s of k solo trials trained at once in k processes (packed)."""
    threads = max(1, (os.cpu_count() or 1) // k)
    start_at = time.time() + lead_s + 2 * k  # every child imported torch and built its model by then
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--depth", str(depth), "--mode", mode,
               "--batch", str(batch), "--steps", str(steps), "--threads", str(threads), "--device", device,
               "--start-at", str(start_at), "--rounds", str(rounds)]
    command += (["--precision", precision] if precision else []) + (["--compile"] if compile else [])
    command += ["--side", str(side)] if side else []
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
                for _ in range(k)]
    outputs = [child.communicate()[0] for child in children]
    if any(child.returncode for child in children):
        raise RuntimeError(f"a packed solo trial failed (exit codes {[c.returncode for c in children]})")
    return sum(json.loads(out.strip().splitlines()[-1])["images_per_s"] for out in outputs)


def count_ops(modes: list[str]) -> None:
    """Non-view aten ops per training step through run_trial / run_array, ResNet-20."""
    def tiny(mode: str, seed: int) -> dict:
        return {"dataset": {"name": "synthetic", "image_size": 8, "test_size": 2}, "model": {"family": "cifar_resnet",
                "depth": 20}, "train": {"epochs": 1, "batch_size": 2, "device": "cpu", "precision": "fp32"},
                "mode": mode, "seed": seed}

    print("non-view aten ops per training step (run_trial / run_array, ResNet-20, CPU)")
    for mode in modes:
        solo = ops_per_step([tiny(mode, 0)])
        row = [f"{mode:<8} solo {solo:5.0f}"]
        for k in (4, 16):
            ops = ops_per_step([tiny(mode, s) for s in range(k)])
            row.append(f"K={k} {ops:5.0f} ({ops / solo:.2f}x solo)")
        print("  ".join(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--count-ops", action="store_true", help="print non-view ops per step and stop")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--depths", type=int, nargs="+", default=None)
    parser.add_argument("--modes", nargs="+", default=["full", "bn_only"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-processes", action="store_true", help="skip the K-processes column")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--side", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="steps per timed epoch")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved solo/array timing rounds (median)")
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batch = args.batch or (32 if args.quick else 128)
    args.steps = args.steps or (2 if args.quick else 5)
    args.rounds = args.rounds or (2 if args.quick else 3)
    if args.child:
        return _child(args)
    if args.count_ops:
        return count_ops(args.modes)
    depths = args.depths or ([20] if args.quick else [20, 56])
    print(f"bench_array on {args.device} ({os.cpu_count()} cores, {torch.get_num_threads()} threads, load "
          f"{os.getloadavg()[0]:.1f}), batch {args.batch}, median of {args.rounds} rounds of {args.steps}-step epochs "
          f"after 1 warm-up; images/s")
    print(f"{'model':<10} {'mode':<8} {'K':>3} {'array':>9} {'sequential':>11} {'processes':>10} "
          f"{'array/seq':>10} {'array/proc':>11}")
    for depth in depths:
        for mode in args.modes:
            cfg = config(depth, mode, args.batch, args.device)
            for k in args.ks:
                row = measure_array(members(cfg, k), rounds=args.rounds, steps=args.steps, device=args.device)
                sequential, fused = row["solo_images_per_s"], row["array_images_per_s"]
                procs = None if args.no_processes else \
                    processes(depth, mode, args.batch, k, args.steps, args.device, rounds=args.rounds)
                shown = f"{procs:10.0f}" if procs is not None else f"{'-':>10}"
                ratio = f"{fused / procs:11.2f}" if procs is not None else f"{'-':>11}"
                print(f"ResNet-{depth:<3} {mode:<8} {k:>3} {fused:9.0f} {sequential:11.0f} {shown} "
                      f"{fused / sequential:10.2f} {ratio}", flush=True)


if __name__ == "__main__":
    main()
