"""GINC documents -> char-level token files -> a small GPT trained with the normal trainer.

    run_dir/data/ginc.json      the mixture's settings (the runner rebuilds the same mixture from it)
    run_dir/data/corpus.txt     the documents, one per line
    run_dir/data/tokens/        char-level token files (glassgpt.train.prepare)
    run_dir/                    a normal run directory (config, model.safetensors, tokenizer)
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ...errors import GlassError
from ...fileio import atomic_write_text
from .ginc import Ginc, GincSettings

GINC_FILE = "ginc.json"


def write_ginc(out_dir: str | Path, settings: GincSettings, progress: bool = False) -> Path:
    """The corpus and the settings that rebuild its mixture, into out_dir."""
    out_dir = Path(out_dir)
    ginc = Ginc(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "corpus.txt", ginc.corpus(progress=progress))
    atomic_write_text(out_dir / GINC_FILE, json.dumps(settings.to_dict(), indent=2))
    return out_dir / "corpus.txt"


def read_ginc(path: str | Path) -> Ginc:
    """The mixture a run was trained on: PATH may be a run directory, its data/ directory or the json."""
    path = Path(path)
    for candidate in (path, path / GINC_FILE, path / "data" / GINC_FILE):
        if candidate.is_file():
            try:
                return Ginc(GincSettings(**json.loads(candidate.read_text(encoding="utf-8"))))
            except (ValueError, TypeError) as e:
                raise GlassError(f"{candidate} is not a GINC settings file ({e}): rebuild it with "
                                 f"`glassgpt experiment icl build`") from None
    raise GlassError(f"no {GINC_FILE} in {path} or {path}/data: give the run trained by `glassgpt experiment icl "
                     f"train` or --ginc PATH to the mixture's {GINC_FILE}")


@dataclass(frozen=True)
class ModelSize:
    d_model: int = 96
    n_layer: int = 4
    n_head: int = 4
    context_length: int = 320      # k = 32 examples of 8 symbols fit (prompts.prompt_chars)
    positional: str = "rope"


def train_ginc_model(run_dir: str | Path, settings: GincSettings, size: ModelSize = ModelSize(), *,
                     minutes: float = 20.0, max_iters: int = 20000, batch_size: int = 12, lr: float = 2e-3,
                     seed: int = 0, progress: bool = True) -> Path:
    """Documents -> char-level token files -> a small GPT trained for at most `minutes`."""
    from ...model import GPTConfig
    from ...train import TrainConfig, prepare, train

    run_dir = Path(run_dir)
    corpus = write_ginc(run_dir / "data", settings, progress)
    prepare([str(corpus)], run_dir / "data" / "tokens", tokenizer="char", progress=progress)
    config = GPTConfig(vocab_size=256, **asdict(size))     # vocab_size is replaced by the data's tokenizer
    train(run_dir / "data" / "tokens", run_dir, config,
          TrainConfig(max_iters=max_iters, max_seconds=minutes * 60, batch_size=batch_size, lr=lr, min_lr=lr / 10,
                      warmup_iters=100, eval_interval=250, seed=seed), progress=progress)
    return run_dir
