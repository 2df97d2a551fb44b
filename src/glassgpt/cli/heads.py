"""`glassgpt heads RUN`: previous-token, duplicate-token and induction scores of every head."""
from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_write_text


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "heads", help="head roles: previous-token, duplicate-token and induction score of every head",
        description="Attention of every head where each role says, on repeated random token sequences: "
                    "to the previous token, to earlier copies of the same token, and to the token after an "
                    "earlier copy (induction). Prints a table, writes a heatmap PNG and JSON.")
    p.add_argument("run", type=Path, help="checkpoint directory (from `glassgpt train`)")
    p.add_argument("--length", type=int, help="random tokens before the repeat (default: min(50, context/2))")
    p.add_argument("--batch", type=int, default=8, help="random sequences averaged over (default 8)")
    p.add_argument("--seed", type=int, default=0, help="which random sequences")
    p.add_argument("--alphabet", metavar="TEXT",
                   help="draw the random tokens from the tokens of TEXT (default: the whole vocabulary)")
    p.add_argument("--top", type=int, help="rows shown, most induction-like first (default: all heads)")
    p.add_argument("-o", "--out", type=Path, default=Path("heads"), help="directory for PNG and JSON (default: heads)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import GlassError
    from ..inspect.heads import head_roles
    from ..model import load
    from ..runtime import pick_device

    model = load(args.run, device=pick_device(args.device), tokenizer=args.alphabet is not None)
    tokens = None
    if args.alphabet is not None:
        if model.tokenizer is None:
            raise GlassError(f"{args.run} has no tokenizer.json: --alphabet needs the run's tokenizer")
        tokens = model.tokenizer.encode(args.alphabet)
    roles = head_roles(model, length=args.length, batch=args.batch, seed=args.seed, tokens=tokens)
    s = roles.settings
    drawn = "" if tokens is None else f" drawn from {len(set(tokens))} tokens of the alphabet"
    print(f"head roles on {s['batch']} repeated random sequences of {s['length']} tokens{drawn} "
          f"(mean attention weight where the role says)")
    print(roles.table(top=args.top))
    roles.heatmap(args.out / "heads.png")
    print(f"wrote {args.out / 'heads.png'}")
    atomic_write_text(args.out / "heads.json", roles.to_json())
    print(f"wrote {args.out / 'heads.json'}")
    return 0
