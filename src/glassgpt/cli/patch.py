"""`glassgpt patch RUN --clean TEXT --corrupt TEXT --answer A --wrong B`: activation patching."""
from __future__ import annotations

import json
from pathlib import Path

from ..fileio import atomic_write_text

OVER_CHOICES = ("resid_pre", "attn_out", "ff_out", "head", "head_position")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "patch", help="activation patching: which layer, position and head carry a prediction",
        description="Run the corrupted prompt with one activation at a time taken from the clean run and "
                    "measure how much of the clean logit difference (answer - wrong) comes back: "
                    "0 = as corrupted, 1 = as clean. Prints the grids, writes heatmap PNGs and JSON.")
    p.add_argument("run", type=Path, help="checkpoint directory (from `glassgpt train`)")
    p.add_argument("--clean", required=True, help="the prompt whose answer is right")
    p.add_argument("--corrupt", required=True, help="a prompt of the same token length that changes the answer")
    p.add_argument("--answer", required=True, help="the clean prompt's next token (a text of one token)")
    p.add_argument("--wrong", required=True, help="the corrupted prompt's next token (a text of one token)")
    p.add_argument("--over", action="append", metavar="WHAT",
                   help=f"what to patch, repeatable: {', '.join(OVER_CHOICES)} "
                        f"(default: resid_pre, attn_out, ff_out and head)")
    p.add_argument("-o", "--out", type=Path, default=Path("patch"), help="directory for PNGs and JSON (default: patch)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import GlassError
    from ..inspect.patching import logit_diff, patch
    from ..model import load
    from ..runtime import pick_device

    model = load(args.run, device=pick_device(args.device))
    if model.tokenizer is None:
        raise GlassError(f"{args.run} has no tokenizer.json: patching texts needs the tokenizer the model was "
                         f"trained with")
    results = {}
    for over in args.over or ["resid_pre", "attn_out", "ff_out", "head"]:
        r = patch(model, args.clean, args.corrupt, logit_diff(args.answer, args.wrong), over=over)
        print(r.table() + "\n")
        path = args.out / f"patch_{over}.png"
        r.heatmap(path)
        print(f"wrote {path}")
        results[over] = r.to_dict()
    if not next(iter(results.values()))["normalised"]:
        print(f"note: {next(iter(results.values()))['note']}")
    atomic_write_text(args.out / "patch.json", json.dumps(results))
    print(f"wrote {args.out / 'patch.json'}")
    return 0
