"""`glassgpt train DATA_DIR -o RUN_DIR [...]`, `--resume RUN_DIR` and `--init-from RUN`."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from ..errors import GlassError

MODEL_OPTIONS = ("d_model", "n_layer", "n_head", "d_ff", "context_length", "positional", "norm",
                 "activation", "bias", "tie_embeddings", "dropout")
# settings a resumed run may change: how long, and where/how it runs
RESUMABLE = ("max_iters", "max_seconds", "eval_interval", "log_interval", "checkpoint_seconds", "device",
             "precision", "compile", "threads", "prefetch")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a GPT on prepared token files",
        description="Train a GPT on DATA_DIR (made by `glassgpt prepare`) into the run directory RUN_DIR "
                    "(a loadable checkpoint plus log.jsonl, loss.png, best/). Ctrl-C or SIGTERM saves and stops; "
                    "`glassgpt train --resume RUN_DIR` continues exactly.")
    p.add_argument("data_dir", nargs="?", metavar="DATA_DIR", help="prepared data (not needed with --resume)")
    p.add_argument("-o", "--out", metavar="RUN_DIR", help="where to write the run")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run where it stopped")
    p.add_argument("--init-from", metavar="RUN", help="start a new run from the weights of this run or saved model "
                   "(its architecture, a fresh optimizer)")
    p.add_argument("--force", action="store_true", help="write the run into a directory holding other files "
                   "(a previous run there is replaced)")
    m = p.add_argument_group("model (default: the small preset)")
    m.add_argument("--preset", help="tiny | small | medium | gpt2 | classic (default small)")
    for name in ("d_model", "n_layer", "n_head", "d_ff", "context_length"):
        m.add_argument("--" + name.replace("_", "-"), type=int)
    m.add_argument("--positional", choices=("learned", "sinusoidal", "rope", "none"))
    m.add_argument("--norm", choices=("pre", "post"))
    m.add_argument("--activation", choices=("gelu", "gelu_exact", "relu"))
    m.add_argument("--bias", action=argparse.BooleanOptionalAction, default=None)
    m.add_argument("--tie-embeddings", action=argparse.BooleanOptionalAction, default=None)
    m.add_argument("--dropout", type=float)
    t = p.add_argument_group("training (checked by glassgpt.train.TrainConfig)")
    for f in train_fields():
        flag, help_text = "--" + f.name.replace("_", "-"), f"{f.metadata['help']} (default {f.default})"
        if f.name == "teacher":
            t.add_argument(flag, metavar="RUN", type=lambda run: str(Path(run).resolve()),
                           help=help_text + "; e.g. to make a draft model for speculative decoding")
        else:
            kind = {"int": int, "float": float}.get(str(f.type).split()[0], str)     # "int | None" -> int
            t.add_argument(flag, type=kind, help=help_text)
    t.add_argument("--compile", nargs="?", const="on", choices=("auto", "on", "off"),
                   help="torch.compile the model: auto (default) compiles when the run is long enough for the "
                        "compile time to pay back; --compile forces it on, --no-compile off")
    t.add_argument("--no-compile", dest="compile", action="store_const", const="off")
    t.add_argument("--prefetch", action=argparse.BooleanOptionalAction, default=None,
                   help="gather the next batches on a background thread (default on)")
    p.set_defaults(func=run)


def train_fields():
    """The TrainConfig fields that are command-line flags (each with its help text)."""
    from ..train import TrainConfig
    return [f for f in dataclasses.fields(TrainConfig) if f.metadata.get("flag", True)]


def run(args) -> int:
    from ..model import GPTConfig
    from ..train import TrainConfig, train
    from ..train.config import load_run_config

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(args, f.name, None) is not None}
    model_given = [n for n in MODEL_OPTIONS if getattr(args, n) is not None] + (["preset"] if args.preset else [])
    if args.resume:
        fixed = sorted(set(given) - set(RESUMABLE))
        if fixed:
            raise GlassError(f"--{fixed[0].replace('_', '-')} cannot change on --resume (only "
                             f"{', '.join('--' + n.replace('_', '-') for n in RESUMABLE)})")
        saved, _ = load_run_config(args.resume)
        if args.init_from or args.force:
            raise GlassError("--resume continues a run as it was: drop --init-from / --force")
        result = train(args.data_dir, args.resume, train_config=saved.replace(**given), resume=True)
    else:
        if not args.data_dir or not args.out:
            raise GlassError("give DATA_DIR and -o RUN_DIR (or --resume RUN_DIR)")
        if args.init_from:
            if model_given:
                raise GlassError(f"the model comes from --init-from {args.init_from}: drop "
                                 f"--{model_given[0].replace('_', '-')}")
            model_config = None
        else:
            model_config = GPTConfig.preset(args.preset or "small", **{n: getattr(args, n) for n in MODEL_OPTIONS})
        result = train(args.data_dir, args.out, model_config, TrainConfig(**given), init_from=args.init_from,
                       force=args.force)
    if os.environ.get("RANK", "0") != "0":
        return 0                       # under torchrun, rank 0 reports for everyone
    val = f", val loss {result.val_loss:.4f}" if result.val_loss is not None else ""
    best = f" (best {result.best_val_loss:.4f})" if result.best_val_loss is not None else ""
    print(f"trained {result.step} steps{val}{best} at "
          f"{result.tokens_per_second:,.0f} tokens/s; run saved in {result.run_dir}", file=sys.stderr)
    return 0
