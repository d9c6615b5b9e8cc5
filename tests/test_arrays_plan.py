"""Trial arrays on the sweeper side, fast: the spec key, grouping, what an array asks
Ray for, what `validate` says, auto's choice, and the driver's callback counting trials, not arrays.

Which trials may share an array is the trainables' rule (``trainables.array.array_key``).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sweeper.core.errors import SpecError
from sweeper.plan import arrays
from sweeper.core.trial import Trial
from sweeper.spec import parse_spec


@pytest.fixture
def support():
    real = arrays.array_support()
    assert real is not None, "trainables.array is part of this tree"
    return real


def spec_text(array="4", extra="", grid="{mode: [bn_only, full, output_only, random_params], seed: [0, 1]}"):
    return (f"name: a\ndataset: {{name: digits, image_size: 8}}\nmodel: {{family: cifar_resnet, depth: 8}}\n"
            f"train: {{epochs: 2, batch_size: 64}}\ngrid: {grid}\nresources: {{cpu: 1, gpu: 0.25, array: {array}}}\n"
            f"{extra}")


def payloads(spec) -> list[Trial]:
    return [Trial(t.key, t.name, dict(t.config), dict(t.params)) for t in spec.trials()]


def test_resources_array_is_an_integer_from_1_or_auto_and_defaults_to_solo():
    assert parse_spec(spec_text(array="1")).resources.array == 1
    assert parse_spec(spec_text(array="auto")).resources.array == "auto"
    assert parse_spec(spec_text().replace(", array: 4", "")).resources.array == 1
    for bad in ("0", "-2", "2.5", "best", "true"):
        with pytest.raises(SpecError, match="resources.array"):
            parse_spec(spec_text(array=bad))


def test_resources_array_never_enters_a_trial_key():
    keys = {a: [t.key for t in parse_spec(spec_text(array=a)).trials()] for a in ("1", "4", "auto")}
    assert keys["1"] == keys["4"] == keys["auto"] and len(set(keys["1"])) == 8


def test_compatible_trials_group_into_arrays_of_at_most_k_in_order(support):
    trials = payloads(parse_spec(spec_text(grid="{mode: [bn_only, full, output_only], seed: [0, 1], width: [1, 2]}")))
    units = arrays.group(trials, 4, support.array_key)
    assert sorted(len(u.members) for u in units) == [2, 2, 4, 4]  # 6 per width: 4 + 2 each
    for unit in units:
        assert unit.array.startswith(arrays.ARRAY_PREFIX) and unit.grid_point == unit.array
        assert len({m.config["model"]["width"] for m in unit.members}) == 1
    assert sorted(m.key for u in units for m in u.members) == sorted(t.key for t in trials)  # each trial once
    # solo: one unit per trial, its grid point the trial key (Tune sees today's grid)
    assert [u.grid_point for u in arrays.group(trials, 1)] == [t.key for t in trials]


def test_a_group_of_one_stays_solo_and_an_array_is_named_by_its_members(support):
    trials = payloads(parse_spec(spec_text(grid="{mode: [bn_only], width: [1, 2]}")))
    assert [(u.array, len(u.members)) for u in arrays.group(trials, 4, support.array_key)] == [(None, 1), (None, 1)]
    assert arrays.array_id(["b", "a"]) == arrays.array_id(["a", "b"]) != arrays.array_id(["a", "c"])


def test_regrouping_what_remains_after_a_kill_leaves_finished_members_out(support):
    trials = payloads(parse_spec(spec_text()))
    first = arrays.group(trials, 4, support.array_key)
    finished = {m.key for m in first[0].members[:3]}  # three members of the first array finished
    remaining = [t for t in trials if t.key not in finished]
    again = arrays.group(remaining, 4, support.array_key)
    assert sorted(len(u.members) for u in again) == [1, 4]
    assert not finished & {m.key for u in again for m in u.members}


def test_an_array_asks_for_k_times_a_trial_gpu_at_most_one_card_capped_by_the_largest_node():
    assert arrays.array_resources(1.0, 0.25, 4) == {"cpu": 4.0, "gpu": 1.0}
    assert arrays.array_resources(2.0, 0.5, 4) == {"cpu": 8.0, "gpu": 1.0}  # one device trains the array
    assert arrays.array_resources(1.0, 0.0, 4, {"cpu": 2.0, "gpu": 0.0}) == {"cpu": 2.0, "gpu": 0.0}
    assert arrays.array_resources(1.0, 0.1, 3, {"cpu": 16.0, "gpu": 1.0}) == pytest.approx({"cpu": 3.0, "gpu": 0.3})
    assert arrays.largest_node([{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
                                {"Alive": False, "Resources": {"CPU": 64.0}}]) == {"cpu": 8.0, "gpu": 1.0}


def test_validate_prints_the_arrays_and_what_each_asks_ray_for(support):
    from sweeper.views.validate import describe

    lines = describe(parse_spec(spec_text()))
    assert "arrays: 8 of 8 trials in 2 array(s) (resources.array: 4); one array is one Ray trial" in lines
    assert any(line.startswith("  2 array(s) of 4: each asks Ray for cpu 4, gpu 1 (4 x one trial's cpu 1, gpu 0.25")
               for line in lines)
    assert not any("array" in line for line in describe(parse_spec(spec_text(array="1"))))  # solo: as before
    auto = [line for line in describe(parse_spec(spec_text(array="auto"))) if "array" in line]
    assert auto == ["arrays: auto: 1 group(s) of compatible trials; `validate --measure` times solo and array "
                    "steps here and picks each group's size, `run` measures the same way as it starts"]


@pytest.mark.parametrize("extra, word", [
    ("scheduler: {name: asha, grace_period: 1}\n", "ASHA"),
    ("search: {algorithm: optuna, num_samples: 2, space: {lr: {loguniform: [0.01, 1.0]}}}\n", "Optuna"),
])
def test_with_asha_or_optuna_validate_says_arrays_are_off_and_why_in_one_line(support, extra, word):
    from sweeper.views.validate import describe

    spec = parse_spec(spec_text(extra=extra))
    said = [line for line in describe(spec) if "array" in line]
    assert len(said) == 1 and said[0].startswith("arrays are off: ") and word in said[0]
    told = []
    assert arrays.plan_units(spec, payloads(spec), told.append) is None and told == said  # run trains solo


def test_auto_picks_the_size_with_the_most_images_per_s_only_if_it_beats_a_solo_trial():
    measured = {"g1": {2: {"solo_images_per_s": 100, "array_images_per_s": 250},
                       4: {"solo_images_per_s": 100, "array_images_per_s": 600},
                       8: {"solo_images_per_s": 100, "array_images_per_s": 700}},  # more, but < 8 side by side
                "g2": {2: {"solo_images_per_s": 100, "array_images_per_s": 190}}}  # two packed trials might win
    assert arrays.choose_sizes(measured) == {"g1": 4, "g2": 1}


def test_auto_discounts_the_noise_of_its_rounds_before_the_margin():
    def row(ratio, noise):
        return {"solo_images_per_s": 100.0, "packed_images_per_s": 400.0, "array_images_per_s": 400.0 * ratio,
                "noise": noise}

    # a 1.3x median whose rounds spread +-25% might be 0.98x: not trusted; +-5%: 1.24x, an array
    assert arrays.choose_sizes({"g": {4: row(1.3, 0.25)}}) == {"g": 1}
    assert arrays.choose_sizes({"g": {4: row(1.3, 0.05)}}) == {"g": 4}
    # packed is what the members reach side by side, not K x one of them
    assert arrays.choose_sizes({"g": {4: {"solo_images_per_s": 100.0, "packed_images_per_s": 500.0,
                                          "array_images_per_s": 500.0}}}) == {"g": 1}


def test_auto_in_run_measures_the_members_as_grouped_and_groups_by_what_it_measured(support, monkeypatch):
    spec = parse_spec(spec_text(array="auto"))
    calls = []

    def measure_array(configs, rounds, steps):
        calls.append([c["mode"] for c in configs])
        k = len(configs)
        return {"solo_images_per_s": 100.0, "packed_images_per_s": 100.0 * k, "noise": 0.01,
                "array_images_per_s": {2: 150.0, 4: 530.0, 8: 610.0}[k]}

    monkeypatch.setattr(arrays.array_support(), "measure_array", measure_array, raising=False)
    told = []
    units = arrays.plan_units(spec, payloads(spec), told.append)
    assert sorted(len(c) for c in calls) == [2, 4, 8]  # 16 and 32 exceed the group (8 trials)
    # the members as they would train together: mixed modes, not K copies of the costliest
    grouped = [t.config["mode"] for t in payloads(spec)]
    assert all(c == grouped[:len(c)] for c in calls) and len(set(calls[-1])) == 4
    assert [len(u.members) for u in units] == [4, 4]
    assert any("auto chooses:" in line and "arrays of 4" in line for line in told)


def test_auto_that_cannot_measure_trains_solo_and_says_so(support, monkeypatch):
    def broken(configs, rounds, steps):
        raise RuntimeError("no device")

    monkeypatch.setattr(arrays.array_support(), "measure_array", broken, raising=False)
    spec = parse_spec(spec_text(array="auto"))
    told = []
    assert arrays.plan_units(spec, payloads(spec), told.append) is None
    assert told == ["arrays: auto could not measure here (RuntimeError: no device); training solo"]


class _Monitor:
    def __init__(self):
        self.events = []

    def __getattr__(self, name):
        return lambda *a, **k: self.events.append((name, a[0] if a else None))


def test_the_drivers_callback_counts_an_arrays_members_as_trials(support, monkeypatch):
    from sweeper.driver import trial_events
    from sweeper.views import progress

    spec = parse_spec(spec_text())
    units = arrays.group(payloads(spec), 4, support.array_key)
    grid = {p.key: p for u in units for p in u.members}
    table = arrays.tune_arrays(units, 1.0, 0.0, None)
    monitor = _Monitor()
    monkeypatch.setattr(progress.SweepMonitor, "start", classmethod(lambda cls, *a, **k: monitor))
    monkeypatch.setattr(trial_events, "settle_driver_end", lambda *a, **k: (None, None))  # no store here
    ends = trial_events.TrialEnds(None, "0", grid, spec.varying_axes(), total=8, arrays=table)
    ray_trials = [SimpleNamespace(trial_id=str(i), config={"grid": u.grid_point}, path="-") for i, u in enumerate(units)]
    for trial, unit in zip(ray_trials, units):
        ends.on_trial_start(0, ray_trials, trial)
        for member in unit.members:
            ends.on_trial_result(0, ray_trials, trial, {"epoch": 1, "test_acc": 0.5, "trial_key": member.key})
        ends.on_trial_result(0, ray_trials, trial, {"epoch": 2, "test_acc": 0.6, "final_test_acc": 0.6,
                                                    "trial_key": unit.members[0].key})
        ends.on_trial_complete(0, ray_trials, trial)
    keys = {p.key for u in units for p in u.members}
    assert [k for name, k in monitor.events if name == "started"] == [p.key for u in units for p in u.members]
    assert {k for name, k in monitor.events if name == "result"} == keys
    ended = [k for name, k in monitor.events if name == "ended"]
    assert sorted(ended) == sorted(keys)  # each member once, the one that reported its final first
    assert ended[0] == units[0].members[0].key
    assert ends.keys == keys and ends.finished == 2  # two Ray trials ended (tuner.fit's results)


def test_validate_measure_prints_solo_and_array_images_per_s_and_what_auto_chooses(support):
    from sweeper.plan import array_measure

    spec = parse_spec(spec_text(array="auto"))
    trials = payloads(spec)
    key = support.array_key(trials[0].config)
    measured = {key: {2: {"solo_images_per_s": 1000.0, "array_images_per_s": 1500.0, "noise": 0.02},
                      4: {"solo_images_per_s": 1000.0, "array_images_per_s": 4800.0, "noise": 0.05}}}
    lines = array_measure.measured_lines(spec, trials, measured)
    rows = [line.split() for line in lines if line.startswith("  bn_only")]
    assert [row[1:] for row in rows] == [["8", "2", "1,000", "1,500", "0.75x", "±2%"],
                                         ["8", "4", "1,000", "4,800", "1.20x", "±5%"]]
    assert any(line.startswith("  auto chooses: bn_only-d8-w1-lr0.1-s0: arrays of 4") for line in lines)
    assert any("2 array(s) of 4: each asks Ray for cpu 4, gpu 1" in line for line in lines)


def test_run_dry_run_shows_which_array_each_remaining_trial_would_train_in(support, tmp_path, tracking_uri):
    from click.testing import CliRunner

    from sweeper.cli import cli

    path = tmp_path / "a.yaml"
    path.write_text(spec_text(array="4"))
    result = CliRunner().invoke(cli, ["run", str(path), "--dry-run", "--tracking-uri", tracking_uri,
                                      "--storage", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "bn_only-" in line or "full-" in line
            or "output_only-" in line or "random_params-" in line]
    expected = {u.members[i].key: u.array for u in arrays.group(payloads(parse_spec(spec_text())), 4, support.array_key)
                for i in range(len(u.members))}
    assert len(rows) == 8 and len(set(expected.values())) == 2
    for row in rows:
        key = row.split()[2]
        assert row.split()[-1] == expected[key] and row.split()[-2] == "pending"
    assert "arrays: 8 of 8 trials in 2 array(s) (resources.array: 4); one array is one Ray trial" in result.output


def test_only_trials_at_the_same_progress_share_an_array(support):
    trials = payloads(parse_spec(spec_text()))  # 8 compatible trials
    progress = {trials[0].key: 90, trials[1].key: 90, trials[2].key: 3}
    units = arrays.group(trials, 4, support.array_key, progress)
    by_done = sorted((sorted({progress.get(m.key, 0) for m in u.members}), len(u.members)) for u in units)
    assert by_done == [([0], 1), ([0], 4), ([3], 1), ([90], 2)]  # never two progresses in one unit
    told = []
    planned = arrays.plan_units(parse_spec(spec_text()), trials, told.append, progress=progress)
    assert sorted(len(u.members) for u in planned) == [1, 1, 2, 4]
    assert sorted(len(u.members) for u in arrays.plan_units(parse_spec(spec_text()), trials, told.append)) == [4, 4]
