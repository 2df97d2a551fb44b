"""`glassgpt experiment icl ...`: in-context learning as inference (GINC-style data).

    glassgpt experiment icl build -o ginc/ [--concepts 10 --entities 5 --properties 10 --vocab 50 ...]
    glassgpt experiment icl train -o RUN --minutes 15
    glassgpt experiment icl run RUN -o DIR [--ks 0 1 2 4 8 16 32 --lengths 3 5 8 10 --seeds 3]
    glassgpt experiment icl patterns RUN -o DIR
    glassgpt experiment icl run --endpoint http://127.0.0.1:8000/v1 --model NAME --ginc RUN -o DIR
"""
from __future__ import annotations

from dataclasses import fields

from ..errors import GlassError


def register_icl(sub, add_completer_args) -> None:
    i = sub.add_parser("icl", help="in-context learning as inference: GINC data, accuracy against k, patterns",
                       description=__doc__)
    isub = i.add_subparsers(dest="step", metavar="STEP", required=True)

    b = isub.add_parser("build", help="write GINC-style documents from a mixture of HMMs")
    add_ginc_args(b)
    b.add_argument("-o", "--out", required=True, help="directory for corpus.txt and ginc.json")
    b.set_defaults(func=run_build)

    t = isub.add_parser("train", help="build the documents and train a small char-level model on them")
    add_ginc_args(t)
    t.add_argument("--minutes", type=float, default=15.0, help="training time budget")
    t.add_argument("--max-iters", type=int, default=20000)
    t.add_argument("--d-model", type=int, default=128)
    t.add_argument("--layers", type=int, default=4)
    t.add_argument("--heads", type=int, default=4)
    t.add_argument("--context", type=int, default=384, help="context length in characters")
    t.add_argument("--positional", choices=("learned", "sinusoidal", "rope", "none"), default="rope")
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (the cosine ends at lr/10)")
    t.add_argument("--batch-size", type=int, default=16)
    t.add_argument("--train-seed", type=int, default=0)
    t.add_argument("-o", "--out", required=True, help="run directory for the trained model")
    t.set_defaults(func=run_train)


def add_ginc_args(p) -> None:
    from ..experiments.icl import GincSettings

    for f in fields(GincSettings):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                       help=f"(default {f.default})")


def ginc_settings(args):
    from ..experiments.icl import GincSettings

    settings = GincSettings(**{f.name: getattr(args, f.name) for f in fields(GincSettings)})
    settings.validate()
    return settings


def run_build(args) -> int:
    from ..experiments.icl.train import write_ginc

    path = write_ginc(args.out, ginc_settings(args))
    print(f"corpus: {path} ({path.stat().st_size:,} characters); mixture: {args.out}/ginc.json")
    return 0


def run_train(args) -> int:
    from ..experiments.icl.train import ModelSize, train_ginc_model

    size = ModelSize(d_model=args.d_model, n_layer=args.layers, n_head=args.heads, context_length=args.context,
                     positional=args.positional)
    if args.minutes <= 0:
        raise GlassError("--minutes must be positive")
    train_ginc_model(args.out, ginc_settings(args), size, minutes=args.minutes, max_iters=args.max_iters,
                     batch_size=args.batch_size, lr=args.lr, seed=args.train_seed)
    print(f"model: {args.out}")
    return 0
