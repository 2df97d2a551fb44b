"""`glassgpt ...`: a thin command-line shell over the library.

Each subcommand lives in its own module with `register(subparsers)`, which adds a parser
whose `func` default receives the parsed arguments. Errors a user can cause are
`GlassError`s: printed on one line, exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from ..errors import GlassError, Notice

# One module per command group, in the order `--help` lists them.
COMMANDS = [
    "demo",
    "tokenizer",
    "prepare",
    "train",
    "generate",
    "play",
    "inspect",
    "view",
    "ablate",
    "patch",
    "attribute",
    "heads",
    "experiment",
    "export",
    "serve",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glassgpt", description="A GPT you can see through: build, train, inspect and sample a transformer.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def notices_on_one_line(show):
    """The library's notices (errors.Notice) as one line each; other warnings as Python shows them."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, Notice):
            print(f"glassgpt: {message}", file=sys.stderr, flush=True)
        else:
            show(message, category, filename, lineno, file, line)
    return showwarning


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = notices_on_one_line(warnings.showwarning)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GlassError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:                # a file-system failure no command turned into a GlassError
        from ..fileio import file_error
        print(f"error: {file_error(e, e.filename or 'a file', 'use')}", file=sys.stderr)
        return 2
