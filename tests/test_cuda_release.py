"""A trial's end releases CUDA memory in the process that trained it, which Ray reuses for the
next trial (reuse_actors): the cached blocks go back and the peak counter restarts, after a trial
that finished and after one that raised. Checked on the CPU with CUDA's calls recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cuda_calls(monkeypatch) -> list[str]:
    """CUDA reported present and in use; what the release calls, in order."""
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset_peak"))
    return calls


def test_the_release_empties_the_cache_and_restarts_the_peak(cuda_calls):
    from trainables.loop import release_cuda_memory

    release_cuda_memory()
    assert cuda_calls == ["empty_cache", "reset_peak"]


def test_a_process_that_never_used_cuda_is_left_alone(cuda_calls, monkeypatch):
    from trainables.loop import release_cuda_memory

    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    release_cuda_memory()
    assert cuda_calls == []


def test_each_trial_a_worker_runs_ends_with_a_release_even_one_that_raised(workdir, tracking_uri, monkeypatch,
                                                                           cuda_calls):
    import yaml

    import trainables.loop
    from sweeper.driver import orchestrate, worker
    from sweeper.driver.context import SweepContext
    from sweeper.plan.planning import expected_trials
    from sweeper.record.store import TrackingStore
    from sweeper.spec import load_spec

    raw = yaml.safe_load((ROOT / "tests" / "specs" / "small.yaml").read_text())
    raw["train"].update(epochs=1, device="cpu")  # CUDA is only reported present: train on the CPU
    (workdir / "small.yaml").write_text(yaml.safe_dump(raw))
    spec = load_spec(workdir / "small.yaml")
    store = TrackingStore.parse(tracking_uri)
    _, experiment_id, parent_id = orchestrate.open_tracking(spec, store, create=True)
    ctx = SweepContext(store, experiment_id, parent_id, str(workdir / "trials"))
    first, second = expected_trials(spec)[:2]

    real = trainables.loop.run_trial

    def trained(*args, **kwargs):
        final = real(*args, **kwargs)
        cuda_calls.append("trained")
        return final

    monkeypatch.setattr(trainables.loop, "run_trial", trained)
    worker.run_tracked_trial(ctx, first, node_id="here")
    assert cuda_calls == ["trained", "empty_cache", "reset_peak"]

    def raises(*args, **kwargs):
        cuda_calls.append("raised")
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(trainables.loop, "run_trial", raises)
    with pytest.raises(RuntimeError, match="out of memory"):
        worker.run_tracked_trial(ctx, second, node_id="here")
    assert cuda_calls == ["trained", "empty_cache", "reset_peak", "raised", "empty_cache", "reset_peak"]
