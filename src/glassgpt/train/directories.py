"""What a directory holds, and which command may write into it.

An output directory holds one kind of thing: a prepared data directory (token files and
their tokenizer), a training run, or a saved model. `prepare` refuses a run or a model;
`train` refuses anything but its own run (data, a saved model such as RUN/best, other
files) unless told `force`, and never starts a second run on top of a first.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import GlassError
from ..fileio import is_temporary
from ..locks import LOCK

DATA_FILES = ("train.bin", "val.bin", "meta.json")
RUN_FILES = ("checkpoint.json", "train_state.pt")         # a run that has saved something
UNSAVED_RUN_FILES = {"train_config.json", "log.jsonl", "loss.png", "best", "checkpoints"}
MODEL_FILES = ("config.json", "model.safetensors")
# everything a training run writes at its top level
RUN_CONTENTS = {"checkpoint.json", "checkpoints", "train_config.json", "config.json", "model.safetensors",
                "tokenizer.json", "log.jsonl", "loss.png", "best", "train_state.pt", LOCK}


def kind_of(path: Path, inputs: Path | None = None) -> str:
    """missing | file | empty | unsaved (a run stopped before its first checkpoint: nothing to
    lose) | run | model | data | other. `inputs` (the data a run reads) does not count when
    it lies inside `path`: a run may keep its own data."""
    path = Path(path)
    if not path.exists():
        return "missing"
    if not path.is_dir():
        return "file"
    names = {p.name for p in path.iterdir() if p.name != LOCK and not is_temporary(p) and not _holds(p, inputs)}
    if not names:
        return "empty"
    if names & set(RUN_FILES):
        return "run"
    if "train_config.json" in names and names <= UNSAVED_RUN_FILES | {"config.json", "tokenizer.json"}:
        return "unsaved"
    if set(MODEL_FILES) <= names:
        return "model"
    if names & set(DATA_FILES):
        return "data"
    return "other"


def _holds(entry: Path, inputs: Path | None) -> bool:
    if inputs is None:
        return False
    inputs, entry = Path(inputs).resolve(), entry.resolve()
    return inputs == entry or entry in inputs.parents


def check_prepare_output(out_dir: Path) -> None:
    kind = kind_of(out_dir)
    if kind == "file":
        raise GlassError(f"-o {out_dir} is a file: give a directory for the token files")
    if kind in ("run", "model"):
        raise GlassError(f"{out_dir} holds a {'training run' if kind == 'run' else 'saved model'}: prepare the "
                         f"data into a directory of its own, e.g. -o {Path(out_dir).parent / 'data'}")


def check_train_output(run_dir: Path, force: bool = False, data_dir: Path | None = None) -> None:
    """A new run goes into a missing or empty directory (its own data_dir may be inside),
    or (force) one holding other files."""
    kind = kind_of(run_dir, data_dir)
    if kind == "file":
        raise GlassError(f"-o {run_dir} is a file: give a directory for the run")
    if kind == "run" and not force:
        raise GlassError(f"{run_dir} already holds a training run: continue it with `glassgpt train --resume "
                         f"{run_dir}`, start from its weights with `--init-from {run_dir} -o NEW_RUN`, or "
                         f"choose another -o")
    if kind in ("model", "data", "other") and not force:
        what = {"model": "a saved model", "data": "prepared data",
                "other": "other files"}[kind]
        force_does = "replace it" if kind == "model" else "write the run beside them"
        raise GlassError(f"{run_dir} holds {what}, not a training run: choose an empty or new -o "
                         f"(or --force to {force_does})")
