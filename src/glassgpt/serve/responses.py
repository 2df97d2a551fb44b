"""Answers in OpenAI's wire format: usage, logprobs (completions' legacy shape and chat's),
and Server-Sent Events."""
from __future__ import annotations

import json
import math

from fastapi.responses import StreamingResponse

from ..generate.scheduler import Job
from .errors import APIError
from .worker import ServedModel

NEG_INF_LOGPROB = -9999.0           # JSON has no -inf (vLLM writes the same number)
FINISH = {"eot": "stop", "stop": "stop", "length": "length", "cancelled": "length",
          "constraint": "stop", "error": "stop"}     # constraint: complete, nothing more could follow


def usage_of(jobs: list[Job]) -> dict:
    prompt = sum(len(j.prompt) for j in jobs)
    completion = sum(len(r.ids) for j in jobs for r in j.rows)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": sum(j.cached_tokens for j in jobs)}}


def finite(x: float) -> float:
    return x if x > -math.inf else NEG_INF_LOGPROB


class Answer:
    """Formats logprobs the way each endpoint writes them."""

    def __init__(self, served: ServedModel, k: int | None, mode: str, entropy: bool):
        self.served, self.k, self.processed, self.entropy = served, k, mode == "processed", entropy
        self.tok = served.model.tokenizer

    def token(self, r) -> tuple[float, list[tuple[int, str, float]], float]:
        """(logprob, [(id, text, logprob) of the alternatives], entropy) of one record in this mode."""
        if self.processed:
            top = [(a.id, a.text, finite(math.log(a.prob_after)) if a.prob_after > 0 else NEG_INF_LOGPROB)
                   for a in r.top]
            return finite(r.logprob_after), top, r.entropy_after
        return r.logprob, [(a.id, a.text, math.log(a.prob) if a.prob > 0 else NEG_INF_LOGPROB) for a in r.top], \
            r.entropy

    def completion_logprobs(self, job: Job, records, echo: bool) -> dict | None:
        if self.k is None and not self.entropy:
            return None
        tokens, lps, tops, entropies, removed = [], [], [], [], []
        if echo and job.prompt_records is not None:
            for i, r in zip(job.prompt, job.prompt_records):
                tokens.append(self.tok.id_to_str(i))
                lps.append(None if r is None else r.logprob)
                tops.append(None if r is None else {a.text: math.log(a.prob) if a.prob > 0 else NEG_INF_LOGPROB
                                                    for a in r.top[:self.k or 0]})
                entropies.append(None if r is None else r.entropy)
                removed.append(None)
        for r in records or []:
            lp, top, h = self.token(r)
            tokens.append(r.text)
            lps.append(lp)
            tops.append({text: v for _, text, v in top[:self.k or 0]})
            entropies.append(h)
            removed.append(r.constraint.mass_removed if getattr(r, "constraint", None) is not None else None)
        offsets, at = [], 0
        for t in tokens:
            offsets.append(at)
            at += len(t)
        out = {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops, "text_offset": offsets}
        if self.entropy:
            out["entropies"] = entropies
        if any(m is not None for m in removed):     # extra: the probability a constraint took away per token
            out["mass_removed"] = removed
        return out

    def chat_logprobs(self, records) -> dict | None:
        if self.k is None:
            return None
        content = []
        for r in records or []:
            lp, top, h = self.token(r)
            entry = {"token": r.text, "logprob": lp, "bytes": list(self.bytes(r.id)),
                     "top_logprobs": [{"token": text, "logprob": v, "bytes": list(self.bytes(i))}
                                      for i, text, v in top[:self.k]]}
            if self.entropy:
                entry["entropy"] = h
            if getattr(r, "constraint", None) is not None:   # extra: what the constraint took away
                entry["mass_removed"] = r.constraint.mass_removed
            content.append(entry)
        return {"content": content}

    def bytes(self, token_id: int) -> bytes:
        fn = getattr(self.tok, "token_bytes", None)
        return fn(token_id) if fn is not None else self.tok.decode([token_id]).encode()


def sse(chunks) -> StreamingResponse:
    """Server-Sent Events: one `data: {json}` per chunk, then `data: [DONE]`."""
    async def body():
        try:
            async for chunk in chunks:
                yield f"data: {json.dumps(chunk)}\n\n"
        except APIError as e:
            error = {"message": e.message, "type": "server_error", "param": None, "code": e.code}
            yield f"data: {json.dumps({'error': error})}\n\n"
        yield "data: [DONE]\n\n"
    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
