"""`glassgpt attribute RUN TEXT --token A [--versus B]`: direct logit attribution."""
from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_write_text


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "attribute", help="direct logit attribution: each head's and feed-forward's share of a logit",
        description="Split the logit of TOKEN (or TOKEN - VERSUS) at one position into the direct "
                    "contribution of the embedding, the positional encoding, every head and every "
                    "feed-forward, through the final LayerNorm with its scale frozen. Pre-LN models only.")
    p.add_argument("run", type=Path, help="checkpoint directory (from `glassgpt train`)")
    p.add_argument("text", help="the text")
    p.add_argument("--position", type=int, default=-1,
                   help="whose next-token logits: token index 0 .. T-1, negative from the end (default -1)")
    p.add_argument("--token", help="the token whose logit is explained (one token; default: the top prediction)")
    p.add_argument("--versus", help="explain logit(TOKEN) - logit(VERSUS) instead (one token)")
    p.add_argument("--top", type=int, default=20, help="pieces shown in the table (default 20)")
    p.add_argument("-o", "--out", type=Path, default=Path("attribute"),
                   help="directory for PNGs and JSON (default: attribute)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import GlassError
    from ..inspect.dla import direct_logit_attribution
    from ..model import load
    from ..runtime import pick_device

    if args.top < 1:
        raise GlassError(f"--top must be at least 1, got {args.top}")
    model = load(args.run, device=pick_device(args.device))
    if model.tokenizer is None:
        raise GlassError(f"{args.run} has no tokenizer.json: attribution of a text needs the tokenizer")
    a = direct_logit_attribution(model, args.text, args.position, args.token, versus=args.versus)
    print(a.table(top=args.top))
    for path, draw in ((args.out / "attribution.png", a.bars), (args.out / "attribution_heads.png", a.heatmap)):
        draw(path)
        print(f"wrote {path}")
    atomic_write_text(args.out / "attribution.json", a.to_json())
    print(f"wrote {args.out / 'attribution.json'}")
    return 0
