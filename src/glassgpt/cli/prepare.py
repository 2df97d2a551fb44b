"""`glassgpt prepare INPUTS... -o DATA_DIR`: corpus -> tokenizer -> train.bin / val.bin."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare", help="tokenize a corpus into token files for training",
        description="Tokenize text files, directories (*.txt, *.md) or a built-in corpus "
                    "(shakespeare, python-docs) into DATA_DIR/train.bin, val.bin, tokenizer.json, meta.json.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="a text file, a directory, or a built-in corpus: shakespeare, python-docs")
    p.add_argument("-o", "--out", required=True, metavar="DATA_DIR", help="where to write the token files")
    p.add_argument("--tokenizer", default="bpe", metavar="bpe|char|FILE",
                   help="train a byte-level BPE (default), use characters, or reuse a tokenizer.json")
    p.add_argument("--vocab-size", type=int, default=2048, help="BPE vocabulary size (default 2048)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share held out for validation (default 0.1)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train import prepare
    prepare(args.inputs, args.out, tokenizer=args.tokenizer, vocab_size=args.vocab_size,
            val_fraction=args.val_fraction)
    return 0
