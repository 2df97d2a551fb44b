"""What generation hands back: the continuation, why it stopped, per-token
log-probabilities (what each sampler did to the distribution), and timing."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Alternative:
    """One candidate token: its probability under the model and after the sampler chain."""

    id: int
    text: str
    prob: float              # softmax(raw logits), temperature 1
    prob_after: float        # the distribution the token was actually drawn from
    allowed: bool | None = None   # with a constraint: whether it allowed this token


@dataclass
class ConstraintStep:
    """What a constraint did to one step's distribution (the glass part of constrained
    generation): the mass it removed, and the best allowed tokens beside the best overall."""

    mass_removed: float              # 1 - P(allowed) under the sampler chain's distribution
    mass_removed_model: float        # 1 - P(allowed) under the model (raw softmax, T = 1)
    n_allowed: int                   # how many tokens the constraint allowed
    top_allowed: list[Alternative] = field(default_factory=list)   # the n most likely allowed tokens
    fell_back: bool = False          # the chain's filters kept no allowed token: drawn from the
                                     # chain without top-k/top-p/min-p, renormalised over the allowed


@dataclass
class TokenLogprob:
    """Everything about one generated token's distribution."""

    id: int
    text: str
    logprob: float           # log-probability under the model (raw softmax, T = 1)
    logprob_after: float     # under the final sampling distribution (0.0 for greedy)
    entropy: float           # of the model's distribution, in nats
    entropy_after: float     # of the final sampling distribution
    top: list[Alternative] = field(default_factory=list)   # the n most likely under the model
    constraint: ConstraintStep | None = None   # with a constraint: what it removed at this step


@dataclass
class GenerationStats:
    """Work and time for one call (shared by every sample of the call)."""

    prefill_tokens: int = 0          # prompt positions computed
    prefill_reused: int = 0          # prompt positions taken from a prompt cache
    decode_steps: int = 0            # sampling steps (one token per row each)
    forward_passes: int = 0          # target model forwards, prefill included
    new_tokens: int = 0              # tokens generated, all samples together
    batch_size: int = 1
    seconds: float = 0.0
    tokens_per_second: float = 0.0   # new_tokens / seconds
    # speculative decoding only
    draft_forward_passes: int | None = None
    drafted: int | None = None               # tokens the draft proposed
    accepted: int | None = None              # of those, accepted by the target
    acceptance_rate: float | None = None     # accepted / drafted
    tokens_per_target_forward: float | None = None

    def finish(self, seconds: float) -> None:
        self.seconds = seconds
        self.tokens_per_second = self.new_tokens / seconds if seconds > 0 else 0.0
        if self.drafted is not None:
            self.acceptance_rate = self.accepted / self.drafted if self.drafted else 0.0


@dataclass
class Generation:
    """One sample: the new tokens (never the prompt), their text, and why it stopped."""

    prompt_ids: list[int]            # the prompt as the model saw it (cropped if it was too long)
    ids: list[int]                   # new tokens only; the end-of-text token is not included
    text: str                        # decoded continuation, cut before a stop string ('' without tokenizer)
    finish_reason: str               # "length" | "eot" | "stop"
    logprobs: list[TokenLogprob] | None = None
    stats: GenerationStats = field(default_factory=GenerationStats)


@dataclass
class TokenEvent:
    """One token, as `stream` yields it the moment it is produced."""

    id: int
    text: str                        # text this token made final ('' while a character or a
                                     # possible stop string is incomplete)
    index: int                       # position in the continuation (0 = first new token)
    logprob: TokenLogprob | None = None
    finish_reason: str | None = None  # set on the last event
