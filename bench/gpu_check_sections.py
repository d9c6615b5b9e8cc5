"""The checks of bench/gpu_check.py, one function per section. Each takes a ``Plan`` (device,
sizes, budget) and returns a JSON-able dict; a check's verdict is in ``passed``. They use the
loop's own builders (``trainables.loop.build_setup``, ``train_epoch``) so that what is checked is
what a trial runs, not a copy of it."""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from sweeper.plan.measure import GIB, sync, time_step, training_step, trials_per_card
from trainables import loop
from trainables.names import ENDED_AT
from trainables.config import ModelConfig, TrialConfig
from trainables.names import MODES
from trainables.models import flops_per_image

ROOT = Path(__file__).resolve().parents[1]

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, in TFLOP/s, matched on the
# card name in this order (the first pattern found wins). A card not listed gets no share.
DENSE_BF16_PEAK_TFLOPS = (
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0),
    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10G", None), ("A10", 125.0),
)
# airbench's share of an A100's bf16 peak on a ResNet-sized CIFAR net: the figure to compare with
AIRBENCH_SHARE = (0.30, 0.36)


@dataclass
class Plan:
    device: torch.device
    quick: bool
    deadline: float  # time.monotonic() past which optional items are skipped
    workdir: Path
    notes: list[str] = field(default_factory=list)

    @property
    def left(self) -> float:
        return self.deadline - time.monotonic()

    def afford(self, seconds: float) -> bool:
        return self.left > seconds


def peak_bf16_tflops(name: str) -> float | None:
    for pattern, peak in DENSE_BF16_PEAK_TFLOPS:
        if pattern in name:
            return peak
    return None


def _trial(plan: Plan, mode: str, *, compile: bool = False, lr: float = 0.1, epochs: int = 3,
           steps_per_epoch: int | None = None) -> dict:
    """A trial on synthetic CIFAR-shaped data: 32 px, 10 classes (16 px in --quick)."""
    batch = 32 if plan.quick else 128
    steps = steps_per_epoch or (6 if plan.quick else 100)
    return {"dataset": {"name": "synthetic", "image_size": 16 if plan.quick else 32,
                        "train_size": batch * steps, "test_size": 2 * batch},
            "model": {"family": "cifar_resnet", "depth": 8 if plan.quick else 20},
            "train": {"epochs": epochs, "batch_size": batch, "lr": lr, "precision": "bf16",
                      "device": plan.device.type, "compile": compile, "eval_batch_size": 2 * batch,
                      "lr_schedule": {"name": "cosine"}},
            "mode": mode, "seed": 0, "checkpoint": {"every_epochs": 1}}


# --- correctness ------------------------------------------------------------------------------


def correctness_one(plan: Plan, mode: str, compile: bool) -> dict:
    """A few hundred steps: loss falls, frozen tensors and masked entries do not change a bit."""
    lr = 0.1 if mode == "full" else 0.5  # few trainable weights need and tolerate a larger step
    setup = loop.build_setup(TrialConfig.from_dict(_trial(plan, mode, compile=compile, lr=lr)))
    before = {n: p.detach().clone() for n, p in setup.model.named_parameters()}
    losses = []
    for epoch in range(1, setup.config.train.epochs + 1):
        metrics = loop.train_epoch(setup, epoch)
        if metrics is None:
            return {"passed": False, "error": f"loss stopped being finite in epoch {epoch}"}
        losses.append(metrics["train_loss"])
    frozen, masked, trained = [], [], []
    for name, p in setup.model.named_parameters():
        if name in setup.trainability.masks:
            keep = setup.trainability.masks[name].to(p.device)
            masked.append(torch.equal(p.detach()[~keep], before[name][~keep]))
            trained.append(not torch.equal(p.detach()[keep], before[name][keep]))
        elif not p.requires_grad:
            frozen.append(torch.equal(p.detach(), before[name]))
        else:
            trained.append(not torch.equal(p.detach(), before[name]))
    result = {
        "steps": setup.scheduler.steps_done, "precision": "bf16", "channels_last": setup.channels_last,
        "compiled": compile, "train_loss_first_epoch": losses[0], "train_loss_last_epoch": losses[-1],
        "loss_fell": losses[-1] < losses[0], "frozen_tensors": len(frozen), "frozen_unchanged": all(frozen),
        "masked_tensors": len(masked), "masked_entries_unchanged": all(masked),
        "trainable_changed": bool(trained) and all(trained),
        "weights_on": str(next(setup.model.parameters()).device),
    }
    result["passed"] = (result["loss_fell"] and result["frozen_unchanged"] and result["masked_entries_unchanged"]
                        and result["trainable_changed"] and result["weights_on"].startswith(plan.device.type))
    return result


def correctness(plan: Plan, compile: bool) -> dict:
    # compiled: the paper's mode and the masked one (gradient hooks under compile) first, in case
    # the budget runs out
    modes = ("bn_only", "random_params", "full", "output_only", "bn_output") if compile else MODES
    assert set(modes) == set(MODES)
    if compile and plan.quick and plan.device.type == "cpu":
        modes = ("bn_only",)  # inductor on a 2-core CPU takes about a minute per mode
        plan.notes.append("--quick on the CPU compiles bn_only only (inductor takes about a minute per mode)")
    out: dict[str, Any] = {}
    for mode in modes:
        if compile and not plan.afford(90):
            out[mode] = {"skipped": "time budget"}
            continue
        out[mode] = _guard(lambda: correctness_one(plan, mode, compile))
    ran = [v for v in out.values() if "skipped" not in v]
    return {**out, "passed": bool(ran) and all(v.get("passed") for v in ran),
            **({} if ran else {"skipped": "time budget"})}


# --- divergence --------------------------------------------------------------------------------


def divergence(plan: Plan) -> dict:
    """An absurd lr: the epoch stops within one check interval of the first non-finite loss, and
    run_trial ends with status diverged."""
    steps = 12 if plan.quick else 100

    def detected_at(check_every: int) -> int | None:
        saved = loop.CUDA_FINITE_CHECK_EVERY
        loop.CUDA_FINITE_CHECK_EVERY = check_every
        try:
            setup = loop.build_setup(TrialConfig.from_dict(_trial(plan, "full", lr=1e6, steps_per_epoch=steps)))
            stopped = loop.train_epoch(setup, 1) is None
            return setup.scheduler.steps_done + 1 if stopped else None  # the step whose check fired
        finally:
            loop.CUDA_FINITE_CHECK_EVERY = saved

    every = 1 if plan.device.type == "cpu" else loop.CUDA_FINITE_CHECK_EVERY
    first_nonfinite = detected_at(1)  # checked every step: the first step with a non-finite loss
    detected = detected_at(loop.CUDA_FINITE_CHECK_EVERY)
    final = loop.run_trial(_trial(plan, "full", lr=1e6, steps_per_epoch=steps),
                           checkpoint_dir=plan.workdir / "diverged")
    within = first_nonfinite is not None and detected is not None and first_nonfinite <= detected < first_nonfinite + every
    return {"lr": 1e6, "check_every": every, "first_nonfinite_step": first_nonfinite, "detected_at_step": detected,
            "steps_per_epoch": steps, "within_check_interval": within, "status": final["status"],
            "passed": within and final["status"] == "diverged"}


# --- checkpoints -------------------------------------------------------------------------------


class _Crash(Exception):
    pass


def checkpoint_resume(plan: Plan) -> dict:
    """Written on the device, resumed on the device, loaded on the CPU; resume == uninterrupted."""
    from trainables.checkpoint import load_checkpoint, load_model

    config = _trial(plan, "full", epochs=3, steps_per_epoch=6 if plan.quick else 40)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        straight: list[dict] = []
        final_a = loop.run_trial(config, lambda m, c: straight.append(m), plan.workdir / "ckpt-a")

        def crash(metrics: dict, checkpoint: Any) -> None:
            raise _Crash

        try:
            loop.run_trial(config, crash, plan.workdir / "ckpt-b")
        except _Crash:
            pass
        written_on = str(load_checkpoint(plan.workdir / "ckpt-b")["config"]["train"]["device"])
        resumed: list[dict] = []
        final_b = loop.run_trial(config, lambda m, c: resumed.append(m), plan.workdir / "ckpt-b")
    finally:
        torch.use_deterministic_algorithms(deterministic)
    a, b = load_model(plan.workdir / "ckpt-a", "cpu"), load_model(plan.workdir / "ckpt-b", "cpu")
    diffs = [(x - y).abs().max().item() for x, y in zip(a.state_dict().values(), b.state_dict().values())
             if x.is_floating_point()]
    bitwise = all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    untimed = lambda h: [{k: v for k, v in m.items() if k not in ("images_per_s", "epoch_s", ENDED_AT)} for m in h]
    tolerance = 1e-3  # only used if an op without a deterministic CUDA kernel ran (warn_only)
    return {"device": plan.device.type, "written_with_train_device": written_on,
            "resumed_epochs": [m["epoch"] for m in resumed], "loads_on_cpu": next(a.parameters()).device.type == "cpu",
            "deterministic_algorithms": True, "bitwise_equal": bitwise, "max_abs_weight_diff": max(diffs, default=0.0),
            "same_history": untimed(resumed) == untimed(straight)[1:], "same_final": untimed([final_a]) == untimed([final_b]),
            "passed": resumed and [m["epoch"] for m in resumed] == [2, 3]
            and (bitwise or max(diffs, default=0.0) <= tolerance)}


# --- throughput --------------------------------------------------------------------------------


def throughput(plan: Plan, compile: bool) -> dict:
    depths = (8, 20) if plan.quick else (20, 56, 110)
    batch = 32 if plan.quick else 128
    size = 16 if plan.quick else 32
    steps, warmup = (3, 1) if plan.quick else (30, 5)
    name = torch.cuda.get_device_name(plan.device) if plan.device.type == "cuda" else "cpu"
    peak = peak_bf16_tflops(name) if plan.device.type == "cuda" else None
    rows = []
    for depth in depths:
        for mode in ("full", "bn_only"):
            if compile and plan.quick and plan.device.type == "cpu" and (depth, mode) != (depths[0], "bn_only"):
                continue  # see correctness(): compile once on a CPU
            if not plan.afford(120 if compile else 20):
                rows.append({"depth": depth, "mode": mode, "skipped": "time budget"})
                continue
            config = {"dataset": {"name": "synthetic", "image_size": size}, "model": {"family": "cifar_resnet",
                      "depth": depth}, "train": {"epochs": 1, "batch_size": batch, "precision": "bf16",
                      "compile": compile}, "mode": mode}
            row = _guard(lambda: _timed(config, plan, batch, steps, warmup))
            row.update(depth=depth, mode=mode, compiled=compile, batch=batch)
            flops = 3 * flops_per_image(ModelConfig("cifar_resnet", depth), 10, size)  # x3: forward + backward
            if "images_per_s" in row:
                row["tflops_per_s"] = row["images_per_s"] * flops / 1e12
                if peak:
                    row["share_of_bf16_peak"] = row["tflops_per_s"] / peak
            rows.append(row)
    return {"card": name, "dense_bf16_peak_tflops": peak,
            "share_note": ("FLOPs counted as 3x forward for both modes, as for full training (bn_only skips "
                           "the frozen weights' gradients, so its share is of full-training FLOPs); airbench "
                           f"reaches {AIRBENCH_SHARE[0]:.0%}-{AIRBENCH_SHARE[1]:.0%} of an A100's bf16 peak")
            if peak else f"no known dense bf16 peak for {name!r}: share omitted",
            "rows": rows, "passed": any("images_per_s" in r for r in rows),
            **({"skipped": "time budget"} if all("skipped" in r for r in rows) else {})}


def _timed(config: dict, plan: Plan, batch: int, steps: int, warmup: int) -> dict:
    timing = time_step(training_step(config, plan.device), plan.device, batch, steps=steps, warmup=warmup)
    return {"images_per_s": timing.images_per_s, "ms_per_step": timing.seconds * 1e3}


def loop_overhead(plan: Plan) -> dict:
    """The real loop's images/s (data pipeline, divergence checks, scheduler) over bare steps."""
    setup = loop.build_setup(TrialConfig.from_dict(_trial(plan, "full", epochs=2)))
    loop.train_epoch(setup, 1)  # warm-up: cudnn autotuning, allocator
    in_loop = loop.train_epoch(setup, 2)["images_per_s"]
    bare = _timed({**_trial(plan, "full"), "dataset": {"name": "synthetic",
                   "image_size": setup.data.image_size}}, plan, setup.config.train.batch_size, 20, 3)
    return {"loop_images_per_s": in_loop, "bare_step_images_per_s": bare["images_per_s"],
            "loop_over_bare": in_loop / bare["images_per_s"], "passed": in_loop > 0}


def data_pipeline(plan: Plan) -> dict:
    from trainables.data.source import TensorSource

    n = 5_000 if plan.quick else 50_000
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (n,), generator=gen)
    source = TensorSource(name="cifar10-shaped", num_classes=10, train_images=images, train_labels=labels,
                          test_images=images[:1], test_labels=labels[:1], mean=(0.5,) * 3, std=(0.25,) * 3,
                          flip=True, device=plan.device)
    for _ in source.train_batches(128, torch.Generator().manual_seed(1)):
        pass  # warm-up epoch
    sync(plan.device)
    start = time.perf_counter()
    seen = 0
    for x, y in source.train_batches(128, torch.Generator().manual_seed(2)):
        seen += len(y)
    sync(plan.device)
    seconds = time.perf_counter() - start
    return {"images": seen, "batch": 128, "on": str(x.device), "images_per_s": seen / seconds,
            "passed": seen == n and x.device.type == plan.device.type}


# --- memory ------------------------------------------------------------------------------------


def _study_trial(spec_file: str, **match: Any) -> dict:
    from sweeper.spec import load_spec

    for trial in load_spec(ROOT / "sweeps" / spec_file).trials():
        model = trial.config["model"]
        if trial.config["mode"] == "full" and all(model[k] == v for k, v in match.items()):
            return trial.config
    raise LookupError(f"no full-training trial with {match} in sweeps/{spec_file}")


MEMORY_CASES = (  # (label, study, its trial, --quick stand-in: same family, small enough for a CPU)
    ("ResNet-866 w1", "depth_vs_width.yaml", {"depth": 866, "width": 1}, {"depth": 32}),
    ("ResNet-14 w32", "depth_vs_width.yaml", {"depth": 14, "width": 32}, {"width": 2}),
    ("VGG-19", "vgg.yaml", {"depth": 19}, {"depth": 11}),
    ("ImageNet ResNet-50", "imagenet_resnets.yaml", {"depth": 50}, {"depth": 18}),
    ("ImageNet ResNet-200", "imagenet_resnets.yaml", {"depth": 200}, {"depth": 18}),
)


def memory(plan: Plan) -> dict:
    """Peak device memory of one full-training step at the study's batch size and precision."""
    rows = []
    for label, spec_file, match, stand_in in MEMORY_CASES:
        if not plan.afford(25):
            rows.append({"model": label, "skipped": "time budget"})
            continue
        config = _study_trial(spec_file, **match)
        batch = config["train"]["batch_size"]
        run_batch = 2 if plan.quick else batch
        size = 32 if plan.quick else None  # --quick: ImageNet models at CIFAR size
        row = {"model": label, "study": spec_file, "study_batch": batch, "batch": run_batch,
               "precision": config["train"]["precision"]}
        config = {**config, "train": {**config["train"], "device": plan.device.type, "compile": False}}
        if plan.quick:  # building and stepping the real ones takes minutes on a shared 2-core CPU
            config["model"] = {**config["model"], **stand_in}
            row["quick_stand_in"] = f"{config['model']['family']} depth {config['model']['depth']} " \
                                    f"width {config['model']['width']} at {size} px"
        t0 = time.monotonic()
        row.update(_guard(lambda: _peak(config, plan, run_batch, size)))
        row["seconds"] = round(time.monotonic() - t0, 1)
        rows.append(row)
        gc.collect()
        if plan.device.type == "cuda":
            torch.cuda.empty_cache()
    note = None if plan.device.type == "cuda" else \
        "on the CPU torch keeps no allocator statistics: each step is run (loss finite) but its memory is not measured"
    return {"rows": rows, "note": note, "passed": all("error" not in r or "out of memory" in r["error"]
                                                     for r in rows)}


def _peak(config: dict, plan: Plan, batch: int, size: int | None) -> dict:
    try:
        step = training_step(config, plan.device, batch_size=batch, image_size=size)
        loss = step()
        if plan.device.type != "cuda":
            return {"loss_finite": math.isfinite(float(loss)), "peak_gib": None}
        sync(plan.device)
        torch.cuda.reset_peak_memory_stats(plan.device)
        loss = step()
        sync(plan.device)
        peak = torch.cuda.max_memory_allocated(plan.device)
        fit, per_trial = trials_per_card(peak, plan.device)
        return {"loss_finite": math.isfinite(float(loss)), "peak_gib": peak / GIB,
                "per_trial_with_context_gib": per_trial / GIB, "trials_per_card": fit}
    except torch.cuda.OutOfMemoryError as e:
        return {"error": f"out of memory at batch {batch}: {str(e).splitlines()[0]}", "trials_per_card": 0}


def _guard(check: Callable[[], dict]) -> dict:
    """A failing item records its error; the run goes on to the next."""
    try:
        return check()
    except Exception as e:  # noqa: BLE001 - one prepared run must yield all it can
        return {"passed": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
