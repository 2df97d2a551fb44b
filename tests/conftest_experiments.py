"""Stand-ins for the experiments tests: a char-level tokenizer with the Tokenizer API, a tiny
random GPT saved as a run directory, and a completer driven by a known Markov chain."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

from glassgpt.experiments.completer import Completion, TopScores

ALPHABET = "\n !\"#%'()*+,-./0123456789:;<=>?@[\\]_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ|"


class CharTokenizer:
    kind = "char"
    eot_id = None
    special_tokens: dict = {}

    def __init__(self, chars: str = ALPHABET):
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text, allowed_special=None):
        return [self.index[c] for c in text if c in self.index]

    def decode(self, ids):
        return "".join(self.chars[i] for i in ids)

    def id_to_str(self, i):
        return self.chars[i]

    def save(self, path):
        Path(path).write_text(json.dumps({"chars": self.chars}))

    @classmethod
    def load(cls, path):
        return cls(json.loads(Path(path).read_text())["chars"])


def tiny_model(context_length: int = 256, seed: int = 0):
    import torch

    from glassgpt.model import GPT, GPTConfig

    torch.manual_seed(seed)
    tok = CharTokenizer()
    config = GPTConfig.preset("tiny", vocab_size=tok.vocab_size, context_length=context_length, d_model=32,
                              n_layer=1, n_head=2)
    return GPT(config, tokenizer=tok, verbose=False).eval(), tok


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
