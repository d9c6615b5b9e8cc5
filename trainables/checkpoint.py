"""Atomic checkpoints that hold only what a trial cannot rebuild from its seed.

A trial's frozen weights are drawn from ``seed`` (models/init.py) and its ``random_params`` masks
too (modes.py), so a checkpoint keeps: the trainable tensors (for a masked tensor only its
trainable entries), every buffer (BN running statistics keep updating in every mode), the
optimizer and scheduler state (for a masked tensor again only its trainable entries), the epoch,
the metric history, the RNG states, the seed and the trial configuration. A ``bn_only``
ResNet-110 checkpoint is therefore ~100 KB where a ``full`` one is ~14 MB.

Layout: ``DIR/checkpoint.pt`` (one ``torch.save`` file, loaded with ``weights_only=True``) and,
written by the loop at the end, ``DIR/gamma.json``. Tensors are packed into one flat tensor per
dtype, so hundreds of small BN tensors do not each pay a zip record.

Saving writes a temporary file in the same folder, fsyncs it and ``os.replace``s it over the old
checkpoint: a crash at any point leaves either the old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from trainables.config import RESUME_IGNORES, ConfigError, TrialConfig, identity_view
from trainables.keys import flatten

CHECKPOINT_FILE = "checkpoint.pt"
GAMMA_FILE = "gamma.json"
FORMAT_VERSION = 1
_TMP_PREFIX = ".checkpoint-"
_PACKED = "__packed_tensor__"


class CheckpointError(Exception):
    """A checkpoint folder that cannot be used: another trial's checkpoint, or an unreadable file.

    ``str(e)`` is one line naming the folder; the CLI prints it and exits with code 2.
    """

    def __init__(self, directory: str | Path, message: str):
        super().__init__(f"{directory}: {message}")
        self.directory = str(directory)
        self.message = message

    def __reduce__(self):
        # Ray copies a trial's exception to the driver by pickling it; the default reduce would
        # call __init__ with the one formatted string and fail, hiding the real message.
        return (type(self), (self.directory, self.message))


# --- the trial's identity ------------------------------------------------------------------


def config_identity(config: TrialConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The flattened configuration that decides whether a checkpoint may be resumed: all of it but
    ``RESUME_IGNORES`` (declared on the config's fields: another node's data path or device, a
    different checkpoint cadence still resume)."""
    plain = config.to_dict() if isinstance(config, TrialConfig) else config
    # identity_view: a checkpoint written before a setting existed resumes under its default
    return {k: v for k, v in flatten(identity_view(plain)).items() if k not in RESUME_IGNORES}


def config_hash(config: TrialConfig | Mapping[str, Any]) -> str:
    text = json.dumps(config_identity(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def check_same_trial(checkpoint: Mapping[str, Any], config: TrialConfig, directory: str | Path) -> None:
    """Refuse to resume a checkpoint written for another configuration, naming what differs."""
    if checkpoint["config_hash"] == config_hash(config):
        return
    mine, theirs = config_identity(config), config_identity(checkpoint["config"])
    differing = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k, "<unset>") != theirs.get(k, "<unset>"))
    shown = ", ".join(f"{k}={theirs.get(k, '<unset>')!r} there, {mine.get(k, '<unset>')!r} here" for k in differing[:3])
    more = f" and {len(differing) - 3} more" if len(differing) > 3 else ""
    raise CheckpointError(directory, f"holds a checkpoint of another trial ({shown}{more}); "
                                     "use a new checkpoint folder or the original configuration")


# --- model, optimizer and RNG state ----------------------------------------------------------


def _masks(trainability: Any) -> Mapping[str, torch.Tensor]:
    return getattr(trainability, "masks", None) or {}


def model_state(model: nn.Module, trainability: Any) -> dict[str, dict[str, torch.Tensor]]:
    """Trainable parameters (masked ones as their trainable entries only) and all buffers."""
    masks = _masks(trainability)
    params = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        value = param.detach()
        params[name] = value[masks[name].to(value.device)] if name in masks else value
    buffers = {name: buf.detach() for name, buf in model.named_buffers()}
    return {"params": params, "buffers": buffers}


@torch.no_grad()
def restore_model_state(model: nn.Module, trainability: Any, state: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """Write a ``model_state`` back into a model rebuilt from the same seed and mode."""
    masks = _masks(trainability)
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    if set(state["params"]) != trainable:
        raise ValueError(f"checkpoint trains {sorted(state['params'])[:5]}..., the model trains {sorted(trainable)[:5]}...")
    for name, value in state["params"].items():
        param = params[name]
        if name in masks:
            param[masks[name].to(param.device)] = value.to(param.device, param.dtype)
        else:
            param.copy_(value)
    buffers = dict(model.named_buffers())
    if set(state["buffers"]) != set(buffers):
        raise ValueError("checkpoint buffers do not match the model's")
    for name, value in state["buffers"].items():
        buffers[name].copy_(value)


def _param_names_by_index(model: nn.Module, optimizer: Any) -> list[str]:
    """Parameter names in the order ``optimizer.state_dict()`` numbers them."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names.get(id(p), "") for group in optimizer.param_groups for p in group["params"]]


def optimizer_state(model: nn.Module, trainability: Any, optimizer: Any) -> dict[str, Any]:
    """``optimizer.state_dict()`` with per-entry state of masked tensors cut to the trainable entries.

    Optimizer state is element-wise (momentum, Adam moments), so the state of a frozen entry only
    ever moves that frozen entry, which the mode keeps fixed: it need not survive a resume.
    ``masked`` records which (index, key) pairs were cut, so restoring needs no guessing.
    """
    state = optimizer.state_dict()
    masks = _masks(trainability)
    if not masks:
        return {"state_dict": state, "masked": {}}
    names = _param_names_by_index(model, optimizer)
    params = dict(model.named_parameters())
    cut_state, masked = {}, {}
    for index, entry in state["state"].items():
        name = names[index]
        if name in masks:
            shape, mask = params[name].shape, masks[name]
            keys = [k for k, v in entry.items() if torch.is_tensor(v) and v.shape == shape]
            entry = {k: (v[mask.to(v.device)] if k in keys else v) for k, v in entry.items()}
            masked[index] = keys
        cut_state[index] = entry
    return {"state_dict": {**state, "state": cut_state}, "masked": masked}


def restore_optimizer_state(model: nn.Module, trainability: Any, optimizer: Any, saved: Mapping[str, Any]) -> None:
    state = saved["state_dict"]
    if saved["masked"]:
        masks = _masks(trainability)
        names = _param_names_by_index(model, optimizer)
        params = dict(model.named_parameters())
        full_state = dict(state["state"])
        for index, keys in saved["masked"].items():
            param, mask = params[names[index]], masks[names[index]].cpu()
            entry = dict(full_state[index])
            for key in keys:
                # frozen entries get zero state; it only ever moves frozen (restored) entries
                full = torch.zeros(param.shape, dtype=entry[key].dtype)
                full[mask] = entry[key]
                entry[key] = full
            full_state[index] = entry
        state = {**state, "state": full_state}
    optimizer.load_state_dict(state)


def rng_state() -> dict[str, Any]:
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    cuda_states = state.get("cuda")
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


# --- packing: one flat tensor per dtype ------------------------------------------------------


def _pack(value: Any, flats: dict[str, list[torch.Tensor]], sizes: dict[str, int]) -> Any:
    if torch.is_tensor(value):
        flat = value.detach().cpu().contiguous().reshape(-1)
        dtype = str(flat.dtype).removeprefix("torch.")
        offset = sizes.get(dtype, 0)
        flats.setdefault(dtype, []).append(flat)
        sizes[dtype] = offset + flat.numel()
        return (_PACKED, dtype, offset, tuple(value.shape))
    if isinstance(value, Mapping):
        return {k: _pack(v, flats, sizes) for k, v in value.items()}
    if isinstance(value, list):
        return [_pack(v, flats, sizes) for v in value]
    if isinstance(value, tuple):
        return tuple(_pack(v, flats, sizes) for v in value)
    return value


def _unpack(value: Any, flats: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, tuple) and len(value) == 4 and value[0] == _PACKED:
        _, dtype, offset, shape = value
        numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
        return flats[dtype][offset:offset + numel].reshape(shape).clone()
    if isinstance(value, dict):
        return {k: _unpack(v, flats) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v, flats) for v in value]
    if isinstance(value, tuple):
        return tuple(_unpack(v, flats) for v in value)
    return value


# --- files -------------------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Any, before_commit: Callable[[], None] | None = None) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then move it over ``path``.
    ``before_commit()`` is called just before the move; if it raises, ``path`` is left as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        if before_commit is not None:
            before_commit()
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def save_checkpoint(directory: str | Path, payload: Mapping[str, Any],
                    before_commit: Callable[[], None] | None = None) -> Path:
    """Write ``payload`` (nested dicts, lists, tuples, scalars, tensors) atomically; a
    ``before_commit`` that raises (a trial's fence) leaves the previous checkpoint in place."""
    directory = Path(directory)
    flats: dict[str, list[torch.Tensor]] = {}
    skeleton = _pack(dict(payload), flats, {})
    record = {"format": FORMAT_VERSION, "skeleton": skeleton,
              "tensors": {dtype: torch.cat(parts) for dtype, parts in flats.items()}}
    path = directory / CHECKPOINT_FILE
    try:
        atomic_write(path, lambda file: torch.save(record, file), before_commit)
    except (OSError, RuntimeError) as e:  # disk full, quota, a folder gone: the old file stands
        raise CheckpointError(directory, f"could not write {CHECKPOINT_FILE} ({_first_line(e)}); "
                                         "the previous checkpoint is kept") from e
    # A process killed mid-save leaves its temporary file behind; ours just succeeded, so any
    # other is stale.
    for stale in directory.glob(f"{_TMP_PREFIX}*.tmp"):
        try:
            stale.unlink()
        except OSError:
            pass
    return path


# What reading a file that is not (or no longer) a checkpoint of ours raises: torch's zip reader
# on a truncated file (RuntimeError), the weights-only unpickler on a foreign one (UnpicklingError,
# EOFError, KeyError), our own checks on another format or layout. Anything else (MemoryError, an
# OSError of the disk or the network) says nothing about the file: it propagates, the trial fails
# with the checkpoint in place, and Ray retries it.
UNREADABLE = (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, KeyError, IndexError, TypeError,
              AttributeError, zipfile.BadZipFile)


def load_checkpoint(directory: str | Path) -> dict[str, Any] | None:
    """The payload saved in ``directory``, or None when it holds no checkpoint. CheckpointError
    when the file is unreadable (``UNREADABLE``); a transient error (memory, I/O) propagates."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
        if record.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {record.get('format')!r}, expected {FORMAT_VERSION}")
        return _unpack(record["skeleton"], record["tensors"])
    except UNREADABLE as e:  # a foreign or damaged file: say so in one line
        raise CheckpointError(directory, f"{CHECKPOINT_FILE} is not a readable trainables checkpoint "
                                         f"({_cause(e)})") from e


def set_aside_if_unusable(directory: str | Path, config: TrialConfig | Mapping[str, Any]) -> tuple[Path, str] | None:
    """Move an unreadable or foreign ``checkpoint.pt`` out of the way (renamed, never deleted) so
    the trial starts from scratch instead of failing on every run; (new path, why) or None. Only
    a CheckpointError (the file itself is bad) sets it aside: an error while reading it (memory,
    I/O) propagates and leaves a good checkpoint where it is."""
    config = config if isinstance(config, TrialConfig) else TrialConfig.from_dict(config)
    try:
        saved = load_checkpoint(directory)
        if saved is not None:
            check_same_trial(saved, config, directory)
        return None
    except CheckpointError as e:
        why = e.message
    path = Path(directory) / CHECKPOINT_FILE
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{CHECKPOINT_FILE}.unusable-{stamp}-{os.getpid()}")
    os.replace(path, aside)
    return aside, why


def _cause(e: BaseException) -> str:
    """The first sentence of an error, short: torch's unpickling errors run to a paragraph of
    advice (load with weights_only=False) that must not be followed for a file we cannot read."""
    text = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:160]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def write_gamma_json(directory: str | Path, gammas: Mapping[str, list[float]]) -> Path:
    path = Path(directory) / GAMMA_FILE
    text = json.dumps({"layers": dict(gammas)})
    atomic_write(path, lambda file: file.write(text.encode()))
    return path


# --- rebuilding a trained model ----------------------------------------------------------------


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The model of the checkpoint in ``directory``: frozen weights redrawn from the seed, the
    trained state written over them; in eval mode, on ``device``."""
    from trainables.fidelity import conventions
    from trainables.models import build_model  # lazy: checkpoint I/O needs no model code
    from trainables.modes import apply_mode

    checkpoint = load_checkpoint(directory)
    if checkpoint is None:
        raise CheckpointError(directory, f"holds no {CHECKPOINT_FILE}")
    try:
        config = TrialConfig.from_dict(checkpoint["config"])
    except ConfigError as e:
        raise CheckpointError(directory, f"its stored configuration is invalid: {e}") from e
    model = build_model(config.model, checkpoint["num_classes"], config.seed,
                        bias_init=conventions(config.train.fidelity).bias_init)
    trainability = apply_mode(model, config.mode, config.seed)
    restore_model_state(model, trainability, checkpoint["model"])
    return model.to(device).eval()
