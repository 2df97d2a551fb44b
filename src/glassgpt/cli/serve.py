"""`glassgpt serve RUN [RUN ...]`: an OpenAI-compatible HTTP server over trained runs."""
from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

from ..errors import GlassError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve runs over HTTP in OpenAI's API (completions, chat, logprobs, echo)",
        description="An OpenAI-compatible server: each run is a model named after its directory "
                    "(the request's `model`). Endpoints: /v1/models, /v1/completions, /v1/chat/completions, "
                    "/tokenize, /detokenize, /health, /metrics. Requests are decoded together (continuous "
                    "batching); prompt log-probabilities come back with echo.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="checkpoint directories (from `glassgpt train`)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    key = p.add_mutually_exclusive_group()
    key.add_argument("--api-key", metavar="KEY", help="require 'Authorization: Bearer KEY' (/health stays open)")
    key.add_argument("--api-key-file", metavar="FILE", help="read the key from this file (keeps it out of `ps`)")
    p.add_argument("--draft", metavar="RUN", help="a small model with the same tokenizer: a request arriving "
                   "while the model is idle decodes speculatively with it")
    p.add_argument("--draft-tokens", type=int, default=4, metavar="K")
    p.add_argument("--max-batch", type=int, default=8, metavar="N", help="samples decoded together (default 8)")
    p.add_argument("--max-queue", type=int, default=64, metavar="N",
                   help="samples waiting beyond the batch before requests get 429 (default 64)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    p.set_defaults(func=run)


def model_names(runs: list[str]) -> list[str]:
    """Each run is named after its directory; the same name twice is an error."""
    names = [Path(r).resolve().name for r in runs]
    for name in names:
        if names.count(name) > 1:
            raise GlassError(f"two runs are named {name!r}: serve runs whose directories have different names")
    return names


def read_key(args) -> str | None:
    if args.api_key_file:
        try:
            key = Path(args.api_key_file).read_text().strip()
        except OSError as e:
            raise GlassError(f"cannot read --api-key-file {args.api_key_file}: {e.strerror}") from None
        if not key:
            raise GlassError(f"{args.api_key_file} is empty: put the API key in it")
        return key
    return args.api_key


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    try:
        import uvicorn

        from ..serve import create_app
    except ImportError as e:
        raise GlassError(f"serving needs the serve extra ({e.name} is missing): pip install 'glassgpt[serve]'") \
            from None
    from ..model import load
    from ..runtime import pick_device

    for name, value in (("--max-batch", args.max_batch), ("--max-queue", args.max_queue), ("--port", args.port)):
        if value < (0 if name == "--port" else 1):
            raise GlassError(f"{name} must be >= 1, got {value}")
    key = read_key(args)
    device = pick_device(args.device)
    models = {name: load(run, device=device) for name, run in zip(model_names(args.runs), args.runs)}
    draft = load(args.draft, device=device, tokenizer=False) if args.draft else None
    app = create_app(models, api_key=key, draft=draft, draft_tokens=args.draft_tokens, max_batch=args.max_batch,
                     max_queue=args.max_queue)
    if key is None and not is_loopback(args.host):
        print(f"warning: listening on {args.host} without an API key: anyone who can reach it can use it "
              f"(set --api-key-file)", file=sys.stderr)
    print(f"serving {', '.join(models)} at http://{args.host}:{args.port}/v1 (Ctrl-C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
