"""Continuous batching: requests join a running batch between steps and leave it when done.

    scheduler = Scheduler(model, max_batch=8, prompt_cache=PromptCache())
    job = scheduler.submit("ROMEO:", max_new_tokens=50, temperature=0.8, seed=1)   # generate's settings
    with fast_decode(model):                            # the fast weight layouts, held by the loop's owner
        while scheduler.busy:
            for job, sample, event in scheduler.step():     # one token per running row
                ...
    job.generations()                                   # as generate(model, "ROMEO:", ...) returns them

`generate` runs one request from start to end. A server gets requests at any moment and
with different settings. The scheduler runs one decoding step for every running row
together (one forward pass); between steps, new prompts are prefilled (packed together,
as `generate_batch` does, or reusing a cached prefix) and join the batch; finished or
cancelled rows stop counting at once and are dropped from the cache at the next re-layout.

A job is one prompt with its n samples, its own sampler chain and random generator: its
rows step together and draw their random numbers exactly as `generate(model, prompt,
num_samples=n, seed=...)` does, so the same seed and settings give the same text whether
a job runs alone or among others.

The batch's KV cache has one row per running sample, right-aligned: left padding hidden
by the key padding mask, each row's positions starting at 0 on its first real token.
When rows join (or the cache is full, or more rows are finished than running) the cache
is laid out anew: live rows only, shifted left by the smallest padding, its capacity
what the rows can still need. A job's prompt plus its new tokens must fit the context
(`generate` slides the window instead; a shared batch does not).

With a draft model, a job that arrives while nothing else runs (one sample, no prompt
log-probabilities) decodes speculatively on its own caches (the output distribution is
the target's; at temperature 0 the same text); jobs arriving meanwhile run in the batch.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

import torch

from ..errors import GlassError
from ..model import GPT, KVCache
from .decode import Request, Row, constrained_sample, logprob_records, prefill_rows, token_counts
from .outputs import Alternative, Generation, GenerationStats, TokenEvent, TokenLogprob
from .prompt_cache import PromptCache
from .samplers import SamplingParams
from .token_masks import constrained_probabilities


@dataclass(eq=False)
class Job:
    """One prompt's n samples, as submitted; read its rows' progress between steps."""

    request: Request
    prompt_logprobs: int | None = None       # alternatives per prompt position (echo); None: not wanted
    rank_by: str = "raw"                     # which distribution the per-token alternatives come from
    rows: list[Row] = field(default_factory=list)
    prompt_records: list[TokenLogprob | None] | None = None   # first None (nothing predicts it)
    cached_tokens: int = 0                   # prompt positions taken from the prompt cache
    state: str = "waiting"                   # waiting -> running -> done
    cancelled: bool = False
    speculative: bool = False
    stats: GenerationStats = field(default_factory=GenerationStats)
    submitted: float = field(default_factory=time.perf_counter)
    counts: torch.Tensor | None = None       # (n, V) tokens seen per sample, for the penalties
    error: str | None = None                 # why the job stopped early (its constraint allowed no token)

    @property
    def prompt(self) -> list[int]:
        return self.request.prompts[0]

    @property
    def n(self) -> int:
        return len(self.request.prompts)

    @property
    def done(self) -> bool:
        return self.state == "done"

    def generations(self) -> list[Generation]:
        return [row.generation(self.stats) for row in self.rows]


@dataclass
class Slot:
    """One row of the batch cache: which job and sample it decodes (None once it left)."""

    job: Job | None
    sample: int
    need: int            # cache positions the sample can still reach: prompt + max_new_tokens - 1


class Scheduler:
    def __init__(self, model: GPT, *, max_batch: int = 8, prompt_cache: PromptCache | None = None,
                 draft: GPT | None = None, draft_tokens: int = 4):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise GlassError(f"max_batch must be a whole number >= 1, got {max_batch!r}")
        if draft is not None and draft.config.vocab_size != model.config.vocab_size:
            raise GlassError(f"the draft model's vocabulary ({draft.config.vocab_size}) differs from the "
                             f"target's ({model.config.vocab_size}): use a draft trained with the same tokenizer")
        self.model, self.max_batch, self.prompt_cache = model, max_batch, prompt_cache
        self.draft, self.draft_tokens = draft, draft_tokens
        self._lock = threading.Lock()
        self.waiting: deque[Job] = deque()
        self.running: list[Job] = []
        self.slots: list[Slot] = []           # one per batch row
        self.cache: KVCache | None = None
        self.pad: torch.Tensor | None = None  # (B,) left padding per row
        self.logits: torch.Tensor | None = None   # (B, V) next-token logits of every row
        self.solo: tuple[Job, Iterator[TokenEvent], object] | None = None   # the speculative job
        self.drafted = self.accepted = 0      # speculative totals
        self.peak_batch = 0                   # the most rows decoded together so far

    # -- the outside: submit, cancel, look -----------------------------------------------------
    def submit(self, prompt, *, prompt_logprobs: int | None = None, rank_by: str = "raw", tokenizer=None,
               constraint=None, **settings) -> Job:
        """Queue one prompt (text or ids) with the settings of `generate` (num_samples=n
        samples of it); thread-safe. prompt_logprobs=k: also score every prompt token, with
        its k most likely alternatives (echo); rank_by: the per-token alternatives are the
        most likely under the model ("raw") or under the distribution sampled from ("processed")."""
        return self.submit_request(self.request(prompt, tokenizer=tokenizer, constraint=constraint, **settings),
                                   prompt_logprobs=prompt_logprobs, rank_by=rank_by)

    def request(self, prompt, *, tokenizer=None, constraint=None, **settings) -> Request:
        """A checked `Request` for one prompt with the settings of `generate` (GlassError if bad);
        `constraint`: a Choice, Regex, ... its samples must satisfy."""
        return Request.build(self.model, [prompt], SamplingParams.of(**settings), tokenizer, constraint)

    def submit_request(self, request: Request, *, prompt_logprobs: int | None = None, rank_by: str = "raw") -> Job:
        """Queue a built `Request` of one distinct prompt (its num_samples rows); thread-safe."""
        if any(p != request.prompts[0] for p in request.prompts):
            raise GlassError("a job is one prompt (with num_samples copies): submit one job per prompt")
        if len(request.prompts) > self.max_batch:
            raise GlassError(f"{len(request.prompts)} samples do not fit a batch of {self.max_batch}: "
                             f"ask for at most {self.max_batch}")
        context, n = self.model.config.context_length, len(request.prompts[0])
        if n + request.max_new_tokens > context:
            raise GlassError(f"the prompt has {n} tokens and {request.max_new_tokens} new ones were asked for: "
                             f"{n + request.max_new_tokens} > the context length {context}; "
                             f"shorten the prompt or ask for at most {max(0, context - n)} new tokens")
        if rank_by not in ("raw", "processed"):
            raise GlassError(f"rank_by must be 'raw' or 'processed', got {rank_by!r}")
        job = Job(request, prompt_logprobs, rank_by, [Row(p, request) for p in request.prompts])
        job.stats.batch_size = job.n
        with self._lock:
            self.waiting.append(job)
        return job

    def cancel(self, job: Job) -> None:
        """Stop a job: its rows leave at the next step (thread-safe)."""
        job.cancelled = True

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.running or self.solo)

    @property
    def queue_length(self) -> int:
        """Samples waiting to join the batch."""
        return sum(job.n for job in list(self.waiting))

    @property
    def batch_size(self) -> int:
        """Rows decoding now (the speculative job counts as one)."""
        return sum(s.job is not None for s in self.slots) + (self.solo is not None)

    # -- one step ------------------------------------------------------------------------------
    def step(self) -> list[tuple[Job, int, TokenEvent]]:
        """Admit waiting jobs that fit, sample one token for every running row, feed them.
        Returns (job, sample, event) for every token produced; a job whose `done` turned
        True in this step produced its last event (or none, with max_new_tokens=0)."""
        events: list[tuple[Job, int, TokenEvent]] = []
        with torch.inference_mode():
            self._drop_cancelled()
            admitted = self._take_admissible()
            if admitted:
                self._admit(admitted, events)
            if self.running:
                self.peak_batch = max(self.peak_batch, self.batch_size)
                self._sample(events)
                self._feed()
            elif self.cache is not None:          # everything left (cancelled): free the batch cache
                self._layout([], [])
            if self.solo is not None:
                self._solo_step(events)
        return events

    def run_until_done(self) -> None:
        while self.busy:
            self.step()

    # -- admission -----------------------------------------------------------------------------
    def _drop_cancelled(self) -> None:
        with self._lock:
            for job in [j for j in self.waiting if j.cancelled]:
                self.waiting.remove(job)
                self._finish(job)
        for job in [j for j in self.running if j.cancelled]:
            self._leave(job)
        if self.solo is not None and self.solo[0].cancelled:
            self._finish(self.solo[0])
            self.solo = None

    def _take_admissible(self) -> list[Job]:
        free = self.max_batch - self.batch_size
        taken = []
        with self._lock:
            while self.waiting and self.waiting[0].n <= free:
                job = self.waiting.popleft()
                free -= job.n
                taken.append(job)
        return taken

    def _admit(self, jobs: list[Job], events: list) -> None:
        """Prefill the new jobs' prompts and lay the batch cache out again with them."""
        model = self.model
        if (self.draft is not None and len(jobs) == 1 and not self.running and self.solo is None
                and not self.waiting and self._speculates(jobs[0])):
            self._start_solo(jobs[0])
            return
        pieces: list[tuple[Job, KVCache, int, int, torch.Tensor]] = []   # job, cache, row, pad, logits (V,)
        fresh: list[Job] = []
        for job in jobs:
            job.state = "running"
            job.stats.prefill_tokens = len(job.prompt)
            if job.request.params.uses_counts:
                job.counts = token_counts([job.prompt] * job.n, model.config.vocab_size, model.device)
            if job.request.max_new_tokens == 0 and job.prompt_logprobs is None:
                self._finish(job)
                continue
            if job.prompt_logprobs is not None:       # every position's logits, for echo
                cache = model.new_kv_cache(1, len(job.prompt))
                logits = model(torch.tensor([job.prompt], device=model.device), kv_cache=cache).logits[0].float()
                job.prompt_records = prompt_records(logits, job.prompt, job.prompt_logprobs, job.request.tokenizer)
                self._remember(job.prompt, cache, 0, 0)
                if job.request.max_new_tokens == 0:
                    self._finish(job)
                    continue
                pieces.append((job, cache, 0, 0, logits[-1]))
                continue
            reused = 0
            if self.prompt_cache is not None:
                cache, reused = self.prompt_cache.lookup(model, job.prompt, len(job.prompt))
            if reused:
                ids = torch.tensor([job.prompt[reused:]], device=model.device)
                logits = model(ids, kv_cache=cache, last_only=True).logits[0, -1].float()
                job.cached_tokens = job.stats.prefill_reused = reused
                job.stats.prefill_tokens -= reused
                self._remember(job.prompt, cache, 0, 0)
                pieces.append((job, cache, 0, 0, logits))
            else:
                fresh.append(job)
        if fresh:
            seqs = [job.prompt for job in fresh]
            cache, pad, _, logits = prefill_rows(model, seqs, max(map(len, seqs)))
            for b, job in enumerate(fresh):
                p = 0 if pad is None else int(pad[b])
                self._remember(job.prompt, cache, b, p)
                pieces.append((job, cache, b, p, logits[b]))
        if not pieces:
            return
        sources = self._live_sources()
        logits = [self.logits[i] for i, s in enumerate(self.slots) if s.job is not None] if sources else []
        slots = [s for s in self.slots if s.job is not None]
        for job, cache, row, p, last in pieces:
            self.running.append(job)
            for sample in range(job.n):
                sources.append((cache, row, p))
                slots.append(Slot(job, sample, len(job.prompt) + job.request.max_new_tokens - 1))
                logits.append(last)
        self._layout(sources, slots)
        self.logits = torch.stack(logits)                                     # (B, V)

    def _remember(self, prompt: list[int], cache: KVCache, row: int, start: int) -> None:
        if self.prompt_cache is not None:
            self.prompt_cache.store(self.model, prompt, cache, row=row, start=start)

    # -- the batch cache -------------------------------------------------------------------------
    def _live_sources(self) -> list[tuple[KVCache, int, int]]:
        return [(self.cache, i, int(self.pad[i])) for i, s in enumerate(self.slots) if s.job is not None]

    def _layout(self, sources: list[tuple[KVCache, int, int]], slots: list[Slot]) -> None:
        """A new batch cache from rows of other caches: source (cache, row, pad) has its real
        positions in columns pad .. cache.length; they are right-aligned to the longest."""
        if not sources:
            self.cache = self.pad = self.logits = None
            self.slots = []
            return
        reals = [cache.length - p for cache, _, p in sources]
        L = max(reals)
        context = self.model.config.context_length
        capacity = min(context, max(L, *(L - r + s.need for r, s in zip(reals, slots))))
        new = self.model.new_kv_cache(len(sources), capacity)
        for b, ((cache, row, p), r) in enumerate(zip(sources, reals)):
            for mine, theirs in ((new.keys, cache.keys), (new.values, cache.values)):
                mine[:, b, :, :L - r] = 0                  # padding: masked, zeros keep the products finite
                mine[:, b, :, L - r:L] = theirs[:, row, :, p:cache.length]
        new.advance(L)
        self.cache, self.slots = new, slots
        self.pad = torch.tensor([L - r for r in reals], device=self.model.device)   # (B,)

    # -- decoding --------------------------------------------------------------------------------
    def _sample(self, events: list) -> None:
        """Each job samples its rows with its own chain and generator, as `generate` would."""
        V = self.model.config.vocab_size
        self.tokens = torch.zeros(len(self.slots), dtype=torch.long, device=self.model.device)
        for job in list(self.running):
            at = {s.sample: i for i, s in enumerate(self.slots) if s.job is job}     # sample -> batch row
            live = sorted(at)
            rows = torch.tensor([at[k] for k in live], device=self.model.device)
            logits = self.logits[rows]                                                 # (n_live, V)
            if len(live) < job.n:      # finished samples still draw their random numbers, as in generate
                full = logits[:1].expand(job.n, V).clone()
                full[live] = logits
                logits = full
            request = job.request
            constrained = {}
            if request.constraint is None:
                tokens = request.chain.sample(logits, job.counts, request.generator)  # (n,)
            else:                           # the chain renormalised over what each row's constraint allows
                states = [None if row.done else row.constraint for row in job.rows]
                try:
                    tokens, masked, allowed = constrained_sample(request, logits, job.counts, states)
                except GlassError as e:     # this job's constraint allows no token: it alone stops
                    job.error = str(e)
                    self._leave(job, "error")
                    continue
                constrained = dict(constrained=constrained_probabilities(request.chain, masked[live]),
                                   allowed=allowed[live])
            if len(live) < job.n:
                tokens = tokens[live]
            records = None
            if request.logprobs is not None:
                counts = job.counts[live] if job.counts is not None else None
                records = logprob_records(request.chain, self.logits[rows], counts, tokens, request.logprobs,
                                          request.tokenizer, rank_by=job.rank_by, **constrained)
            self.tokens[rows] = tokens
            job.stats.decode_steps += 1
            for k, (sample, token) in enumerate(zip(live, tokens.tolist())):
                row = job.rows[sample]
                event = row.accept(token, records[k] if records else None)
                job.stats.new_tokens += token != request.eot_id
                if job.counts is not None:
                    job.counts[sample, token] += 1
                if row.done:
                    self.slots[at[sample]].job = None
                events.append((job, sample, event))
            if all(row.done for row in job.rows):
                self._finish(job)

    def _feed(self) -> None:
        """One forward for every row; drop finished rows first when they are the majority, or
        lay the cache out anew when it is full."""
        live = [s for s in self.slots if s.job is not None]
        if not live:
            self._layout([], [])
            return
        if 2 * len(live) < len(self.slots) or self.cache.length >= self.cache.max_length:
            keep = torch.tensor([i for i, s in enumerate(self.slots) if s.job is not None], device=self.model.device)
            tokens = self.tokens[keep]
            self._layout(self._live_sources(), live)
        else:
            tokens = self.tokens
        cache, model = self.cache, self.model
        if not bool(self.pad.any()):
            out = model(tokens[:, None], kv_cache=cache, last_only=True)
        else:
            columns = torch.arange(cache.max_length, device=model.device)[None, :]         # (1, S)
            mask = columns >= self.pad[:, None]                                             # (B, S)
            positions = (cache.length - self.pad)[:, None]                                  # (B, 1)
            out = model(tokens[:, None], kv_cache=cache, positions=positions, key_padding_mask=mask,
                        last_only=True)
        self.logits = out.logits[:, -1].float()                                             # (B, V)
        for job in self.running:
            job.stats.forward_passes += 1

    def _leave(self, job: Job, reason: str = "cancelled") -> None:
        for s in self.slots:
            if s.job is job:
                s.job = None
        for row in job.rows:
            if not row.done:
                row.finish_reason = reason
        self._finish(job)

    def _finish(self, job: Job) -> None:
        job.state = "done"
        job.stats.finish(time.perf_counter() - job.submitted)
        if job in self.running:
            self.running.remove(job)
        for row in job.rows:
            if not row.done and job.cancelled:
                row.finish_reason = "cancelled"

    # -- speculative decoding of a lone job --------------------------------------------------------
    def _speculates(self, job: Job) -> bool:
        return (job.n == 1 and job.prompt_logprobs is None and job.request.max_new_tokens > 0
                and job.request.constraint is None)     # speculative decoding takes no constraint

    def _start_solo(self, job: Job) -> None:
        from .speculative import SpeculativeDecoder

        decoder = SpeculativeDecoder(self.model, self.draft, self.draft_tokens, job.request, self.prompt_cache)
        decoder.rows, job.stats = job.rows, decoder.stats
        job.state, job.speculative = "running", True
        self.solo = (job, decoder.run_row(job.rows[0]), decoder)

    def _solo_step(self, events: list) -> None:
        job, tokens, decoder = self.solo
        drafted, accepted = job.stats.drafted, job.stats.accepted
        event = next(tokens, None)
        self.drafted += job.stats.drafted - drafted
        self.accepted += job.stats.accepted - accepted
        if event is not None:
            events.append((job, 0, event))
        if event is None or job.rows[0].done:
            self.solo = None
            self._finish(job)


def prompt_records(logits: torch.Tensor, ids: list[int], n: int, tokenizer) -> list[TokenLogprob | None]:
    """Each prompt token's log-probability given the tokens before it, with the n most likely
    alternatives (logits (T, V): row t scores token t + 1); the first token has none (None)."""
    logp = torch.log_softmax(logits[:-1], dim=-1)                                  # (T-1, V)
    entropy = -(logp.exp() * logp).sum(-1)
    nxt = torch.tensor(ids[1:], device=logits.device)
    chosen = logp.gather(-1, nxt[:, None])[:, 0].tolist()
    top = logp.topk(min(n, logp.shape[-1]), dim=-1)
    name = (lambda i: tokenizer.id_to_str(i)) if tokenizer is not None else (lambda i: "")
    records: list[TokenLogprob | None] = [None]
    for t, (token, lp, h) in enumerate(zip(ids[1:], chosen, entropy.tolist())):
        alternatives = [Alternative(i, name(i), float(v.exp()), float(v.exp()))
                        for i, v in zip(top.indices[t].tolist(), top.values[t])]
        records.append(TokenLogprob(token, name(token), lp, lp, h, h, alternatives))
    return records
