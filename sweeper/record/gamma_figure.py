"""The histogram of one trial's BN gammas, stored on its child run as ``gamma/gamma_hist.png``.

The worker draws it when a trial ends, from the ``gamma.json`` that ``run_trial`` writes; it is
the per-trial view of what the report's ``gamma_distribution`` figure pools over seeds. Built
with ``matplotlib.figure.Figure`` like every report figure (no pyplot: no backend switch and no
global figure registry in the trial's process).
"""

from __future__ import annotations

import json
from pathlib import Path

from trainables.names import GAMMA_THRESHOLDS

FILE_NAME = "gamma_hist.png"


def gamma_histogram(gamma_json: Path, out_dir: Path) -> Path | None:
    """``out_dir/gamma_hist.png``: the distribution of |gamma| over all layers (the paper's figure
    on disabled features), the thresholds marked; None when the file holds no gammas."""
    import numpy as np
    from matplotlib.figure import Figure

    layers = json.loads(Path(gamma_json).read_text()).get("layers", {})
    values = [abs(float(g)) for gammas in layers.values() for g in gammas]
    if not values:
        return None
    # drawn once per trial, in the trial's process: one filled outline for the 50 bins (ax.hist
    # makes a patch per bin) and fixed margins (tight_layout draws the whole figure a second time)
    fig = Figure(figsize=(5, 3.2), dpi=100)
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.15, top=0.91)
    ax = fig.add_subplot()
    counts, edges = np.histogram(values, bins=50)
    ax.stairs(counts, edges, fill=True, color="#4c72b0")
    for threshold in GAMMA_THRESHOLDS:
        ax.axvline(threshold, color="#c44e52", lw=0.8, ls="--")
    ax.set_xlabel("|gamma|")
    ax.set_ylabel("BN channels")
    ax.set_title(f"BatchNorm gamma ({len(values)} channels)")
    out = Path(out_dir) / FILE_NAME
    fig.savefig(out)
    return out
