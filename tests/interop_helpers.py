"""What the interop tests share: a mixed text and a tiny trained run (tests/test_interop*.py)."""
from __future__ import annotations

from pathlib import Path

from glassgpt import GPTConfig
from glassgpt.train import TrainConfig, prepare, train

# ASCII, accents, CJK, emoji (with a skin tone and a flag), whitespace runs, special tokens, digits
MIXED = ("Hello, world! Café naïve façade — ÀÉÎõü. 日本語のテキスト 中文 한국어 😀👍🏽🇫🇷 tabs\t\tand   spaces\n\n\n"
         "  indented<|endoftext|>next don't I'LL 12345 3.14159   \n end")
CORPUS = ("The king spoke to the sea, and the sea did not answer. " * 12
          + "Café au lait, naïve façade, ÀÉÎ. 日本語のテキストです。中文 한국어 😀👍🏽 🇫🇷\n\n   \t code()  \n" * 6
          + "def f(x):\n    return x * 2  # 1234 5678\n" * 6)


def train_tiny_run(directory: Path, tok) -> Path:
    """A tiny run trained for a few steps on CORPUS (d_ff not 4 * d_model, to catch shape slips)."""
    (directory / "corpus.txt").write_text(CORPUS * 4, encoding="utf-8")
    prepare([directory / "corpus.txt"], directory / "data", tokenizer=tok, progress=False)
    config = GPTConfig(vocab_size=tok.vocab_size, context_length=64, d_model=48, n_layer=2, n_head=4, d_ff=144)
    settings = TrainConfig(batch_size=4, max_iters=25, eval_interval=25, eval_iters=1, warmup_iters=2, lr=3e-3,
                           device="cpu", precision="fp32")
    train(directory / "data", directory / "run", config, settings, progress=False)
    return directory / "run"
