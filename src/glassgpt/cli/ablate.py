"""`glassgpt ablate RUN`: validation loss with each part of the model removed in turn."""
from __future__ import annotations

import json
from pathlib import Path

from ..fileio import atomic_write_text, check_writable


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ablate", help="remove each block, head, feed-forward, norm in turn and measure validation loss",
        description="An ablation study: validation loss (mean ± standard error over the same fixed batches) "
                    "with one part removed at a time, and the layer-pruning curve.")
    p.add_argument("run", type=Path, help="checkpoint directory (from `glassgpt train`)")
    p.add_argument("--data", type=Path, metavar="DATA_DIR",
                   help="directory with val.bin (default: the one recorded in RUN/train_config.json)")
    p.add_argument("--batches", type=int, default=20, help="fixed validation batches (default 20)")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per batch (default 4)")
    p.add_argument("--seq-len", type=int, help="tokens per sequence (default: the context length)")
    p.add_argument("--mean-ablate", action="store_true",
                   help="replace a head's output by its mean over the validation data instead of zero")
    p.add_argument("--samples", type=int, default=0, metavar="N",
                   help="also generate N samples from the most damaging ablations and the intact model")
    p.add_argument("--max-new-tokens", type=int, default=60, help="length of each sample (default 60)")
    p.add_argument("--seed", type=int, default=0, help="which validation batches are drawn")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    p.add_argument("-o", "--out", type=Path, help="directory for the PNGs (default: RUN/ablation)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import GlassError
    from ..inspect.ablation import ablation_study, find_data_dir, load_validation
    from ..inspect.plots import ablation_bars, pruning_curve
    from ..model import load
    from ..runtime import pick_device

    for name in ("batches", "batch_size", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise GlassError(f"--{name.replace('_', '-')} must be at least 1")
    check_writable(args.out or args.run / "ablation")           # before the long study, not after
    if args.json:
        check_writable(Path(args.json).parent)
    tokens = load_validation(find_data_dir(args.run, args.data))
    model = load(args.run, device=pick_device(args.device), tokenizer=args.samples > 0)
    study = ablation_study(model, tokens, batches=args.batches, batch_size=args.batch_size,
                           seq_len=args.seq_len, mean_ablate=args.mean_ablate, seed=args.seed)
    print(study.table())
    print()
    print(study.pruning_table())
    if args.samples:
        from ..inspect.ablation import sample_generations
        study.samples = sample_generations(model, study, tokens, args.samples, args.max_new_tokens, seed=args.seed)
        for group in study.samples:
            print(f"\n== {group['ablation']}")
            for s in group["samples"]:
                print(f"  {s['prompt']!r} -> {s['continuation']!r}")
    out = args.out or args.run / "ablation"
    for path in (ablation_bars(study, out / "ablation.png"), pruning_curve(study, out / "pruning.png")):
        print(f"wrote {path}")
    if args.json:
        atomic_write_text(args.json, json.dumps(study.to_dict(), indent=1))
        print(f"wrote {args.json}")
    return 0
