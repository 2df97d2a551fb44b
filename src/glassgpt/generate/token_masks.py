"""Token masks: which next tokens keep the text inside a constraint, and what that does
to the distribution.

The engine is llguidance (the Rust library behind the structured output of llama.cpp,
vLLM and transformers). It reads our vocabulary as a list of token byte strings, so a
token may cross a constraint's boundary (" yes." after a Choice(["yes"]) is refused; "12"
inside Integer() is one step) and a token may hold part of a UTF-8 character.
Why llguidance rather than outlines-core: see benchmarks/bench_constraints.py and the
closing note of issue 18 (both give exact masks on our tokenizers; llguidance also takes
context-free grammars and compiles JSON schemas lazily, so compile time stays small).

    compiled = compile_constraint(Regex(r"[0-9]+"), tokenizer, vocab_size)   # once
    state = compiled.new_state()                                             # one per row
    allowed = token_masks([state], vocab_size)        # (1, V) bool
    state.advance(token)

The constrained distribution at a step is the sampler chain's distribution renormalised
over the allowed tokens (`constrained_logits`): masking the processed logits with -inf
and taking the softmax does exactly that, and greedy then picks the best allowed token.
"""
from __future__ import annotations

import json
import time
import weakref
from dataclasses import dataclass, field

import torch

from ..errors import GlassError
from .constraints import Constraint, llguidance, one_line
from .outputs import Alternative, ConstraintStep

FILTERS = ("top_k", "top_p", "min_p")           # the chain steps that remove tokens
_SHIFTS = torch.arange(32, dtype=torch.int32)


# -- our vocabulary as the engine sees it ---------------------------------------------------
class _Wrapper:
    """What llguidance.TokenizerWrapper reads: token bytes (specials marked with a leading
    0xFF byte, as llguidance expects), the end-of-text id, and an encoder."""

    def __init__(self, tokenizer, n_vocab: int, eos_id: int):
        specials = set(getattr(tokenizer, "special_tokens", {}).values())
        tokens = []
        for i in range(n_vocab):
            if i >= tokenizer.vocab_size:
                tokens.append(b"\xff<|end of constraint|>")
                continue
            try:
                data = tokenizer.token_bytes(i)
            except GlassError:                       # a gap in the id space
                data = None
            tokens.append(b"\xff" + data if i in specials else (data if data is not None else b"\xff<|%d|>" % i))
        self.tokens = tokens
        self.eos_token_id, self.bos_token_id = eos_id, None
        self.special_token_ids = sorted(i for i in range(n_vocab) if tokens[i].startswith(b"\xff"))
        self._tokenizer = tokenizer

    def __call__(self, data) -> list[int]:
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        return self._tokenizer.encode(text)


@dataclass
class EngineVocabulary:
    """llguidance's view of one tokenizer, built once (about a second for 50k tokens)."""

    lltokenizer: object
    vocab_size: int            # the model's ids: 0..vocab_size-1
    n_vocab: int               # the engine's ids: the model's, plus the virtual end when there is one
    eos_id: int                # the tokenizer's <|endoftext|>, or a virtual id = vocab_size
    virtual_eos: bool
    token_chars: torch.Tensor  # (V,) characters each token adds (UTF-8 lead bytes)
    seconds: float = 0.0


_VOCABULARIES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def engine_vocabulary(tokenizer, vocab_size: int) -> EngineVocabulary:
    """llguidance's tokenizer for `tokenizer` (cached per tokenizer object)."""
    if tokenizer is None:
        raise GlassError("a constraint needs the model's tokenizer: pass tokenizer=... or load the model with one")
    key = (vocab_size,)
    cached = _VOCABULARIES.get(tokenizer, {})
    if key in cached:
        return cached[key]
    engine = llguidance()

    start = time.perf_counter()
    eot = getattr(tokenizer, "eot_id", None)
    virtual = eot is None or eot >= vocab_size
    n_vocab = vocab_size + 1 if virtual else vocab_size
    eos = vocab_size if virtual else eot
    wrapper = _Wrapper(tokenizer, n_vocab, eos)
    lltok = engine.LLTokenizer(engine.TokenizerWrapper(wrapper), n_vocab=n_vocab, eos_token=eos)
    chars = torch.tensor([0 if t.startswith(b"\xff") else sum(1 for b in t if b & 0xC0 != 0x80)
                          for t in wrapper.tokens[:vocab_size]])
    vocab = EngineVocabulary(lltok, vocab_size, n_vocab, eos, virtual, chars, time.perf_counter() - start)
    _VOCABULARIES.setdefault(tokenizer, {})[key] = vocab
    return vocab


# -- a constraint compiled for one vocabulary ---------------------------------------------------
@dataclass
class CompiledConstraint:
    constraint: Constraint
    vocabulary: EngineVocabulary
    matcher: object               # llguidance.LLMatcher at the start; rows take deep copies
    seconds: float                # time to compile the grammar

    def new_state(self, max_new_tokens: int | None = None) -> "ConstraintState":
        return ConstraintState(self, self.matcher.deep_copy(), max_new_tokens)


_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_COMPILED_PER_TOKENIZER = 32


def compile_constraint(constraint: Constraint, tokenizer, vocab_size: int) -> CompiledConstraint:
    """Compile `constraint` for `tokenizer`'s vocabulary; a bad regex, grammar or an
    unsupported schema keyword is a GlassError naming the constraint and the problem."""
    if not isinstance(constraint, Constraint):
        raise GlassError(f"constraint must be a Choice, Regex, Integer, JSONSchema or Grammar, "
                         f"got {type(constraint).__name__}")
    vocab = engine_vocabulary(tokenizer, vocab_size)
    cache = _COMPILED.setdefault(tokenizer, {})
    key = (vocab_size, repr(constraint), _grammar_key(constraint))
    if key in cache:
        return cache[key]
    engine = llguidance()

    start = time.perf_counter()
    try:
        grammar = constraint.grammar()
    except ValueError as e:
        raise GlassError(f"{constraint!r}: {one_line(str(e))}") from None
    matcher = engine.LLMatcher(vocab.lltokenizer, every_tokenization(grammar), log_level=0)
    if matcher.is_error():
        raise GlassError(f"{constraint!r}: {one_line(matcher.get_error())}")
    compiled = CompiledConstraint(constraint, vocab, matcher, time.perf_counter() - start)
    if len(cache) >= _COMPILED_PER_TOKENIZER:
        cache.pop(next(iter(cache)))
    cache[key] = compiled
    return compiled


def every_tokenization(grammar: str) -> str:
    """The grammar with llguidance's forcing turned off. By default, where the constraint
    leaves only one way to go on ("appl" inside "apples"), llguidance allows only the
    longest token of those bytes ("es", not "e"): the model's choice between the two is
    taken away, and the renormalised distribution would not be the model's. With
    `no_forcing` every token that keeps the text inside the language is allowed."""
    try:
        spec = json.loads(grammar)
    except json.JSONDecodeError:           # Lark text as it is
        spec = {"grammars": [{"lark_grammar": grammar}]}
    inner = {**spec["grammars"][0], "name": "constrained"}
    outer = {"lark_grammar": '%llguidance {"no_forcing": true}\nstart: @constrained'}
    return json.dumps({**spec, "grammars": [outer, inner, *spec["grammars"][1:]]})


def _grammar_key(constraint: Constraint) -> str:
    # repr shortens long texts; the key must not
    return str(getattr(constraint, "text", "")) + str(getattr(constraint, "schema", ""))


# -- one row's progress through a constraint ---------------------------------------------------------
@dataclass
class ConstraintState:
    compiled: CompiledConstraint
    matcher: object
    max_new_tokens: int | None = None    # the request's budget: the text must be complete within it
    n_tokens: int = 0
    n_chars: int = 0
    data: bytearray = field(default_factory=bytearray)   # the constrained text so far

    @property
    def constraint(self) -> Constraint:
        return self.compiled.constraint

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    @property
    def accepting(self) -> bool:
        """The text so far is complete: the constraint is satisfied if generation ends here."""
        return self.matcher.is_accepting()

    @property
    def complete(self) -> bool:
        """The constraint allows nothing more: the text is done."""
        return self.matcher.is_stopped()

    @property
    def finished(self) -> bool:
        """Nothing more may follow (the constraint is complete, or a length limit is reached)."""
        return self.matcher.is_stopped() or self.tokens_left() == 0 or self.chars_left() == 0

    def tokens_left(self) -> float:
        limits = [n for n in (self.constraint.max_tokens, self.max_new_tokens) if n is not None]
        return min(limits) - self.n_tokens if limits else float("inf")

    def chars_left(self) -> float:
        limit = self.constraint.max_chars
        return limit - self.n_chars if limit is not None else float("inf")

    def fill_bits(self, bits: torch.Tensor) -> None:
        """Write the engine's mask for the next token into `bits`, a contiguous int32 row."""
        self.matcher.unsafe_compute_mask_ptr(bits.data_ptr(), bits.numel() * bits.element_size())

    def limit(self, allowed: torch.Tensor) -> torch.Tensor:
        """Apply the length limits to one row's allowed tokens (V,): a token may not run
        past max_chars, and the token that uses up a limit must complete the text."""
        vocab = self.compiled.vocabulary
        chars = vocab.token_chars.to(allowed.device)
        if self.chars_left() != float("inf"):
            allowed = allowed & (chars <= self.chars_left())
        last = allowed & (chars == self.chars_left()) if self.chars_left() != float("inf") else None
        if self.tokens_left() <= 1:
            last = allowed.clone()
        if last is not None and bool(last.any()):
            for token in last.nonzero().flatten().tolist():
                if token == vocab.eos_id:
                    continue
                if not self._completes(token):
                    allowed[token] = False
        return allowed

    def _completes(self, token: int) -> bool:
        if self.matcher.try_consume_tokens([token]) != 1:
            return False
        done = self.matcher.is_accepting()
        self.matcher.rollback(1)
        return done

    def advance(self, token: int) -> None:
        """Take the sampled token (the end-of-text token ends the text and changes nothing)."""
        vocab = self.compiled.vocabulary
        if token == vocab.eos_id:
            return
        if not self.matcher.consume_token(token):
            raise GlassError(f"{self.constraint!r} refused token {token} after {self.text!r}: "
                             f"{one_line(self.matcher.get_error())}")
        self.n_tokens += 1
        self.n_chars += int(vocab.token_chars[token])
        self.data += self._token_bytes(token)

    def _token_bytes(self, token: int) -> bytes:
        return self.compiled.vocabulary.lltokenizer.decode_bytes([token])

    def nothing_allowed(self) -> GlassError:
        """The error for a step where no token is allowed."""
        if self.tokens_left() <= 1 or self.chars_left() != float("inf"):
            what = (f"no text completes it within {self.n_tokens + self.tokens_left():g} tokens"
                    f"{'' if self.chars_left() == float('inf') else f' and {self.constraint.max_chars} characters'}")
            hint = "raise max_new_tokens or the constraint's limits"
        else:
            what, hint = "no token may follow", "loosen the constraint"
        return GlassError(f"{self.constraint!r}: {what} (text so far: {self.text!r}): {hint}")


def token_masks(states: list[ConstraintState | None], vocab_size: int) -> torch.Tensor:
    """(B, V) bool: the tokens each row's constraint allows next (all True for a row
    without one, or whose constraint is finished)."""
    B = len(states)
    n_vocab = next(s.compiled.vocabulary.n_vocab for s in states if s is not None)
    bits = torch.full((B, (n_vocab + 31) // 32), -1, dtype=torch.int32)                  # 32 tokens a word
    for b, state in enumerate(states):
        if state is not None:
            state.fill_bits(bits[b])
            if state.matcher.is_error():          # e.g. the constraint needs a byte no token has
                raise state.nothing_allowed()
    allowed = ((bits.unsqueeze(-1) >> _SHIFTS) & 1).view(B, -1)[:, :vocab_size].bool()   # (B, V)
    for b, state in enumerate(states):
        if state is not None and (state.constraint.max_chars is not None or state.tokens_left() <= 1):
            allowed[b] = state.limit(allowed[b])
    return allowed


def constrained_logits(chain, logits: torch.Tensor, counts: torch.Tensor | None,
                       allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The sampler chain's logits (B, V) with the disallowed tokens at -inf: their softmax
    is the chain's distribution renormalised over the allowed tokens, their argmax the best
    allowed token. A row whose chain filters (top-k, top-p, min-p) kept no allowed token
    falls back to the chain without its filters (returned as a (B,) bool `fell_back`)."""
    processed = chain.process(logits, counts)
    masked = processed.masked_fill(~allowed.to(processed.device), float("-inf"))
    fell_back = torch.isneginf(masked).all(dim=-1)
    if bool(fell_back.any()):
        unfiltered = logits
        for name, step in chain.steps:
            if name not in FILTERS:
                unfiltered = step(unfiltered, counts)
        masked[fell_back] = unfiltered[fell_back].masked_fill(~allowed[fell_back], float("-inf"))
    return masked, fell_back


def constrained_probabilities(chain, masked: torch.Tensor) -> torch.Tensor:
    """The distribution the token is drawn from (B, V): softmax of the masked logits, or
    one-hot on the best allowed token at temperature 0."""
    if chain.params.is_greedy:
        return torch.zeros_like(masked).scatter_(-1, masked.argmax(-1, keepdim=True), 1.0)
    return torch.softmax(masked, dim=-1)


def constraint_steps(chain, logits: torch.Tensor, counts: torch.Tensor | None, constrained: torch.Tensor,
                     allowed: torch.Tensor, n: int, name) -> list[ConstraintStep]:
    """One ConstraintStep per row: the mass the constraint removed from the chain's
    distribution and from the model's, and the n most likely allowed tokens (logits, the
    constrained distribution and the allowed set all (B, V))."""
    model = torch.softmax(logits, dim=-1)                                       # (B, V)
    chain_probs = chain.probabilities(logits, counts)                            # (B, V)
    kept_chain = (chain_probs * allowed).sum(-1)                                 # (B,)
    kept_model = (model * allowed).sum(-1)
    best = constrained.topk(min(n, constrained.shape[-1]), dim=-1)
    steps = []
    for b in range(logits.shape[0]):
        top_allowed = [Alternative(i, name(i), float(model[b, i]), float(p), True)
                       for i, p in zip(best.indices[b].tolist(), best.values[b]) if p > 0]
        steps.append(ConstraintStep(mass_removed=max(0.0, 1.0 - float(kept_chain[b])),
                                    mass_removed_model=max(0.0, 1.0 - float(kept_model[b])),
                                    n_allowed=int(allowed[b].sum()), top_allowed=top_allowed,
                                    fell_back=float(kept_chain[b]) == 0.0))
    return steps
