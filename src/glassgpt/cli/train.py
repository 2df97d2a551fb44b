"""`glassgpt train DATA_DIR -o RUN_DIR [...]` and `glassgpt train --resume RUN_DIR`."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import GlassError

MODEL_OPTIONS = ("d_model", "n_layer", "n_head", "d_ff", "context_length", "positional", "norm",
                 "activation", "bias", "tie_embeddings", "dropout")
TRAIN_OPTIONS = ("batch_size", "grad_accum", "max_iters", "max_seconds", "lr", "min_lr", "warmup_iters",
                 "weight_decay", "grad_clip", "eval_interval", "eval_iters", "log_interval", "seed",
                 "device", "precision", "compile", "threads", "teacher", "init_from")
# settings a resumed run may change: how long, and where/how it runs
RESUMABLE = ("max_iters", "max_seconds", "eval_interval", "log_interval", "device", "precision", "compile",
             "threads")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a GPT on prepared token files",
        description="Train a GPT on DATA_DIR (made by `glassgpt prepare`) into the run directory RUN_DIR "
                    "(a loadable checkpoint plus log.jsonl, loss.png, best/). Ctrl-C saves and stops; "
                    "`glassgpt train --resume RUN_DIR` continues exactly.")
    p.add_argument("data_dir", nargs="?", metavar="DATA_DIR", help="prepared data (not needed with --resume)")
    p.add_argument("-o", "--out", metavar="RUN_DIR", help="where to write the run")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run where it stopped")
    m = p.add_argument_group("model (default: the small preset)")
    m.add_argument("--preset", default="small", help="tiny | small | medium | gpt2 | classic")
    for name in ("d_model", "n_layer", "n_head", "d_ff", "context_length"):
        m.add_argument("--" + name.replace("_", "-"), type=int)
    m.add_argument("--positional", choices=("learned", "sinusoidal", "rope", "none"))
    m.add_argument("--norm", choices=("pre", "post"))
    m.add_argument("--activation", choices=("gelu", "gelu_exact", "relu"))
    m.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None)
    m.add_argument("--tie-embeddings", action=argparse.BooleanOptionalAction, default=None)
    m.add_argument("--dropout", type=float)
    t = p.add_argument_group("training (defaults: see glassgpt.train.TrainConfig)")
    for name, kind in (("batch_size", int), ("grad_accum", int), ("max_iters", int), ("max_seconds", float),
                       ("lr", float), ("min_lr", float), ("warmup_iters", int), ("weight_decay", float),
                       ("grad_clip", float), ("eval_interval", int), ("eval_iters", int), ("log_interval", int),
                       ("seed", int), ("threads", int)):
        t.add_argument("--" + name.replace("_", "-"), type=kind)
    t.add_argument("--device", help="auto | cpu | cuda | cuda:N | mps")
    t.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"))
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    t.add_argument("--teacher", metavar="RUN", type=lambda run: str(Path(run).resolve()),
                   help="distil this trained run (same tokenizer): learn its next-token distributions, "
                        "e.g. to make a draft model for speculative decoding")
    t.add_argument("--init-from", metavar="RUN", type=lambda run: str(Path(run).resolve()),
                   help="start from this saved model's weights and shape (fine-tuning; same tokenizer); "
                        "the model options above are then ignored")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..model import GPTConfig
    from ..train import TrainConfig, train
    from ..train.config import load_run_config

    given = {name: getattr(args, name) for name in TRAIN_OPTIONS if getattr(args, name) is not None}
    if args.resume:
        fixed = sorted(set(given) - set(RESUMABLE))
        if fixed:
            raise GlassError(f"--{fixed[0].replace('_', '-')} cannot change on --resume (only "
                             f"{', '.join('--' + n.replace('_', '-') for n in RESUMABLE)})")
        saved, _ = load_run_config(args.resume)
        result = train(args.data_dir, args.resume, train_config=saved.replace(**given), resume=True)
    else:
        if not args.data_dir or not args.out:
            raise GlassError("give DATA_DIR and -o RUN_DIR (or --resume RUN_DIR)")
        model_config = GPTConfig.preset(args.preset, **{n: getattr(args, n) for n in MODEL_OPTIONS})
        result = train(args.data_dir, args.out, model_config, TrainConfig(**given))
    if os.environ.get("RANK", "0") != "0":
        return 0                       # under torchrun, rank 0 reports for everyone
    val = f", val loss {result.val_loss:.4f}" if result.val_loss is not None else ""
    best = f" (best {result.best_val_loss:.4f})" if result.best_val_loss is not None else ""
    print(f"trained {result.step} steps{val}{best} at "
          f"{result.tokens_per_second:,.0f} tokens/s; run saved in {result.run_dir}", file=sys.stderr)
    return 0
