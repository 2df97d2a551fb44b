"""TrainConfig: every training setting in one record, saved as train_config.json in the run.

The model's shape lives in GPTConfig; this is how it is trained. A run stops at
`max_iters` optimizer steps or after `max_seconds` of training, whichever comes first;
the learning-rate schedule follows whichever is further along, so a time-limited run
still warms up, decays and ends at `min_lr`.

With a `teacher` (a trained run with the same tokenizer), the training loss is the
cross-entropy against the teacher's full next-token distribution at every position
(distillation) instead of against the one actual next token. A small model trained so
agrees with its teacher more often than one trained on the text alone, which is what a
draft for speculative decoding needs. The validation loss stays the plain one.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, GlassError
from ..fileio import atomic_write_text
from ..runtime import PRECISIONS

COMPILE_MODES = ("auto", "on", "off")


def whole(minimum: int | None = None, optional: bool = False):
    """A check: an integer (not a bool, not 2.5), at least `minimum`; None allowed if optional."""
    def check(value):
        if value is None and optional:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            return f"must be a whole number, got {value!r}"
        if minimum is not None and value < minimum:
            return f"must be at least {minimum}, got {value}"
        return None
    return check


def number(minimum: float = -math.inf, above: bool = False, optional: bool = False):
    """A check: a finite number at least (or, with above=True, more than) `minimum`."""
    def check(value):
        if value is None and optional:
            return None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        if value < minimum or (above and value == minimum):
            return f"must be {'more than' if above else 'at least'} {minimum:g}, got {value!r}"
        return None
    return check


def one_of(*choices):
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"


def kind(*types):
    names = " or ".join("None" if t is type(None) else t.__name__ for t in types)
    return lambda value: None if isinstance(value, types) else f"must be {names}, got {value!r}"


def pair_of_fractions(value):
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or any(number(0.0)(b) or b >= 1 for b in value)):
        return f"must be two numbers in [0, 1), got {value!r}"
    return None


def setting(default, check, help: str, flag: bool = True):
    """A TrainConfig field: its default, its check and its help text, declared once."""
    return field(default=default, metadata={"check": check, "help": help, "flag": flag})


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = setting(16, whole(1), "sequences per micro-batch")
    grad_accum: int = setting(1, whole(1), "micro-batches per optimizer step")
    max_iters: int | None = setting(2000, whole(1, optional=True), "optimizer steps (None: only the time budget)")
    max_seconds: float | None = setting(None, number(0, above=True, optional=True),
                                        "time budget for training in seconds (None: only max_iters)")
    lr: float = setting(1e-3, number(0, above=True), "peak learning rate after warmup")
    min_lr: float = setting(1e-4, number(0), "the cosine ends here")
    warmup_iters: int = setting(100, whole(0), "steps of linear warmup")
    weight_decay: float = setting(0.1, number(0), "on matrices only (embeddings, linear weights)")
    betas: tuple[float, float] = setting((0.9, 0.99), pair_of_fractions, "AdamW's betas", flag=False)
    grad_clip: float | None = setting(1.0, number(0, above=True, optional=True),
                                      "max global gradient norm (None: no clipping)")
    eval_interval: int = setting(250, whole(1), "steps between validation losses and checkpoints")
    eval_iters: int = setting(20, whole(1), "fixed validation batches per evaluation")
    log_interval: int = setting(10, whole(1), "steps between log lines / progress-bar updates")
    checkpoint_seconds: float | None = setting(
        300.0, number(0, above=True, optional=True),
        "also save a resumable checkpoint after this many seconds without one (None: only every eval_interval)")
    seed: int = setting(1337, whole(0), "seed of the initial weights, batches and dropout")
    device: str = setting("auto", kind(str), "auto | cpu | cuda | cuda:N | mps")
    precision: str = setting("auto", one_of(*PRECISIONS), "auto | fp32 | bf16 | fp16 (auto: bf16 where it is fast)")
    compile: str = setting("auto", one_of(*COMPILE_MODES),
                           "torch.compile: on | off | auto (when it pays back within the run's budget)", flag=False)
    threads: int | None = setting(None, whole(1, optional=True), "CPU threads (None: torch's default)")
    teacher: str | None = setting(None, kind(str, type(None)),
                                  "a trained run to distil: learn its next-token distributions")
    prefetch: bool = setting(True, kind(bool), "gather the next batches on a background thread", flag=False)

    def __post_init__(self):
        if isinstance(self.betas, list):
            object.__setattr__(self, "betas", tuple(self.betas))
        if isinstance(self.compile, bool):            # runs saved before `auto`: true / false
            object.__setattr__(self, "compile", "on" if self.compile else "off")
        for f in dataclasses.fields(self):
            problem = f.metadata["check"](getattr(self, f.name))
            if problem:
                raise ConfigError(f"{f.name} {problem}")
        if self.max_iters is None and self.max_seconds is None:
            raise ConfigError("give max_iters or max_seconds (or both): training needs an end")
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown training setting(s) {', '.join(sorted(unknown))}")
        if "betas" in data and isinstance(data["betas"], list):
            data = {**data, "betas": tuple(data["betas"])}
        return cls(**data)


RUN_CONFIG = "train_config.json"


def save_run_config(run_dir: Path, config: TrainConfig, data_dir: Path) -> None:
    """train_config.json: the training settings and the data directory, for `--resume`."""
    atomic_write_text(run_dir / RUN_CONFIG, json.dumps(
        {"data_dir": str(Path(data_dir).resolve()), **config.to_dict()}, indent=2))


def load_run_config(run_dir: Path) -> tuple[TrainConfig, Path]:
    file = Path(run_dir) / RUN_CONFIG
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        data_dir = Path(data.pop("data_dir"))
        return TrainConfig.from_dict(data), data_dir
    except FileNotFoundError:
        raise GlassError(f"{run_dir} is not a training run (no {RUN_CONFIG}): "
                         f"start one with `glassgpt train DATA_DIR -o {run_dir}`") from None
    except ConfigError as e:
        raise GlassError(f"{file}: {e}: fix it or start a new run") from e
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        raise GlassError(f"{file} is unreadable ({type(e).__name__}): restore it or start a new run") from e
