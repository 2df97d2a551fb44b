"""GINC-style data (Xie et al., 2021): documents from a mixture of hidden Markov models.

A hidden state is a pair (entity, property). Every concept (one HMM of the mixture) shares

    entity_transition   (E, E)  entities mostly stay put: stay * I + (1 - stay) * (a mixture of permutations)
    memory              (E, P)  the symbol an entity shows for a property (deterministic emission)

and has its own

    property_transition (P, P)  a softmax-weighted mixture of random permutation matrices, so
                                each property has a few likely successors: this is the concept
    property_start      (P,)

Property 0 is the delimiter: whatever the entity, it shows DELIMITER. The other P - 1
properties of an entity show distinct symbols, so the vocabulary needs at least P - 1 symbols.

A pretraining document picks one concept and runs its HMM for `document_length` steps; the
model can only predict well by working out, from the document so far, which concept is
running. A prompt (prompts.py) shows k independent examples of one concept, separated by
the delimiter: a distribution the model never saw in training (every example starts afresh),
which is what makes in-context learning "inference of the concept" rather than copying.

Every draw takes an explicit numpy Generator, so a seed reproduces the same mixture and
the same documents.
"""
from __future__ import annotations

import string
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm import tqdm

from ...errors import GlassError

ALPHABET = string.ascii_lowercase + string.ascii_uppercase + string.digits   # symbol i is ALPHABET[i]
DELIMITER = "/"            # shown by property 0, and between the examples of a prompt
DOCUMENT_SEPARATOR = "\n"  # between pretraining documents, and at the start of every prompt
PERMUTATIONS = 100         # random permutation matrices mixed into each transition matrix (as in GINC)


def setting(default, help: str):
    """A settings field with its help text (the CLI builds its flags from these)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class GincSettings:
    concepts: int = setting(10, "HMMs in the mixture (GINC: 5)")
    entities: int = setting(5, "entities: a hidden state is (entity, property) (GINC: 10)")
    properties: int = setting(10, "properties, including the delimiter property 0")
    vocab: int = setting(50, "symbols (single characters) the memory draws from, besides the delimiter")
    document_length: int = setting(1024, "symbols per pretraining document")
    documents: int = setting(4000, "pretraining documents")
    sharpness: float = setting(100.0, "softmax sharpness of the weights of the permutations mixed into each "
                                      "transition matrix: higher = fewer likely successors (GINC: 10)")
    entity_stay: float = setting(0.9, "chance an entity stays the same from one step to the next")
    seed: int = setting(0, "seed of the mixture (transition matrices, memory)")
    document_seed: int = setting(1, "seed of the documents drawn from it")

    def validate(self) -> None:
        if self.vocab < 1:
            raise GlassError("the vocabulary is empty: give --vocab of at least 1 symbol")
        if self.vocab > len(ALPHABET):
            raise GlassError(f"--vocab {self.vocab} is more symbols than single characters available "
                             f"({len(ALPHABET)}): give --vocab {len(ALPHABET)} or less")
        if self.concepts < 1 or self.entities < 1:
            raise GlassError("need at least 1 concept and 1 entity (--concepts, --entities)")
        if self.properties < 2:
            raise GlassError("need at least 2 properties (--properties): property 0 is the delimiter")
        if self.properties - 1 > self.vocab:
            raise GlassError(f"{self.properties - 1} non-delimiter properties cannot show distinct symbols out of "
                             f"--vocab {self.vocab}: give --vocab >= {self.properties - 1} or fewer --properties")
        if self.document_length < 2 or self.documents < 1:
            raise GlassError("documents need at least 2 symbols (--document-length) and --documents >= 1")
        if not 0.0 <= self.entity_stay <= 1.0 or self.sharpness < 0:
            raise GlassError("--entity-stay must be in [0, 1] and --sharpness >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


def permutation_mixture(n: int, sharpness: float, rng: np.random.Generator) -> np.ndarray:
    """(n, n) row-stochastic: sum_i w_i P_i over PERMUTATIONS random permutation matrices,
    w = softmax(sharpness * (u - 0.5)) with u uniform: a few permutations dominate."""
    u = rng.random(PERMUTATIONS)
    w = np.exp(sharpness * (u - 0.5))
    w /= w.sum()
    matrix = np.zeros((n, n))
    rows = np.arange(n)
    for weight in w:
        matrix[rows, rng.permutation(n)] += weight
    return matrix


def near_uniform(n: int, rng: np.random.Generator) -> np.ndarray:
    """A start distribution close to uniform (GINC: softmax of (u - 0.5) / 10)."""
    p = np.exp((rng.random(n) - 0.5) / 10)
    return p / p.sum()


class Ginc:
    """One mixture of HMMs: build it from settings (seeded), then sample documents and examples."""

    def __init__(self, settings: GincSettings):
        settings.validate()
        self.settings = settings
        s = settings
        rng = np.random.default_rng(s.seed)
        self.symbols = ALPHABET[:s.vocab]
        self.entity_transition = s.entity_stay * np.eye(s.entities) + (1 - s.entity_stay) * permutation_mixture(
            s.entities, s.sharpness, rng)                                              # (E, E)
        self.entity_start = near_uniform(s.entities, rng)                               # (E,)
        self.property_transition = np.stack([permutation_mixture(s.properties, s.sharpness, rng)
                                             for _ in range(s.concepts)])                # (C, P, P)
        self.property_start = np.stack([near_uniform(s.properties, rng) for _ in range(s.concepts)])  # (C, P)
        # memory[e, p]: the symbol id entity e shows for property p (-1: the delimiter)
        self.memory = np.full((s.entities, s.properties), -1, dtype=np.int64)            # (E, P)
        for e in range(s.entities):
            self.memory[e, 1:] = rng.choice(s.vocab, size=s.properties - 1, replace=False)
        # the symbols some state shows: the label space of random labels, and what chance means
        self.label_space = np.unique(self.memory[self.memory >= 0])
        self._chains: dict = {}

    # -- the hidden chain -----------------------------------------------------------------------
    def property_chain(self, concept: int, delimiter: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(start, transition) of a concept's properties. delimiter=False: the chain of a prompt
        example, which never visits the delimiter property (rows renormalised over the rest)."""
        start = self.property_start[concept].copy()
        transition = self.property_transition[concept].copy()
        if not delimiter:
            start[0] = 0.0
            start /= start.sum()
            transition[:, 0] = 0.0
            transition[transition.sum(axis=1) == 0, 1:] = 1.0     # a row that only led to the delimiter
            transition /= transition.sum(axis=1, keepdims=True)
        return start, transition

    def sample_states(self, concept: int, n: int, length: int, rng: np.random.Generator,
                      delimiter: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """n independent runs of `length` steps of one concept: (entities, properties), each (n, length)."""
        p_start, p_trans = self.property_chain(concept, delimiter)
        entities = np.empty((n, length), dtype=np.int64)
        properties = np.empty((n, length), dtype=np.int64)
        entities[:, 0] = draw(np.broadcast_to(self.entity_start, (n, len(self.entity_start))), rng)
        properties[:, 0] = draw(np.broadcast_to(p_start, (n, len(p_start))), rng)
        for t in range(1, length):
            entities[:, t] = draw(self.entity_transition[entities[:, t - 1]], rng)
            properties[:, t] = draw(p_trans[properties[:, t - 1]], rng)
        return entities, properties

    def emit(self, entities: np.ndarray, properties: np.ndarray) -> np.ndarray:
        """Symbol ids (-1 for the delimiter), same shape as the states."""
        return self.memory[entities, properties]

    def text(self, ids) -> str:
        return "".join(DELIMITER if i < 0 else self.symbols[i] for i in np.asarray(ids).ravel())

    # -- documents ------------------------------------------------------------------------------
    def documents(self, n: int | None = None, length: int | None = None, seed: int | None = None,
                  progress: bool = False) -> list[tuple[int, str]]:
        """(concept, text) pretraining documents; concepts drawn uniformly."""
        s = self.settings
        n = s.documents if n is None else n
        length = s.document_length if length is None else length
        rng = np.random.default_rng(s.document_seed if seed is None else seed)
        concepts = rng.integers(s.concepts, size=n)
        texts: list[str | None] = [None] * n
        for c in tqdm(range(s.concepts), desc="documents", unit="concept", disable=not progress):
            rows = np.flatnonzero(concepts == c)
            if len(rows):
                ids = self.emit(*self.sample_states(c, len(rows), length, rng))
                for r, doc in zip(rows, ids):
                    texts[r] = self.text(doc)
        return [(int(c), t) for c, t in zip(concepts, texts)]

    def corpus(self, progress: bool = False) -> str:
        """All documents as one text, each ended by DOCUMENT_SEPARATOR."""
        return "".join(t + DOCUMENT_SEPARATOR for _, t in self.documents(progress=progress))

    # -- exact inference (the Bayes-optimal in-context learner) ---------------------------------
    def chain(self, concept: int, delimiter: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The joint chain over states s = e * P + p: start (S,), transition (S, S), the symbol
        each state shows (S,; -1 = the delimiter). delimiter=False: a prompt example's chain."""
        key = (concept, delimiter)
        if key not in self._chains:           # built once: the forward algorithm asks for it at every call
            p_start, p_trans = self.property_chain(concept, delimiter)
            start = np.outer(self.entity_start, p_start).ravel()                    # (E*P,)
            transition = np.kron(self.entity_transition, p_trans)                   # (E*P, E*P)
            self._chains[key] = (start, transition, self.memory.ravel())
        return self._chains[key]

    def log_likelihood(self, concept: int, ids) -> float:
        """log p(symbols | concept) for one prompt example (forward algorithm, scaled)."""
        return float(self.step_log_probs(concept, ids)[0].sum())

    def next_symbol(self, concept: int, ids) -> np.ndarray:
        """p(next symbol | the example so far, concept): (vocab,)."""
        _, alpha = self.step_log_probs(concept, ids)
        _, transition, symbol = self.chain(concept)
        state_probs = alpha @ transition
        out = np.zeros(self.settings.vocab)
        np.add.at(out, symbol[symbol >= 0], state_probs[symbol >= 0])
        return out / out.sum()

    def step_log_probs(self, concept: int, ids, delimiter: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Forward algorithm: log p(ids[t] | ids[:t], concept) for every t, and p(state at the last
        symbol | ids, concept). ids: symbol ids, -1 for the delimiter."""
        start, transition, symbol = self.chain(concept, delimiter)
        out = np.full(len(ids), -np.inf)
        alpha = start
        for t, i in enumerate(ids):
            if t:
                alpha = alpha @ transition
            alpha = alpha * (symbol == i)
            total = alpha.sum()
            if total <= 0:
                return out, np.full_like(alpha, 1.0 / len(alpha))
            out[t] = np.log(total)
            alpha = alpha / total
        return out, alpha

    def document_loss(self, documents: list[tuple[int, str]]) -> dict:
        """Mean -log p(symbol | document so far) in nats over pretraining documents, for the exact
        mixture (which must infer the concept as it reads) and with the concept known: the floor
        a model's validation loss can approach (its loss also counts the document separators)."""
        mixture, known, n = 0.0, 0.0, 0
        for concept, text in documents:
            ids = [-1 if ch == DELIMITER else self.symbols.index(ch) for ch in text]
            steps = np.stack([self.step_log_probs(c, ids, delimiter=True)[0]
                              for c in range(self.settings.concepts)])                 # (C, T)
            before = np.concatenate([np.zeros((len(steps), 1)), np.cumsum(steps, axis=1)[:, :-1]], axis=1)
            weights = before - np.logaddexp.reduce(before, axis=0)                     # log p(c | ids[:t])
            mixture -= np.logaddexp.reduce(weights + steps, axis=0).sum()
            known -= steps[concept].sum()
            n += len(ids)
        return {"mixture": mixture / n, "concept_known": known / n, "symbols": n}


def draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row of `probs` (n, K) -> (n,), by inverting the cumulative sum."""
    cumulative = np.cumsum(probs, axis=1)
    u = rng.random((probs.shape[0], 1)) * cumulative[:, -1:]
    return np.minimum((cumulative <= u).sum(axis=1), probs.shape[1] - 1)
