"""A session: one growing context you can extend, sample from, rewind and rewrite.

    s = Session(model, temperature=0.8)
    s.append("The cat sat on the")
    s.distribution(top=5)          # what the model expects next
    s.generate(20)                 # sample 20 tokens onto the context
    s.rewind(20)                   # take them back
    s.substitute(4, " dog sat on the")   # rewrite from token 4 on
    s.distribution(top=5)          # ...and see how the expectation moved
    s.undo()                       # back to before the substitution

The keys and values of the context live in a small prompt cache, so after a rewind or a
substitution only the tokens after the first changed position are computed again.
Text is tokenized piece by piece as it is appended, so a context built in pieces may
split differently from the same text tokenized at once.
"""
from __future__ import annotations

import torch

from ..errors import GlassError
from ..model import GPT
from ..model.inputs import to_ids
from .decode import generate
from .outputs import Generation
from .prompt_cache import PromptCache
from .samplers import SamplingParams


class Session:
    def __init__(self, model: GPT, params: SamplingParams | None = None, *, tokenizer=None, **sampling):
        self.model = model
        self.tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        self.params = SamplingParams.of(params, **sampling)   # defaults for generate(), e.g. temperature=0.8
        self.ids: list[int] = []
        self._undo: list[list[int]] = []
        self._cache = PromptCache(max_entries=2)
        self.reused = self.computed = 0         # positions reused / computed by the last forward work

    # -- reading -------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        return self.tokenizer.decode(self.ids) if self.tokenizer is not None else ""

    def __len__(self) -> int:
        return len(self.ids)

    def next_logits(self) -> torch.Tensor:
        """The model's logits for the token after the context (V,), reusing the cached prefix."""
        if not self.ids:
            raise GlassError("the session is empty: append some text first")
        ids = self.ids[-self.model.config.context_length:]
        with torch.inference_mode():
            cache, reused = self._cache.lookup(self.model, ids)
            logits = self.model(torch.tensor([ids[reused:]], device=self.model.device), kv_cache=cache,
                                last_only=True).logits[0, -1].float()
            self._cache.store(self.model, ids, cache)
        self.reused, self.computed = reused, len(ids) - reused
        return logits

    def distribution(self, top: int = 10, temperature: float = 1.0) -> list[tuple[int, str, float]]:
        """The `top` most likely next tokens as (id, text, probability) at `temperature` (> 0)."""
        if temperature <= 0:
            raise GlassError(f"the distribution needs a temperature > 0, got {temperature}")
        probs = torch.softmax(self.next_logits() / temperature, dim=-1)
        best = probs.topk(min(top, probs.numel()))
        name = self.tokenizer.id_to_str if self.tokenizer is not None else str
        return [(i, name(i), float(p)) for i, p in zip(best.indices.tolist(), best.values)]

    # -- changing the context ----------------------------------------------------------------------
    def append(self, text_or_ids) -> list[int]:
        """Add text (or ids) at the end; returns the new ids."""
        new = self._encode(text_or_ids)
        self._change(self.ids + new)
        return new

    def generate(self, n: int = 32, constraint=None, **sampling) -> Generation:
        """Sample up to n tokens onto the context (settings: the session's, overridden by these;
        `constraint`: a Choice, Regex, ... the new text must satisfy)."""
        if not self.ids:
            raise GlassError("the session is empty: append some text first")
        params = SamplingParams.of(self.params, **{**sampling, "max_new_tokens": n})
        g = generate(self.model, self.ids, params, tokenizer=self.tokenizer, prompt_cache=self._cache,
                     constraint=constraint)[0]
        self.reused, self.computed = g.stats.prefill_reused, g.stats.prefill_tokens
        self._change(self.ids + g.ids)
        return g

    def rewind(self, n_tokens: int) -> None:
        """Take back the last n tokens."""
        if not 0 <= n_tokens <= len(self.ids):
            raise GlassError(f"cannot rewind {n_tokens} tokens: the context has {len(self.ids)}")
        self.rewind_to(len(self.ids) - n_tokens)

    def rewind_to(self, position: int) -> None:
        """Keep the first `position` tokens."""
        if not 0 <= position <= len(self.ids):
            raise GlassError(f"cannot rewind to token {position}: the context has tokens 0..{len(self.ids)}")
        self._change(self.ids[:position])

    def substitute(self, position: int, text_or_ids) -> list[int]:
        """Replace everything from token `position` on with new text (or ids)."""
        if not 0 <= position <= len(self.ids):
            raise GlassError(f"cannot substitute at token {position}: the context has tokens 0..{len(self.ids)}")
        new = self._encode(text_or_ids)
        self._change(self.ids[:position] + new)
        return new

    def undo(self) -> None:
        """Go back to the context before the last change."""
        if not self._undo:
            raise GlassError("nothing to undo")
        self.ids = self._undo.pop()

    def _change(self, ids: list[int]) -> None:
        self._undo.append(self.ids)
        self.ids = ids

    def _encode(self, text_or_ids) -> list[int]:
        if len(text_or_ids) == 0:
            return []
        return to_ids(text_or_ids, self.tokenizer, self.model.config.vocab_size)
