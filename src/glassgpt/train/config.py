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
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, GlassError
from ..fileio import atomic_write_text
from ..runtime import PRECISIONS


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 16              # sequences per micro-batch
    grad_accum: int = 1               # micro-batches per optimizer step
    max_iters: int | None = 2000      # optimizer steps (None: only the time budget)
    max_seconds: float | None = None  # time budget for training (None: only max_iters)
    lr: float = 1e-3                  # peak learning rate after warmup
    min_lr: float = 1e-4              # the cosine ends here
    warmup_iters: int = 100
    weight_decay: float = 0.1         # on matrices only (embeddings, linear weights)
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float | None = 1.0     # max global gradient norm (None: no clipping)
    eval_interval: int = 250          # steps between validation losses and checkpoints
    eval_iters: int = 20              # fixed validation batches per evaluation
    log_interval: int = 10            # steps between log lines / progress-bar updates
    seed: int = 1337
    device: str = "auto"              # auto | cpu | cuda | cuda:N | mps
    precision: str = "auto"           # auto | fp32 | bf16 | fp16 (auto: bf16 where it is fast)
    compile: bool = False             # torch.compile the model
    threads: int | None = None        # CPU threads (None: torch's default)
    teacher: str | None = None        # a trained run to distil: learn its next-token distributions
    init_from: str | None = None      # a saved model to start from (fine-tuning): its weights and shape

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))
        for name in ("batch_size", "grad_accum", "warmup_iters", "eval_interval", "eval_iters", "log_interval"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "warmup_iters" else 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.max_iters is None and self.max_seconds is None:
            raise ConfigError("give max_iters or max_seconds (or both): training needs an end")
        if self.max_iters is not None and self.max_iters < 1:
            raise ConfigError(f"max_iters must be at least 1, got {self.max_iters}")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ConfigError(f"max_seconds must be positive, got {self.max_seconds}")
        if not self.lr > 0 or not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"need lr > 0 and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

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
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:
        raise GlassError(f"{file} is unreadable ({type(e).__name__}): restore it or start a new run") from e
