"""`glassgpt view RUN`: the glass page of a run, in the browser."""
from __future__ import annotations

import socket
import sys
import threading
import time
import webbrowser
from pathlib import Path
from urllib.parse import quote

from ..errors import GlassError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "view", help="open the glass page: a live explainer of a run in the browser",
        description="Start a server on a free loopback port with the glass page of RUN (tokens, pipeline, "
                    "attention, the output with sampler controls, the logit lens, ablation, stepping through "
                    "generation) and open it in the default browser. Ctrl-C stops it.")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="checkpoint directories (from `glassgpt train`)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    p.add_argument("--text", default="", help="text to open the page with")
    p.add_argument("--draft", type=Path, metavar="RUN",
                   help="a small model with the same tokenizer: the page can then show speculative steps")
    p.add_argument("--no-browser", action="store_true", help="only print the address")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        import uvicorn
    except ImportError:
        raise GlassError("the glass page needs the server packages: pip install 'glassgpt[serve]'") from None
    from ..model import load
    from ..runtime import pick_device
    from ..serve import create_app

    device = pick_device(args.device)
    names = [run_name(r) for r in args.runs]
    if len(set(names)) != len(names):
        raise GlassError(f"two runs have the same name ({', '.join(names)}): the page names models by directory")
    models = {name: load(r, device=device) for name, r in zip(names, args.runs)}
    draft = load(args.draft, device=device, tokenizer=False) if args.draft else None
    app = create_app(models, draft=draft)
    sock = bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"
    if args.text:
        url += f"?text={quote(args.text)}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))

    def announce():
        while not server.started:
            time.sleep(0.05)
        print(f"the glass page of {', '.join(names)}: {url}   (Ctrl-C stops it)", flush=True)
        if not args.no_browser and not webbrowser.open(url):
            print("no browser found here: open the address above in one", flush=True)
    threading.Thread(target=announce, daemon=True).start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    print("stopped", file=sys.stderr)
    return 0


def run_name(path: Path) -> str:
    return path.resolve().name or str(path)


def bind(host: str, port: int) -> socket.socket:
    if not 0 <= port < 65536:
        raise GlassError(f"--port must be in 0 .. 65535 (0 = a free one), got {port}")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise GlassError(f"cannot listen on {host}:{port} ({e.strerror}): pick another --port, or 0 for a free one") \
            from None
    return sock
