"""The trial side's shared words: training modes, data sets and metric names.

Everything that says "bn_only", "cifar10" or "gamma_near_zero_frac_0.05" imports it from here,
the trial code and the sweep layer alike (the spec's allowed metrics, the report's columns, the
worker's final metrics). Plain tuples and strings only: importing this costs nothing, and it
imports neither torch nor anything of the sweep layer.
"""

from __future__ import annotations

# --- training modes (trainables/modes.py says what each one trains) -------------------------

FULL, BN_ONLY, BN_OUTPUT, OUTPUT_ONLY, RANDOM_PARAMS = "full", "bn_only", "bn_output", "output_only", "random_params"
MODES = (FULL, BN_ONLY, BN_OUTPUT, OUTPUT_ONLY, RANDOM_PARAMS)  # also the order tables and figures list them in
MODE_WORDS = {  # what trains, in words (run descriptions, figure legends)
    FULL: "all weights train",
    BN_ONLY: "only BatchNorm gamma/beta train",
    BN_OUTPUT: "BatchNorm and the output layer train",
    OUTPUT_ONLY: "only the output layer trains",
    RANDOM_PARAMS: "2 random weights per channel train",
}

# --- data sets (trainables/data/ loads them) -------------------------------------------------

DATASETS = ("cifar10", "cifar100", "imagenet", "digits", "synthetic")

# --- metrics (docs/spec.md, "Metrics"): MLflow keys, fractions in [0, 1] -------------------------

# Reported every epoch (step = epoch); ASHA compares trials on these.
PER_EPOCH_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "lr", "images_per_s", "epoch_s")

# Not a metric: when an epoch (or the whole trial) ended, in Unix seconds, kept in the epoch's
# record, the trial's final results and so in its checkpoint. The worker logs the metrics at that
# time, so the same epoch logged twice (a history replayed after a crash; the late send of a driver
# that lost its sweep while frozen) is the same MLflow row, which MLflow's SQL stores keep once.
ENDED_AT = "ended_at"

# |gamma| below each threshold counts as switched off. The paper's exact threshold is not stated,
# so three are measured; the first is the design's ``gamma_near_zero_frac``.
GAMMA_THRESHOLDS = (0.01, 0.05, 0.1)


def gamma_metric(threshold: float) -> str:
    """``gamma_near_zero_frac`` for the first threshold, ``gamma_near_zero_frac_0.05`` for the others."""
    return "gamma_near_zero_frac" if threshold == GAMMA_THRESHOLDS[0] else f"gamma_near_zero_frac_{threshold}"


GAMMA_METRICS = tuple(gamma_metric(t) for t in GAMMA_THRESHOLDS)

# Logged once, when a trial ends, in the order docs/spec.md lists them.
FINAL_METRICS = ("best_test_acc", "final_test_acc", "trainable_params", "total_params", *GAMMA_METRICS,
                 "relu_zero_frac", "epochs_completed")
METRICS = PER_EPOCH_METRICS + FINAL_METRICS
ACCURACY_METRICS = ("final_test_acc", "best_test_acc", "test_acc", "test_top5")  # fractions, compared in points
LOWER_IS_BETTER = ("train_loss", "test_loss", "epoch_s")
DEFAULT_METRIC = "test_acc"


def direction(metric: str) -> str:
    """The way a metric improves when the spec does not say: "min" for losses and epoch time."""
    return "min" if metric in LOWER_IS_BETTER else "max"
