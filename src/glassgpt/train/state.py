"""Training checkpoints: the run directory holds everything needed to continue exactly.

    run/
      config.json, model.safetensors, tokenizer.json   a loadable model (glassgpt.model.save)
      train_state.pt     optimizer moments, step, elapsed time, best val loss, every RNG state
      train_config.json  the TrainConfig and the data directory
      log.jsonl          one JSON record per log line / evaluation
      loss.png           train and validation loss against step
      best/              the checkpoint with the lowest validation loss so far

Each file is written to a temporary name and renamed into place, so a crash while saving
leaves the previous checkpoint whole. The step is stored both in train_state.pt and in
the weights' metadata: if a crash ever separates them, resuming says so instead of
continuing from mismatched weights and optimizer moments.

train_state.pt holds only tensors, numbers, strings and containers of them, and is read
with `torch.load(weights_only=True)`, which refuses to unpickle anything else.
"""
from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError
from ..fileio import atomic_path
from ..model import save
from ..model.checkpoint import CONFIG, WEIGHTS

STATE, LOG, PLOT, BEST = "train_state.pt", "log.jsonl", "loss.png", "best"


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
def save_checkpoint(run_dir: Path, model, train_state: dict) -> None:
    """Weights first, then the state that refers to them (both atomic, both stamped with the step)."""
    save(model, run_dir, metadata={"step": train_state["step"]})
    with atomic_path(run_dir / STATE) as tmp:
        torch.save(train_state, tmp)


def save_best(run_dir: Path, model, step: int, val_loss: float) -> None:
    save(model, run_dir / BEST, metadata={"step": step, "val_loss": f"{val_loss:.6f}"})


# -- loading ----------------------------------------------------------------------------------
def load_train_state(run_dir: Path) -> dict:
    """The resume state, checked against the weights beside it; one-line errors otherwise."""
    run_dir = Path(run_dir)
    for needed in (CONFIG, WEIGHTS, STATE):
        if not (run_dir / needed).is_file():
            raise CheckpointError(f"{run_dir} is not a resumable run (no {needed}): "
                                  f"start a new one with `glassgpt train DATA_DIR -o {run_dir}`")
    try:
        state = torch.load(run_dir / STATE, map_location="cpu", weights_only=True)
        step = int(state["step"])
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{run_dir / STATE} is corrupt ({type(e).__name__}): "
                              f"the weights still load, but training cannot resume from it") from e
    weights_step = weights_metadata(run_dir).get("step")
    if weights_step != str(step):
        raise CheckpointError(f"{run_dir}: {WEIGHTS} is from step {weights_step} but {STATE} from step {step} "
                              f"(an interrupted save): start a new run from these weights")
    return state


def weights_metadata(run_dir: Path) -> dict:
    try:
        with safe_open(str(run_dir / WEIGHTS), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{run_dir / WEIGHTS} is corrupt or truncated ({str(e)[:80]}): "
                              f"restore it from a backup or re-train") from e


# -- the log ----------------------------------------------------------------------------------
def read_log(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / LOG
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue                        # a line cut short by a crash
    return records


def truncate_log(run_dir: Path, step: int) -> list[dict]:
    """Drop records written after the checkpoint at `step` (they will be written again)."""
    records = [r for r in read_log(run_dir) if r["step"] <= step]
    with atomic_path(Path(run_dir) / LOG) as tmp:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return records
