"""`glassgpt tokenizer train|encode|decode|show|export|import`: the tokenizer from the command line.

    glassgpt tokenizer train corpus.txt --vocab-size 4096 -o tok.json
    echo "Hello world" | glassgpt tokenizer encode -t tok.json        # -> 15496 995
    glassgpt tokenizer decode -t tok.json 15496 995                   # -> Hello world
    glassgpt tokenizer show -t tok.json "Hello world"                 # tokens in colour, ids
    glassgpt tokenizer export tok.json --to hf -o tokenizer.json      # a `tokenizers` file (or --to tiktoken)
    glassgpt tokenizer import tokenizer.json -o tok.json              # back (also tiktoken rank files)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import GlassError
from ..tokenizer import files
from ..tokenizer.base import visible

# Alternating token backgrounds for `show` (256-colour pastels, dark text on top).
BACKGROUNDS = (153, 229, 194, 217)
RESET = "\x1b[0m"


def register(subparsers) -> None:
    parser = subparsers.add_parser("tokenizer", help="train a tokenizer, encode, decode, show token boundaries",
                                   description="Train a byte-level BPE (or character) tokenizer and use it.")
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)

    train = sub.add_parser("train", help="learn a tokenizer from text files")
    train.add_argument("files", nargs="+", type=Path, metavar="FILE", help="UTF-8 text files")
    train.add_argument("--vocab-size", type=int, metavar="N", help="ids in all: 256 bytes + merges + specials (BPE)")
    train.add_argument("-o", "--output", type=Path, required=True, help="tokenizer JSON file to write")
    train.add_argument("--char", action="store_true", help="one id per character instead of BPE")
    train.add_argument("--special", action="append", metavar="NAME",
                       help="a special token (repeatable; default: <|endoftext|> for BPE, none for --char)")
    train.add_argument("--pattern", default="gpt2",
                       help="pre-tokenization: gpt2, gpt4 or a regex of your own (default: gpt2)")
    train.set_defaults(func=run_train)

    for name, help_text in (("encode", "print the ids of TEXT (or stdin)"),
                            ("decode", "print the text of IDS (or ids read from stdin)"),
                            ("show", "print TEXT (or stdin) split into its tokens, with their ids")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("-t", "--tokenizer", type=Path, required=True, help="tokenizer JSON file")
        if name == "decode":
            p.add_argument("ids", nargs="*", metavar="ID", help="token ids (default: read from stdin)")
        else:
            p.add_argument("text", nargs="?", metavar="TEXT", help="the text (default: read from stdin)")
            p.add_argument("--allow-special", action="store_true",
                           help="turn special-token names in the text into their ids")
        if name == "show":
            p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                           help="auto: colour only on a terminal without NO_COLOR set")
        p.set_defaults(func={"encode": run_encode, "decode": run_decode, "show": run_show}[name])

    export = sub.add_parser("export", help="write a tokenizer for another tool (tokenizers JSON, tiktoken ranks)")
    export.add_argument("tokenizer", type=Path, metavar="TOK", help="glassgpt tokenizer JSON file")
    export.add_argument("--to", required=True, choices=("hf", "tiktoken"),
                        help="hf: a Hugging Face `tokenizers` file; tiktoken: a rank file (specials not included)")
    export.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    export.add_argument("--force", action="store_true", help="replace an existing file")
    export.set_defaults(func=run_export)

    imp = sub.add_parser("import", help="read another tool's tokenizer file as a glassgpt tokenizer",
                         description="Read a Hugging Face `tokenizers` file (byte-level BPE) or a tiktoken "
                                     "rank file and write it as a glassgpt tokenizer.")
    imp.add_argument("file", type=Path, metavar="FILE", help="tokenizer.json (tokenizers) or a tiktoken rank file")
    imp.add_argument("-o", "--output", type=Path, required=True, help="glassgpt tokenizer JSON file to write")
    imp.add_argument("--pattern", default="gpt2", help="rank files only: split pattern gpt2, gpt4 or a regex")
    imp.add_argument("--special", action="append", metavar="NAME",
                     help="rank files only: special tokens numbered after the ranks (default: <|endoftext|>)")
    imp.add_argument("--force", action="store_true", help="replace an existing file")
    imp.set_defaults(func=run_import)


def run_train(args) -> None:
    from ..fileio import check_writable
    from ..tokenizer import Tokenizer

    if Path(args.output).is_dir():
        raise GlassError(f"-o {args.output} is a directory: give a file name such as {Path(args.output) / 'tok.json'}")
    check_writable(Path(args.output).parent)          # before the training, not after
    texts = [_read(path) for path in args.files]
    if args.char:
        tok = Tokenizer.chars("".join(texts), special_tokens=args.special or ())
    else:
        if args.vocab_size is None:
            raise GlassError("--vocab-size is required for a BPE tokenizer")
        specials = ("<|endoftext|>",) if args.special is None else args.special
        tok = Tokenizer.train(texts, args.vocab_size, special_tokens=specials, pattern=args.pattern)
    tok.save(args.output)
    print(f"wrote {args.output}: {tok.kind} tokenizer, vocab_size {tok.vocab_size} "
          f"(specials: {', '.join(tok.special_tokens) or 'none'})")
    if not args.char and tok.vocab_size < args.vocab_size:
        print(f"note: the corpus ran out of pairs to merge before reaching {args.vocab_size}")


def run_encode(args) -> None:
    tok = _load(args.tokenizer)
    ids = tok.encode(_text(args), allowed_special="all" if args.allow_special else "none")
    print(" ".join(map(str, ids)))


def run_decode(args) -> None:
    tok = _load(args.tokenizer)
    words = args.ids or sys.stdin.read().replace(",", " ").split()
    try:
        ids = [int(word) for word in words]
    except ValueError as e:
        raise GlassError(f"ids must be integers: {e}") from None
    text = tok.decode(ids)
    sys.stdout.write(text + ("\n" if sys.stdout.isatty() and not text.endswith("\n") else ""))


def run_show(args) -> None:
    tok = _load(args.tokenizer)
    text = _text(args)
    ids = tok.encode(text, allowed_special="all" if args.allow_special else "none")
    colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    pieces = [visible(tok.id_to_str(i)) for i in ids]
    if colour:
        paint = [f"\x1b[30;48;5;{BACKGROUNDS[k % len(BACKGROUNDS)]}m{{}}{RESET}" for k in range(len(ids))]
        print("".join(p.format(piece) for p, piece in zip(paint, pieces)))
        print(" ".join(p.format(i) for p, i in zip(paint, ids)))
    else:
        print("".join(f"[{piece}]" for piece in pieces))
        print(" ".join(map(str, ids)))
    print(f"{len(ids)} tokens for {len(text)} characters")


def run_export(args) -> None:
    from ..interop import export_tokenizer
    from ..interop.output import check_free

    tok = _load(args.tokenizer)
    check_free(args.output, args.force, directory=False)
    export_tokenizer(tok, args.to, args.output)
    print(f"wrote {args.output}: {tok.kind} tokenizer as {args.to}, vocab_size {tok.vocab_size}"
          + (f" (tiktoken keeps specials outside the file: {tok.special_tokens})"
             if args.to == "tiktoken" and tok.special_tokens else ""))


def run_import(args) -> None:
    from ..interop import import_tokenizer
    from ..interop.output import check_free

    check_free(args.output, args.force, directory=False)
    specials = ("<|endoftext|>",) if args.special is None else args.special
    tok = import_tokenizer(args.file, pattern=args.pattern, special_tokens=specials)
    tok.save(args.output)
    print(f"wrote {args.output}: {tok.kind} tokenizer, vocab_size {tok.vocab_size} "
          f"(specials: {', '.join(tok.special_tokens) or 'none'})")


def _load(path: Path):
    from ..tokenizer import Tokenizer

    return Tokenizer.load(path)


def _text(args) -> str:
    return args.text if args.text is not None else sys.stdin.read()


def _read(path: Path) -> str:
    return files._read_text(path, "text")
