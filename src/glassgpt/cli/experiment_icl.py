"""`glassgpt experiment icl ...`: in-context learning as inference (GINC-style data).

    glassgpt experiment icl build -o ginc/ [--concepts 10 --entities 5 --properties 10 --vocab 50 ...]
    glassgpt experiment icl train -o RUN --minutes 20
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
    t.add_argument("--minutes", type=float, default=20.0, help="training time budget")
    t.add_argument("--max-iters", type=int, default=20000)
    t.add_argument("--d-model", type=int, default=96)
    t.add_argument("--layers", type=int, default=4)
    t.add_argument("--heads", type=int, default=4)
    t.add_argument("--context", type=int, default=320, help="context length in characters (k = 32 examples of "
                                                                         "8 symbols need 297)")
    t.add_argument("--positional", choices=("learned", "sinusoidal", "rope", "none"), default="rope")
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (the cosine ends at lr/10)")
    t.add_argument("--batch-size", type=int, default=12)
    t.add_argument("--train-seed", type=int, default=0)
    t.add_argument("-o", "--out", required=True, help="run directory for the trained model")
    t.set_defaults(func=run_train)

    r = isub.add_parser("run", help="accuracy against k and example length, gold and random labels")
    add_completer_args(r)
    r.add_argument("--ginc", help="the mixture's ginc.json or its run/data directory (default: the RUN's)")
    r.add_argument("--ks", nargs="+", type=int, help="numbers of examples (default 0 1 2 4 8 16 32)")
    r.add_argument("--lengths", nargs="+", type=int, help="symbols per example (default 3 5 8)")
    r.add_argument("--labels", nargs="+", choices=("gold", "random"), help="default: both")
    r.add_argument("--prompts", type=int, default=50, help="test examples per seed and length")
    r.add_argument("--seeds", type=int, default=3, help="seeds (the error bars)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("-o", "--out", required=True, help="report directory (re-running resumes it)")
    r.set_defaults(func=run_icl)

    p = isub.add_parser("patterns", help="complete repetition, alternation, counting and bracket patterns, "
                                         "plain and remapped to random symbols")
    add_completer_args(p)
    p.add_argument("--tasks", nargs="+", help="default: repetition alternation counting brackets")
    p.add_argument("--variants", nargs="+", choices=("plain", "remapped"), help="default: both")
    p.add_argument("--instances", type=int, default=20, help="per task, variant and seed")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alphabet", help="symbols to remap to (default: the model's letters and digits)")
    p.add_argument("--separator", default="", help="between symbols (e.g. ' ' for a BPE model)")
    p.add_argument("-o", "--out", required=True, help="report directory (re-running resumes it)")
    p.set_defaults(func=run_patterns)


def add_ginc_args(p) -> None:
    from ..experiments.icl import GincSettings

    for f in fields(GincSettings):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                       help=f"{f.metadata['help']} (default {f.default:g})")


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


def run_icl(args) -> int:
    from ..experiments.icl.prompts import check_fits
    from ..experiments.icl.runner import IclSettings, context_length, run_icl
    from ..experiments.icl.train import read_ginc
    from .experiment import kept_on_error, make_completer

    if not args.ginc and not args.run:
        raise GlassError("with --endpoint, give --ginc PATH: the ginc.json of the mixture to test on")
    ginc = read_ginc(args.ginc or args.run)
    settings = IclSettings(prompts=args.prompts, seeds=args.seeds, seed=args.seed)
    for name in ("ks", "lengths", "labels"):
        if getattr(args, name):
            setattr(settings, name, getattr(args, name))
    completer = make_completer(args)
    settings.validate()
    check_fits(settings.ks, settings.lengths, context_length(completer))   # before any file is written
    with kept_on_error(args.out):
        run_icl(completer, ginc, args.out, settings)
    print(f"report: {args.out}/report.md")
    return 0


def run_patterns(args) -> int:
    from ..experiments.icl.patterns import PatternSettings, run_patterns
    from .experiment import kept_on_error, make_completer

    settings = PatternSettings(instances=args.instances, seeds=args.seeds, seed=args.seed, alphabet=args.alphabet,
                               separator=args.separator)
    for name in ("tasks", "variants"):
        if getattr(args, name):
            setattr(settings, name, getattr(args, name))
    settings.validate()
    completer = make_completer(args)
    with kept_on_error(args.out):
        run_patterns(completer, args.out, settings)
    print(f"report: {args.out}/report.md")
    return 0
