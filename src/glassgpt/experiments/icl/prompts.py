"""Prompts of k examples from one concept, and what an ideal learner would answer.

    \\n x1 y1 / x2 y2 / ... / xk yk / x_test      -> the model's next symbol, scored against y_test

Each example is an independent run of the concept's HMM that never visits the delimiter
property: x is its first `length - 1` symbols, y its last. With random labels (Min et al.,
2022) every shown y_i is replaced by a symbol drawn uniformly from the label space (the
symbols some hidden state shows; a symbol no state shows would be new to the model); y_test
stays the gold one.

The mixture is known, so every prompt also gets the answers of two exact references:

    concept_known   argmax p(y | x_test, true concept)                    (the ceiling)
    bayes           argmax sum_c p(c | prompt) p(y | x_test, c)           (the ideal in-context learner)

where p(c | prompt) uses the examples' inputs and gold labels, or only their inputs when the
labels are random (a learner that knows the labels are noise and reads the format and the
inputs, as Min et al. suggest models do).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import GlassError
from .ginc import DELIMITER, DOCUMENT_SEPARATOR, Ginc

LABELS = ("gold", "random")


@dataclass
class Prompt:
    concept: int
    k: int
    length: int                        # symbols per example: x has length - 1, y one
    labels: str                        # "gold" | "random"
    inputs: list[list[int]]            # x_i as symbol ids, i = 1..k
    shown_labels: list[int]            # y_i as shown in the prompt
    gold_labels: list[int]             # y_i as the HMM made them
    query: list[int]                   # x_test
    answer: int                        # y_test (gold)

    def text(self, ginc: Ginc) -> str:
        examples = "".join(ginc.text(x) + ginc.text([y]) + DELIMITER for x, y in zip(self.inputs, self.shown_labels))
        return DOCUMENT_SEPARATOR + examples + ginc.text(self.query)


def prompt_chars(k: int, length: int) -> int:
    """Characters of a prompt with k examples of `length` symbols, plus the answer it predicts."""
    return len(DOCUMENT_SEPARATOR) + k * (length + len(DELIMITER)) + length


def largest_k(length: int, context_length: int) -> int:
    """The most examples of `length` symbols whose prompt and answer fit in the context."""
    return max(-1, (context_length - len(DOCUMENT_SEPARATOR) - length) // (length + len(DELIMITER)))


def check_fits(ks, lengths, context_length: int | None) -> None:
    """One-line error when the largest prompt asked for cannot be seen whole by the model."""
    if context_length is None:
        return
    for length in sorted(lengths, reverse=True):
        k = max(ks)
        if prompt_chars(k, length) > context_length:
            fit = largest_k(length, context_length)
            if fit < 0:
                raise GlassError(f"an example of length {length} does not fit the model's context of "
                                 f"{context_length} characters: give shorter --lengths")
            raise GlassError(f"k = {k} examples of length {length} need {prompt_chars(k, length)} characters but the "
                             f"model's context is {context_length}: the largest k that fits is {fit} (--ks ... {fit})")


def make_prompt(ginc: Ginc, k: int, length: int, rng: np.random.Generator, labels: str = "gold",
                concept: int | None = None) -> Prompt:
    if labels not in LABELS:
        raise GlassError(f"labels must be one of {', '.join(LABELS)}, got {labels!r}")
    if k < 0:
        raise GlassError(f"k must be >= 0, got {k}")
    if length < 2:
        raise GlassError(f"an example needs at least 2 symbols (an input and a label), got length {length}")
    if concept is None:
        concept = int(rng.integers(ginc.settings.concepts))
    ids = ginc.emit(*ginc.sample_states(concept, k + 1, length, rng, delimiter=False))   # (k + 1, length)
    gold = [int(y) for y in ids[:k, -1]]
    shown = gold if labels == "gold" else [int(y) for y in rng.choice(ginc.label_space, size=k)]
    return Prompt(concept=concept, k=k, length=length, labels=labels,
                  inputs=[[int(i) for i in x] for x in ids[:k, :-1]], shown_labels=shown, gold_labels=gold,
                  query=[int(i) for i in ids[k, :-1]], answer=int(ids[k, -1]))


def concept_posterior(ginc: Ginc, prompt: Prompt) -> np.ndarray:
    """p(concept | prompt) under a uniform prior: from the examples (inputs and labels when
    gold, inputs only when random) and the test input."""
    log_p = np.zeros(ginc.settings.concepts)
    for c in range(ginc.settings.concepts):
        for x, y in zip(prompt.inputs, prompt.shown_labels):
            log_p[c] += ginc.log_likelihood(c, x + [y] if prompt.labels == "gold" else x)
        log_p[c] += ginc.log_likelihood(c, prompt.query)
    log_p -= log_p.max()
    p = np.exp(log_p)
    return p / p.sum()


def reference_answers(ginc: Ginc, prompt: Prompt) -> dict:
    """The two exact references' predictions, and their probability of the right answer."""
    per_concept = np.stack([ginc.next_symbol(c, prompt.query) for c in range(ginc.settings.concepts)])  # (C, V)
    posterior = concept_posterior(ginc, prompt)
    mixed = posterior @ per_concept
    known = per_concept[prompt.concept]
    return {"concept_known": int(np.argmax(known)), "concept_known_p": float(known[prompt.answer]),
            "bayes": int(np.argmax(mixed)), "bayes_p": float(mixed[prompt.answer]),
            "bayes_concept": int(np.argmax(posterior)), "posterior_true": float(posterior[prompt.concept])}
