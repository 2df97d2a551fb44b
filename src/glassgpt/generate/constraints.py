"""Constraints: what the generated text must look like (LMQL's holes, Outlines' types).

    generate(model, "Is it? ", constraint=Choice(["yes", "no"]))
    generate(model, "Year: ", constraint=Integer(min=1900, max=2030))
    generate(model, "Code: ", constraint=Regex(r"[A-Z]{3}-[0-9]{2}"))
    generate(model, "JSON: ", constraint=JSONSchema({"type": "object", "properties": {...}}))
    generate(model, "Sum: ", constraint=Grammar('start: NUM ("+" NUM)*\\nNUM: /[0-9]+/'))

A constraint describes a language (a set of texts). At every step the decoder asks the
token-mask engine which tokens keep the text inside that language (`token_masks.py`)
and renormalises the sampler chain's distribution over them. This module only says
*what* is allowed; the engine (llguidance) compiles it against the tokenizer.

Every constraint also takes length limits: `max_tokens` and `max_chars` of the
constrained text. The text must be complete (accepted by the constraint) within them.
"""
from __future__ import annotations

import json

from ..errors import GlassError


def llguidance():
    """The token-mask engine's module, or a GlassError saying how to install it."""
    try:
        import llguidance as engine
    except ImportError:
        raise GlassError("constrained generation needs llguidance: pip install 'glassgpt[constraints]' "
                         "(or pip install llguidance)") from None
    return engine


class Constraint:
    """The shared part: length limits, a name for messages, the engine's grammar."""

    def __init__(self, *, max_tokens: int | None = None, max_chars: int | None = None):
        for name, value in (("max_tokens", max_tokens), ("max_chars", max_chars)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise GlassError(f"{type(self).__name__}: {name} must be a whole number >= 1, got {value!r}")
        self.max_tokens, self.max_chars = max_tokens, max_chars

    def grammar(self) -> str:
        """The constraint as an llguidance grammar (a JSON string the engine compiles)."""
        raise NotImplementedError

    def _args(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        limits = "".join(f", {n}={v}" for n, v in (("max_tokens", self.max_tokens), ("max_chars", self.max_chars))
                         if v is not None)
        return f"{type(self).__name__}({self._args()}{limits})"

    def __eq__(self, other) -> bool:        # all settings, not the repr (which shortens long texts)
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash(repr(self))


class Choice(Constraint):
    """Exactly one of the given strings."""

    def __init__(self, options, **limits):
        super().__init__(**limits)
        if isinstance(options, str):
            raise GlassError("Choice takes a list of strings, not one string: Choice(['yes', 'no'])")
        self.options = list(options)
        if not self.options:
            raise GlassError("Choice: the list of options is empty: give at least one option")
        for o in self.options:
            if not isinstance(o, str) or not o:
                raise GlassError(f"Choice: every option must be a non-empty string, got {o!r}")

    def grammar(self) -> str:
        return _lark("start: " + " | ".join(json.dumps(o) for o in dict.fromkeys(self.options)))

    def _args(self) -> str:
        return repr(self.options)


class Regex(Constraint):
    """Text matching a regular expression as a whole (Rust `regex` syntax: no look-around,
    no back-references)."""

    def __init__(self, pattern: str, **limits):
        super().__init__(**limits)
        if not isinstance(pattern, str) or not pattern:
            raise GlassError(f"Regex: the pattern must be a non-empty string, got {pattern!r}")
        self.pattern = pattern

    def grammar(self) -> str:
        return llguidance().LLMatcher.grammar_from_regex(self.pattern)

    def _args(self) -> str:
        return repr(self.pattern)


class JSONSchema(Constraint):
    """A JSON value valid against a JSON schema (a dict, or its JSON text). Keywords the
    engine does not implement are an error naming them, never silently ignored. The JSON
    is written compactly: `{"a": 1, "b": [2, 3]}` (one space after ':' and ',')."""

    LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

    def __init__(self, schema, **limits):
        super().__init__(**limits)
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as e:
                raise GlassError(f"JSONSchema: the schema is not valid JSON ({e})") from None
        if not isinstance(schema, (dict, bool)):
            raise GlassError(f"JSONSchema: a schema is a JSON object, got {type(schema).__name__}")
        self.schema = schema

    def grammar(self) -> str:
        return llguidance().LLMatcher.grammar_from_json_schema(self.schema, overrides=self.LAYOUT)

    def _args(self) -> str:
        text = json.dumps(self.schema, sort_keys=True)
        return text if len(text) <= 80 else text[:77] + "..."


class Integer(JSONSchema):
    """A whole number in decimal (optional '-', no leading zeros), within [min, max] when given."""

    def __init__(self, min: int | None = None, max: int | None = None, **limits):
        for name, value in (("min", min), ("max", max)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise GlassError(f"Integer: {name} must be a whole number, got {value!r}")
        if min is not None and max is not None and min > max:
            raise GlassError(f"Integer: min ({min}) is greater than max ({max}): no integer fits")
        schema = {"type": "integer", **({"minimum": min} if min is not None else {}),
                  **({"maximum": max} if max is not None else {})}
        super().__init__(schema, **limits)
        self.min, self.max = min, max

    def _args(self) -> str:
        return ", ".join(f"{n}={v}" for n, v in (("min", self.min), ("max", self.max)) if v is not None)


class Grammar(Constraint):
    """Text in a context-free grammar: Lark syntax (llguidance's dialect: rules, /regex/
    terminals, "strings") or llama.cpp's GBNF (`root ::= ...`), converted to Lark."""

    def __init__(self, text: str, **limits):
        super().__init__(**limits)
        if not isinstance(text, str) or not text.strip():
            raise GlassError("Grammar: the grammar text is empty")
        self.text = text

    def grammar(self) -> str:
        try:
            return llguidance().grammar_from("grammar", self.text)
        except ValueError as e:
            raise GlassError(f"{self!r}: {one_line(str(e))}") from None

    def _args(self) -> str:
        first = self.text.strip().splitlines()[0]
        return repr(first if len(first) <= 60 else first[:57] + "...")


def _lark(text: str) -> str:
    return llguidance().LLMatcher.grammar_from_lark(text)


def one_line(message: str) -> str:
    """The engine's multi-line error (with a caret drawing) as one line."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    useful = [line for line in lines if not set(line) <= set("^ |0123456789") and not line.startswith("|")]
    return "; ".join(dict.fromkeys(useful or lines))[:300]


# -- the server's request fields (OpenAI's response_format, vLLM's guided_* extras) -----------
def constraint_from_fields(response_format=None, guided_choice=None, guided_regex=None,
                           guided_grammar=None) -> Constraint | None:
    """The constraint a request's fields ask for, or None. Raises GlassError whose message
    starts with the offending field's name (a server answers 400 with that `param`)."""
    given = {name: value for name, value in (("response_format", response_format), ("guided_choice", guided_choice),
                                             ("guided_regex", guided_regex), ("guided_grammar", guided_grammar))
             if value is not None and not (name == "response_format" and _is_plain_text(value))}
    if len(given) > 1:
        names = list(given)
        raise GlassError(f"{names[1]}: give one constraint per request, not {' and '.join(names)}")
    if not given:
        return None
    (name, value), = given.items()
    try:
        if name == "guided_choice":
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise GlassError("must be a list of strings")
            return Choice(value)
        if name == "guided_regex":
            if not isinstance(value, str):
                raise GlassError("must be a string")
            return Regex(value)
        if name == "guided_grammar":
            if not isinstance(value, str):
                raise GlassError("must be a string (Lark or GBNF)")
            return Grammar(value)
        return _from_response_format(value)
    except GlassError as e:
        message = str(e)
        raise GlassError(message if message.startswith(name) else f"{name}: {message}") from None


def _is_plain_text(response_format) -> bool:
    return isinstance(response_format, dict) and response_format.get("type") == "text"


def _from_response_format(value) -> Constraint:
    if not isinstance(value, dict) or "type" not in value:
        raise GlassError('must be an object such as {"type": "json_schema", "json_schema": {"schema": {...}}}')
    kind = value["type"]
    if kind == "json_object":
        return JSONSchema({"type": "object"})
    if kind != "json_schema":
        raise GlassError(f"type {kind!r} is not supported: use 'text', 'json_object' or 'json_schema'")
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), (dict, bool)):
        raise GlassError('json_schema needs {"schema": {...}} (and optionally "name")')
    return JSONSchema(spec["schema"])
