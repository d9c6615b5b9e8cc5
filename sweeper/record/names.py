"""The MLflow record: every tag, metric and artifact name sweeper writes, and what it means.

Scripts, dashboards and the MLflow UI read these names (docs/mlflow.md), so each is
defined here once and every reader and writer imports it; tests/test_record_names.py pins them
as written. docs/mlflow.md lists them for users. The per-epoch and final metrics of a trial are
the trial's own words (``trainables.names``); what is below is what the sweep layer adds.

Layout: one experiment per sweep name; one parent run per sweep (``TAG_ROLE`` = ``ROLE_SWEEP``);
one child run per trial (``TAG_ROLE`` = ``ROLE_TRIAL``, ``TAG_PARENT``, ``TAG_TRIAL_KEY``).
Params of a child run: the resolved trial configuration flattened (``model.depth``, ``train.lr``,
``mode``, ...) plus short names of the axes that vary (``depth``, ``lr``; listed in
``TAG_SHORT_PARAMS``).
"""

from __future__ import annotations

from trainables.names import FINAL_METRICS, PER_EPOCH_METRICS

# --- MLflow's own tags that sweeper sets -------------------------------------------------------
TAG_PARENT = "mlflow.parentRunId"  # child run -> its sweep's parent run id
TAG_NOTE = "mlflow.note.content"  # a run's description: the live summary, the report, a trial's line
TAG_RUN_NAME = "mlflow.runName"  # what the UI shows; a trial's readable name (bn_only-d110-w1-lr0.1-s0)
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"  # on the experiment: shown as training runs in MLflow 3
EXPERIMENT_KIND_TRAINING = "custom_model_development"

# --- both runs ---------------------------------------------------------------------------------
TAG_ROLE = "sweeper.role"  # ROLE_SWEEP (the parent run) or ROLE_TRIAL (a child run)
ROLE_SWEEP, ROLE_TRIAL = "sweep", "trial"

# --- the parent run (the sweep's dashboard) ---------------------------------------------------
TAG_SPEC_HASH = "sweeper.spec_hash"  # hash of the spec YAML of the latest run; the YAML under ARTIFACT_SPEC
TAG_SPEC_HISTORY = "sweeper.spec_history"  # comma-separated spec hashes in the order they were run
TAG_LIVE = "sweeper.live"  # JSON of the driver's live state (counts, running trials, ETA), for status --watch
TAG_BEST_TRIAL = "sweeper.best_trial"  # name of the best trial so far
TAG_LEASE_PREFIX = "sweeper.lease."  # + driver id: one driver's claim on the sweep, {host, pid, since, heartbeat}
TAG_LEASE_HOLDER = "sweeper.holder"  # the fencing token: {driver, host, pid, since} of the lease's last winner, never removed

# --- a child run (one trial) -------------------------------------------------------------------
TAG_TRIAL_KEY = "sweeper.trial_key"  # the trial's identity: hash of its resolved configuration
TAG_STATUS = "status"  # finished, diverged, stopped_early or failed (sweeper.core.states.STATUS_TAG_VALUES)
TAG_EARLY_STOPPED = "sweeper.early_stopped"  # "true": the scheduler stopped it (also status stopped_early)
TAG_LAST_ERROR = "sweeper.last_error"  # first line of the error of its last failed attempt
TAG_NODE_ID = "sweeper.node_id"  # the Ray node that trained it last
TAG_DEVICE = "sweeper.device"  # where it trained: "cpu" or "cuda:0 <card name>"
TAG_ATTEMPTS = "sweeper.attempts"  # how many times a worker started it
TAG_CHECKPOINT_SET_ASIDE = "sweeper.checkpoint_set_aside"  # "<new path>: <why>" when one was moved away
TAG_SUPERSEDED = "sweeper.superseded"  # spec hash of the version that no longer defines the trial
TAG_SHORT_PARAMS = "sweeper.short_params"  # comma-separated short param names (the axes that vary)
TAG_GRID_KEY = "sweeper.grid_key"  # a sampled trial: the key of the grid point it was drawn for
TAG_SAMPLED = "sweeper.sampled"  # a sampled trial: JSON of its sampled values
TAG_ARRAY = "sweeper.array"  # the array that trained it last ("array-" + 12 hex; absent: trained solo)

# --- metrics sweeper adds to a trial's per-epoch and final metrics ------------------------------
METRIC_EPOCH = "sweeper.epoch"  # value = step = the epoch a trial last reported
METRIC_START_EPOCH = "sweeper.start_epoch"  # per attempt (step = attempt): the first epoch it trained
FINAL_STEP = 0  # final metrics are single values; step 0 keeps them out of the epoch axis
TRIAL_METRICS = (*PER_EPOCH_METRICS, *FINAL_METRICS)  # the trial's own (trainables.names)
SWEEPER_METRIC_PREFIX = "sweeper."  # every metric sweeper adds starts so: bookkeeping, not a result
SYSTEM_METRIC_PREFIX = "system/"  # MLflow's own system metrics (CPU, memory, GPU), step = sample

# --- artifacts ---------------------------------------------------------------------------------
ARTIFACT_SPEC = "spec"  # parent run: the spec YAML as run
ARTIFACT_REPORT = "report"  # parent run: report.md, results.csv, figures
ARTIFACT_INDEX_DIR, ARTIFACT_INDEX_NAME = "sweeper", "runs.json.gz"  # parent run: the run index
ARTIFACT_CHECKPOINT = "checkpoint"  # child run: the final checkpoint folder
ARTIFACT_GAMMA = "gamma"  # child run: gamma_hist.png

TRIAL_RUNS = f"tags.`{TAG_ROLE}` = '{ROLE_TRIAL}'"  # the search filter of a sweep's child runs
SWEEP_RUNS = f"tags.`{TAG_ROLE}` = '{ROLE_SWEEP}'"  # ... and of its parent runs

TAGS = {name: value for name, value in dict(globals()).items() if name.startswith("TAG_")}
