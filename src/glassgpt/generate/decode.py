"""The decoding loop: prompt -> prefill -> (sample, append, one forward) x n.

    prefill    the whole prompt in one forward (last_only: only the last position's
               logits are needed), filling the KV cache
    decode     each step samples one token per row through the sampler chain and feeds
               just that token back: one position's work per step

Several rows run as one batch: `num_samples` copies of one prompt (prefilled once,
the cache copied to every row), or different prompts (`generate_batch`), left-padded
to the same length, with a key padding mask hiding the padding and per-row positions
so that every row sees exactly what it would see alone.

The context window: a prompt longer than the context is cropped from the left (with
a warning). When generation fills the context, the window slides: the cache is
recomputed from the last half-context of tokens (one prefill every context/2 tokens),
so each new token sees between context/2 and context tokens.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import torch

from ..errors import GlassError
from ..model import GPT, KVCache
from ..model.inputs import crop_to_context, to_ids
from .fast import decode_logits, fast_decode
from .outputs import Alternative, Generation, GenerationStats, TokenEvent, TokenLogprob
from .prompt_cache import PromptCache
from .samplers import SamplerChain, SamplingParams, draw, greedy
from .text import IncrementalText
from .token_masks import (CompiledConstraint, compile_constraint, constrained_logits, constrained_probabilities,
                          constraint_steps, token_masks)


# -- the public entry points -------------------------------------------------------------
def generate(model: GPT, prompt, params: SamplingParams | None = None, *, tokenizer=None,
             draft: GPT | None = None, draft_tokens: int = 4, prompt_cache: PromptCache | None = None,
             constraint=None, **settings) -> list[Generation]:
    """Sample `num_samples` continuations of `prompt` (text, or a list of token ids).

    Settings: a `SamplingParams` and/or its fields as keywords (temperature=0.8, top_p=0.95,
    max_new_tokens=50, stop="\n", seed=1, logprobs=5, ...; keywords override `params`).
    The sampler chain and its order: see `samplers`; temperature 0 is greedy. Same seed,
    same settings -> same text. draft: a small model with the same vocabulary for
    speculative decoding (proposes `draft_tokens` at a time; same output distribution).
    prompt_cache: a `PromptCache` to reuse the keys/values of earlier prompts' prefixes.
    constraint: a `Choice`, `Regex`, `Integer`, `JSONSchema` or `Grammar` the continuation
    must satisfy (see `constraints`): each step samples from the chain's distribution
    renormalised over the tokens the constraint allows; logprobs records show what it removed.
    Returns one `Generation` per sample.
    """
    if draft is not None and constraint is not None:
        raise GlassError("speculative decoding (draft=...) does not take a constraint: leave one of them out")
    request = Request.build(model, [prompt], SamplingParams.of(params, **settings), tokenizer, constraint)
    if draft is not None:
        from .speculative import SpeculativeDecoder
        return SpeculativeDecoder(model, draft, draft_tokens, request, prompt_cache).generate_all()
    engine = Engine(model, request, prompt_cache)
    for _ in engine.run():
        pass
    return engine.generations()


def generate_batch(model: GPT, prompts: list, params: SamplingParams | None = None, *, tokenizer=None,
                   constraint=None, **settings) -> list[Generation]:
    """Generate for several prompts (text or ids, any lengths) in one forward per step.

    Takes the settings of `generate`; returns the samples prompt by prompt (num_samples per prompt)."""
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise GlassError("generate_batch needs a non-empty list of prompts")
    for unsupported in ("draft", "prompt_cache"):
        if settings.get(unsupported) is not None:
            raise GlassError(f"generate_batch does not take {unsupported}: use generate for one prompt")
        settings.pop(unsupported, None)
    engine = Engine(model, Request.build(model, list(prompts), SamplingParams.of(params, **settings), tokenizer,
                                         constraint))
    for _ in engine.run():
        pass
    return engine.generations()


def stream(model: GPT, prompt, params: SamplingParams | None = None, *, tokenizer=None,
           draft: GPT | None = None, draft_tokens: int = 4, prompt_cache: PromptCache | None = None,
           constraint=None, **settings) -> Iterator[TokenEvent]:
    """Yield one `TokenEvent` per token as it is produced (one sample; settings as `generate`).

    The last event carries `finish_reason`; when that is "eot" its token is the
    end-of-text token, which `generate` leaves out of `ids`."""
    params = SamplingParams.of(params, **settings)
    if params.num_samples != 1:
        raise GlassError("stream produces one sample: use generate(..., num_samples=n) for several")
    if draft is not None and constraint is not None:
        raise GlassError("speculative decoding (draft=...) does not take a constraint: leave one of them out")
    request = Request.build(model, [prompt], params, tokenizer, constraint)   # validate now, not on the first next()
    if draft is not None:
        from .speculative import SpeculativeDecoder
        decoder = SpeculativeDecoder(model, draft, draft_tokens, request, prompt_cache)
        return (event for _, event in decoder.run())
    return (event for _, event in Engine(model, request, prompt_cache).run())


# -- a request: validated settings and prompts ---------------------------------------------
@dataclass
class Request:
    prompts: list[list[int]]             # one per row (num_samples rows per prompt), cropped to the context
    params: SamplingParams
    chain: SamplerChain
    tokenizer: object
    eot_id: int | None
    generator: torch.Generator
    constraint: CompiledConstraint | None = None   # every row's text must satisfy it

    @classmethod
    def build(cls, model: GPT, prompts: list, params: SamplingParams, tokenizer=None,
              constraint=None) -> "Request":
        params.validate(model.config.vocab_size)
        tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        if params.stop and tokenizer is None:
            raise GlassError("stop sequences are matched on text: give the model a tokenizer (tokenizer=...)")
        config = model.config
        ids = [crop_to_context(to_ids(p, tokenizer, config.vocab_size), config.context_length, stacklevel=4)[0]
               for p in prompts]
        generator = torch.Generator(device=model.device)
        if params.seed is None:
            generator.seed()
        else:
            generator.manual_seed(params.seed)
        compiled = None if constraint is None else compile_constraint(constraint, tokenizer, model.config.vocab_size)
        return cls([p for p in ids for _ in range(params.num_samples)], params,
                   SamplerChain(params, model.config.vocab_size, model.device), tokenizer,
                   getattr(tokenizer, "eot_id", None), generator, compiled)

    @property
    def max_new_tokens(self) -> int:
        return self.params.max_new_tokens

    @property
    def stops(self) -> tuple[str, ...]:
        return self.params.stop

    @property
    def logprobs(self) -> int | None:
        return self.params.logprobs


# -- one row of the batch: its tokens, text and logprobs --------------------------------------
class Row:
    def __init__(self, prompt: list[int], request: Request):
        self.prompt, self.request = prompt, request
        self.ids: list[int] = []
        self.logprobs: list[TokenLogprob] | None = [] if request.logprobs is not None else None
        self.text = IncrementalText(request.tokenizer, request.stops)
        self.finish_reason: str | None = None
        self.constraint = (request.constraint.new_state(request.max_new_tokens)
                           if request.constraint is not None else None)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def accept(self, token: int, record: TokenLogprob | None) -> TokenEvent:
        """Take one sampled token: append it, or finish at end-of-text / a stop string / the length."""
        index = len(self.ids)
        if token == self.request.eot_id:
            self.finish_reason = "eot"
        else:
            self.ids.append(token)
            if record is not None:
                self.logprobs.append(record)
            self.text.add(token)
            if self.constraint is not None:
                self.constraint.advance(token)
            if self.text.stopped:
                self.finish_reason = "stop"
            elif self.constraint is not None and self.constraint.complete:
                self.finish_reason = "constraint"      # complete: nothing more may follow
            elif len(self.ids) >= self.request.max_new_tokens or (self.constraint and self.constraint.finished):
                self.finish_reason = "length"          # (or the constraint's own max_tokens/max_chars)
        if self.done:
            self.text.flush()
        return TokenEvent(token, self.text.release(final=self.done), index, record, self.finish_reason)

    def generation(self, stats: GenerationStats) -> Generation:
        return Generation(self.prompt, self.ids, self.text.text, self.finish_reason or "length",
                          self.logprobs, stats)


def logprob_records(chain: SamplerChain, logits: torch.Tensor, counts: torch.Tensor | None,
                    tokens: torch.Tensor, n: int, tokenizer, rank_by: str = "raw",
                    constrained: torch.Tensor | None = None, allowed: torch.Tensor | None = None) -> list[TokenLogprob]:
    """For each row: the chosen token's log-probability before/after the chain, entropies,
    and the n most likely alternatives (logits (B, V), tokens (B,)), most likely under the
    model (rank_by="raw") or under the distribution sampled from ("processed"). With a
    constraint, `constrained` (B, V) is the distribution actually drawn from and `allowed`
    (B, V) the tokens it allowed: "after" means after the chain and the constraint."""
    logp = torch.log_softmax(logits, dim=-1)                                     # (B, V)
    after = chain.probabilities(logits, counts) if constrained is None else constrained   # (B, V)
    entropy = -(logp.exp() * logp).sum(-1)
    entropy_after = -torch.special.xlogy(after, after).sum(-1)
    top = (logp if rank_by == "raw" else after).topk(min(n, logp.shape[-1]), dim=-1)
    name = (lambda i: tokenizer.id_to_str(i)) if tokenizer is not None else (lambda i: "")
    records = []
    for b, token in enumerate(tokens.tolist()):
        alternatives = [Alternative(i, name(i), float(logp[b, i].exp()), float(after[b, i]))
                        for i in top.indices[b].tolist()]
        records.append(TokenLogprob(token, name(token), float(logp[b, token]),
                                    float(after[b, token].log()), float(entropy[b]),
                                    float(entropy_after[b]), alternatives))
    if allowed is not None:
        for b, (record, step) in enumerate(zip(records, constraint_steps(chain, logits, counts, after, allowed,
                                                                          n, name))):
            record.constraint = step
            for alternative in record.top:
                alternative.allowed = bool(allowed[b, alternative.id])
    return records


def constrained_sample(request: Request, logits: torch.Tensor, counts: torch.Tensor | None,
                       states: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One token per row (logits (B, V)) from the chain's distribution renormalised over the
    tokens each row's constraint state allows (None: a finished row, anything goes).
    Returns the tokens (B,), the masked logits and the allowed set (B, V)."""
    allowed = token_masks(states, logits.shape[-1]).to(logits.device)           # (B, V)
    for state, row_allowed in zip(states, allowed):
        if state is not None and not bool(row_allowed.any()):
            raise state.nothing_allowed()
    masked, _ = constrained_logits(request.chain, logits, counts, allowed)      # (B, V)
    tokens = greedy(masked) if request.params.is_greedy else draw(masked, request.generator)
    return tokens, masked, allowed


def token_counts(rows: list[list[int]], vocab_size: int, device) -> torch.Tensor:
    """(B, V): how often each token occurs in each row's context (for the penalties)."""
    counts = torch.zeros(len(rows), vocab_size, device=device)
    for b, ids in enumerate(rows):
        counts[b].index_add_(0, torch.tensor(ids, device=device), torch.ones(len(ids), device=device))
    return counts


# -- the batched decoding loop ---------------------------------------------------------------
class Engine:
    """Runs one request: prefill every row, then one forward per step for the whole batch."""

    def __init__(self, model: GPT, request: Request, prompt_cache: PromptCache | None = None):
        self.model, self.request, self.prompt_cache = model, request, prompt_cache
        self.rows = [Row(p, request) for p in request.prompts]
        self.contexts = [list(p) for p in request.prompts]    # every token each row has fed or sampled
        self.stats = GenerationStats(batch_size=len(self.rows))
        self.cache: KVCache | None = None
        self.pad: torch.Tensor | None = None                  # (B,) left padding per row, None if none
        self.mask: torch.Tensor | None = None                 # (B, cache length) False at padding
        self.slid = False

    def generations(self) -> list[Generation]:
        return [row.generation(self.stats) for row in self.rows]

    def run(self) -> Iterator[tuple[int, TokenEvent]]:
        """Yield (row, event) for every token of every row, as they are produced."""
        request, device = self.request, self.model.device
        start = time.perf_counter()
        counts = (token_counts(self.contexts, self.model.config.vocab_size, device)
                  if request.params.uses_counts else None)
        if request.max_new_tokens == 0:
            return
        with torch.inference_mode(), fast_decode(self.model):
            logits = self.prefill_prompts()                                      # (B, V)
            while True:
                if request.constraint is None:
                    tokens = request.chain.sample(logits, counts, request.generator)  # (B,)
                    records = (logprob_records(request.chain, logits, counts, tokens, request.logprobs,
                                               request.tokenizer) if request.logprobs is not None else None)
                else:
                    tokens, records = self.sample_constrained(logits, counts)
                self.stats.decode_steps += 1
                for b, token in enumerate(tokens.tolist()):
                    self.contexts[b].append(token)
                    row = self.rows[b]
                    if not row.done:
                        event = row.accept(token, records[b] if records else None)
                        self.stats.new_tokens += token != request.eot_id
                        self.stats.finish(time.perf_counter() - start)
                        yield b, event
                if all(row.done for row in self.rows):
                    break
                if counts is not None:
                    counts.scatter_add_(1, tokens[:, None], torch.ones_like(counts[:, :1]))
                logits = self.feed(tokens)
        self.remember_context()
        self.stats.finish(time.perf_counter() - start)

    def sample_constrained(self, logits: torch.Tensor, counts: torch.Tensor | None):
        """Mask each row's disallowed tokens after the chain, draw, and keep the records."""
        request = self.request
        states = [None if row.done else row.constraint for row in self.rows]
        tokens, masked, allowed = constrained_sample(request, logits, counts, states)
        records = None
        if request.logprobs is not None:
            records = logprob_records(request.chain, logits, counts, tokens, request.logprobs, request.tokenizer,
                                      constrained=constrained_probabilities(request.chain, masked), allowed=allowed)
        return tokens, records

    # -- prefill -------------------------------------------------------------------------
    def prefill_prompts(self) -> torch.Tensor:
        prompts = self.request.prompts
        longest = max(map(len, prompts))
        cache_length = min(self.model.config.context_length, longest + self.request.max_new_tokens)
        if all(p == prompts[0] for p in prompts):
            return self.prefill_shared(prompts[0], len(prompts), cache_length)
        return self.prefill_rows(prompts, cache_length)

    def prefill_shared(self, prompt: list[int], batch: int, cache_length: int) -> torch.Tensor:
        """One prompt for every row: compute it once (reusing a cached prefix), copy to all rows."""
        if self.prompt_cache is not None:
            cache, reused = self.prompt_cache.lookup(self.model, prompt, cache_length)
        else:
            cache, reused = self.model.new_kv_cache(1, cache_length), 0
        ids = torch.tensor([prompt[reused:]], device=self.model.device)           # (1, T)
        logits = self.model(ids, kv_cache=cache, last_only=True).logits[:, -1].float()   # (1, V)
        self.stats.prefill_tokens += len(prompt) - reused
        self.stats.prefill_reused += reused
        self.stats.forward_passes += 1
        if batch > 1:
            if self.prompt_cache is not None:
                self.prompt_cache.store(self.model, prompt, cache)
            cache = repeat_cache(self.model, cache, batch)
            logits = logits.repeat(batch, 1)
        self.cache, self.pad, self.mask = cache, None, None
        return logits

    def prefill_rows(self, seqs: list[list[int]], cache_length: int) -> torch.Tensor:
        self.stats.prefill_tokens += sum(map(len, seqs))
        self.stats.forward_passes += 1
        self.cache, self.pad, self.mask, logits = prefill_rows(self.model, seqs, cache_length)
        return logits

    # -- decode ----------------------------------------------------------------------------
    def feed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed each row's new token (B,) and return the next logits (B, V)."""
        if self.cache.length >= self.model.config.context_length:
            return self.slide()
        ids = tokens[:, None]                                                     # (B, 1)
        self.stats.forward_passes += 1
        if self.pad is None:                                                      # the engine's one-token step
            return decode_logits(self.model, ids, self.cache).float()
        positions = (self.cache.length - self.pad)[:, None]                       # (B, 1)
        out = self.model(ids, kv_cache=self.cache, positions=positions, key_padding_mask=self.mask,
                         last_only=True)
        return out.logits[:, -1].float()

    def slide(self) -> torch.Tensor:
        """The context is full: recompute the cache from the last half-context of every row."""
        keep = max(1, self.model.config.context_length // 2)
        self.slid = True
        return self.prefill_rows([c[-keep:] for c in self.contexts], self.model.config.context_length)

    def remember_context(self) -> None:
        """With a prompt cache and one row, keep the keys/values of prompt + generated text,
        so a follow-up prompt that continues this text (a chat, a session) reuses all of it."""
        if self.prompt_cache is not None and len(self.rows) == 1 and self.cache is not None and not self.slid:
            self.prompt_cache.store(self.model, self.contexts[0][:self.cache.length], self.cache)


def prefill_rows(model: GPT, seqs: list[list[int]], cache_length: int):
    """Different sequences in one forward: each row's cache left-padded to the longest, the
    mask hiding padding keys and each row's positions starting at 0 on its first real token.
    Computed packed (all sequences one after another in one row, each seeing only itself)
    when that is less work than computing the padding too.

    Returns (cache, pad (B,) or None, mask (B, cache_length) or None, last logits (B, V))."""
    device, B = model.device, len(seqs)
    lengths = torch.tensor([len(s) for s in seqs], device=device)
    P = int(lengths.max())
    cache = model.new_kv_cache(B, cache_length)
    if bool((lengths == P).all()):
        ids = torch.tensor(seqs, device=device)                                   # (B, P)
        return cache, None, None, model(ids, kv_cache=cache, last_only=True).logits[:, -1].float()
    pad = P - lengths                                                             # (B,)
    columns = torch.arange(cache_length, device=device)[None, :]                  # (1, S)
    mask = columns >= pad[:, None]                                                # (B, S)
    if packing_pays(lengths.tolist(), model.config):
        return cache, pad, mask, prefill_packed(model, seqs, cache)
    ids = torch.tensor([[0] * (P - len(s)) + s for s in seqs], device=device)      # (B, P)
    positions = (columns[:, :P] - pad[:, None]).clamp(min=0)                      # (B, P)
    out = model(ids, kv_cache=cache, positions=positions, key_padding_mask=mask, last_only=True)
    return cache, pad, mask, out.logits[:, -1].float()


def prefill_packed(model: GPT, seqs: list[list[int]], cache: KVCache) -> torch.Tensor:
    """All sequences in one row, one after another, each attending only to itself; their
    keys and values then go to their own rows of the (left-padded) batch `cache`."""
    device, lengths = model.device, [len(s) for s in seqs]
    ids = torch.tensor([[i for s in seqs for i in s]], device=device)             # (1, N)
    positions = torch.cat([torch.arange(n, device=device) for n in lengths])[None]   # (1, N)
    documents = torch.repeat_interleave(torch.arange(len(seqs), device=device),
                                        torch.tensor(lengths, device=device))[None]  # (1, N)
    ends = torch.tensor(lengths, device=device).cumsum(0) - 1                     # (B,) each one's last token
    packed = model.new_kv_cache(1, ids.shape[1])
    out = model(ids, kv_cache=packed, positions=positions, documents=documents, logits_at=ends)
    cache.store_packed(packed, lengths)
    return out.logits[0].float()                                                  # (B, V)


def packing_pays(lengths: list[int], config) -> bool:
    """Whether sequences fit one row of the context together and computing them packed
    costs less than left-padding them all to the longest. Per layer, a token's matrix
    products cost about 24 d^2 and attention about 4 d per key it is scored against; the
    fused kernel scores a packed row's every pair (the mask hides the other sequences but
    does not skip them), so packing saves the padding's matrix work and pays back N^2
    attention: in units of 4 d, packed 6 d N + N^2 against padded 6 d B P + B P^2."""
    N, B, P, d = sum(lengths), len(lengths), max(lengths), config.d_model
    return N <= config.context_length and 6 * d * N + N * N < 6 * d * B * P + B * P * P


def repeat_cache(model: GPT, cache: KVCache, batch: int) -> KVCache:
    """A batch-`batch` cache whose every row holds row 0 of `cache`."""
    big = model.new_kv_cache(batch, cache.max_length)
    n = cache.length
    big.keys[:, :, :, :n] = cache.keys[:, :1, :, :n]          # (L, 1, H, n, hd) broadcast to B rows
    big.values[:, :, :, :n] = cache.values[:, :1, :, :n]
    big.advance(n)
    return big
