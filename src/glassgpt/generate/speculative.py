"""Speculative decoding (Leviathan et al. 2023; Chen et al. 2023): a small draft model
guesses k tokens, the big target model checks all k in ONE forward, and a rejection rule
keeps the output distribution exactly the target's.

One step, with p the target's and q the draft's sampling distributions (both after the
same sampler chain):

    draft:   d1 ~ q1, d2 ~ q2(. | d1), ..., dk ~ qk            k cheap forwards
    target:  one forward over [last token, d1..dk] -> p1 .. p(k+1)
    check:   accept d_i with probability min(1, p_i(d_i) / q_i(d_i)), in order;
             at the first rejection draw from max(0, p_i - q_i) (renormalised) and stop;
             if all k are accepted, draw one more token from p(k+1)

Every step yields between 1 and k+1 tokens for one target forward. At temperature 0 both
distributions are one-hot, so this is plain greedy decoding checked k tokens at a time.

Invariant: the target cache holds every token of the window except the last, which the
next verification forward feeds first; the draft cache holds some prefix of the window.
On rejection both caches are cropped back to the accepted prefix.
"""
from __future__ import annotations

import time
from typing import Iterator

import torch

from ..errors import GlassError
from ..model import GPT, KVCache
from .decode import Request, Row, logprob_records, token_counts
from .fast import decode_logits, fast_decode
from .outputs import Generation, GenerationStats, TokenEvent
from .prompt_cache import PromptCache
from .samplers import SamplerChain, draw_from


class SpeculativeDecoder:
    def __init__(self, target: GPT, draft: GPT, draft_tokens: int, request: Request,
                 prompt_cache: PromptCache | None = None):
        if draft.config.vocab_size != target.config.vocab_size:
            raise GlassError(f"the draft model's vocabulary ({draft.config.vocab_size}) differs from the "
                             f"target's ({target.config.vocab_size}): use a draft trained with the same tokenizer")
        if isinstance(draft_tokens, bool) or not isinstance(draft_tokens, int) or draft_tokens < 1:
            raise GlassError(f"draft_tokens must be a whole number >= 1, got {draft_tokens!r}")
        self.target, self.draft, self.k = target, draft, draft_tokens
        self.request, self.prompt_cache = request, prompt_cache
        self.draft_chain = SamplerChain(request.params, draft.config.vocab_size, draft.device)
        self.context_length = min(target.config.context_length, draft.config.context_length)
        self.rows = [Row(p, request) for p in request.prompts]
        self.stats = GenerationStats(batch_size=1, draft_forward_passes=0, drafted=0, accepted=0)
        self.verify_forwards = 0

    def generate_all(self) -> list[Generation]:
        for _ in self.run():
            pass
        return [row.generation(self.stats) for row in self.rows]

    def run(self) -> Iterator[tuple[int, TokenEvent]]:
        start = time.perf_counter()
        with torch.inference_mode(), fast_decode(self.target), fast_decode(self.draft):
            for b, row in enumerate(self.rows):
                for event in self.run_row(row):
                    self.finish_stats(start)
                    yield b, event
        self.finish_stats(start)

    def finish_stats(self, start: float) -> None:
        self.stats.finish(time.perf_counter() - start)
        self.stats.tokens_per_target_forward = self.stats.new_tokens / max(1, self.verify_forwards)

    # -- one sample -----------------------------------------------------------------------
    def run_row(self, row: Row) -> Iterator[TokenEvent]:
        request = self.request
        if request.max_new_tokens == 0:
            return
        window = list(row.prompt)                      # the tokens the models currently see
        counts = (token_counts([window], self.target.config.vocab_size, self.target.device)
                  if request.params.uses_counts else None)
        target_cache, draft_cache = self.prefill(window)
        while not row.done:
            if len(window) > self.context_length:      # full: slide to the last half-context, as plain decoding does
                window = window[-(self.context_length // 2):]
                target_cache, draft_cache = self.prefill(window, reuse=False)
            remaining = request.max_new_tokens - len(row.ids)
            k = min(self.k, remaining - 1, self.context_length - len(window))
            drafted, q, counts_at = self.propose(window, draft_cache, k, counts)
            logits, p = self.verify(window, target_cache, drafted, counts_at)     # (k+1, V) each
            tokens, accepted = self.accept(drafted, p, q)
            self.stats.drafted += k
            self.stats.accepted += accepted
            self.stats.decode_steps += 1
            target_cache.crop(len(window) + accepted)   # keeps window + accepted drafts; the new token is fed next
            draft_cache.crop(min(draft_cache.length, len(window) + accepted))
            for i, token in enumerate(tokens):
                record = None
                if request.logprobs is not None:
                    record = logprob_records(request.chain, logits[i:i + 1], counts_at[i],
                                             torch.tensor([token]), request.logprobs, request.tokenizer)[0]
                event = row.accept(token, record)
                self.stats.new_tokens += token != request.eot_id
                window.append(token)
                if counts is not None:
                    counts[0, token] += 1
                yield event
                if row.done:
                    break

    def prefill(self, window: list[int], reuse: bool = True) -> tuple[KVCache, KVCache]:
        """Target cache: all of the window but its last token; draft cache: empty (it catches up
        on its first proposal)."""
        length = self.context_length
        if self.prompt_cache is not None and reuse:
            target_cache, reused = self.prompt_cache.lookup(self.target, window, length)
        else:
            target_cache, reused = self.target.new_kv_cache(1, length), 0
        if len(window) - 1 > reused:
            self.target(torch.tensor([window[reused:-1]], device=self.target.device), kv_cache=target_cache,
                        last_only=True)
            self.stats.forward_passes += 1
            if self.prompt_cache is not None:
                self.prompt_cache.store(self.target, window[:-1], target_cache)
        self.stats.prefill_tokens += len(window) - reused
        self.stats.prefill_reused += reused
        return target_cache, self.draft.new_kv_cache(1, length)

    def propose(self, window: list[int], cache: KVCache, k: int, counts
                ) -> tuple[list[int], torch.Tensor, list[torch.Tensor | None]]:
        """The draft picks k tokens one by one; returns them, when sampling their distributions
        q (k, V) (empty at temperature 0, where the tokens alone decide), and the context's token
        counts before each of the k + 1 positions the target will check (None without penalties)."""
        drafted, q, counts_at = [], [], [counts]
        greedy = self.request.params.is_greedy
        new = window[cache.length:]                  # what the draft has not seen yet (>= 1 token)
        for _ in range(k):
            ids = torch.tensor([new], device=self.draft.device)
            logits = decode_logits(self.draft, ids, cache).float()                   # (1, V), op by op for one token
            self.stats.draft_forward_passes += 1
            if greedy:
                token = int(self.draft_chain.process(logits, counts_at[-1]).argmax())
            else:
                probs = self.draft_chain.probabilities(logits, counts_at[-1])
                token = int(draw_from(probs, self.request.generator))
                q.append(probs[0])
            drafted.append(token)
            counts_at.append(counts_at[-1].index_add(
                1, torch.tensor([token], device=counts.device), torch.ones(1, 1, device=counts.device))
                                  if counts is not None else None)
            new = [token]
        return drafted, (torch.stack(q) if q else torch.empty(0, self.draft.config.vocab_size)), counts_at

    def verify(self, window: list[int], cache: KVCache, drafted: list[int], counts_at: list
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """One target forward over [last token, d1..dk] -> its logits (k+1, V) and its sampling
        distributions (k+1, V), or at temperature 0 its choices (k+1,)."""
        ids = torch.tensor([window[-1:] + drafted], device=self.target.device)                # (1, k+1)
        logits = self.target(ids, kv_cache=cache).logits[0].float()                          # (k+1, V)
        self.stats.forward_passes += 1
        self.verify_forwards += 1
        chain = self.request.chain
        if counts_at[0] is None:
            processed = chain.process(logits)
        else:
            processed = torch.cat([chain.process(logits[i:i + 1], counts_at[i]) for i in range(len(drafted) + 1)])
        if self.request.params.is_greedy:
            return logits, processed.argmax(dim=-1)                                           # (k+1,)
        return logits, torch.softmax(processed, dim=-1)

    def accept(self, drafted: list[int], p: torch.Tensor, q: torch.Tensor) -> tuple[list[int], int]:
        """The rejection rule: the accepted drafts plus one token from the target; and how many
        drafts were accepted."""
        if self.request.params.is_greedy:          # temperature 0: keep drafts while they are the target's argmax
            choices = p.tolist()
            n = next((i for i, d in enumerate(drafted) if d != choices[i]), len(drafted))
            return drafted[:n] + [choices[n]], n
        generator, k = self.request.generator, len(drafted)
        rows, columns = torch.arange(k), torch.tensor(drafted, dtype=torch.long)
        u = torch.rand(k, generator=generator, device=generator.device)                     # (k,) one uniform per draft
        rejected = (u * q[rows, columns] >= p[rows, columns]).tolist()                      # u >= p/q, one sync
        i = rejected.index(True) if True in rejected else k
        if i == k:
            return drafted + [int(draw_from(p[k][None], generator))], k
        residual = (p[i] - q[i]).clamp(min=0)                                                # (V,)
        residual = residual if float(residual.sum()) > 0 else p[i]
        return drafted[:i] + [int(draw_from(residual[None], generator))], i


# -- one step, seen -------------------------------------------------------------------------
class WatchedDecoder(SpeculativeDecoder):
    """A SpeculativeDecoder that keeps every step: what the draft proposed, how many of those
    the target accepted, and the tokens the step added (the accepted drafts, then one token of
    the target's own: its replacement for the first rejected draft, or one more after all)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps: list[dict] = []

    def accept(self, drafted: list[int], p: torch.Tensor, q: torch.Tensor) -> tuple[list[int], int]:
        tokens, accepted = super().accept(drafted, p, q)
        self.steps.append({"proposed": list(drafted), "accepted": accepted, "tokens": list(tokens)})
        return tokens, accepted


def speculative_step(target: GPT, draft: GPT, ids: list[int], params=None, draft_tokens: int = 4,
                     **settings) -> dict:
    """One step of speculative decoding after the context `ids`: {"proposed": the draft's
    tokens, "accepted": how many the target kept, "tokens": what the step adds}. The same
    rules as `generate(..., draft=...)`; settings as there (temperature, top_p, seed, ...)."""
    from .samplers import SamplingParams
    params = SamplingParams.of(params, **{**settings, "max_new_tokens": draft_tokens + 1})
    request = Request.build(target, [list(ids)], params)
    decoder = WatchedDecoder(target, draft, draft_tokens, request)
    added: list[int] = []
    for _, event in decoder.run():
        added.append(event.id)
        if decoder.steps and len(added) >= len(decoder.steps[0]["tokens"]):
            break
    step = decoder.steps[0]
    return {**step, "tokens": step["tokens"][:len(added)]}
