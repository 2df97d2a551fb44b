"""The tokenizer stage: text <-> ids.

    from glassgpt import Tokenizer
    tok = Tokenizer.train(text, vocab_size=4096)    # byte-level BPE, GPT-2 pattern
    tok.encode("hello world")                       # -> [ids]
    tok.decode(ids)                                 # -> "hello world"

Modules: base.py (the shared interface), pretokenize.py (split patterns), bpe.py
(encoding), train_bpe.py (the incremental trainer), chars.py (character level),
files.py (JSON and tiktoken rank files).
"""
from .base import Tokenizer
from .bpe import BPETokenizer
from .chars import CharTokenizer
from .pretokenize import PATTERNS

__all__ = ["Tokenizer", "BPETokenizer", "CharTokenizer", "PATTERNS"]
