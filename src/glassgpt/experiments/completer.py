"""Completers: one small interface so every experiment runs on a glassgpt model or on any
server that speaks the OpenAI completions API.

    completer.complete(prompt, max_tokens=64, temperature=0.7, seed=0, logprobs=5)
      -> Completion(text, tokens, token_logprobs, entropies, ...)
    completer.top_scores(prompt, k=8)
      -> TopScores(tokens, scores, kind)      # the next-token scores before sampling

`token_logprobs` and `entropies` always describe the model's own distribution at
temperature 1 at each sampled position, whatever temperature sampled the token: that is
what lets an experiment ask "how surprising is this sample to the model itself?".
"""
from __future__ import annotations

import json
import math
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import GlassError


@dataclass
class Completion:
    text: str
    tokens: list[str]                       # the sampled tokens, as text
    token_ids: list[int] | None = None      # their ids, when the vocabulary is known
    token_logprobs: list[float] | None = None   # log p(token) under the model at T=1
    entropies: list[float] | None = None    # entropy (nats) of the T=1 distribution at each position
    entropy_is_lower_bound: bool = False    # True when computed from top-k logprobs only
    finish_reason: str = "length"

    @property
    def keys(self) -> list:
        """What repetition metrics compare: ids when known (exact), else token text."""
        return self.token_ids if self.token_ids is not None else self.tokens


@dataclass
class TopScores:
    tokens: list[str]                       # the k highest-scoring next tokens, best first
    scores: list[float]                     # their scores
    kind: str                               # "logits" (raw scores) or "logprobs" (logits - logsumexp)
    rest: list[float] = field(default_factory=list)   # all other logits, when known (exact softmax)


class Completer(Protocol):
    name: str

    def complete(self, prompt: str, *, max_tokens: int, temperature: float, seed: int,
                 logprobs: int = 0, stop: list[str] | None = None) -> Completion: ...

    def top_scores(self, prompt: str, k: int) -> TopScores: ...


# -- a glassgpt model --------------------------------------------------------------------------
class GlassCompleter:
    """Samples with glassgpt.generate, which also reports each token's T=1 logprob and entropy."""

    def __init__(self, model, tokenizer=None, name: str = "glassgpt"):
        self.model = model
        self.tokenizer = tokenizer if tokenizer is not None else model.tokenizer
        if self.tokenizer is None:
            raise GlassError("the model has no tokenizer: load a run directory that has tokenizer.json")
        self.name = name

    def complete(self, prompt: str, *, max_tokens: int, temperature: float, seed: int,
                 logprobs: int = 0, stop: list[str] | None = None) -> Completion:
        from ..generate import generate   # the sampler chain lives there

        (gen,) = generate(self.model, self.encode(prompt), max_new_tokens=max_tokens, temperature=temperature,
                          seed=seed, num_samples=1, stop=stop, logprobs=logprobs, tokenizer=self.tokenizer)
        records = gen.logprobs or []      # per token: log p and entropy of the raw T=1 distribution
        return Completion(text=gen.text, tokens=[self.tokenizer.id_to_str(i) for i in gen.ids],
                          token_ids=list(gen.ids), token_logprobs=[r.logprob for r in records],
                          entropies=[r.entropy for r in records], finish_reason=gen.finish_reason)

    def top_scores(self, prompt: str, k: int) -> TopScores:
        import torch

        ids = self.encode(prompt)[-self.model.config.context_length:]
        with torch.no_grad():
            logits = self.model(torch.tensor([ids], device=self.model.device), last_only=True).logits[0, -1]
        order = torch.argsort(logits.float(), descending=True).tolist()
        values = logits.float().tolist()
        return TopScores(tokens=[self.tokenizer.id_to_str(i) for i in order[:k]],
                         scores=[values[i] for i in order[:k]], kind="logits",
                         rest=[values[i] for i in order[k:]])

    def encode(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text)
        if not ids:
            raise GlassError("the prompt is empty after tokenizing: give a prompt with some text")
        return ids


# -- an OpenAI-compatible completions endpoint ------------------------------------------------
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAICompleter:
    """POST {base_url}/completions with urllib; retries with exponential backoff.

    Works with OpenAI-compatible servers (vLLM, llama.cpp server, text-generation-inference,
    hosted APIs). The key, if any, is read from the environment variable `api_key_env`.
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 60.0, retries: int = 4, backoff: float = 1.0):
        if not base_url.startswith(("http://", "https://")):
            raise GlassError(f"endpoint {base_url!r} is not an http(s) URL: give e.g. http://127.0.0.1:8000/v1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.name = f"{model} @ {self.base_url}"

    def complete(self, prompt: str, *, max_tokens: int, temperature: float, seed: int,
                 logprobs: int = 0, stop: list[str] | None = None) -> Completion:
        body = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens,
                "temperature": temperature, "seed": seed}
        if logprobs:
            body["logprobs"] = logprobs
        if stop:
            body["stop"] = stop
        choice = self.post(body)["choices"][0]
        lp = choice.get("logprobs") or {}
        tokens = lp.get("tokens") or []
        token_logprobs = lp.get("token_logprobs")
        top = lp.get("top_logprobs")
        entropies = [entropy_lower_bound(list(t.values())) for t in top] if top and all(top) else None
        return Completion(text=choice.get("text", ""), tokens=list(tokens) or list(choice.get("text", "")),
                          token_logprobs=[float(x) for x in token_logprobs] if token_logprobs else None,
                          entropies=entropies, entropy_is_lower_bound=entropies is not None,
                          finish_reason=choice.get("finish_reason") or "length")

    def top_scores(self, prompt: str, k: int) -> TopScores:
        body = {"model": self.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0,
                "logprobs": k, "seed": 0}
        lp = self.post(body)["choices"][0].get("logprobs") or {}
        top = (lp.get("top_logprobs") or [None])[0]
        if not top:
            raise GlassError(f"{self.name} returned no top_logprobs: the study needs an endpoint that "
                             f"supports `logprobs` in the completions API")
        items = sorted(top.items(), key=lambda kv: -kv[1])[:k]
        return TopScores(tokens=[t for t, _ in items], scores=[float(v) for _, v in items], kind="logprobs")

    def post(self, body: dict) -> dict:
        """One JSON request, retried on timeouts, refused connections, 429 and 5xx."""
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env, "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = f"{self.base_url}/completions"
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return self.parse(response.read())
            except urllib.error.HTTPError as e:
                detail = _short(e.read().decode("utf-8", "replace"))
                if e.code not in RETRYABLE_STATUS:
                    hint = f" (set {self.api_key_env})" if e.code in (401, 403) else ""
                    raise GlassError(f"{url} answered HTTP {e.code}{hint}: {detail}") from None
                last = f"HTTP {e.code}: {detail}"
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
                reason = getattr(e, "reason", e)
                last = "timed out" if isinstance(reason, (socket.timeout, TimeoutError)) else _short(str(reason))
        raise GlassError(f"{url} failed after {self.retries + 1} attempts (last: {last}): "
                         f"check that the server is up, or raise --timeout/--retries")

    def parse(self, raw: bytes) -> dict:
        try:
            reply = json.loads(raw)
            reply["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise GlassError(f"{self.base_url}/completions did not answer with OpenAI-style JSON "
                             f"({_short(raw.decode('utf-8', 'replace'))}): is it a completions endpoint?") from None
        return reply


def entropy_lower_bound(top_logprobs: list[float]) -> float:
    """Entropy (nats) from the top-k logprobs only: their -p log p terms plus -m log m for the
    missing mass m, which bounds the tail's contribution from below."""
    probs = [math.exp(x) for x in top_logprobs]
    h = -sum(p * lp for p, lp in zip(probs, top_logprobs) if p > 0)
    missing = max(0.0, 1.0 - sum(probs))
    return h - (missing * math.log(missing) if missing > 0 else 0.0)


def _short(text: str, n: int = 160) -> str:
    return " ".join(text.split())[:n]
