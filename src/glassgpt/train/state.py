"""Training checkpoints: the run directory holds everything needed to continue exactly.

    run/
      checkpoint.json     which checkpoint is current: {"step": N, "dir": "checkpoints/step-0000000N-xxxxxx"}
      checkpoints/step-…/ one complete, resumable set: config.json, model.safetensors,
                          tokenizer.json, train_state.pt (optimizer moments, step, elapsed time,
                          best val loss, every RNG state)
      config.json, model.safetensors, tokenizer.json
                          the current checkpoint's model (hard links), for glassgpt.load(run)
      train_config.json   the TrainConfig and the data directory
      log.jsonl           one JSON record per log line / evaluation
      loss.png            train and validation loss against step
      best/               the checkpoint with the lowest validation loss so far
      .lock               held while a process trains here (glassgpt.locks)

A checkpoint is one unit. A save writes a new set into a fresh directory (every file
atomic and fsynced), then publishes it by rewriting checkpoint.json, one atomic rename:
that is the commit. A crash, kill or full disk before it leaves the previous set current;
after it, the new one; never weights of one step beside the optimizer state of another.
The previous set is deleted only after the commit; sets never published and temporary
files left by a kill are deleted when the run is next opened (`recover`).

train_state.pt holds only tensors, numbers, strings and containers of them, and is read
with `torch.load(weights_only=True)`, which refuses to unpickle anything else.
"""
from __future__ import annotations

import contextlib
import json
import pickle
import random
import secrets
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError, GlassError
from ..fileio import (append_line, atomic_link, atomic_path, atomic_write_text, fault_point, fsync_dir, make_dirs,
                      remove_stale_temporaries, remove_tree)
from ..model import save
from ..model.checkpoint import CONFIG, TOKENIZER, WEIGHTS

STATE, LOG, PLOT, BEST = "train_state.pt", "log.jsonl", "loss.png", "best"
POINTER, CHECKPOINTS = "checkpoint.json", "checkpoints"


# -- random number generators -----------------------------------------------------------------
def rng_state(sampler_state: torch.Tensor) -> dict:
    """Every RNG that can influence training: dropout (torch), the batch sampler, numpy, python."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "sampler": sampler_state,
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
    }


def restore_rng(state: dict) -> torch.Tensor:
    """Put every RNG back; returns the batch sampler's state for the sampler to take."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(state["python"])
    return state["sampler"]


# -- saving -----------------------------------------------------------------------------------
def save_checkpoint(run_dir: Path, model, train_state: dict) -> Path:
    """Write a complete set into a fresh directory, then publish it with one pointer write."""
    run_dir = Path(run_dir)
    step = int(train_state["step"])
    folder = make_dirs(run_dir / CHECKPOINTS) / f"step-{step:08d}-{secrets.token_hex(3)}"
    try:
        save(model, folder, metadata={"step": step})          # config, tokenizer, weights
        with atomic_path(folder / STATE) as tmp, open(tmp, "wb") as f:
            torch.save(train_state, f)
        fsync_dir(folder)
        fsync_dir(folder.parent)
    except BaseException:
        with contextlib.suppress(GlassError):
            remove_tree(folder)                                 # never published: not a checkpoint
        raise
    fault_point("set-written", folder)
    atomic_write_text(run_dir / POINTER, json.dumps({"step": step, "dir": f"{CHECKPOINTS}/{folder.name}"}))
    fault_point("published", run_dir / POINTER)
    link_model(run_dir, folder)
    for old in (run_dir / CHECKPOINTS).iterdir():
        if old != folder and old.is_dir():
            remove_tree(old)
            fault_point("old-removed", old)
    return folder


def link_model(run_dir: Path, folder: Path) -> None:
    """Make run/config.json, model.safetensors, tokenizer.json the checkpoint's own files."""
    for name in (CONFIG, TOKENIZER, WEIGHTS):
        if (folder / name).is_file():
            atomic_link(folder / name, run_dir / name)


def save_best(run_dir: Path, model, step: int, val_loss: float) -> None:
    save(model, run_dir / BEST, metadata={"step": step, "val_loss": f"{val_loss:.6f}"})


# -- opening a run ----------------------------------------------------------------------------
def read_pointer(run_dir: Path) -> dict | None:
    """checkpoint.json: {"step", "dir"} of the current checkpoint, or None if there is none."""
    file = Path(run_dir) / POINTER
    try:
        pointer = json.loads(file.read_text(encoding="utf-8"))
        if not (isinstance(pointer, dict) and isinstance(pointer.get("step"), int)
                and isinstance(pointer.get("dir"), str) and pointer["dir"].startswith(CHECKPOINTS + "/")
                and ".." not in pointer["dir"]):
            raise ValueError("unexpected fields")
        return pointer
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{file} is unreadable ({_reason(e)}): start a new run from the weights with "
                              f"`glassgpt train DATA_DIR -o NEW_RUN --init-from {run_dir}`") from e


def current_checkpoint(run_dir: Path) -> Path | None:
    pointer = read_pointer(run_dir)
    return Path(run_dir) / pointer["dir"] if pointer else None


def recover(run_dir: Path) -> list[str]:
    """Clean up after a killed process (call it holding the run's lock): delete temporary
    files and checkpoint sets that were never published, and point run/model.safetensors
    at the current checkpoint. Returns what was done, for a note."""
    run_dir = Path(run_dir)
    removed = [p for d in (run_dir, run_dir / BEST) for p in remove_stale_temporaries(d)]
    current = current_checkpoint(run_dir)
    if (run_dir / CHECKPOINTS).is_dir():
        for old in (run_dir / CHECKPOINTS).iterdir():
            if old != current:
                if old.is_dir():
                    remove_tree(old)
                else:
                    old.unlink()
                removed.append(old)
    if current is not None and current.is_dir():
        removed += remove_stale_temporaries(current)
        if _weights_step(run_dir) != str(read_pointer(run_dir)["step"]):
            link_model(run_dir, current)
    return [f"removed {len(removed)} unfinished file(s) left by an interrupted process"] if removed else []


def _weights_step(run_dir: Path) -> str | None:
    try:
        with safe_open(str(run_dir / WEIGHTS), framework="pt") as f:
            return (f.metadata() or {}).get("step")
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return None


# -- loading ----------------------------------------------------------------------------------
def load_train_state(run_dir: Path) -> dict:
    """The resume state of the current checkpoint, checked against the weights beside it."""
    run_dir = Path(run_dir)
    folder = current_checkpoint(run_dir)
    if folder is None:
        if (run_dir / WEIGHTS).is_file():
            raise CheckpointError(f"{run_dir} has weights but no resumable checkpoint (no {POINTER}): start a "
                                  f"new run from them with `glassgpt train DATA_DIR -o NEW_RUN --init-from {run_dir}`")
        raise CheckpointError(f"{run_dir} is not a resumable run (no {POINTER}): "
                              f"start a new one with `glassgpt train DATA_DIR -o {run_dir}`")
    for needed in (CONFIG, WEIGHTS, STATE):
        if not (folder / needed).is_file():
            raise CheckpointError(f"{folder} is incomplete (no {needed}): start a new run from the weights with "
                                  f"`glassgpt train DATA_DIR -o NEW_RUN --init-from {run_dir}`")
    try:
        state = torch.load(folder / STATE, map_location="cpu", weights_only=True)
        step = int(state["step"])
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{folder / STATE} is corrupt or not plain data ({type(e).__name__}): training "
                              f"cannot resume from it; start a new run from the weights with "
                              f"`glassgpt train DATA_DIR -o NEW_RUN --init-from {run_dir}`") from e
    weights_step = weights_metadata(folder).get("step")
    if weights_step != str(step):
        raise CheckpointError(f"{folder}: {WEIGHTS} is from step {weights_step} but {STATE} from step {step}: "
                              f"start a new run from the weights with "
                              f"`glassgpt train DATA_DIR -o NEW_RUN --init-from {run_dir}`")
    return state


def weights_metadata(folder: Path) -> dict:
    try:
        with safe_open(str(folder / WEIGHTS), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{folder / WEIGHTS} is corrupt or truncated ({str(e)[:80]}): "
                              f"restore it from a backup or re-train") from e


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e).splitlines()[0][:80] or type(e).__name__


# -- the log ----------------------------------------------------------------------------------
def read_log(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / LOG
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue                        # a line cut short by a crash
        if isinstance(record, dict):
            records.append(record)
    return records


def truncate_log(run_dir: Path, step: int) -> list[dict]:
    """Drop records written after the checkpoint at `step` (they will be written again)."""
    records = [r for r in read_log(run_dir) if r.get("step", 0) <= step]
    atomic_write_text(Path(run_dir) / LOG, "".join(json.dumps(r) + "\n" for r in records))
    return records


def append_log(run_dir: Path, record: dict) -> None:
    append_line(Path(run_dir) / LOG, json.dumps(record))
