"""One trial's record while it trains: the protocol every tracked trial follows, solo or as a
member of an array (``sweeper.driver.worker`` drives one ``TrackedTrial`` per trial).

- MLflow: the trial's child run is found (or created once) by ``sweeper.trial_key``; every epoch's
  metrics go in with ``step=epoch`` through an idempotent, buffered ``TrialLogger``; the final
  metrics, the ``status`` tag, the node that ran it, the final checkpoint and the gamma histogram
  go in at the end, the end state last.
- Checkpoints: its keyed folder (``CheckpointStore``); a checkpoint that cannot be used is set
  aside first, and the epochs a usable one holds are logged again before training resumes.
- Ray Tune: one report per epoch carrying the trial's key; the last epoch's only once the final
  results are in MLflow (a scheduler may stop the trial at its last report).
- Fencing: a trial of a `sweeper run` carries its driver's lease token and checks it
  (``sweeper.driver.fence.Fence``) before every write; when another driver has taken the sweep
  over it raises LeaseLost and writes nothing more: its buffered metrics are dropped, its
  checkpoint is left as it was, and no error tag goes on its run.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

from sweeper.core import settings
from sweeper.core.errors import TrackingUnavailable
from sweeper.core.states import DONE
from sweeper.core.trial import Trial
from sweeper.driver.checkpoint_store import CheckpointStore
from sweeper.driver.context import SweepContext
from sweeper.driver.fence import Fence
from sweeper.record import names, tracking, trial_record
from trainables.names import ENDED_AT, FINAL_METRICS

log = logging.getLogger(__name__)


def device_tag(config: dict) -> str:
    """The device a trial with ``config`` trains on in this process, for ``names.TAG_DEVICE`` (with
    Ray's CUDA_VISIBLE_DEVICES, which says which physical card cuda:0 is): proof of where it
    trained when several trials share a GPU."""
    import torch

    from trainables.loop import resolve_device

    try:
        device = resolve_device(config["train"]["device"])
    except RuntimeError as e:  # run_trial fails on it next, with this message
        return f"unavailable: {e}"
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f"cuda:{index} {torch.cuda.get_device_name(index)}" + (f" (CUDA_VISIBLE_DEVICES={visible})" if visible else "")


class TrackedTrial:
    """One trial's child run, checkpoint folder and reports. ``open`` finds its run; ``start``
    readies it to train (not for a member whose run is already ``done``); ``report`` is the
    ``report`` ``run_trial`` / ``run_array`` call each epoch; then ``finish`` with the final
    metrics, or ``failed`` / ``lost``; ``close`` always."""

    def __init__(self, ctx: SweepContext, trial: Trial, node_id: str, fence: Fence | None,
                 tune_report: Callable[[dict], None] | None = None):
        self.ctx, self.trial, self.node_id, self.fence, self.tune_report = ctx, trial, node_id, fence, tune_report
        self.logger: tracking.TrialLogger | None = None
        self.store: CheckpointStore | None = None
        self.attempt = 0
        self.first_epoch_seen = False
        self.last_epoch = int(trial.config["train"]["epochs"])
        self.deferred: list[dict] = []
        self.run = None
        self.done = False

    def open(self) -> "TrackedTrial":
        """The child run of this trial, found by key or created once, and a logger on it."""
        trial = self.trial
        with tracking.fast_fail_http():
            client = self.ctx.store.client(checked=False)
            # the run as found (or made) holds all this reads: its state, attempts and metrics
            self.run = tracking.open_child_run(client, self.ctx.experiment_id, self.ctx.parent_run_id, trial.key,
                                               trial.name, trial.params,
                                               tags={**trial.tags, names.TAG_NODE_ID: self.node_id})
            run_id = self.run.info.run_id
            self.logger = tracking.TrialLogger(client, run_id, guard=self.fence.verified if self.fence is not None else None,
                                               metric_keys=self.run.data.metrics.keys())
        log.info("startup: child run %s open", run_id)
        self.done = trial_record.state_of(self.run) in DONE
        return self

    @property
    def has_system_metrics(self) -> bool:
        """Whether an earlier attempt left system metrics on the run (their steps then go on)."""
        return any(k.startswith(names.SYSTEM_METRIC_PREFIX) for k in self.run.data.metrics)

    def start(self, array: str | None = None) -> None:
        """Count the attempt, say where it trains (and in which array), and ready its checkpoint
        folder: an unusable checkpoint set aside, the epochs a usable one holds logged again."""
        self.attempt = int(self.run.data.tags.get(names.TAG_ATTEMPTS, "0")) + 1
        tags = {names.TAG_ATTEMPTS: self.attempt, names.TAG_DEVICE: device_tag(self.trial.config)}
        if array is not None:
            tags[names.TAG_ARRAY] = array
        self.logger.set_tags(tags)
        self.store = CheckpointStore(self.ctx.trials_root, self.trial.key)
        self.set_aside_unusable_checkpoint()
        self.replay_history()

    def set_aside_unusable_checkpoint(self) -> None:
        """A damaged or foreign checkpoint would fail this trial on every run: keep it under another
        name, start from scratch, and say so on the child run (the driver prints the tag)."""
        from trainables.checkpoint import set_aside_if_unusable

        moved = set_aside_if_unusable(self.store.local_dir, self.trial.config)
        if moved is None:
            return
        aside, why = moved
        print(f"sweeper: {self.trial.name}: checkpoint set aside as {aside} ({why}); training from scratch",
              flush=True)
        self.logger.set_tags({names.TAG_CHECKPOINT_SET_ASIDE: f"{aside}: {why}"[:500]})
        self.store.upload()

    def replay_history(self) -> None:
        """The epochs a checkpoint holds, logged again before the trial resumes from it: a process
        killed between saving an epoch's checkpoint and logging that epoch would otherwise leave the
        epoch out of MLflow for good. The logger skips the (metric, step) pairs the run already has."""
        from trainables.checkpoint import load_checkpoint

        saved = load_checkpoint(self.store.local_dir)  # readable: an unusable one was just set aside
        for metrics in saved["history"] if saved is not None else ():
            self.log_epoch(metrics)

    def report(self, metrics: dict, checkpoint: Path | None) -> None:
        epoch = int(metrics["epoch"])
        if checkpoint is not None:
            self.store_checkpoint(epoch)
        if not self.first_epoch_seen:
            self.first_epoch_seen = True  # sent with the epoch's metrics: one request and one fence check
            self.logger.log_metrics({names.METRIC_START_EPOCH: epoch}, step=self.attempt, send=False)
        self.log_epoch(metrics)
        if self.tune_report is None:
            return
        if epoch == self.last_epoch:
            self.deferred.append(metrics)  # reported once its final results are in MLflow
        else:
            self.tune_report({**metrics, "trial_key": self.trial.key})

    def store_checkpoint(self, epoch: int) -> None:
        """The checkpoint ``run_trial`` just wrote for ``epoch``, stored where it is kept: a remote
        one uploaded (fenced: the upload is its write), before anything that may stop this process."""
        if self.store.remote and self.fence is not None:
            self.fence()
        self.store.upload()

    def log_epoch(self, metrics: dict) -> None:
        epoch = int(metrics["epoch"])
        values = {k: v for k, v in metrics.items() if k not in ("epoch", ENDED_AT)}
        # the epoch goes in the same batch, as a metric search_runs returns (status reads it there);
        # stamped when it ended (a checkpoint from before ENDED_AT: now), so logging it twice is one row
        self.logger.log_metrics({**values, names.METRIC_EPOCH: epoch}, step=epoch, at=metrics.get(ENDED_AT))

    def failed(self, error: BaseException) -> None:
        """Training raised ``error``: its cause on the run (not for SystemExit: Ray stops an
        early-stopped trial that way), what is buffered sent."""
        if not isinstance(error, SystemExit):
            self.logger.set_tags(trial_record.error_tags(error))
        self.logger.flush(wait_s=10)

    def end_failed(self) -> None:
        """This attempt failed and no retry of Ray's follows it (an array member that failed alone):
        the run ends FAILED without a status tag, so the next `sweeper run` trains it again."""
        trial_record.mark_attempt_failed(self.logger.client, self.logger.run_id)

    def lost(self, what: str = "stopped without writing") -> None:
        """Another driver holds the sweep: what is buffered is never sent, by anyone (the new
        holder logs these epochs from the checkpoint it resumes from)."""
        dropped = self.logger.discard()
        log.warning("%s: another driver holds the sweep now; %s (%d buffered items dropped)",
                    self.trial.name, what, dropped)

    def finish(self, final: dict) -> None:
        """The final results in MLflow, then the last epoch's report to Tune."""
        self.log_final(final)
        if self.tune_report is not None:
            last = self.deferred[-1] if self.deferred else {"epoch": final.get("epochs_completed", self.last_epoch),
                                                            "test_acc": final.get("final_test_acc")}
            self.tune_report({**last, **{k: v for k, v in final.items() if k in FINAL_METRICS},
                              "trial_key": self.trial.key})

    def log_final(self, final: dict) -> None:
        from sweeper.record.gamma_figure import gamma_histogram

        logger, checkpoint_dir = self.logger, self.store.local_dir
        logger.set_tags({names.TAG_NODE_ID: self.node_id}, send=False)  # with the final metrics, in their request
        logger.log_metrics({k: final[k] for k in FINAL_METRICS if k in final}, step=names.FINAL_STEP,
                           at=final.get(ENDED_AT))
        wait_s = settings.END_FLUSH_WAIT_S.get()
        gamma_json = checkpoint_dir / "gamma.json"
        ok = logger.log_artifacts(checkpoint_dir, names.ARTIFACT_CHECKPOINT, wait_s=wait_s)
        if ok and gamma_json.exists():
            with tempfile.TemporaryDirectory(prefix="sweeper-gamma-") as scratch:  # gone afterwards
                png = gamma_histogram(gamma_json, Path(scratch))
                if png is not None:
                    ok = logger.log_artifact(png, names.ARTIFACT_GAMMA, wait_s=wait_s)
        ok = ok and logger.flush(wait_s=wait_s)
        # the end state goes last: it is what marks the trial as done for every later run
        ok = ok and trial_record.mark_trained(logger, final["status"], wait_s=wait_s)
        if not ok:
            raise TrackingUnavailable(f"MLflow did not take the results of run {logger.run_id} "
                                      f"within {wait_s:.0f}s")

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
