"""The measurement: prompts of k examples (gold or random labels, several example lengths) sent
to a completer; the next symbol it scores highest is its answer. Every prompt is scored as it
is answered (samples.jsonl: a re-run resumes), then accuracy and p(answer) against k, with
error bars over seeds, beside chance and the two exact references of prompts.py.

A seed draws its own test examples: for every example length, `prompts` (concept, test
example) pairs, each with the same nested examples for every k and the same inputs under
gold and random labels, so the curves compare like with like.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm import tqdm

from ...errors import GlassError
from ..completer import Completer
from ..report import ReportDir
from .ginc import Ginc
from .prompts import LABELS, Prompt, check_fits, example_log_likelihoods, nested_prompts, reference_answers


@dataclass
class IclSettings:
    ks: list[int] = field(default_factory=lambda: [0, 1, 2, 4, 8, 16, 32])
    lengths: list[int] = field(default_factory=lambda: [3, 5, 8])
    labels: list[str] = field(default_factory=lambda: list(LABELS))
    prompts: int = 50             # test examples per (seed, length)
    seeds: int = 3
    seed: int = 0

    def validate(self) -> None:
        if not self.ks or any(k < 0 for k in self.ks):
            raise GlassError("--ks must be numbers of examples >= 0, e.g. --ks 0 1 2 4 8")
        if not self.lengths or any(n < 2 for n in self.lengths):
            raise GlassError("--lengths must be >= 2 (an input symbol and a label), e.g. --lengths 3 5 8")
        unknown = [x for x in self.labels if x not in LABELS]
        if not self.labels or unknown:
            raise GlassError(f"--labels must be among {', '.join(LABELS)}")
        if self.prompts < 1 or self.seeds < 1:
            raise GlassError("--prompts and --seeds must be >= 1")
        self.ks = sorted(set(self.ks))
        self.lengths = sorted(set(self.lengths))


@dataclass
class Case:
    seed: int
    index: int
    prompt: Prompt
    references: dict

    @property
    def key(self) -> tuple:
        p = self.prompt
        return (self.seed, p.length, p.labels, p.k, self.index)


def make_cases(ginc: Ginc, settings: IclSettings, progress: bool = False) -> list[Case]:
    """Every prompt of the study with its exact references, in a fixed order."""
    cases = []
    grid = [(seed, length) for seed in range(settings.seeds) for length in settings.lengths]
    for seed, length in tqdm(grid, desc="prompts and exact references", unit="seed x length", disable=not progress):
        for index in range(settings.prompts):
            draws = np.random.default_rng([settings.seed, seed, length, index])
            examples = nested_prompts(ginc, settings.ks, length, draws)           # gold labels
            label_rng = np.random.default_rng([settings.seed, seed, length, index, 1])
            for labels in settings.labels:
                prompts = examples if labels == "gold" else randomised(ginc, examples, label_rng)
                lls = example_log_likelihoods(ginc, prompts[-1])                    # shared by every k
                cases += [Case(seed, index, p, reference_answers(ginc, p, lls)) for p in prompts]
    return cases


def randomised(ginc: Ginc, prompts: list[Prompt], rng: np.random.Generator) -> list[Prompt]:
    """The same nested prompts with every shown label drawn uniformly from the label space."""
    n = max(p.k for p in prompts)
    shown = [int(y) for y in rng.choice(ginc.label_space, size=n)]
    return [Prompt(concept=p.concept, k=p.k, length=p.length, labels="random", inputs=p.inputs,
                   shown_labels=shown[:p.k], gold_labels=p.gold_labels, query=p.query, answer=p.answer)
            for p in prompts]


def context_length(completer) -> int | None:
    model = getattr(completer, "model", None)
    config = getattr(model, "config", None)
    return getattr(config, "context_length", None)


def top_count(completer, default: int = 20) -> int:
    """How many next-token scores to ask for: all of a glassgpt model's, `default` of an endpoint's."""
    tokenizer = getattr(completer, "tokenizer", None)
    return getattr(tokenizer, "vocab_size", None) or default


def answer_of(completer: Completer, text: str, answer: str, k: int) -> dict:
    """The completer's top next token (its first non-blank character is the answer) and p(answer)."""
    top = completer.top_scores(text, k)
    if not top.tokens:
        raise GlassError(f"{completer.name} returned no next-token scores")
    predicted = (top.tokens[0].lstrip() or top.tokens[0])[:1]
    p_answer = None
    ways = [i for i, t in enumerate(top.tokens) if t == answer or t.lstrip() == answer]   # "b" and " b" (BPE)
    if ways:
        scores = np.array(top.scores + list(top.rest), dtype=np.float64)
        log_z = np.log(np.exp(scores - scores.max()).sum()) + scores.max() if top.kind == "logits" else 0.0
        p_answer = float(sum(math.exp(top.scores[i] - log_z) for i in ways))
    elif top.kind == "logits" and len(top.rest) + len(top.tokens) <= k:
        p_answer = 0.0          # every token was listed; the answer is not one the model can write
    return {"predicted": predicted, "correct": predicted == answer, "p_answer": p_answer}


def run_icl(completer: Completer, ginc: Ginc, out_dir, settings: IclSettings | None = None,
            progress: bool = True, attention_prompt: bool = True) -> dict:
    settings = settings or IclSettings()
    settings.validate()
    check_fits(settings.ks, settings.lengths, context_length(completer))
    report = ReportDir(out_dir, {"experiment": "icl", "completer": completer.name,
                                 "ginc": ginc.settings.to_dict(), **asdict(settings)})
    cases = make_cases(ginc, settings, progress)
    done = {_key(r) for r in report.samples}
    todo = [c for c in cases if c.key not in done]
    n_top = top_count(completer)
    bar = tqdm(todo, desc="icl", unit="prompt", disable=not progress, initial=len(cases) - len(todo),
               total=len(cases))
    for case in bar:
        p = case.prompt
        answer = ginc.text([p.answer])
        out = answer_of(completer, p.text(ginc), answer, n_top)
        refs = case.references
        report.append({"seed": case.seed, "length": p.length, "labels": p.labels, "k": p.k, "index": case.index,
                       "concept": p.concept, "answer": answer, **out,
                       "concept_known_correct": refs["concept_known"] == p.answer,
                       "bayes_correct": refs["bayes"] == p.answer, "bayes_p": refs["bayes_p"],
                       "concept_known_p": refs["concept_known_p"], "posterior_true": refs["posterior_true"]})
    from .report import render_icl_report   # figures and prose
    results = summarise(report.samples, settings, ginc, completer.name)
    shown_k = min(settings.ks, key=lambda k: (k == 0, abs(k - 4)))      # the picture's prompt: k near 4
    results["example_k"] = shown_k
    results["example_prompt"] = next((c.prompt.text(ginc) for c in cases                  # the longest examples
                                      if c.prompt.k == shown_k and c.prompt.length == max(settings.lengths)), "")
    return render_icl_report(report, results, completer if attention_prompt else None, ginc)


def _key(record: dict) -> tuple:
    return (record["seed"], record["length"], record["labels"], record["k"], record["index"])


MEASURES = {"accuracy": "correct", "p_answer": "p_answer", "bayes": "bayes_correct", "bayes_p": "bayes_p",
            "concept_known": "concept_known_correct", "posterior_true": "posterior_true"}


def summarise(samples: list[dict], settings: IclSettings, ginc: Ginc, name: str) -> dict:
    """Per (labels, length, k): each measure's mean over a seed's prompts, then mean, std and
    standard error over seeds."""
    cells = []
    for labels in settings.labels:
        for length in settings.lengths:
            for k in settings.ks:
                rows = [r for r in samples if r["labels"] == labels and r["length"] == length and r["k"] == k]
                cell = {"labels": labels, "length": length, "k": k, "prompts": len(rows)}
                for measure, column in MEASURES.items():
                    per_seed = []
                    for s in range(settings.seeds):
                        vals = [float(r[column]) for r in rows if r["seed"] == s and r.get(column) is not None]
                        if vals:
                            per_seed.append(float(np.mean(vals)))
                    cell[measure] = spread(per_seed)
                cells.append(cell)
    return {"completer": name, "settings": asdict(settings), "ginc": ginc.settings.to_dict(),
            "label_space": ginc.text(ginc.label_space), "chance": 1.0 / len(ginc.label_space), "cells": cells}


def spread(values: list[float]) -> dict | None:
    if not values:
        return None
    a = np.array(values)
    std = float(a.std(ddof=1)) if len(a) > 1 else 0.0
    return {"mean": float(a.mean()), "std": std, "sem": std / math.sqrt(len(a)), "per_seed": values}


def cell(results: dict, labels: str, length: int, k: int) -> dict | None:
    return next((c for c in results["cells"] if c["labels"] == labels and c["length"] == length and c["k"] == k),
                None)
