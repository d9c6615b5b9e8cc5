"""Read-back at scale: wall time and peak memory of `sweeper status`, `sweeper report` and the
planning step of `sweeper run` (`--dry-run`) on a finished sweep of N trials, against a local
`mlflow server` (sqlite backend, artifacts served by the server).

    .venv/bin/python bench/bench_scale.py --trials 100 1000 [--with-10k] [--json out.json]
                                          [--code /path/to/a/checkout]

For each N a fresh store is fabricated through the project's own tracking code (no training):
experiment and parent run as `sweeper run` makes them, then one child run per trial of the spec
(mode x depth x width x lr x seed) with its params, 10 epochs of per-epoch metrics, the final
metrics, the ``status`` tag and ``checkpoint/gamma.json``, each trial in one ``log_batch``. The
trials are written straight into the sqlite file and the gamma files into the server's artifact
folder, which is what the server itself would have stored; the commands then read everything
back through the server over HTTP, as a user's laptop would.

After fabricating, the bench writes the run index (``sweeper.record.run_index``) as the driver of a
finished sweep does as it ends; ``--without-index`` hides it, to measure a sweep without one.

``--index-age both`` measures what the index's age costs, in one run on one fresh store: first
with the index written the moment the last trial ended (every run ended in the minutes before
it; the first index format re-read all of those), then with the index rewritten once the
clock-skew bound (``SWEEPER_CLOCK_SKEW_S``) has passed since the last run started, as for a sweep
indexed long after; it prints the ratio of the two per command.

``--code DIR`` runs the three commands with ``PYTHONPATH=DIR`` (e.g. an unchanged checkout of
main, to measure "before"); fabrication always uses this tree. Each command runs in its own
process, under a small wrapper that reports the command's peak resident memory
(``getrusage(RUSAGE_CHILDREN)``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from sweeper.record import names  # noqa: E402 - this tree's, after the path is set

MLFLOW = str(Path(sys.executable).parent / "mlflow")
from trainables.names import MODES  # noqa: E402 - every mode, as the paper's tables have them
DEPTHS = (8, 14, 20, 32)
SEEDS = (0, 1, 2, 3, 4)  # 5 x 4 x 5 = 100 trials per (width, lr) pair
EPOCHS = 10
COMMANDS = ("status", "report", "plan")


def grid_for(trials: int) -> tuple[list[int], list[float]]:
    """Widths and learning rates that make ``trials`` (a multiple of 100) with the fixed axes."""
    if trials % 100:
        raise SystemExit(f"--trials must be multiples of 100, got {trials}")
    pairs = trials // 100
    n_widths = 5 if pairs % 5 == 0 else 2 if pairs % 2 == 0 else 1
    widths = [1, 2, 4, 8, 16][:n_widths]
    lrs = [round(0.01 * 1.25 ** i, 6) for i in range(pairs // n_widths)]
    return widths, lrs


def write_spec(folder: Path, trials: int) -> Path:
    widths, lrs = grid_for(trials)
    path = folder / "scale.yaml"
    path.write_text(f"""\
name: scale
dataset: {{name: digits}}
model: {{family: cifar_resnet}}
train: {{epochs: {EPOCHS}, batch_size: 64}}
grid: {{mode: [{", ".join(MODES)}], depth: {list(DEPTHS)}, width: {widths}, lr: {lrs}, seed: {list(SEEDS)}}}
resources: {{cpu: 1}}
""")
    return path


# --- the store and the server ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    db = root / "mlflow.db"
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments(max_results=1)  # schema, once
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([MLFLOW, "server", "--backend-store-uri", f"sqlite:///{db}",
                             "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
                             # a busy machine imports slower than uvicorn's 5 s worker check
                             "--uvicorn-opts", "--timeout-worker-healthcheck 120"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True,
                            env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            _warm_up(uri)
            return proc, uri
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"mlflow server exited: see {root / 'server.log'}")
            time.sleep(0.5)
    stop_server(proc)
    raise SystemExit("mlflow server did not come up in 600 s")


def _warm_up(uri: str) -> None:
    """A few API calls at once, so that each worker has imported its store before the first
    measured command (a cold worker spends seconds of CPU on its first request)."""
    from concurrent.futures import ThreadPoolExecutor

    def call(_):
        request = urllib.request.Request(f"{uri}/api/2.0/mlflow/experiments/search", method="POST",
                                         data=b'{"max_results": 1}', headers={"Content-Type": "application/json"})
        return urllib.request.urlopen(request, timeout=300).read()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(16)))


def stop_server(proc: subprocess.Popen) -> None:
    """The server and its uvicorn workers (their own process group)."""
    import signal

    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait_s)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def fabricate(root: Path, spec_path: Path, server_uri: str) -> float:
    """The finished sweep of ``spec_path``: experiment and parent through the server, the trials
    straight into sqlite in one log_batch each. Returns the seconds it took."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from sweeper.record import tracking
    from sweeper.spec import load_spec
    from sweeper.record.names import FINAL_STEP, METRIC_START_EPOCH

    started = time.monotonic()
    spec = load_spec(spec_path)
    server = tracking.connect(server_uri)
    experiment_id = tracking.ensure_experiment(server, spec.name, server_uri)
    parent = tracking.ensure_parent_run(server, experiment_id, spec.name, spec.text, spec.spec_hash)
    direct = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    rng = np.random.default_rng(0)
    from sweeper.record.names import METRIC_EPOCH as epoch_metric  # what the worker logs per epoch
    for payload in spec.trials():
        run = direct.create_run(experiment_id, run_name=payload.name, tags={
            names.TAG_PARENT: parent, names.TAG_TRIAL_KEY: payload.key, names.TAG_ROLE: "trial"})
        run_id = run.info.run_id
        depth, mode = payload.config["model"]["depth"], payload.config["mode"]
        final = 0.3 + 0.5 * rng.random()
        t0 = int(time.time() * 1000)
        metrics = [Metric(METRIC_START_EPOCH, 1.0, t0, 1)]
        for epoch in range(1, EPOCHS + 1):
            at = t0 + epoch
            acc = final * epoch / EPOCHS
            values = {"train_loss": 2.3 / epoch, "train_acc": acc, "test_loss": 2.4 / epoch, "test_acc": acc,
                      "test_top5": min(1.0, acc + 0.3), "lr": 0.1, "images_per_s": 5000.0, "epoch_s": 1.5}
            values[epoch_metric] = float(epoch)  # main's commands never read it
            metrics += [Metric(k, float(v), at, epoch) for k, v in values.items()]
        finals = {"best_test_acc": final, "final_test_acc": final, "trainable_params": 100 * depth,
                  "total_params": 10000 * depth, "gamma_near_zero_frac": 0.02, "gamma_near_zero_frac_0.05": 0.1,
                  "gamma_near_zero_frac_0.1": 0.2, "relu_zero_frac": 0.5, "epochs_completed": EPOCHS}
        metrics += [Metric(k, float(v), t0 + 100, FINAL_STEP) for k, v in finals.items()]
        params = [Param(k, tracking._param_value(v)) for k, v in payload.params.items()]
        direct.log_batch(run_id, metrics=metrics, params=params,
                         tags=[RunTag(names.TAG_NODE_ID, "bench"), RunTag(names.TAG_STATUS, "finished")])
        gammas = rng.uniform(0, 1, 16 * depth)
        if mode == "bn_only":
            gammas[: gammas.size // 4] = rng.normal(0, 0.02, gammas.size // 4)
        # where the server keeps mlflow-artifacts:/<experiment>/<run>/artifacts/...
        folder = root / "artifacts" / experiment_id / run_id / "artifacts" / "checkpoint"
        folder.mkdir(parents=True)
        (folder / "gamma.json").write_text(json.dumps({"layers": {"bn1": gammas.tolist()}}))
        direct.set_terminated(run_id, "FINISHED")
    return time.monotonic() - started


def write_index(uri: str) -> float:
    """What the driver of a finished sweep does last: record its FINISHED runs in the run index."""
    from sweeper.record import run_index, tracking

    started = time.monotonic()
    client = tracking.connect(uri)
    experiment_id = client.get_experiment_by_name("scale").experiment_id
    parent = tracking.find_parent_run(client, experiment_id)
    run_index.write_index(client, experiment_id, parent.info.run_id)
    return time.monotonic() - started


def _wait_past_skew(root: Path) -> None:
    """Until the clock-skew bound has passed since the last fabricated run started (the one bound
    within which a reader re-reads runs the index holds)."""
    import sqlite3

    from sweeper.record import run_index

    with sqlite3.connect(root / "mlflow.db") as db:
        (last_start_ms,) = db.execute("SELECT MAX(start_time) FROM runs").fetchone()
    wait_s = (last_start_ms + run_index.slack_ms()) / 1000 + 1 - time.time()
    if wait_s > 0:
        print(f"waiting {wait_s:.0f} s, until the clock-skew bound has passed since the last run started", flush=True)
        time.sleep(wait_s)


def hide_index(root: Path) -> tuple[Path, Path]:
    """Move the index file out of the server's artifact folder; (where it was, where it is)."""

    (found,) = root.glob(f"artifacts/*/*/artifacts/{names.ARTIFACT_INDEX_DIR}/{names.ARTIFACT_INDEX_NAME}")
    aside = root / names.ARTIFACT_INDEX_NAME
    found.rename(aside)
    return found, aside


# --- measuring one command -------------------------------------------------------------------


def command_argv(command: str, spec: Path, uri: str, out: Path) -> list[str]:
    base = [sys.executable, "-m", "sweeper"]
    if command == "status":
        return base + ["status", str(spec), "--tracking-uri", uri]
    if command == "report":
        return base + ["report", str(spec), "--tracking-uri", uri, "--out", str(out)]
    return base + ["run", str(spec), "--dry-run", "--tracking-uri", uri, "--storage", str(out)]


def measure(argv: list[str], code: Path, cwd: Path, timeout: float, server_pid: int) -> dict:
    """Seconds, peak RSS (MB) and CPU seconds of ``argv``, run under a wrapper so that
    RUSAGE_CHILDREN holds this command alone, and the CPU seconds the server spent meanwhile
    (on a shared machine wall time swings with the load; CPU seconds much less)."""
    env = {**os.environ, "PYTHONPATH": str(code), "MLFLOW_TRACKING_URI": ""}
    wrapper = [sys.executable, __file__, "--measure-one", "--", *argv]
    server_before = _tree_cpu_s(server_pid)
    done = subprocess.run(wrapper, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:4])} failed:\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["server_cpu_s"] = round(_tree_cpu_s(server_pid) - server_before, 2)
    return figures


def _tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process and its descendants (Linux /proc)."""
    total, todo = 0.0, [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total


def _measure_one(argv: list[str]) -> None:
    started = time.monotonic()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        sys.exit(done.returncode)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"seconds": round(seconds, 2), "peak_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: KiB
                      "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}))


def main() -> None:
    if "--measure-one" in sys.argv:
        _measure_one(sys.argv[sys.argv.index("--") + 1:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--with-10k", action="store_true", help="also N = 10,000 (fabricating it takes minutes)")
    parser.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS))
    parser.add_argument("--code", type=Path, nargs="+", default=[HERE],
                        help="checkouts whose sweeper runs the commands, each on the same store (e.g. main and this tree)")
    parser.add_argument("--stores", type=Path, default=None,
                        help="keep the fabricated stores in STORES/<N>/ and reuse them on the next call")
    parser.add_argument("--fabricate-only", action="store_true", help="make the stores (with --stores), measure nothing")
    parser.add_argument("--without-index", action="store_true",
                        help="measure as for a sweep whose driver wrote no run index (sweeper.record.run_index)")
    parser.add_argument("--index-age", choices=("as-stored", "both"), default="as-stored",
                        help="both: measure with the index written right after the runs ended, then rewritten "
                             "past the clock-skew bound, on a freshly fabricated store (see above)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per command before giving up")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    sizes = sorted(set(args.trials + ([10_000] if args.with_10k else [])))

    results = []
    codes = [c.resolve() for c in args.code]
    print(f"mlflow server on sqlite, 127.0.0.1; {EPOCHS} epochs per trial; code: {', '.join(map(str, codes))}")
    for n in sizes:
        if args.stores:
            root = args.stores.resolve() / str(n)
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(tempfile.mkdtemp(prefix=f"sweeper-scale-{n}-"))
        server = hidden = None
        try:
            made = (root / "fabricated").exists()
            if made and args.index_age == "both":
                raise SystemExit(f"--index-age both needs a fresh store: {root} was fabricated before")
            if not made:  # a fabrication that was cut short: start again
                (root / "mlflow.db").unlink(missing_ok=True)
                shutil.rmtree(root / "artifacts", ignore_errors=True)
            spec = write_spec(root, n)
            server, uri = start_server(root)
            if not made:
                seconds = fabricate(root, spec, uri)
                (root / "fabricated").write_text(f"{seconds:.0f}\n")
                print(f"N={n:>6}: fabricated in {seconds:.0f} s", flush=True)
            if not (root / "indexed").exists():  # also for stores fabricated before the index existed
                seconds = write_index(uri)
                (root / "indexed").write_text(f"{seconds:.1f}\n")
                print(f"N={n:>6}: run index written in {seconds:.1f} s", flush=True)
            hidden = hide_index(root) if args.without_index else None
            if args.fabricate_only:
                continue
            ages = ["right after", "long after"] if args.index_age == "both" else [None]
            for age in ages:
                if age == "long after":
                    _wait_past_skew(root)
                    seconds = write_index(uri)
                    print(f"N={n:>6}: run index rewritten in {seconds:.1f} s, past the clock-skew bound", flush=True)
                for command in args.commands:
                    for code in codes:
                        figures = measure(command_argv(command, spec, uri, root / f"out-{command}"), code, root,
                                          args.timeout, server.pid)
                        results.append({"trials": n, "command": command, **figures, "code": str(code),
                                        **({"index": age} if age else {})})
                        print(f"N={n:>6}  {command:<7} {figures['seconds']:8.2f} s  {figures['peak_mb']:7.1f} MB  "
                              f"cpu {figures['cpu_s']:6.1f} s + server {figures['server_cpu_s']:6.1f} s  {code}"
                              + (f"  index {age}" if age else ""), flush=True)
        finally:
            if hidden is not None:
                hidden[1].rename(hidden[0])
            if server is not None:
                stop_server(server)
            if not args.stores:
                shutil.rmtree(root, ignore_errors=True)

    if args.index_age == "both":
        print("\nindexed right after / long after (seconds; 1.0 = the index's age costs nothing):")
        for r in results:
            if r["index"] == "right after":
                late = next(x for x in results if x["index"] == "long after" and
                            (x["trials"], x["command"], x["code"]) == (r["trials"], r["command"], r["code"]))
                print(f"  N={r['trials']:>6}  {r['command']:<7} {r['seconds']:8.2f} s / {late['seconds']:8.2f} s"
                      f" = x{r['seconds'] / max(late['seconds'], 1e-9):.2f}")
    print("\ngrowth (seconds ratio / trials ratio, 1.0 = linear):")
    for code in codes:
        for command in args.commands:
            rows = [r for r in results if r["command"] == command and r["code"] == str(code)
                    and r.get("index") in (None, "right after")]
            for a, b in zip(rows, rows[1:]):
                ratio = b["seconds"] / max(a["seconds"], 1e-9)
                print(f"  {command:<7} {a['trials']:>6} -> {b['trials']:>6}: x{ratio:.2f} time for "
                      f"x{b['trials'] / a['trials']:g} trials; memory x{b['peak_mb'] / max(a['peak_mb'], 1e-9):.2f}"
                      + (f"  ({code})" if len(codes) > 1 else ""))
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
