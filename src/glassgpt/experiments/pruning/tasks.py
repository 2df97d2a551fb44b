"""Multiple-choice tasks: a context, a few choices, one right answer.

Scored the way evaluation harnesses score them (see `measure.py`): each choice's
log-likelihood as the continuation of the context; the model "answers" with the choice it
finds most likely (`acc`), or most likely per character (`acc_norm`).

Built-in tasks are made from held-out text of the corpus (the validation split the model
never trained on), with a fixed seed:

    next-line   which of four lines follows this one (the others: lines of similar length
                from elsewhere in the text)
    blank       which word fills a blank: each choice is a word plus the rest of its line;
                the wrong words are drawn from the text's own words of about the same length,
                as often as they occur, so word frequency alone gives no hint
    speaker     which speaker says this line: NAME. (or Name:) and the speech's first line,
                the other names from the same scene

Any other task is a file of JSON lines: {"context": "...", "choices": ["...", ...], "answer": i}.
"""
from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import GlassError

BUILTIN_TASKS = {
    "next-line": "which of four lines follows this one",
    "blank": "which word fills a blank (the word and the rest of its line)",
    "speaker": "which speaker says this line (the name and the speech's first line)",
}
N_CHOICES = 4
MIN_QUESTIONS = 10

# "ROMEO." / "FIRST CITIZEN." (the plays' headings) or "First Citizen:" (the tiny-shakespeare style)
HEADING = re.compile(r"^(?:[A-Z][A-Z' \-]{0,30}[A-Z]\.|[A-Z][A-Za-z' \-]{0,30}[A-Za-z]:)$")
WORD = re.compile(r"\b[a-z]{4,}\b")


@dataclass(frozen=True)
class Question:
    context: str
    choices: tuple[str, ...]
    answer: int

    def to_dict(self) -> dict:
        return {"context": self.context, "choices": list(self.choices), "answer": self.answer}


@dataclass
class Task:
    name: str
    description: str
    questions: list[Question]

    @property
    def chance(self) -> float:
        """Expected accuracy of a random guess: the mean of 1 / number of choices."""
        return float(np.mean([1.0 / len(q.choices) for q in self.questions]))

    def write_jsonl(self, path: str | os.PathLike) -> Path:
        from ...fileio import atomic_write_text
        text = "".join(json.dumps(q.to_dict()) + "\n" for q in self.questions)
        atomic_write_text(path, text)
        return Path(path)


# -- a user's file ----------------------------------------------------------------------------
def load_task_file(path: str | os.PathLike, limit: int | None = None) -> Task:
    """A task from JSON lines {"context": str, "choices": [str, ...], "answer": int};
    blank lines are skipped; a malformed line is reported by its number."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise GlassError(f"cannot read the task file {path} ({type(e).__name__}): give a UTF-8 JSON-lines file") \
            from e
    questions = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            questions.append(parse_question(line, f"{path}:{number}"))
    if not questions:
        raise GlassError(f"{path} holds no questions: one JSON object per line, "
                         '{"context": ..., "choices": [...], "answer": i}')
    return Task(path.stem, f"questions from {path.name}", questions[:limit] if limit else questions)


def parse_question(line: str, where: str) -> Question:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise GlassError(f"{where}: not valid JSON ({e.msg}): each line must be one JSON object") from None
    if not isinstance(record, dict):
        raise GlassError(f"{where}: expected a JSON object with context, choices and answer")
    missing = [k for k in ("context", "choices", "answer") if k not in record]
    if missing:
        raise GlassError(f"{where}: missing {', '.join(missing)} (need context, choices and answer)")
    context, choices, answer = record["context"], record["choices"], record["answer"]
    if not isinstance(context, str) or not context:
        raise GlassError(f"{where}: context must be a non-empty string")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c for c in choices):
        raise GlassError(f"{where}: choices must be a list of at least two non-empty strings")
    if len(set(choices)) != len(choices):
        raise GlassError(f"{where}: choices repeat: every choice must be different")
    if not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        raise GlassError(f"{where}: answer {answer!r} is out of range: give the index of the right choice, "
                         f"0 to {len(choices) - 1}")
    return Question(context, tuple(choices), answer)


# -- built-in tasks from held-out text ----------------------------------------------------------
def builtin_task(name: str, text: str, n: int, seed: int = 0, context_chars: int = 400) -> Task:
    """`n` questions of a built-in task made from `text` (fewer if the text has fewer)."""
    makers = {"next-line": next_line_questions, "blank": blank_questions, "speaker": speaker_questions}
    if name not in makers:
        raise GlassError(f"unknown task {name!r}: choose {', '.join(BUILTIN_TASKS)} or a .jsonl file")
    lines = text.split("\n")
    starts = np.cumsum([0] + [len(line) + 1 for line in lines])          # where each line begins in text
    questions = makers[name](lines, starts, text, n, random.Random(f"{name}:{seed}"), context_chars)
    if len(questions) < MIN_QUESTIONS:
        raise GlassError(f"the held-out text yields only {len(questions)} questions for the {name!r} task "
                         f"(need {MIN_QUESTIONS}): choose another --task or give a task file")
    return Task(name, BUILTIN_TASKS[name], questions)


def is_heading(line: str) -> bool:
    return bool(HEADING.match(line.strip()))


def is_speech(line: str) -> bool:
    """A line of speech: not empty, not a heading, not a stage direction, a few words long."""
    s = line.strip()
    return len(s) >= 15 and len(s.split()) >= 3 and not is_heading(s) and not s.startswith(("[", "<"))


def context_before(text: str, end: int, chars: int) -> str:
    """Up to `chars` characters of text ending at `end`, starting at a line start when possible."""
    begin = max(0, end - chars)
    if begin > 0:
        newline = text.find("\n", begin, end)
        if newline != -1 and newline + 1 < end:
            begin = newline + 1
    return text[begin:end]


def shuffled(answer: str, others: list[str], rng: random.Random) -> tuple[tuple[str, ...], int]:
    choices = [answer] + others
    rng.shuffle(choices)
    return tuple(choices), choices.index(answer)


def next_line_questions(lines, starts, text, n, rng, context_chars) -> list[Question]:
    speech = [i for i, line in enumerate(lines) if is_speech(line)]
    candidates = [i for i in speech[:-1] if i + 1 < len(lines) and is_speech(lines[i + 1])]
    rng.shuffle(candidates)
    by_length = sorted(speech, key=lambda i: len(lines[i].strip()))
    lengths = [len(lines[i].strip()) for i in by_length]
    questions = []
    for i in candidates:
        if len(questions) == n:
            break
        answer = lines[i + 1].strip()
        lo, hi = np.searchsorted(lengths, 0.8 * len(answer)), np.searchsorted(lengths, 1.25 * len(answer))
        pool = [j for j in by_length[lo:hi] if abs(j - i) > 40]
        others = _distinct(pool, lambda j: lines[j].strip(), answer, rng)
        if others is None:
            continue
        context = context_before(text, int(starts[i + 1]), context_chars)
        if context.strip():
            questions.append(Question(context, *shuffled(answer, others, rng)))
    return questions


def blank_questions(lines, starts, text, n, rng, context_chars) -> list[Question]:
    words = [m.group() for m in WORD.finditer(text)]                  # every occurrence: frequency-weighted
    by_length: dict[int, list[str]] = {}
    for w in words:
        by_length.setdefault(len(w), []).append(w)
    candidates = [i for i, line in enumerate(lines) if is_speech(line) and WORD.search(line)]
    rng.shuffle(candidates)
    questions = []
    for i in candidates:
        if len(questions) == n:
            break
        line = lines[i]
        match = rng.choice(list(WORD.finditer(line)))
        word, rest = match.group(), line[match.end():]
        pool = [w for k in range(len(word) - 1, len(word) + 2) for w in by_length.get(k, [])]
        others = _distinct(pool, lambda w: w, word, rng)
        if others is None:
            continue
        context = context_before(text, int(starts[i]) + match.start(), context_chars)
        if context.strip():
            questions.append(Question(context, *shuffled(word + rest, [w + rest for w in others], rng)))
    return questions


def speaker_questions(lines, starts, text, n, rng, context_chars) -> list[Question]:
    headings = [i for i, line in enumerate(lines)
                if is_heading(line) and i > 0 and not lines[i - 1].strip()
                and i + 1 < len(lines) and lines[i + 1].strip() and not is_heading(lines[i + 1])]
    everyone = [lines[i].strip() for i in headings]
    candidates = list(range(len(headings)))
    rng.shuffle(candidates)
    questions = []
    for k in candidates:
        if len(questions) == n:
            break
        i = headings[k]
        name, speech = lines[i].strip(), lines[i + 1].strip()
        scene = [lines[j].strip() for j in headings[max(0, k - 30):k + 10]]     # names from around here
        nearby = _distinct(scene, lambda s: s, name, rng, partial=True)        # topped up from the whole text
        others = _distinct(everyone, lambda s: s, name, rng, found=nearby)
        if others is None:
            continue
        context = context_before(text, int(starts[i]), context_chars)
        if context.strip():
            questions.append(Question(context, *shuffled(f"{name}\n{speech}",
                                                         [f"{o}\n{speech}" for o in others], rng)))
    return questions


def _distinct(pool, text_of, answer: str, rng: random.Random, k: int = N_CHOICES - 1,
              found: list[str] | None = None, partial: bool = False) -> list[str] | None:
    """k different texts (adding to `found`) from `pool`, drawn at random as often as they
    occur, none equal to the answer; None when the pool has too few (the ones found with partial)."""
    found = list(found or [])
    for _ in range(50 * k if pool else 0):
        if len(found) == k:
            break
        t = text_of(rng.choice(pool))
        if t != answer and t not in found:
            found.append(t)
    return found if len(found) == k or partial else None


# -- held-out text --------------------------------------------------------------------------------
def held_out_text(val_tokens, tokenizer) -> str:
    """The validation split as text (the model never trained on it)."""
    return tokenizer.decode(np.asarray(val_tokens, dtype=np.int64).tolist())


def make_tasks(specs: list[str], text: str | None, n: int, seed: int, context_chars: int) -> list[Task]:
    """Built-in task names and/or .jsonl paths -> tasks (n questions each; a file keeps its first n)."""
    tasks = []
    for spec in specs:
        if spec in BUILTIN_TASKS:
            if text is None:
                raise GlassError(f"the built-in task {spec!r} needs held-out text (a data directory with val.bin)")
            tasks.append(builtin_task(spec, text, n, seed, context_chars))
        elif Path(spec).suffix in (".jsonl", ".json") or Path(spec).is_file():
            if not Path(spec).is_file():
                raise GlassError(f"no task file {spec}: give a JSON-lines file or one of {', '.join(BUILTIN_TASKS)}")
            tasks.append(load_task_file(spec, limit=n))
        else:
            raise GlassError(f"unknown task {spec!r}: choose {', '.join(BUILTIN_TASKS)} or a .jsonl file")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise GlassError(f"two tasks share the name {max(names, key=names.count)!r}: rename one file")
    return tasks
