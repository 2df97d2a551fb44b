"""Request bodies of the OpenAI-compatible endpoints, as pydantic models.

The sampler settings are not typed out again here: every field of `SamplingParams`
becomes a request field with the same name, type, default and help text (OpenAI's own
names where the wire format has one: `max_tokens` for max_new_tokens, `n` for
num_samples). Their values are checked by `SamplingParams` itself, so the server and the
library refuse exactly the same settings.

Extras beyond OpenAI's fields, documented as extras the way vLLM documents its own:
`top_k`, `min_p`, `repetition_penalty` (sampler steps), `logprobs_mode` ("raw": the
model's distribution at T = 1, the default; "processed": after the sampler chain, the
distribution the token was actually drawn from) and `return_entropy` (each token's
entropy, in nats, of that same distribution).
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..generate.samplers import SamplingParams

# SamplingParams field -> the OpenAI request field that carries it
OPENAI_NAMES = {"max_new_tokens": "max_tokens", "num_samples": "n"}
# fields each endpoint declares itself (different types or meaning per endpoint)
OWN_FIELDS = {"max_tokens", "n", "stop", "seed", "logprobs"}
MAX_LOGPROBS = 20


class Body(BaseModel):
    # strict: "0.5" is not a number and 1.0 is not a token id; unknown fields are ignored (as OpenAI does)
    model_config = ConfigDict(strict=True, extra="ignore")


def sampler_fields() -> dict:
    """The sampler settings of SamplingParams as pydantic fields (None = the default)."""
    hints = typing.get_type_hints(SamplingParams)
    out = {}
    for f in dataclasses.fields(SamplingParams):
        name = OPENAI_NAMES.get(f.name, f.name)
        if name in OWN_FIELDS:
            continue
        kind = hints[f.name]
        if f.name == "logit_bias":          # JSON object keys are strings: "50256": -100
            kind = dict[str, float]
        out[name] = (Optional[kind], Field(None, description=f.metadata.get("help") or f"(default {f.default!r})"))
    return out


Sampling = create_model("Sampling", __base__=Body, **sampler_fields())


class Common(Sampling):
    model: str = Field(description="the served run's name (GET /v1/models)")
    n: int = Field(1, description="samples per prompt (num_samples)")
    stop: Union[str, list[str], None] = Field(None, description="stop when one of these texts appears (cut)")
    seed: Optional[int] = Field(None, description="same seed, same settings: same text, alone or in a batch")
    stream: bool = False
    stream_options: Optional[dict] = None
    user: Optional[str] = None
    logprobs_mode: Literal["raw", "processed"] = Field(
        "raw", description="extra: logprobs of the model's distribution at T = 1 (raw) or after the sampler "
                           "chain (processed: the distribution the token was drawn from)")
    return_entropy: bool = Field(False, description="extra: each token's entropy (nats) in the logprobs")
    # constrained generation (glassgpt.generate.constraints): OpenAI's response_format, vLLM's guided_* extras
    response_format: Optional[dict] = Field(None, description='{"type": "json_schema", "json_schema": {"schema": '
                                                              '{...}}}, {"type": "json_object"} or {"type": "text"}')
    guided_choice: Optional[list[str]] = Field(None, description="extra: the text is exactly one of these")
    guided_regex: Optional[str] = Field(None, description="extra: the text matches this regular expression")
    guided_grammar: Optional[str] = Field(None, description="extra: the text is in this Lark or GBNF grammar")


class CompletionRequest(Common):
    prompt: Union[str, list[str], list[int], list[list[int]]] = Field(
        description="text, several texts, token ids, or several lists of ids")
    max_tokens: Optional[int] = Field(16, description="the most tokens to generate (0 with echo: only score)")
    logprobs: Optional[int] = Field(None, description=f"log-probabilities of each token and the 0-{MAX_LOGPROBS} "
                                                      "most likely alternatives")
    echo: bool = Field(False, description="return the prompt too, with its tokens' logprobs (the first null)")
    suffix: Optional[str] = None


class Message(Body):
    model_config = ConfigDict(strict=True, extra="ignore")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: Union[str, list[dict], None] = None
    name: Optional[str] = None


class ChatRequest(Common):
    messages: list[Message] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, description="the most tokens to generate (default: the rest of "
                                                        "the context)")
    max_completion_tokens: Optional[int] = None
    logprobs: bool = False
    top_logprobs: Optional[int] = Field(None, description=f"0-{MAX_LOGPROBS} alternatives per token")


class TokenizeRequest(Body):
    model: Optional[str] = None
    prompt: str
    with_pieces: bool = Field(False, description="also each token's text piece")


class DetokenizeRequest(Body):
    model: Optional[str] = None
    tokens: list[int]
