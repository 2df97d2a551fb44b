"""The two measures every model gets: cross-entropy on held-out text, and multiple-choice
accuracy scored the way evaluation harnesses score it.

Cross-entropy: the mean next-token loss on the same fixed validation batches for every
model (`inspect.ablation.fixed_batches`), one value per batch so that differences between
models come with a paired standard error.

Multiple choice (lm-evaluation-harness convention): each choice's log-likelihood as the
continuation of the context (`inspect.choices.option_logprobs`, the sum of its tokens'
log-probabilities);
    acc       the answer is the choice with the highest log-likelihood
    acc_norm  ... with the highest log-likelihood per character of the choice
A raw sum favours short choices; dividing by the length removes most of that bias.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from ...errors import GlassError
from ...inspect.choices import option_logprobs
from ...inspect.trace import evaluating
from .tasks import Question, Task


def batch_losses(model, batches) -> list[float]:
    """Mean cross-entropy (nats/token) of each fixed (inputs, targets) batch."""
    losses = []
    with torch.no_grad(), evaluating(model):
        for x, y in batches:
            losses.append(model(x.to(model.device), y.to(model.device)).loss.item())
    return losses


def fitted_context(model, question: Question, tokenizer) -> str:
    """The question's context cut from the left so that it and its longest choice fit the model."""
    room = model.config.context_length - max(len(tokenizer.encode(c)) for c in question.choices) - 2
    ids = tokenizer.encode(question.context)
    if len(ids) <= room:
        return question.context
    return tokenizer.decode(ids[len(ids) - max(room, 1):])


def score_question(model, question: Question, tokenizer) -> dict:
    """Log-likelihood of every choice; the picks by acc and acc_norm."""
    scores = option_logprobs(model, fitted_context(model, question, tokenizer), list(question.choices), tokenizer)
    logprobs = [s.logprob for s in scores]
    per_char = [s.logprob / max(1, s.n_chars) for s in scores]
    return {"logprobs": logprobs, "n_chars": [s.n_chars for s in scores],
            "pick": int(np.argmax(logprobs)), "pick_norm": int(np.argmax(per_char))}


def score_task(model, task: Task, tokenizer, progress: bool = False, desc: str = "") -> dict:
    """Every question of a task: per-question picks, and acc / acc_norm with standard errors."""
    picks, picks_norm, logprobs = [], [], []
    for i, q in enumerate(tqdm(task.questions, desc=desc or task.name, unit="question", disable=not progress,
                               leave=False)):
        try:
            s = score_question(model, q, tokenizer)
        except GlassError as e:
            raise GlassError(f"task {task.name}, question {i + 1}: {e}") from None
        picks.append(s["pick"])
        picks_norm.append(s["pick_norm"])
        logprobs.append(s["logprobs"])
    answers = [q.answer for q in task.questions]
    return {"picks": picks, "picks_norm": picks_norm, "logprobs": logprobs, **accuracies(picks, picks_norm, answers)}


def accuracies(picks: list[int], picks_norm: list[int], answers: list[int]) -> dict:
    correct = np.equal(picks, answers)
    correct_norm = np.equal(picks_norm, answers)
    return {"acc": float(correct.mean()), "acc_se": binomial_se(correct),
            "acc_norm": float(correct_norm.mean()), "acc_norm_se": binomial_se(correct_norm)}


def binomial_se(correct: np.ndarray) -> float:
    n = len(correct)
    p = float(np.mean(correct)) if n else float("nan")
    return math.sqrt(p * (1 - p) / n) if n else float("nan")
