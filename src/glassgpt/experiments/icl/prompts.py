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


def check_prompt_args(k: int, length: int, labels: str = "gold") -> None:
    if labels not in LABELS:
        raise GlassError(f"labels must be one of {', '.join(LABELS)}, got {labels!r}")
    if k < 0:
        raise GlassError(f"k must be >= 0, got {k}")
    if length < 2:
        raise GlassError(f"an example needs at least 2 symbols (an input and a label), got length {length}")


def make_prompt(ginc: Ginc, k: int, length: int, rng: np.random.Generator, labels: str = "gold",
                concept: int | None = None) -> Prompt:
    """One prompt of k examples of `length` symbols from one concept (drawn uniformly if None)."""
    return nested_prompts(ginc, [k], length, rng, labels, concept)[0]


def nested_prompts(ginc: Ginc, ks, length: int, rng: np.random.Generator, labels: str = "gold",
                   concept: int | None = None) -> list[Prompt]:
    """Prompts for several k sharing one concept and one test example, the smaller prompts'
    examples being the first ones of the larger (paired: differences across k are the examples'
    doing, not another draw's). Random labels are drawn after the examples, so the gold and
    random versions of a seed show the same inputs."""
    for k in ks:
        check_prompt_args(k, length, labels)
    if concept is None:
        concept = int(rng.integers(ginc.settings.concepts))
    n = max(ks)
    ids = ginc.emit(*ginc.sample_states(concept, n + 1, length, rng, delimiter=False))   # (n + 1, length)
    gold = [int(y) for y in ids[:n, -1]]
    shown = gold if labels == "gold" else [int(y) for y in rng.choice(ginc.label_space, size=n)]
    inputs = [[int(i) for i in x] for x in ids[:n, :-1]]
    query, answer = [int(i) for i in ids[n, :-1]], int(ids[n, -1])
    return [Prompt(concept=concept, k=k, length=length, labels=labels, inputs=inputs[:k], shown_labels=shown[:k],
                   gold_labels=gold[:k], query=query, answer=answer) for k in ks]


def example_log_likelihoods(ginc: Ginc, prompt: Prompt) -> np.ndarray:
    """(k, C): log p(example i | concept c): input and label when gold, the input only when random."""
    out = np.zeros((prompt.k, ginc.settings.concepts))
    for i, (x, y) in enumerate(zip(prompt.inputs, prompt.shown_labels)):
        for c in range(ginc.settings.concepts):
            out[i, c] = ginc.log_likelihood(c, x + [y] if prompt.labels == "gold" else x)
    return out


def concept_posterior(ginc: Ginc, prompt: Prompt, example_ll: np.ndarray | None = None) -> np.ndarray:
    """p(concept | prompt) under a uniform prior: from the examples (inputs and labels when
    gold, inputs only when random) and the test input. example_ll: example_log_likelihoods
    of a prompt whose first k examples are this one's (nested prompts share them)."""
    if example_ll is None:
        example_ll = example_log_likelihoods(ginc, prompt)
    log_p = example_ll[:prompt.k].sum(axis=0)
    log_p = log_p + np.array([ginc.log_likelihood(c, prompt.query) for c in range(ginc.settings.concepts)])
    log_p -= log_p.max()
    p = np.exp(log_p)
    return p / p.sum()


def reference_answers(ginc: Ginc, prompt: Prompt, example_ll: np.ndarray | None = None) -> dict:
    """The two exact references' predictions, and their probability of the right answer."""
    per_concept = np.stack([ginc.next_symbol(c, prompt.query) for c in range(ginc.settings.concepts)])  # (C, V)
    posterior = concept_posterior(ginc, prompt, example_ll)
    mixed = posterior @ per_concept
    known = per_concept[prompt.concept]
    return {"concept_known": int(np.argmax(known)), "concept_known_p": float(known[prompt.answer]),
            "bayes": int(np.argmax(mixed)), "bayes_p": float(mixed[prompt.answer]),
            "bayes_concept": int(np.argmax(posterior)), "posterior_true": float(posterior[prompt.concept])}
