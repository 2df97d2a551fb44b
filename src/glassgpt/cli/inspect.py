"""`glassgpt inspect RUN TEXT`: what the model thinks at every position of a text."""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from ..errors import GlassError
from ..fileio import atomic_write_text


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect", help="trace a text: next-token distributions, surprisal, attention, logit lens",
        description="Run a checkpoint over TEXT and show, per position, the next token's probability, "
                    "rank and surprisal, the entropy and the top alternatives.")
    p.add_argument("run", type=Path, help="checkpoint directory (from `glassgpt train`)")
    p.add_argument("text", help="the text to trace")
    p.add_argument("--temperature", type=float, default=1.0, help="temperature of the shown distributions")
    p.add_argument("--top-k", type=int, default=5, help="alternatives shown per position (default 5)")
    p.add_argument("--attention", metavar="L.H|all", help="write an attention heatmap PNG (layer.head, or all)")
    p.add_argument("--lens", action="store_true", help="print the logit lens and write its PNG")
    p.add_argument("--attribute", type=int, metavar="POS",
                   help="occlusion attribution for the prediction of token POS (1 .. T; T = after the text)")
    p.add_argument("--baseline", type=int, metavar="ID",
                   help="with --attribute: replace tokens by this id instead of removing them")
    p.add_argument("--json", type=Path, metavar="FILE", help="write everything machine-readable to FILE")
    p.add_argument("--html", type=Path, metavar="FILE",
                   help="write the glass page of this text (tokens, pipeline, attention, output, logit lens) "
                        "as one self-contained HTML file that opens without a server")
    p.add_argument("-o", "--out", type=Path, default=Path("."), help="directory for PNGs (default: .)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..inspect import trace
    from ..jsonsafe import json_safe
    from ..inspect.render import trace_report, use_color
    from ..model import load
    from ..runtime import pick_device

    if args.temperature < 0:
        raise GlassError(f"--temperature must be >= 0, got {args.temperature}")
    model = load(args.run, device=pick_device(args.device))
    if model.tokenizer is None:
        raise GlassError(f"{args.run} has no tokenizer.json: inspect needs the tokenizer the model was trained with")
    layer_head = parse_attention(args.attention, model.config) if args.attention else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = trace(model, args.text, top_k=args.top_k, residual=args.lens)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)

    color = use_color()
    print(trace_report(t, temperature=args.temperature, k=args.top_k, color=color))

    report = {"trace": t.to_dict(args.temperature)}
    if layer_head is not None:
        report["attention_png"] = [str(p) for p in write_attention(t, layer_head, args.out)]
    if args.lens:
        from ..inspect.lens import logit_lens
        from ..inspect.plots import lens_heatmap
        lens = logit_lens(model, t)
        print("\nlogit lens: top token at each depth and p(final prediction)\n" + lens.table())
        path = lens_heatmap(lens, args.out / "lens.png")
        print(f"wrote {path}")
        report["lens"] = lens.to_dict()
    if args.attribute is not None:
        from ..inspect.attribution import occlusion
        a = occlusion(model, t.ids, args.attribute, baseline=args.baseline)
        print("\n" + a.ansi(color) + "\n" + a.table())
        report["attribution"] = a.to_dict()
    if args.json:
        atomic_write_text(args.json, json.dumps(json_safe(report)))
        print(f"wrote {args.json}")
    if args.html:
        from ..inspect.page_data import export_html
        atomic_write_text(args.html, export_html(args.run.resolve().name, model, args.text))
        print(f"wrote {args.html} (open it in a browser)")
    return 0


def parse_attention(spec: str, config) -> tuple[int, int] | str:
    """'all' or 'L.H' with L and H in range."""
    if spec == "all":
        return "all"
    try:
        layer, head = (int(p) for p in spec.split("."))
    except ValueError:
        raise GlassError(f"--attention takes LAYER.HEAD (e.g. 0.3) or all, got {spec!r}") from None
    if not 0 <= layer < config.n_layer:
        raise GlassError(f"layer {layer} is out of range: the model has layers 0 .. {config.n_layer - 1}")
    if not 0 <= head < config.n_head:
        raise GlassError(f"head {head} is out of range: each layer has heads 0 .. {config.n_head - 1}")
    return layer, head


def write_attention(t, layer_head, out: Path) -> list[Path]:
    from ..inspect.plots import attention_grid, attention_heatmap
    if layer_head == "all":
        paths = [attention_grid(t.attention, t.tokens, out / "attention_all.png")]
    else:
        layer, head = layer_head
        paths = [attention_heatmap(t.attention[layer, head], t.tokens, out / f"attention_{layer}.{head}.png",
                                   title=f"attention: layer {layer}, head {head}")]
    for path in paths:
        print(f"wrote {path}")
    return paths
