"""Templates with holes (LMQL's idea): fixed text, and holes the model fills in order.

    r = query(model, "Q: {question}\\nA: [ANSWER]\\nSure? [SURE]",
              where={"ANSWER": Integer(min=0, max=100), "SURE": Choice(["yes", "no"])},
              inputs={"question": "2 + 2 ="}, temperature=0)
    r["ANSWER"]                  # 4 (an int: Integer holes give numbers, JSONSchema holes objects)
    r.holes["ANSWER"].mass_removed     # per token: the probability the constraint took away
    r.text                       # the whole filled-in template

Holes are `[NAME]`; `{name}` in the fixed text is replaced by `inputs[name]` or by an
earlier hole's value, and every hole sees all the text before it, earlier holes included.
A hole's `where` entry is a constraint (`Choice`, `Regex`, `Integer`, `JSONSchema`,
`Grammar`), `Text(stop=...)` for free text up to a stop string, or `Distribution([...])`
to score the options instead of sampling one (LMQL's `distribution` clause: the value is
the most likely option, `r.holes[NAME].scores` has all of them). A hole without an entry
is `Text()`: free text up to the end of the line.

Fixed text ending in the middle of a token (a trailing space: "A: " + "4" is read by a
BPE tokenizer as "A:" + " 4"): the last token of the text so far is taken back and the
hole's constraint is made to start with its text, so the model writes " 4" as it would
(token healing). The hole's text and value leave that prefix out.
"""
from __future__ import annotations

import json
import math
import re
import weakref
from dataclasses import dataclass, field

from ..errors import GlassError
from .constraints import Choice, Constraint, Integer, JSONSchema

HOLE = re.compile(r"\[([A-Za-z_][A-Za-z0-9_]*)\]")
VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Text:
    """Free text up to a stop string (default: the end of the line), at most max_tokens."""

    def __init__(self, stop: str | list[str] | None = "\n", max_tokens: int | None = None):
        self.stop = [stop] if isinstance(stop, str) else list(stop or [])
        self.max_tokens = max_tokens

    def __repr__(self) -> str:
        return f"Text(stop={self.stop!r})"


class Distribution:
    """Score every option as the hole's text (no sampling); the value is the most likely."""

    def __init__(self, options):
        self.options = Choice(options).options          # the same checks as a Choice
        self.max_tokens = None

    def __repr__(self) -> str:
        return f"Distribution({self.options!r})"


class Prefixed(Constraint):
    """`constraint` preceded by fixed text (the healed end of the prompt); None: free text."""

    def __init__(self, prefix: str, constraint: Constraint | None, **limits):
        super().__init__(**limits)
        self.prefix, self.inner = prefix, constraint

    def grammar(self) -> str:
        literal = json.dumps(self.prefix)
        if self.inner is None:
            return json.dumps({"grammars": [{"lark_grammar": f"start: {literal} /(.|\\n)*/"}]})
        try:
            spec = json.loads(self.inner.grammar())
        except json.JSONDecodeError:
            spec = {"grammars": [{"lark_grammar": self.inner.grammar()}]}
        inner = {**spec["grammars"][0], "name": "hole"}
        return json.dumps({**spec, "grammars": [{"lark_grammar": f"start: {literal} @hole"}, inner,
                                                *spec["grammars"][1:]]})

    @property
    def text(self) -> str:          # the compile cache's key
        return self.prefix + "\x00" + (repr(self.inner) + str(getattr(self.inner, "text", "")) +
                                       str(getattr(self.inner, "schema", "")))

    def _args(self) -> str:
        return f"{self.prefix!r}, {self.inner!r}"


@dataclass
class Hole:
    name: str
    value: object                     # int (Integer), parsed JSON (JSONSchema), else the text
    text: str                         # what the hole added to the text
    ids: list[int] = field(default_factory=list)           # its tokens (a healed prefix included)
    token_logprobs: list[float] = field(default_factory=list)   # each token under the model (T = 1)
    mass_removed: list[float] = field(default_factory=list)     # per token: what the constraint took away
    healed: str = ""                  # text of the prompt's last token, rewritten as the hole's start
    finish_reason: str = ""
    scores: object = None             # Distribution holes: the ChoiceScores of every option

    @property
    def logprob(self) -> float:
        return math.fsum(self.token_logprobs)


@dataclass
class QueryResult:
    text: str
    holes: dict[str, Hole]

    @property
    def values(self) -> dict[str, object]:
        return {name: hole.value for name, hole in self.holes.items()}

    def __getitem__(self, name: str):
        return self.holes[name].value


def parse_template(template: str) -> list[tuple[str, str]]:
    """[(fixed text, hole name), ...]; the last pair's name is '' (text after the last hole)."""
    if not isinstance(template, str):
        raise GlassError(f"a template is a string, got {type(template).__name__}")
    parts = HOLE.split(template)
    pairs = [(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)] + [(parts[-1], "")]
    names = [name for _, name in pairs if name]
    if not names:
        raise GlassError("the template has no holes: mark them [NAME], e.g. 'A: [ANSWER]'")
    if len(set(names)) != len(names):
        raise GlassError(f"a hole appears twice in the template: {names}")
    return pairs


def query(model, template: str, where: dict | None = None, inputs: dict | None = None, *, tokenizer=None,
          **settings) -> QueryResult:
    """Fill the template's holes in order (see the module docstring). `settings` go to
    `generate` for every sampled hole (temperature, top_p, seed, max_new_tokens=64, ...)."""
    from ..inspect.choices import score_choices
    from .decode import generate

    tokenizer = tokenizer if tokenizer is not None else model.tokenizer
    if tokenizer is None:
        raise GlassError("query works on text: give the model a tokenizer (tokenizer=...)")
    pairs = parse_template(template)
    where = dict(where or {})
    unknown = set(where) - {name for _, name in pairs}
    if unknown:
        raise GlassError(f"where= names holes the template does not have: {sorted(unknown)}")
    settings.setdefault("max_new_tokens", 64)
    seed = settings.pop("seed", None)
    variables = {str(k): v for k, v in (inputs or {}).items()}
    text, holes = "", {}
    for i, (fixed, name) in enumerate(pairs):
        text += substitute(fixed, variables)
        if not name:
            break
        spec = where.get(name, Text())
        if isinstance(spec, Distribution):
            if not text:
                raise GlassError(f"hole [{name}] is scored, so it needs text before it")
            scores = score_choices(model, text, spec.options, tokenizer)
            hole = Hole(name, scores.best, scores.best, scores=scores, finish_reason="scored",
                        ids=scores.scores[scores.options.index(scores.best)].ids,
                        token_logprobs=scores.scores[scores.options.index(scores.best)].token_logprobs)
        elif isinstance(spec, (Constraint, Text)):
            hole = fill(model, tokenizer, text, name, spec, generate, dict(settings, seed=None if seed is None
                                                                              else seed + i))
        else:
            raise GlassError(f"where[{name!r}] must be a constraint (Choice, Regex, Integer, JSONSchema, "
                             f"Grammar), Text(...) or Distribution([...]), got {type(spec).__name__}")
        holes[name] = hole
        variables[name] = hole.value
        text += hole.text
    return QueryResult(text, holes)


def fill(model, tokenizer, text: str, name: str, spec, generate, settings: dict) -> Hole:
    """Sample one hole after `text`, healing the token boundary."""
    ids = tokenizer.encode(text, allowed_special="all") if text else []
    if not ids:
        eot = getattr(tokenizer, "eot_id", None)
        if eot is None:
            raise GlassError(f"hole [{name}] starts the template: put some text before it")
        ids = [eot]
    prefix = healable(tokenizer, ids)
    constraint = spec if isinstance(spec, Constraint) else None
    stop = spec.stop if isinstance(spec, Text) else None
    if prefix:
        ids = ids[:-1]
        constraint = Prefixed(prefix, constraint, max_tokens=getattr(spec, "max_tokens", None),
                              max_chars=getattr(spec, "max_chars", None))
    if isinstance(spec, Text) and spec.max_tokens is not None:
        settings["max_new_tokens"] = spec.max_tokens
    g = generate(model, ids, tokenizer=tokenizer, constraint=constraint, logprobs=1,
                 **({"stop": stop} if stop else {}), **settings)[0]
    if not g.text.startswith(prefix):
        raise GlassError(f"hole [{name}]: the generated text lost the healed prefix {prefix!r}")
    hole_text = g.text[len(prefix):]
    return Hole(name, value_of(spec, hole_text), hole_text, ids=g.ids,
                token_logprobs=[r.logprob for r in g.logprobs],
                mass_removed=[r.constraint.mass_removed if r.constraint is not None else 0.0 for r in g.logprobs],
                healed=prefix, finish_reason=g.finish_reason)


def healable(tokenizer, ids: list[int]) -> str:
    """The text of the last token when a longer token starts with its bytes (the boundary
    could merge) and taking it back leaves a prompt; '' otherwise."""
    if len(ids) < 2 or getattr(tokenizer, "kind", "") == "char" or ids[-1] in tokenizer.special_tokens.values():
        return ""
    last = tokenizer.token_bytes(ids[-1])
    try:
        text = last.decode("utf-8")
    except UnicodeDecodeError:
        return ""
    extends = _extensions(tokenizer)
    return text if last in extends else ""


_EXTENDED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _extensions(tokenizer) -> set[bytes]:
    """Every proper prefix of an ordinary token (cached per tokenizer)."""
    key = tokenizer
    if key not in _EXTENDED:
        specials = set(tokenizer.special_tokens.values())
        prefixes = set()
        for i in range(tokenizer.vocab_size):
            if i in specials:
                continue
            try:
                data = tokenizer.token_bytes(i)
            except GlassError:
                continue
            prefixes.update(data[:k] for k in range(1, len(data)))
        _EXTENDED[key] = prefixes
    return _EXTENDED[key]


def value_of(spec, text: str):
    if isinstance(spec, Integer):
        return int(text)
    if isinstance(spec, JSONSchema):
        return json.loads(text)
    return text


def substitute(fixed: str, variables: dict) -> str:
    """{name} -> its value, where the name is known; other braces stay as they are."""
    return VARIABLE.sub(lambda m: str(variables[m.group(1)]) if m.group(1) in variables else m.group(0), fixed)
