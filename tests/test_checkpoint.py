"""Checkpoint files: atomic, compact, tied to one trial configuration; and the lr schedules they carry."""

import math
import os

import pytest
import torch

from trainables import checkpoint
from trainables.checkpoint import CheckpointError
from trainables.config import TrialConfig
from trainables.schedule import LRSchedule, StepwiseLR, build_scheduler


def trial(**train):
    return TrialConfig.from_dict({
        "dataset": {"name": "synthetic"},
        "model": {"family": "cifar_resnet", "depth": 8},
        "train": {"epochs": 4, **train},
    })


def payload(value: float) -> dict:
    return {"epoch": 3, "history": [{"test_acc": 0.5}], "weights": {"w": torch.full((3, 2), value)},
            "steps": torch.tensor(7), "rng": (3, tuple(range(5)), None), "final": None}


# --- files -------------------------------------------------------------------------------------


def test_save_then_load_gives_back_every_value_and_dtype(tmp_path):
    data = payload(1.5)
    data["mixed"] = [torch.arange(4, dtype=torch.int64), torch.ones(2, dtype=torch.uint8), torch.tensor(2.0)]
    checkpoint.save_checkpoint(tmp_path, data)
    loaded = checkpoint.load_checkpoint(tmp_path)
    assert loaded["epoch"] == 3 and loaded["history"] == [{"test_acc": 0.5}] and loaded["final"] is None
    assert torch.equal(loaded["weights"]["w"], data["weights"]["w"])
    assert loaded["rng"] == (3, (0, 1, 2, 3, 4), None)
    for got, want in zip(loaded["mixed"], data["mixed"]):
        assert got.dtype == want.dtype and got.shape == want.shape and torch.equal(got, want)
    assert loaded["steps"].shape == () and int(loaded["steps"]) == 7


def test_an_empty_folder_has_no_checkpoint(tmp_path):
    assert checkpoint.load_checkpoint(tmp_path) is None
    assert checkpoint.load_checkpoint(tmp_path / "missing") is None


def test_a_crash_mid_write_leaves_the_previous_checkpoint_intact_and_no_temporary_file(tmp_path, monkeypatch):
    checkpoint.save_checkpoint(tmp_path, payload(1.0))
    real_save = torch.save

    def half_written(obj, file):
        real_save(obj, file)
        file.seek(0)
        file.truncate(40)  # a torn file on disk ...
        raise OSError("disk full")  # ... and the process dies mid-save

    monkeypatch.setattr(checkpoint.torch, "save", half_written)
    with pytest.raises(CheckpointError, match="disk full.*the previous checkpoint is kept"):
        checkpoint.save_checkpoint(tmp_path, payload(2.0))
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == [checkpoint.CHECKPOINT_FILE]
    assert torch.equal(checkpoint.load_checkpoint(tmp_path)["weights"]["w"], torch.full((3, 2), 1.0))


def test_a_full_disk_keeps_the_previous_checkpoint_and_fails_with_one_line(tmp_path, monkeypatch):
    """ENOSPC from the kernel: the new checkpoint is written to /dev/full, which takes no byte."""
    checkpoint.save_checkpoint(tmp_path, payload(1.0))
    real_mkstemp = checkpoint.tempfile.mkstemp

    def onto_a_full_disk(**kw):
        fd, name = real_mkstemp(**kw)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), name

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", onto_a_full_disk)
    with pytest.raises(CheckpointError) as info:
        checkpoint.save_checkpoint(tmp_path, payload(2.0))
    monkeypatch.undo()
    message = str(info.value)
    assert "\n" not in message and "No space left on device" in message, message
    assert message.startswith(f"{tmp_path}: could not write checkpoint.pt") and "previous checkpoint is kept" in message
    assert sorted(os.listdir(tmp_path)) == [checkpoint.CHECKPOINT_FILE]
    assert torch.equal(checkpoint.load_checkpoint(tmp_path)["weights"]["w"], torch.full((3, 2), 1.0))


def test_checkpoint_errors_cross_process_boundaries_with_their_message():
    import pickle

    error = CheckpointError("/x/trials/abc", "checkpoint.pt is not a readable trainables checkpoint")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is CheckpointError and str(copy) == str(error)
    assert (copy.directory, copy.message) == (error.directory, error.message)


@pytest.mark.parametrize("content", ["garbage", "truncated", "truncated_to_10", "empty", "pickle", "foreign"])
def test_an_unusable_checkpoint_is_set_aside_not_deleted(tmp_path, content):
    path = tmp_path / checkpoint.CHECKPOINT_FILE
    mine = trial(lr=0.1)
    if content in ("garbage", "empty", "pickle"):
        import pickle

        path.write_bytes({"garbage": b"not a checkpoint", "empty": b"", "pickle": pickle.dumps(object, protocol=2)}[content])
    else:
        other = trial(lr=0.3) if content == "foreign" else mine
        checkpoint.save_checkpoint(tmp_path, {"config": other.to_dict(), "config_hash": checkpoint.config_hash(other)})
        if content.startswith("truncated"):
            path.write_bytes(path.read_bytes()[:10 if content == "truncated_to_10" else 100])
    before = path.read_bytes()
    aside, why = checkpoint.set_aside_if_unusable(tmp_path, mine)
    assert not path.exists() and aside.read_bytes() == before
    assert aside.parent == tmp_path and aside.name.startswith("checkpoint.pt.unusable-")
    assert ("another trial" in why) if content == "foreign" else ("not a readable" in why)
    assert checkpoint.set_aside_if_unusable(tmp_path, mine) is None  # nothing left to set aside


@pytest.mark.parametrize("error", [MemoryError(), OSError(5, "Input/output error"), TimeoutError("nfs")])
def test_a_transient_error_while_reading_propagates_and_leaves_a_good_checkpoint(tmp_path, monkeypatch, error):
    mine = trial(lr=0.1)
    checkpoint.save_checkpoint(tmp_path, {"config": mine.to_dict(), "config_hash": checkpoint.config_hash(mine)})
    before = (tmp_path / checkpoint.CHECKPOINT_FILE).read_bytes()

    def failing_load(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch, "load", failing_load)
    with pytest.raises(type(error)):
        checkpoint.set_aside_if_unusable(tmp_path, mine)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == [checkpoint.CHECKPOINT_FILE]
    assert (tmp_path / checkpoint.CHECKPOINT_FILE).read_bytes() == before
    assert checkpoint.set_aside_if_unusable(tmp_path, mine) is None  # read again once it passes: kept


def test_a_usable_checkpoint_stays_where_it_is(tmp_path):
    mine = trial(lr=0.1)
    checkpoint.save_checkpoint(tmp_path, {"config": mine.to_dict(), "config_hash": checkpoint.config_hash(mine)})
    assert checkpoint.set_aside_if_unusable(tmp_path, trial(lr=0.1, device="cpu")) is None
    assert sorted(os.listdir(tmp_path)) == [checkpoint.CHECKPOINT_FILE]


def test_a_temporary_file_left_by_a_killed_process_is_ignored_then_cleaned(tmp_path):
    checkpoint.save_checkpoint(tmp_path, payload(1.0))
    (tmp_path / ".checkpoint-dead.tmp").write_bytes(b"PK\x03\x04 torn")
    assert torch.equal(checkpoint.load_checkpoint(tmp_path)["weights"]["w"], torch.full((3, 2), 1.0))
    checkpoint.save_checkpoint(tmp_path, payload(2.0))
    assert sorted(os.listdir(tmp_path)) == [checkpoint.CHECKPOINT_FILE]


def test_a_damaged_checkpoint_is_a_one_line_error_naming_the_folder(tmp_path):
    (tmp_path / checkpoint.CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_checkpoint(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: checkpoint.pt is not a readable")
    assert "\n" not in str(info.value)


def test_small_tensors_share_one_record_so_a_bn_sized_state_stays_small(tmp_path):
    # ~ResNet-110's BN: 111 layers of gamma, beta, mean, var, count, plus momentum
    state = {f"bn{i}.{k}": torch.zeros(64) for i in range(111) for k in ("w", "b", "m", "v", "mw", "mb")}
    state.update({f"bn{i}.n": torch.tensor(5) for i in range(111)})
    path = checkpoint.save_checkpoint(tmp_path, {"state": state})
    plain = tmp_path / "plain.pt"
    torch.save({"state": state}, plain)  # one zip record and pickle entry per tensor
    raw_bytes = 111 * 6 * 64 * 4 + 111 * 8
    packed_overhead = path.stat().st_size - raw_bytes
    plain_overhead = plain.stat().st_size - raw_bytes
    assert packed_overhead < plain_overhead / 4


# --- identity ----------------------------------------------------------------------------------


def test_config_hash_ignores_where_a_trial_runs_but_not_what_it_computes():
    base = trial()
    assert checkpoint.config_hash(base) == checkpoint.config_hash(trial(device="cpu", compile=True))
    assert checkpoint.config_hash(base) != checkpoint.config_hash(trial(lr=0.2))


def test_resuming_another_trial_names_the_keys_that_differ(tmp_path):
    saved = {"config": trial(lr=0.1).to_dict(), "config_hash": checkpoint.config_hash(trial(lr=0.1))}
    checkpoint.check_same_trial(saved, trial(lr=0.1, device="cpu"), tmp_path)  # same trial: no error
    with pytest.raises(CheckpointError) as info:
        checkpoint.check_same_trial(saved, trial(lr=0.2), tmp_path)
    message = str(info.value)
    assert message.startswith(f"{tmp_path}: holds a checkpoint of another trial")
    assert "train.lr=0.1 there, 0.2 here" in message


# --- learning-rate schedules -------------------------------------------------------------------


def test_step_schedule_with_milestones_lowers_lr_at_those_epochs():
    s = LRSchedule.from_config(trial(epochs=6, lr=1.0, lr_schedule={"name": "step", "milestones": [2, 4],
                                                                     "factor": 0.1}).train, steps_per_epoch=10)
    assert [s.lr_at(e * 10) for e in range(6)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert s.lr_at(19) == 1.0 and s.lr_at(20) == pytest.approx(0.1)


def test_step_schedule_with_step_size_multiplies_every_step_size_epochs():
    s = LRSchedule.from_config(trial(epochs=6, lr=1.0, lr_schedule={"name": "step", "step_size": 3,
                                                                     "factor": 0.5}).train, steps_per_epoch=2)
    assert [s.lr_at(e * 2 + 1) for e in range(6)] == [1, 1, 1, 0.5, 0.5, 0.5]


def test_cosine_goes_from_lr_to_min_lr_after_warm_up():
    s = LRSchedule.from_config(trial(epochs=4, lr=1.0, warmup_epochs=1,
                                     lr_schedule={"name": "cosine", "min_lr": 0.1}).train, steps_per_epoch=5)
    assert [s.lr_at(i) for i in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])  # linear warm-up
    assert s.lr_at(5) == pytest.approx(1.0)
    assert s.lr_at(5 + 15 // 2) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 15)))
    assert s.lr_at(19) > 0.1 and s.lr_at(20) == pytest.approx(0.1)


def test_fractional_warm_up_lasts_that_share_of_an_epoch():
    s = LRSchedule.from_config(trial(warmup_epochs=0.5, lr=0.4).train, steps_per_epoch=8)
    assert s.warmup_steps == 4
    assert [s.lr_at(i) for i in range(6)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4, 0.4])


def test_stepwise_lr_sets_every_group_each_step_and_its_state_resumes():
    params = [torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=123.0)
    config = trial(epochs=2, lr=1.0, lr_schedule={"name": "step", "milestones": [1], "factor": 0.1}).train
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=3)
    assert [g["lr"] for g in optimizer.param_groups] == [1.0, 1.0]
    for _ in range(3):
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1, 0.1])
    resumed = StepwiseLR(torch.optim.SGD(params, lr=5.0), scheduler.schedule)
    resumed.load_state_dict(scheduler.state_dict())
    assert resumed.steps_done == 3 and resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
