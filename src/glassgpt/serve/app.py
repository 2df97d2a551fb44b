"""`create_app`: the OpenAI-compatible HTTP server over glassgpt models (its routes).

    app = create_app({"demo": load("runs/demo")}, api_key=None, max_batch=8, max_queue=64)
    uvicorn.run(app, host="127.0.0.1", port=8000)          # what `glassgpt serve` does

Endpoints (OpenAI's wire format; the official `openai` client works unchanged):

    GET  /v1/models
    POST /v1/completions        prompt (text, texts, ids, lists of ids), max_tokens (0 with echo:
                                only score), n, stop, seed, stream, logprobs (0-20), echo, the
                                sampler settings; extras: top_k, min_p, repetition_penalty,
                                logprobs_mode ("raw" | "processed"), return_entropy
    POST /v1/chat/completions   messages through the plain transcript template (serve/chat.py:
                                these are base models), logprobs + top_logprobs, stream
    POST /tokenize              {"prompt", "with_pieces"} -> ids (and their text pieces)
    POST /detokenize            {"tokens"} -> text
    GET  /health                open even when an API key is set
    GET  /metrics               Prometheus

Every request goes to the model's `Scheduler` (continuous batching, in the decoding
thread of `worker.py`). Logprobs: "raw" (default) are the model's own distribution at
T = 1 (log_softmax of the logits), whatever the sampler does; "processed" are the
distribution the token was drawn from, after the sampler chain (at T = 0 one-hot: the
other tokens get -9999.0, as vLLM writes -inf). Echoed prompt tokens are always scored
raw (nothing was sampled there). Errors use OpenAI's shape {"error": {"message", "type",
"param", "code"}}: 400 for a bad field (named in `param`), 401 without the right key, 404
for an unknown model, 413 for a body over the limit, 429 when the queue is full.

The models are `app.state.models` (name -> ServedModel); other routers (the glass page)
can read them and `app.state.worker.call(fn, ...)` runs work on the decoding thread.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import GlassError
from ..generate import PromptCache
from ..generate.samplers import SamplingParams
from ..generate.scheduler import Scheduler
from ..model import GPT
from .chat import STOPS, message_text, render_chat
from .errors import APIError, Gate, error_response
from .metrics import Metrics
from .responses import FINISH, Answer, sse, usage_of
from .schemas import (MAX_LOGPROBS, OPENAI_NAMES, ChatRequest, CompletionRequest, DetokenizeRequest, Sampling,
                      TokenizeRequest)
from .worker import ServedModel, Sink, Worker

MAX_BODY_BYTES = 4 * 2**20
DISCONNECT_CHECK = 0.25     # seconds between checks that a non-streaming client is still there
PROTECTED = ("/v1", "/tokenize", "/detokenize", "/metrics", "/glass")
COUNTED = {"/v1/models", "/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"}


def create_app(models: dict[str, GPT], *, api_key: str | None = None, draft: GPT | None = None,
               draft_tokens: int = 4, max_batch: int = 8, max_queue: int = 64,
               max_body_bytes: int = MAX_BODY_BYTES, prompt_cache_entries: int = 32) -> FastAPI:
    """A FastAPI app serving `models` (name -> GPT with a tokenizer) under their names.

    draft: a small model with the same vocabulary; a request arriving while its model is
    idle then decodes speculatively. max_batch: samples decoded together per model;
    max_queue: samples waiting beyond that before requests get 429."""
    if not models:
        raise GlassError("give at least one model to serve")
    served: dict[str, ServedModel] = {}
    for name, model in models.items():
        if model.tokenizer is None:
            raise GlassError(f"model {name!r} has no tokenizer: serve a run directory that has tokenizer.json")
        use_draft = draft if draft is not None and draft.config.vocab_size == model.config.vocab_size else None
        if draft is not None and use_draft is None:
            raise GlassError(f"the draft's vocabulary ({draft.config.vocab_size}) differs from {name!r}'s "
                             f"({model.config.vocab_size}): use a draft trained with the same tokenizer")
        cache = PromptCache(max_entries=prompt_cache_entries, max_bytes=256 * 2**20)
        scheduler = Scheduler(model, max_batch=max_batch, prompt_cache=cache, draft=use_draft,
                              draft_tokens=draft_tokens)
        served[name] = ServedModel(name, model.eval(), scheduler, cache, use_draft)
    metrics = Metrics()
    worker = Worker(served, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        worker.start()
        try:
            yield
        finally:
            worker.stop()

    app = FastAPI(title="glassgpt", description="OpenAI-compatible server for glassgpt models", lifespan=lifespan)
    app.state.models, app.state.worker, app.state.metrics = served, worker, metrics
    app.state.gpt_models = {name: s.model for name, s in served.items()}     # name -> GPT, for other routers
    app.state.max_batch, app.state.max_queue = max_batch, max_queue

    # -- errors in OpenAI's shape ----------------------------------------------------------------
    @app.exception_handler(APIError)
    async def api_error(request, e: APIError):
        return error_response(e.status, e.message, e.param, e.code)

    @app.exception_handler(GlassError)
    async def glass_error(request, e: GlassError):
        return error_response(400, str(e), param_of(str(e)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, e: RequestValidationError):
        first = e.errors()[0]
        if first.get("type") in ("json_invalid", "model_attributes_type") or first.get("loc") == ("body",):
            return error_response(400, f"the body is not a JSON object: {first.get('msg')} "
                                       f"(send JSON with Content-Type: application/json)", None, "invalid_json")
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        param = loc[0] if loc else None
        if param == "prompt":
            return error_response(400, "prompt must be text, a list of texts, a list of token ids (whole numbers) "
                                       "or a list of such lists", param, "invalid_type")
        where = ".".join(x for x in loc if "[" not in x and x not in ("str", "int")) or "body"
        return error_response(400, f"{where}: {first.get('msg')} (got {first.get('input')!r})"[:300], param,
                              "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e: StarletteHTTPException):
        if isinstance(e.__cause__, APIError):         # raised while FastAPI read the body (Gate)
            return await api_error(request, e.__cause__)
        return error_response(e.status_code, str(e.detail))

    @app.exception_handler(Exception)
    async def server_error(request, e: Exception):
        return error_response(500, f"internal error: {type(e).__name__}: {e}")

    def count(path: str, status: int) -> None:
        if path in COUNTED:
            metrics.requests.labels(path, str(status)).inc()

    app.add_middleware(Gate, limit=max_body_bytes, api_key=api_key, protected=PROTECTED, on_answer=count)

    # -- simple endpoints -------------------------------------------------------------------------
    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [
            {"id": s.name, "object": "model", "created": s.created, "owned_by": "glassgpt",
             "max_model_len": s.context_length, "vocab_size": s.model.config.vocab_size} for s in served.values()]}

    @app.post("/tokenize")
    async def tokenize(body: TokenizeRequest):
        s = pick(served, body.model)
        tok = s.model.tokenizer
        try:
            ids = tok.encode(body.prompt, allowed_special="all")
        except GlassError as e:
            raise APIError(400, str(e), "prompt") from None
        out = {"tokens": ids, "count": len(ids), "max_model_len": s.context_length}
        if body.with_pieces:
            out["pieces"] = [tok.id_to_str(i) for i in ids]
        return out

    @app.post("/detokenize")
    async def detokenize(body: DetokenizeRequest):
        s = pick(served, body.model)
        check_ids(body.tokens, s, "tokens")
        return {"prompt": s.model.tokenizer.decode(body.tokens)}

    # -- completions ------------------------------------------------------------------------------
    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        arrived = time.perf_counter()
        s = lookup(served, body.model)
        if body.suffix:
            raise APIError(400, "suffix is not supported: these models only continue text (leave it out)", "suffix")
        prompts = completion_prompts(body.prompt, s)
        max_tokens = 16 if body.max_tokens is None else body.max_tokens
        if max_tokens < 0 or (max_tokens == 0 and not body.echo):
            raise APIError(400, f"max_tokens must be >= 1 (0 only with echo, to score the prompt), got {max_tokens}",
                           "max_tokens")
        if body.logprobs is not None and not 0 <= body.logprobs <= MAX_LOGPROBS:
            raise APIError(400, f"logprobs must be in 0..{MAX_LOGPROBS}, got {body.logprobs}", "logprobs")
        settings = sampling_settings(body, max_tokens, body.logprobs)
        settings["constraint"] = constraint_of(body, s)
        options = dict(rank_by=body.logprobs_mode,
                       prompt_logprobs=body.logprobs if body.echo and body.logprobs is not None else None)
        sink = submit(s, prompts, settings, options, body.n)
        view = Answer(s, body.logprobs, body.logprobs_mode, body.return_entropy)
        ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            return sse(stream_completion(sink, view, ident, created, body, arrived, usage))
        await collect(sink, request, s, arrived)
        choices = []
        for job in sink.jobs:
            prefix = s.model.tokenizer.decode(job.prompt) if body.echo else ""
            for g in job.generations():
                choices.append({"index": len(choices), "text": prefix + g.text,
                                "logprobs": view.completion_logprobs(job, g.logprobs, body.echo),
                                "finish_reason": FINISH[g.finish_reason]})
        return {"id": ident, "object": "text_completion", "created": created, "model": s.name,
                "choices": choices, "usage": usage_of(sink.jobs)}

    async def stream_completion(sink: Sink, view, ident, created, body, arrived, include_usage):
        s = view.served

        def chunk(index, text, logprobs=None, finish=None):
            return {"id": ident, "object": "text_completion", "created": created, "model": s.name,
                    "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}]}

        n = body.n
        if body.echo:
            for i, job in enumerate(sink.jobs):
                for k in range(n):
                    yield chunk(i * n + k, s.model.tokenizer.decode(job.prompt),
                                view.completion_logprobs(job, [], True) if job.prompt_logprobs is not None
                                else None)
        async for job, k, event in tokens(sink, s, arrived):
            index = sink.jobs.index(job) * n + k
            if event is None:                     # a sample that ended without a last token (max_tokens=0)
                yield chunk(index, "", None, "length")
                continue
            counted = event.finish_reason != "eot" and event.logprob is not None
            lp = view.completion_logprobs(job, [event.logprob], False) if counted else None
            finish = FINISH[event.finish_reason] if event.finish_reason else None
            if event.text or lp or finish:
                yield chunk(index, event.text, lp, finish)
        if include_usage:
            yield {"id": ident, "object": "text_completion", "created": created, "model": s.name, "choices": [],
                   "usage": usage_of(sink.jobs)}

    # -- chat ---------------------------------------------------------------------------------------
    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        arrived = time.perf_counter()
        s = lookup(served, body.model)
        try:
            text = render_chat([(m.role, message_text(m.content)) for m in body.messages])
            ids = s.model.tokenizer.encode(text)
        except GlassError as e:
            raise APIError(400, str(e), "messages") from None
        if not ids:
            raise APIError(400, "the messages render to an empty prompt", "messages")
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        if max_tokens is None:
            max_tokens = s.context_length - len(ids)
            if max_tokens < 1:
                raise APIError(400, f"the messages take {len(ids)} tokens, the whole context of {s.context_length}: "
                                    f"send fewer or shorter messages", "messages")
        param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
        if max_tokens < 1:
            raise APIError(400, f"{param} must be >= 1, got {max_tokens}", param)
        top = body.top_logprobs
        if top is not None and not 0 <= top <= MAX_LOGPROBS:
            raise APIError(400, f"top_logprobs must be in 0..{MAX_LOGPROBS}, got {top}", "top_logprobs")
        k = (top or 0) if body.logprobs else None
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        settings = sampling_settings(body, max_tokens, k, stops + [x for x in STOPS if x not in stops])
        settings["constraint"] = constraint_of(body, s)
        sink = submit(s, [ids], settings, dict(rank_by=body.logprobs_mode), body.n, length_param=param)
        view = Answer(s, k, body.logprobs_mode, body.return_entropy)
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            return sse(stream_chat(sink, view, ident, created, body.n, arrived, usage))
        await collect(sink, request, s, arrived)
        (job,) = sink.jobs
        choices = [{"index": i, "message": {"role": "assistant", "content": g.text},
                    "logprobs": view.chat_logprobs(g.logprobs), "finish_reason": FINISH[g.finish_reason]}
                   for i, g in enumerate(job.generations())]
        return {"id": ident, "object": "chat.completion", "created": created, "model": s.name,
                "choices": choices, "usage": usage_of(sink.jobs)}

    async def stream_chat(sink: Sink, view, ident, created, n, arrived, include_usage):
        s = view.served

        def chunk(index, delta, logprobs=None, finish=None):
            return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": s.name,
                    "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}]}

        for i in range(n):
            yield chunk(i, {"role": "assistant", "content": ""})
        async for _, k, event in tokens(sink, s, arrived):
            if event is None:
                yield chunk(k, {}, None, "length")
                continue
            counted = event.finish_reason != "eot" and event.logprob is not None
            lp = view.chat_logprobs([event.logprob]) if counted else None
            finish = FINISH[event.finish_reason] if event.finish_reason else None
            if event.text or lp or finish:
                yield chunk(k, {"content": event.text} if event.text else {}, lp, finish)
        if include_usage:
            yield {"id": ident, "object": "chat.completion.chunk", "created": created, "model": s.name,
                   "choices": [], "usage": usage_of(sink.jobs)}

    # -- shared steps -----------------------------------------------------------------------------------
    def submit(s: ServedModel, prompts: list[list[int]], settings: dict, options: dict, n: int,
               length_param: str = "max_tokens") -> Sink:
        if n < 1 or n > max_batch:
            raise APIError(400, f"n must be in 1..{max_batch} (the server's --max-batch), got {n}", "n")
        context = s.context_length
        for ids in prompts:
            if len(ids) + settings["max_new_tokens"] > context:
                raise APIError(400, f"the prompt has {len(ids)} tokens and {length_param} is "
                                    f"{settings['max_new_tokens']}: {len(ids) + settings['max_new_tokens']} > the "
                                    f"context length {context}; ask for at most {max(0, context - len(ids))} tokens "
                                    f"or shorten the prompt", length_param, "context_length_exceeded")
        if len(prompts) * n > max_queue + max_batch:
            raise APIError(400, f"{len(prompts)} prompts x n={n} are {len(prompts) * n} samples; the server takes at "
                                f"most {max_queue + max_batch} at once: send fewer prompts per request", "prompt")
        if s.scheduler.queue_length + len(prompts) * n > max_queue:
            raise APIError(429, f"the queue is full ({s.scheduler.queue_length} samples waiting, limit {max_queue}): "
                                f"retry shortly", None, "queue_full")
        try:
            built = [(s.scheduler.request(ids, **settings), options) for ids in prompts]
        except GlassError as e:
            raise APIError(400, openai_words(str(e)), param_of(str(e)), "invalid_value") from None
        metrics.prompt_tokens.labels(s.name).inc(sum(map(len, prompts)))
        return worker.submit(s, built, asyncio.get_running_loop())

    async def tokens(sink: Sink, s: ServedModel, arrived: float):
        """(job, sample, event) per token as they come; (job, sample, None) for samples that
        ended without a token; cancels the jobs when the consumer goes away."""
        remaining, seen, last = set(sink.jobs), set(), {}
        try:
            while remaining:
                job, k, event = await sink.get()
                if k is None:
                    remaining.discard(job)
                    if sink.error:
                        raise APIError(500, sink.error, None, "server_error")
                    if job.error:
                        raise APIError(400, constraint_error(job), constraint_param(job), "invalid_value")
                    for j in range(job.n):
                        if (job, j) not in seen:
                            yield job, j, None
                    continue
                timing(s, job, k, event, arrived, last)
                if event.finish_reason is not None:
                    seen.add((job, k))
                yield job, k, event
        finally:
            if remaining:
                worker.cancel(sink)
            finish_metrics(s, sink.jobs)

    async def collect(sink: Sink, request: Request, s: ServedModel, arrived: float) -> None:
        """Wait for every job of a non-streamed request; a client that leaves cancels them."""
        remaining, last = set(sink.jobs), {}
        check = time.perf_counter() + DISCONNECT_CHECK
        try:
            while remaining:
                try:
                    job, k, event = await sink.get(timeout=DISCONNECT_CHECK)
                except asyncio.TimeoutError:
                    job = None
                if time.perf_counter() >= check:       # also while tokens flow
                    check = time.perf_counter() + DISCONNECT_CHECK
                    if await request.is_disconnected():
                        worker.cancel(sink)
                        raise APIError(499, "the client went away", None, "client_closed")
                if job is None:
                    continue
                if k is None:
                    remaining.discard(job)
                else:
                    timing(s, job, k, event, arrived, last)
        except asyncio.CancelledError:
            worker.cancel(sink)
            raise
        if sink.error:
            raise APIError(500, sink.error, None, "server_error")
        for job in sink.jobs:
            if job.error:                  # e.g. a constraint no text could satisfy within max_tokens
                raise APIError(400, constraint_error(job), constraint_param(job), "invalid_value")
        finish_metrics(s, sink.jobs)

    def timing(s, job, k, event, arrived, last) -> None:
        now = time.perf_counter()
        if not last:
            metrics.time_to_first_token.labels(s.name).observe(now - arrived)
        elif (job, k) in last:
            metrics.time_per_token.labels(s.name).observe(now - last[job, k])
        last[job, k] = now

    def finish_metrics(s, jobs) -> None:
        metrics.generated_tokens.labels(s.name).inc(sum(len(r.ids) for j in jobs for r in j.rows))
        metrics.cached_tokens.labels(s.name).inc(sum(j.cached_tokens for j in jobs))

    # -- the glass page: its /glass/* API (on the page's own copies of the models) and its files at /
    from .glass import glass_router, mount_page
    glass = glass_router(models, draft=draft)
    app.include_router(glass)
    app.state.glass = glass.glass
    mount_page(app)
    return app


# -- pieces of the handlers ---------------------------------------------------------------------------
def lookup(served: dict[str, ServedModel], name: str) -> ServedModel:
    if name not in served:
        raise APIError(404, f"unknown model {name!r}: this server has {', '.join(map(repr, served))}", "model",
                       "model_not_found")
    return served[name]


def pick(served: dict[str, ServedModel], name: str | None) -> ServedModel:
    if name is None:
        if len(served) == 1:
            return next(iter(served.values()))
        raise APIError(400, f"name the model: one of {', '.join(map(repr, served))}", "model")
    return lookup(served, name)


def check_ids(ids: list[int], s: ServedModel, param: str) -> None:
    V = s.model.config.vocab_size
    bad = [i for i in ids if not 0 <= i < V]
    if bad:
        raise APIError(400, f"token id {bad[0]} is outside the vocabulary (0..{V - 1})", param)


def completion_prompts(prompt, s: ServedModel) -> list[list[int]]:
    """The four prompt shapes of /v1/completions -> one list of ids per prompt."""
    tok = s.model.tokenizer
    if isinstance(prompt, str):
        prompt = [prompt]
    if not prompt:
        raise APIError(400, "prompt is empty: give text or token ids", "prompt")
    if all(isinstance(p, int) for p in prompt):
        prompt = [prompt]
    out = []
    for p in prompt:
        try:
            ids = tok.encode(p, allowed_special="all") if isinstance(p, str) else list(p)
        except GlassError as e:
            raise APIError(400, str(e), "prompt") from None
        if not ids:
            raise APIError(400, "a prompt is empty: give at least one token (e.g. '<|endoftext|>')", "prompt")
        check_ids(ids, s, "prompt")
        out.append(ids)
    return out


def sampling_settings(body, max_tokens: int, logprobs: int | None, stop=None) -> dict:
    """The request's fields as `generate` settings (fields left out keep the library's defaults)."""
    settings = {name: getattr(body, name) for name in Sampling.model_fields if getattr(body, name) is not None}
    if "logit_bias" in settings:
        bias = {}
        for key, value in settings["logit_bias"].items():
            try:
                bias[int(key)] = value
            except ValueError:
                raise APIError(400, f"logit_bias keys are token ids, got {key!r}", "logit_bias") from None
        settings["logit_bias"] = bias
    if stop is None:
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if any(not s for s in stop):
        raise APIError(400, "stop strings must not be empty", "stop")
    if body.seed is not None and not -2**63 <= body.seed < 2**63:
        raise APIError(400, f"seed must fit in 64 bits (-2**63 .. 2**63 - 1), got {body.seed}", "seed")
    settings.update(max_new_tokens=max_tokens, num_samples=1 if body.n < 1 else body.n, stop=stop or None,
                    seed=body.seed, logprobs=logprobs)
    if body.return_entropy and logprobs is None:
        settings["logprobs"] = 0
    return settings


def constraint_of(body, s: ServedModel):
    """The constraint the request's response_format / guided_* fields ask for, compiled for
    the model's tokenizer now, so a bad one is a 400 naming its field; or None."""
    from ..generate.constraints import constraint_from_fields
    from ..generate.token_masks import compile_constraint

    fields = dict(response_format=body.response_format, guided_choice=body.guided_choice,
                  guided_regex=body.guided_regex, guided_grammar=body.guided_grammar)
    try:
        constraint = constraint_from_fields(**fields)
    except GlassError as e:
        raise APIError(400, str(e), str(e).split(":")[0], "invalid_value") from None
    if constraint is None:
        return None
    field = next(name for name, value in fields.items() if value is not None and
                 not (name == "response_format" and value.get("type") == "text"))
    try:
        compile_constraint(constraint, s.model.tokenizer, s.model.config.vocab_size)
    except GlassError as e:
        raise APIError(400, f"{field}: {e}", field, "invalid_value") from None
    constraint.field = field           # named again if decoding finds no text that satisfies it
    return constraint


def constraint_error(job) -> str:
    param = constraint_param(job)
    return f"{param}: {openai_words(job.error)}" if param else openai_words(job.error)


def constraint_param(job) -> str | None:
    constraint = job.request.constraint
    return getattr(constraint.constraint, "field", None) if constraint is not None else None


def param_of(message: str) -> str | None:
    """The request field a library message is about (it starts with the setting's name)."""
    for name in sorted(set(SamplingParams.__dataclass_fields__) | {"max_new_tokens", "num_samples", "stop",
                                                                    "seed", "logprobs"}, key=len, reverse=True):
        if message.startswith(name) or message.startswith(f"the {name}"):
            return OPENAI_NAMES.get(name, name)
    if "stop" in message:
        return "stop"
    return None


def openai_words(message: str) -> str:
    for ours, theirs in OPENAI_NAMES.items():
        message = message.replace(ours, theirs)
    return message
