"""One trial, tracked: what runs inside a Ray worker (or in-process for `sweeper train`).

``run_tracked_trial`` wraps ``trainables.run_trial`` with three things it must not know about:

- MLflow: the trial's child run is found (or created once) by ``sweeper.trial_key``; every epoch's
  metrics go in with ``step=epoch`` through an idempotent, buffered ``TrialLogger``; the final
  metrics, the ``status`` tag, the node that ran it, the final checkpoint and the gamma histogram
  go in at the end.
- Checkpoints: the trial's checkpoint folder lives at ``<storage>/<sweep>/trials/<trial_key>/``
  (a local path, or any URI pyarrow reaches: s3://, gs://). Keyed by the trial's identity, it is
  found again whatever restarted the trial: Ray retrying a crashed worker (FailureConfig), a new
  ``sweeper run`` after the driver died, or ``sweeper train``. ``run_trial`` resumes from it by
  itself. One copy per trial, so Ray's own per-attempt checkpoint copies are not used.
- Ray Tune: ``tune.report`` once per epoch (the scheduler and searcher read ``test_acc`` there).
- Fencing: a trial of a `sweeper run` carries its driver's lease token (``SweepContext.lease_token``)
  and checks it (sweeper.lease.Fence) before its first write, after every epoch before the
  checkpoint and the epoch's metrics, and before its final results. When another driver has
  taken the sweep over it raises LeaseLost and writes nothing more: its buffered metrics are
  dropped, its checkpoint is left as it was, and no error tag goes on its run.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sweeper.core import settings
from sweeper.driver.lease import Fence, LeaseLost
from sweeper.record import names
from sweeper.plan.payload import TrialPayload
from sweeper.record import system_metrics, tracking, trial_record
from trainables.names import ENDED_AT, FINAL_METRICS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepContext:
    """What every trial of a sweep needs besides its own configuration (plain, picklable)."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    trials_root: str  # <storage>/<sweep>/trials, a path or a URI
    cpus_per_trial: float = 1.0
    # The driver's MLflow credentials (tracking.credentials_from_env). Ray workers inherit their
    # node's environment, not the driver's, so the trials get them here: the context travels in
    # Ray's object store (tune.with_parameters), never in the trial config that Ray writes to
    # disk, and repr=False keeps them out of every log line that prints the context.
    tracking_env: dict = field(default_factory=dict, repr=False)
    # The fencing token: the id of the driver whose lease the trials run under (sweeper.lease);
    # None for `sweeper train`, which takes no lease.
    lease_token: str | None = None
    sweep: str = ""

    def fence(self) -> Fence | None:
        if self.lease_token is None:
            return None
        return Fence(self.tracking_uri, self.parent_run_id, self.lease_token, self.sweep)
    # The user's SWEEPER_* settings (core.settings.captured), applied in the trial's process.
    settings: dict = field(default_factory=dict)


class TrackingUnavailable(RuntimeError):
    """Training ended but MLflow could not take the results in time; the checkpoint is safe, so
    a retry (or the next `sweeper run`) finishes the bookkeeping without training again."""


class CheckpointStore:
    """The checkpoint folder of one trial under ``trials_root``. Local roots are used in place;
    remote ones are mirrored into a temporary folder and uploaded after every checkpoint."""

    def __init__(self, trials_root: str, key: str):
        import pyarrow.fs as pafs

        self.remote = "://" in trials_root and not trials_root.startswith("file://")
        if not self.remote:
            root = trials_root[len("file://"):] if trials_root.startswith("file://") else trials_root
            self.local_dir = Path(root, key)
            self.local_dir.mkdir(parents=True, exist_ok=True)
            return
        self.fs, base = pafs.FileSystem.from_uri(trials_root)
        self.remote_dir = f"{base.rstrip('/')}/{key}"
        self.local_dir = Path(tempfile.mkdtemp(prefix=f"sweeper-{key}-"))
        if self.fs.get_file_info(self.remote_dir).type == pafs.FileType.Directory:
            pafs.copy_files(self.remote_dir, str(self.local_dir), source_filesystem=self.fs,
                            destination_filesystem=pafs.LocalFileSystem())

    def upload(self) -> None:
        if self.remote:
            import pyarrow.fs as pafs

            self.fs.create_dir(self.remote_dir, recursive=True)
            pafs.copy_files(str(self.local_dir), self.remote_dir, source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=self.fs)

    def close(self) -> None:
        if self.remote:
            shutil.rmtree(self.local_dir, ignore_errors=True)


def open_trial_logger(ctx: SweepContext, payload: TrialPayload, node_id: str, fence: Fence | None = None):
    """The child run of this trial (found by key or created once) and a logger on it."""
    from mlflow.tracking import MlflowClient

    with tracking.fast_fail_http():
        client = MlflowClient(tracking_uri=ctx.tracking_uri)
        run_id = tracking.ensure_child_run(client, ctx.experiment_id, ctx.parent_run_id, payload.key,
                                           payload.name, payload.params,
                                           tags={**payload.tags, names.TAG_NODE_ID: node_id})
        return tracking.TrialLogger(client, run_id, guard=fence.verified if fence is not None else None)


def run_tracked_trial(ctx: SweepContext, payload: TrialPayload, node_id: str,
                      tune_report: Callable[[dict], None] | None = None) -> dict:
    """Train one trial with tracking and keyed checkpoints; returns run_trial's final metrics."""
    import torch

    from trainables import run_trial

    log.info("startup: torch and the trainables imported")
    torch.set_num_threads(max(1, int(ctx.cpus_per_trial)))
    os.environ.update(ctx.tracking_env)  # MLflow reads credentials from the environment per request
    settings.apply(ctx.settings)  # the driver's, not this node's
    tracking.no_run_links()  # a worker on another node did not inherit the driver's environment
    fence = ctx.fence()
    if fence is not None:
        fence()  # before the first write: a retried trial of a driver that lost the sweep stops here
    logger = open_trial_logger(ctx, payload, node_id, fence)
    log.info("startup: child run %s open", logger.run_id)
    attempt = int(logger.client.get_run(logger.run_id).data.tags.get(names.TAG_ATTEMPTS, "0")) + 1
    logger.set_tags({names.TAG_ATTEMPTS: attempt})
    from sweeper.plan.measure import trial_device

    logger.set_tags({names.TAG_DEVICE: trial_device(payload.config)})  # proof of where it trained (GPU packing)
    store = CheckpointStore(ctx.trials_root, payload.key)
    _set_aside_unusable_checkpoint(store, payload, logger)
    _log_saved_history(store, logger)
    first_epoch_seen: list[int] = []
    last_epoch = int(payload.config["train"]["epochs"])
    deferred: list[dict] = []

    def report(metrics: dict, checkpoint: Path | None) -> None:
        epoch = int(metrics["epoch"])
        if not first_epoch_seen:
            first_epoch_seen.append(epoch)
            logger.log_metrics({names.METRIC_START_EPOCH: epoch}, step=attempt)
        if checkpoint is not None:
            if store.remote and fence is not None:
                fence()  # the upload is where a remote checkpoint is written
            store.upload()  # before anything that may stop this process
            _checkpoint_stored(ctx, payload, epoch, fence)
        _log_epoch(logger, metrics)
        if tune_report is not None:
            if epoch == last_epoch:
                # A scheduler may stop the trial at its last report (ASHA at max_t) before the
                # final results reach MLflow: the last epoch is reported after they have.
                deferred.append(metrics)
            else:
                tune_report({**metrics, "trial_key": payload.key})

    try:
        with system_metrics.monitored([logger.run_id], ctx.tracking_uri):
            final = run_trial(payload.config, report, store.local_dir, fence=fence)
        if fence is not None:
            fence()  # the end's results go in under the same lease
    except LeaseLost:
        dropped = logger.discard()  # never sent later, by anyone: the new holder logs these epochs
        log.warning("%s: another driver holds the sweep now; stopped without writing (%d buffered "
                    "items dropped)", payload.name, dropped)
        store.close()
        raise
    except BaseException as e:  # SystemExit too: Ray stops an early-stopped trial that way
        if not isinstance(e, SystemExit):
            logger.set_tags(trial_record.error_tags(e))
        logger.flush(wait_s=10)
        store.close()
        raise
    try:
        _log_final(logger, final, store.local_dir, node_id)
    except LeaseLost:
        logger.discard()
        log.warning("%s: another driver holds the sweep now; its final results were not written", payload.name)
        raise
    finally:
        store.close()
    if tune_report is not None:
        last = deferred[-1] if deferred else {"epoch": final.get("epochs_completed", last_epoch),
                                              "test_acc": final.get("final_test_acc")}
        tune_report({**last, **{k: v for k, v in final.items() if k in FINAL_METRICS}, "trial_key": payload.key})
    return final


def _set_aside_unusable_checkpoint(store: CheckpointStore, payload: TrialPayload, logger) -> None:
    """A damaged or foreign checkpoint would fail this trial on every run: keep it under another
    name, start from scratch, and say so on the child run (the driver prints the tag)."""
    from trainables.checkpoint import set_aside_if_unusable

    moved = set_aside_if_unusable(store.local_dir, payload.config)
    if moved is None:
        return
    aside, why = moved
    note = f"{aside}: {why}"
    print(f"sweeper: {payload.name}: checkpoint set aside as {aside} ({why}); training from scratch",
          flush=True)
    logger.set_tags({names.TAG_CHECKPOINT_SET_ASIDE: note[:500]})
    store.upload()


def _log_epoch(logger, metrics: dict) -> None:
    epoch = int(metrics["epoch"])
    values = {k: v for k, v in metrics.items() if k not in ("epoch", ENDED_AT)}
    # the epoch goes in the same batch, as a metric search_runs returns (status reads it there);
    # stamped when it ended (a checkpoint from before ENDED_AT: now), so logging it twice is one row
    logger.log_metrics({**values, names.METRIC_EPOCH: epoch}, step=epoch, at=metrics.get(ENDED_AT))


def _log_saved_history(store: CheckpointStore, logger) -> None:
    """The epochs a checkpoint holds, logged again before the trial resumes from it: a process
    killed between saving an epoch's checkpoint and logging that epoch would otherwise leave the
    epoch out of MLflow for good. The logger skips the (metric, step) pairs the run already has."""
    from trainables.checkpoint import load_checkpoint

    saved = load_checkpoint(store.local_dir)  # readable: an unusable one was just set aside
    for metrics in saved["history"] if saved is not None else ():
        _log_epoch(logger, metrics)


def _log_final(logger, final: dict, checkpoint_dir: Path, node_id: str) -> None:
    from sweeper.views.gamma_figure import gamma_histogram

    logger.log_metrics({k: final[k] for k in FINAL_METRICS if k in final}, step=names.FINAL_STEP, at=final.get(ENDED_AT))
    wait_s = settings.END_FLUSH_WAIT_S.get()
    gamma_json = checkpoint_dir / "gamma.json"
    ok = logger.log_artifacts(checkpoint_dir, names.ARTIFACT_CHECKPOINT, wait_s=wait_s)
    if ok and gamma_json.exists():
        with tempfile.TemporaryDirectory(prefix="sweeper-gamma-") as scratch:  # gone afterwards
            png = gamma_histogram(gamma_json, Path(scratch))
            if png is not None:
                ok = logger.log_artifact(png, names.ARTIFACT_GAMMA, wait_s=wait_s)
    logger.set_tags({names.TAG_NODE_ID: node_id})
    ok = ok and logger.flush(wait_s=wait_s)
    # the end state goes last: it is what marks the trial as done for every later run
    ok = ok and trial_record.mark_trained(logger, final["status"], wait_s=wait_s)
    if not ok:
        raise TrackingUnavailable(f"MLflow did not take the results of run {logger.run_id} "
                                  f"within {wait_s:.0f}s")


def _checkpoint_stored(ctx: SweepContext, payload: TrialPayload, epoch: int, fence: Fence | None) -> None:
    """Called once a checkpoint is stored; nothing to do here. The fencing tests trace the writes
    through it (tests/faults/sitecustomize.py), outside production code."""


def trial_notes(run) -> dict[str, str]:
    """What a child run says went wrong: its last error, a checkpoint set aside (either absent)."""
    tags = run.data.tags if run is not None else {}
    notes = {"error": tags.get(names.TAG_LAST_ERROR), "set_aside": tags.get(names.TAG_CHECKPOINT_SET_ASIDE)}
    return {k: v for k, v in notes.items() if v}
