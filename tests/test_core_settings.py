"""Settings by environment variable, declared once (sweeper/core/settings.py): documented, read
when used, and carried from the driver to where they are read (the Tune loop on a ray:// head,
every trial)."""

from __future__ import annotations

import io
import os
import re
import signal
from pathlib import Path

import pytest

from sweeper.core import settings
from sweeper.core.errors import SweepError

ROOT = Path(__file__).resolve().parents[1]


def test_every_declared_setting_is_in_the_docs_table_as_declared():
    doc = (ROOT / "docs" / "settings.md").read_text()
    missing = [row for row in settings.markdown_rows() if row not in doc]
    assert missing == [], "regenerate docs/settings.md's table from settings.markdown_rows()"
    documented = set(re.findall(r"^\| `(SWEEPER_[A-Z_]+)` \|", doc, re.M))
    assert documented == set(settings.SETTINGS)


def test_no_module_but_settings_reads_a_sweeper_variable():
    reads = re.compile(r"""(environ\.get|environ\[|getenv)\(?\s*["']SWEEPER_""")
    offenders = [str(p.relative_to(ROOT)) for root in ("sweeper", "trainables") for p in (ROOT / root).rglob("*.py")
                 if reads.search(p.read_text()) and p != ROOT / "sweeper" / "core" / "settings.py"]
    assert offenders == []
    assert "FAULT" not in (ROOT / "sweeper" / "driver" / "worker.py").read_text()  # test hooks live in tests/


def test_a_value_set_after_import_counts_where_it_is_read(monkeypatch):
    from sweeper.driver import lease
    from sweeper.record import run_index
    from sweeper.driver.index_refresh import IndexRefresh
    from sweeper.record.dashboard import Dashboard
    from sweeper.views.progress import PlainView

    monkeypatch.setenv("SWEEPER_PROGRESS_EVERY_S", "3")
    monkeypatch.setenv("SWEEPER_DASHBOARD_EVERY_S", "4")
    monkeypatch.setenv("SWEEPER_INDEX_EVERY_S", "5")
    monkeypatch.setenv("SWEEPER_CLOCK_SKEW_S", "6")
    monkeypatch.setenv("SWEEPER_LEASE_STALE_S", "60")
    assert PlainView(io.StringIO()).every_s == 3
    assert Dashboard(client=None, parent_run_id="p").every_s == 4
    assert IndexRefresh(client=None, experiment_id="1", parent_run_id="p").every_s == 5
    assert run_index.slack_ms() == 6000
    assert lease.check_times() == (60, 10, 2)  # the heartbeat follows the stale time: stale / 6
    monkeypatch.setenv("SWEEPER_REUSE_ACTORS", "off")
    assert settings.REUSE_ACTORS.get() is False


def test_defaults_and_the_bound_the_lease_keeps_with_the_clock_skew(monkeypatch):
    from sweeper.driver import lease
    from sweeper.record import run_index

    for name in settings.SETTINGS:
        monkeypatch.delenv(name, raising=False)
    assert lease.check_times() == (90, 15, 2)
    assert run_index.slack_ms() == 60_000  # the shared bound, not a run index constant
    monkeypatch.setenv("SWEEPER_LEASE_STALE_S", "30")  # 30 <= 5 + 60: a live holder could look stale
    with pytest.raises(SweepError, match=r"SWEEPER_LEASE_STALE_S \(30 s\) must exceed .* SWEEPER_CLOCK_SKEW_S \(60 s\)"):
        lease.check_times()
    monkeypatch.setenv("SWEEPER_CLOCK_SKEW_S", "10")
    assert lease.check_times() == (30, 5, 2)


def test_a_value_of_the_wrong_type_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv("SWEEPER_LEASE_STALE_S", "soon")
    with pytest.raises(SweepError, match=r"^SWEEPER_LEASE_STALE_S='soon': expected a number"):
        settings.LEASE_STALE_S.get()
    monkeypatch.setenv("SWEEPER_REUSE_ACTORS", "maybe")
    with pytest.raises(SweepError, match="SWEEPER_REUSE_ACTORS='maybe'"):
        settings.REUSE_ACTORS.get()


def test_captured_takes_the_declared_settings_that_are_set_and_apply_sets_only_those(monkeypatch):
    for name in settings.SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SWEEPER_INDEX_EVERY_S", "5")
    monkeypatch.setenv("SWEEPER_NOT_A_SETTING", "x")
    assert settings.captured() == {"SWEEPER_INDEX_EVERY_S": "5"}
    monkeypatch.delenv("SWEEPER_INDEX_EVERY_S")
    monkeypatch.delenv("SWEEPER_PROGRESS_EVERY_S", raising=False)
    settings.apply({"SWEEPER_INDEX_EVERY_S": "7", "PATH": "/nowhere"})
    assert settings.INDEX_EVERY_S.get() == 7 and settings.captured() == {"SWEEPER_INDEX_EVERY_S": "7"}
    assert os.environ["PATH"] != "/nowhere"  # not a setting: left alone


def test_the_driver_hands_the_users_settings_to_the_trials_and_the_tune_loop(workdir, tracking_uri, monkeypatch):
    """`sweeper run` puts them in the SweepContext every trial and the head's Tune loop get."""
    from sweeper.driver import orchestrate, preflight, ray_setup, tune_loop

    spec = ROOT / "tests" / "specs" / "small.yaml"
    seen = {}

    def fit_nowhere(address, signals, spec, ctx, *args, **kwargs):
        seen["ctx"] = ctx
        return set(), False

    monkeypatch.setattr(ray_setup, "init_ray", lambda *a, **k: False)
    monkeypatch.setattr(ray_setup, "starts_with_lease", lambda *a, **k: False)  # nor while the lease settles
    monkeypatch.setattr(preflight, "before_trials", lambda *a, **k: None)  # it asks Ray, not started here
    monkeypatch.setattr(tune_loop, "fit_here_or_on_head", fit_nowhere)
    for name in settings.SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SWEEPER_END_FLUSH_WAIT_S", "7")
    monkeypatch.setenv("SWEEPER_DASHBOARD_EVERY_S", "2")
    orchestrate.run_command(str(spec), tracking_uri=tracking_uri, storage=str(workdir / "results"),
                            handle_signals=False, ray_log=False)
    assert seen["ctx"].settings == {"SWEEPER_END_FLUSH_WAIT_S": "7", "SWEEPER_DASHBOARD_EVERY_S": "2"}


def test_the_tune_loop_on_a_ray_client_head_applies_the_drivers_settings(tracking_uri, monkeypatch):
    """What runs on the head (ray_client._fit_task) reads the user's values, not the head's."""
    from types import SimpleNamespace

    from sweeper.driver import ray_client

    class NoStop:
        def get(self, timeout=None):
            raise RuntimeError("no queue here")  # the watcher thread ends at once

    monkeypatch.setenv("SWEEPER_INDEX_EVERY_S", "900")  # the head's own value
    from sweeper.record.store import TrackingStore

    ctx = SimpleNamespace(store=TrackingStore.parse(tracking_uri), tracking_env={},
                          settings={"SWEEPER_INDEX_EVERY_S": "5"})
    def fit(*args, **kwargs):  # reads the setting where the Tune loop reads it
        return settings.INDEX_EVERY_S.get()

    lines = SimpleNamespace(put_nowait=lambda item: None)
    usr1 = signal.getsignal(signal.SIGUSR1)  # the task sets it as it would on the head
    try:
        assert ray_client._fit_task(fit, None, ctx, [], 0, "/nowhere", [], lines, NoStop()) == 5
    finally:
        signal.signal(signal.SIGUSR1, usr1)


def test_a_trial_applies_the_drivers_settings_before_it_reads_them(workdir, tracking_uri, monkeypatch):
    from sweeper.driver import orchestrate, tracked, worker
    from sweeper.driver.context import SweepContext
    from sweeper.record.store import TrackingStore
    from sweeper.plan.planning import expected_trials
    from sweeper.spec import load_spec

    spec = load_spec(ROOT / "tests" / "specs" / "small.yaml")
    uri = tracking_uri
    _, experiment_id, parent_id = orchestrate.open_tracking(spec, TrackingStore.parse(tracking_uri), create=True)
    ctx = SweepContext(TrackingStore.parse(uri), experiment_id, parent_id, str(workdir / "trials"),
                       settings={"SWEEPER_END_FLUSH_WAIT_S": "7"})
    monkeypatch.delenv("SWEEPER_END_FLUSH_WAIT_S", raising=False)  # this node's: the default
    read = []
    monkeypatch.setattr(tracked.TrackedTrial, "log_final", lambda *args: read.append(settings.END_FLUSH_WAIT_S.get()))
    worker.run_tracked_trial(ctx, expected_trials(spec)[0], node_id="here")
    assert read == [7]
