"""Shared helpers for the tests: tiny models over the real character tokenizer.

pytest puts this folder on sys.path (see conftest.py), so tests import it as `helpers`."""
from __future__ import annotations

import math
import random

import torch

from glassgpt.experiments.completer import Completion, TopScores
from glassgpt.model import GPT, GPTConfig
from glassgpt.tokenizer import CharTokenizer
from glassgpt.tokenizer.base import EOT

ALPHABET = "abcdefghijklmnopqrstuvwxyz .,\n"
WIDE_ALPHABET = "\n !\"#%'()*+,-./0123456789:;<=>?@[\\]_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ|"


def char_tokenizer(chars: str = ALPHABET, specials=(EOT,)) -> CharTokenizer:
    """One id per character in `chars`' order, then the special tokens."""
    return CharTokenizer(list(chars), {name: len(chars) + i for i, name in enumerate(specials)})


def tiny_model(seed: int = 0, vocab_size: int | None = None, tokenizer=None, scale: float = 1.0,
               **overrides) -> GPT:
    """A 2-layer, 32-dim model over ALPHABET + <|endoftext|>; `scale` multiplies the weights so
    distributions are far from uniform."""
    torch.manual_seed(seed)
    tokenizer = tokenizer if tokenizer is not None or vocab_size is not None else char_tokenizer()
    V = vocab_size or tokenizer.vocab_size
    fields = dict(vocab_size=V, context_length=64, d_model=32, n_layer=2, n_head=4)
    model = GPT(GPTConfig.preset("tiny", **{**fields, **overrides}), tokenizer=tokenizer)
    if scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() > 1:
                    p.mul_(scale)
    return model.eval()


def probe_model(seed: int = 0, tokenizer=None, **overrides) -> GPT:
    """The inspect tests' model: the tiny preset over ALPHABET (no special tokens) or `tokenizer`,
    weights larger than GPT-2's init so that every part matters measurably."""
    torch.manual_seed(seed)
    tokenizer = tokenizer if tokenizer is not None else char_tokenizer(ALPHABET, specials=())
    config = GPTConfig.preset("tiny", **{"vocab_size": tokenizer.vocab_size, "context_length": 64,
                                         "d_model": 32, **overrides})
    model = GPT(config, tokenizer=tokenizer).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    return model


def corpus_model(corpus: str, kind: str, context_length: int, vocab_size: int = 420, seed: int = 0) -> GPT:
    """`probe_model` over a tokenizer trained on `corpus`: byte-level BPE (kind "bpe") or one id per
    character with <|endoftext|> (kind "char")."""
    from glassgpt.tokenizer import Tokenizer

    tok = (Tokenizer.train(corpus, vocab_size=vocab_size, progress=False) if kind == "bpe"
           else Tokenizer.chars(corpus, special_tokens=[EOT]))
    return probe_model(seed, tokenizer=tok, context_length=context_length)


def prepared_chars(path, text: str):
    """A character-level training set prepared in `path` from `text` (a corpus.txt beside it)."""
    from glassgpt.train import prepare
    (path / "corpus.txt").write_text(text)
    prepare([path / "corpus.txt"], path, tokenizer="char", progress=False)
    return path


def experiment_model(context_length: int = 256, seed: int = 0) -> tuple[GPT, CharTokenizer]:
    """The experiments tests' model: one layer over a wide ASCII alphabet."""
    torch.manual_seed(seed)
    tok = char_tokenizer(WIDE_ALPHABET, specials=())
    config = GPTConfig.preset("tiny", vocab_size=tok.vocab_size, context_length=context_length, d_model=32,
                              n_layer=1, n_head=2)
    return GPT(config, tokenizer=tok).eval(), tok


class MarkovCompleter:
    """Tokens 'a'..'h'; after token i the model prefers (i + 1) % 8 by `margin` logits.

    Its T=1 distribution is known exactly, so entropies and logprobs can be checked, and at
    low T it must fall into the loop abcdefgh..."""

    name = "markov"
    vocab = "abcdefgh"

    def __init__(self, margin: float = 2.0):
        self.margin = margin

    def logits(self, last: str) -> list[float]:
        nxt = (self.vocab.index(last) + 1) % len(self.vocab) if last in self.vocab else 0
        return [self.margin if j == nxt else 0.0 for j in range(len(self.vocab))]

    def complete(self, prompt, *, max_tokens, temperature, seed, logprobs=0, stop=None):
        rng = random.Random(seed)
        last, tokens, lps, ents = prompt[-1], [], [], []
        for _ in range(max_tokens):
            logits = self.logits(last)
            log_z = math.log(sum(math.exp(v) for v in logits))
            p1 = [math.exp(v - log_z) for v in logits]
            if temperature == 0:
                j = max(range(len(logits)), key=logits.__getitem__)
            else:
                w = [math.exp((v - max(logits)) / temperature) for v in logits]
                j = rng.choices(range(len(logits)), weights=w)[0]
            tokens.append(self.vocab[j])
            lps.append(logits[j] - log_z)
            ents.append(-sum(p * math.log(p) for p in p1))
            last = self.vocab[j]
        return Completion(text="".join(tokens), tokens=tokens, token_logprobs=lps, entropies=ents)

    def top_scores(self, prompt, k):
        logits = self.logits(prompt[-1])
        order = sorted(range(len(logits)), key=lambda j: -logits[j])
        return TopScores([self.vocab[j] for j in order[:k]], [logits[j] for j in order[:k]], "logits",
                         rest=[logits[j] for j in order[k:]])
