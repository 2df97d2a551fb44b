"""The glass page's JSON API: every number inside the served models, for a browser.

    router = glass_router({"demo": model})       # FastAPI APIRouter under /glass
    app.include_router(router); mount_page(app)  # the page itself at /

Endpoints (POST bodies are JSON; every one names its `model`, and a text as `text` or `ids`;
`remove` lists parts taken out, e.g. ["head 0.1", "feed-forward 1"]):

    GET  /glass/models                     each model's config and pipeline (stage, shape, parameters)
    POST /glass/trace                      tokens with probability, rank, surprisal, entropy; attention
                                           thumbnails; the text's loss (and the intact loss); the data
                                           of `position` (default: the last), as /glass/position; with
                                           open_head [layer, head] that head's pattern, as /glass/attention
    POST /glass/position                   at one position: all next-token logits (float32, base64),
                                           every head's attention row, the logit lens
    POST /glass/attention                  one head's full pattern {layer, head}
    POST /glass/activation                 one stage's output vector at a position {probe, position}
    POST /glass/lens                       the logit lens at {position}, or at every position without it
    POST /glass/ablate                     loss and next-token logits with `remove` against the intact model
    POST /glass/session                    start a generation session {model, text} -> its state
    GET  /glass/session/{id}               the state: ids, pieces, the logits after the context, every step
    POST /glass/session/{id}/step          sample one token with {temperature, top_k, top_p, min_p, seed},
                                           or append a chosen one {token}, or with {draft: true,
                                           draft_tokens: k} one speculative step: the draft's proposals,
                                           which the target accepted, and its own token
    POST /glass/session/{id}/rewind        keep the first {position} tokens
    POST /glass/session/{id}/substitute    replace from {position} on with {text}
    POST /glass/session/{id}/undo          back to before the last change
    DELETE /glass/session/{id}

Everything is a library call: `glassgpt.inspect.page_data` (trace, lens, ablation),
`glassgpt.generate.Session` and the sampler chain. The page probes and edits a model, so
it works on its own copy of each model: the OpenAI endpoints' generations never see an edit.
Bad input answers 4xx with {"error": {"message", "type", "param", "code"}}.
"""
from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from importlib import resources

import torch
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from ..errors import GlassError
from ..generate import SamplerChain, SamplingParams, Session
from ..generate.speculative import speculative_step
from ..inspect import page_data
from ..model import GPT
from ..inspect.lens import logit_lens
from ..inspect.trace import token_text
from ..jsonsafe import json_safe

MAX_SESSIONS = 32
MAX_STEPS = 512              # steps kept per session
TRACE_CACHE = 8


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_response(status: int, message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status)


def web_dir():
    """The page's files, shipped inside the package."""
    return resources.files("glassgpt") / "web"


def mount_page(app: FastAPI, path: str = "/") -> None:
    """Serve the page's files at `path` (mount it after every other route)."""
    app.mount(path, StaticFiles(directory=str(web_dir()), html=True), name="glass-page")


def own_copy(model: GPT) -> GPT:
    """The same weights in a model of the page's own: a new GPT loaded from the state dict
    (not a deepcopy: a served model may hold a fast-decoding scope's packed weight copies)."""
    twin = GPT(model.config, tokenizer=model.tokenizer)
    twin.load_state_dict(model.state_dict())
    return twin.to(model.device).eval()


class GlassModels:
    """The page's own copies of the served models, one lock each, recent traces and sessions."""

    def __init__(self, models: dict, draft=None):
        if not models:
            raise GlassError("the glass page needs at least one model")
        self.models = {name: own_copy(m) for name, m in models.items()}
        self.locks = {name: threading.Lock() for name in self.models}
        self.draft = own_copy(draft) if draft is not None else None
        self.traces: OrderedDict = OrderedDict()
        self.sessions: OrderedDict = OrderedDict()
        self.guard = threading.Lock()

    def model(self, body: dict):
        name = body.get("model")
        if name is None and len(self.models) == 1:
            name = next(iter(self.models))
        if name not in self.models:
            raise ApiError(404, f"no model named {name!r}: this server has {', '.join(sorted(self.models))}",
                           "model", "model_not_found")
        return name, self.models[name]

    def traced(self, name: str, model, body: dict):
        """(ids, total, dropped, data, trace, intact) for the body's text, from the cache when recent."""
        text, ids = body.get("text"), body.get("ids")
        remove = body.get("remove") or []
        if not isinstance(remove, list) or not all(isinstance(r, str) for r in remove):
            raise ApiError(400, "remove must be a list of part names, e.g. [\"head 0.1\"]", "remove")
        if text is None and ids is None:
            raise ApiError(400, "give the text to look at as `text` (or token `ids`)", "text")
        ids, total, dropped = page_data.encode(model, text, ids)
        key = (name, tuple(ids), tuple(dict.fromkeys(remove)))
        with self.guard:
            hit = self.traces.get(key)
            if hit is not None:
                self.traces.move_to_end(key)
                return (ids, total, dropped, *hit)
        data, t, intact = page_data.trace_data(model, ids, remove=remove, total=total, dropped=dropped)
        with self.guard:
            self.traces[key] = (data, t, intact)
            while len(self.traces) > TRACE_CACHE:
                self.traces.popitem(last=False)
        return ids, total, dropped, data, t, intact

    def session(self, sid: str) -> dict:
        with self.guard:
            s = self.sessions.get(sid)
        if s is None:
            raise ApiError(404, f"no session {sid!r} (sessions end when the server restarts): start a new one",
                           "id", "session_not_found")
        return s


def glass_router(models: dict, draft=None) -> APIRouter:
    """The /glass/* endpoints over `models` ({name: GPT}); `draft` is the server's draft model, if any."""
    glass = GlassModels(models, draft)
    router = APIRouter(prefix="/glass", tags=["glass page"])
    router.glass = glass

    async def call(request: Request, work, *args):
        try:
            raw = await request.body()
            body = json.loads(raw) if raw else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return error_response(400, f"the request body is not valid JSON: {e}", None, "invalid_json")
        if not isinstance(body, dict):
            return error_response(400, "the request body must be a JSON object", None, "invalid_json")
        try:
            result = await run_in_threadpool(work, body, *args)
        except ApiError as e:
            return error_response(e.status, e.message, e.param, e.code)
        except GlassError as e:
            return error_response(400, str(e))
        return JSONResponse(json_safe(result))

    def locked(name):
        return glass.locks[name]

    # -- the model and one text --------------------------------------------------------------
    @router.get("/models")
    async def models_(request: Request):
        return await call(request, lambda body: {
            "models": [page_data.model_info(n, m) for n, m in glass.models.items()],
            "draft": None if glass.draft is None else {"parameters": glass.draft.num_parameters(),
                                                       "config": json.loads(glass.draft.config.to_json())}})

    def do_trace(body):
        name, model = glass.model(body)
        with locked(name):
            ids, total, dropped, data, t, intact = glass.traced(name, model, body)
            position = body.get("position")
            position = len(ids) - 1 if position is None else position
            out = dict(data, model=name, position=page_data.position_data(model, t, position, intact))
            if body.get("open_head") is not None:                 # the head the page has open: no second trip
                head = body["open_head"]
                if not (isinstance(head, list) and len(head) == 2):
                    raise ApiError(400, "open_head is [layer, head]", "open_head")
                out["matrix"] = page_data.attention_matrix(t, *head)
        if dropped:
            out["warning"] = (f"the prompt has {total} tokens but the context holds {len(ids)}: showing the last "
                              f"{len(ids)} (the first {dropped} are cropped)")
        return out

    @router.post("/trace")
    async def trace_(request: Request):
        return await call(request, do_trace)

    def do_position(body):
        name, model = glass.model(body)
        with locked(name):
            ids, _, _, _, t, intact = glass.traced(name, model, body)
            return page_data.position_data(model, t, body.get("position", len(ids) - 1), intact)

    @router.post("/position")
    async def position_(request: Request):
        return await call(request, do_position)

    def do_attention(body):
        name, model = glass.model(body)
        with locked(name):
            _, _, _, _, t, _ = glass.traced(name, model, body)
            return page_data.attention_matrix(t, body.get("layer"), body.get("head"))

    @router.post("/attention")
    async def attention_(request: Request):
        return await call(request, do_attention)

    def do_activation(body):
        name, model = glass.model(body)
        probe = body.get("probe")
        if not isinstance(probe, str):
            raise ApiError(400, "probe must name a stage's probe, e.g. \"blocks.0.attn.out\"", "probe")
        with locked(name):
            ids, _, _ = page_data.encode(model, body.get("text"), body.get("ids"))
            return page_data.activation(model, ids, probe, body.get("position", len(ids) - 1),
                                        body.get("remove") or [])

    @router.post("/activation")
    async def activation_(request: Request):
        return await call(request, do_activation)

    def do_lens(body):
        name, model = glass.model(body)
        with locked(name):
            ids, _, _, _, t, _ = glass.traced(name, model, body)
            if body.get("position") is None:
                return logit_lens(model, t).to_dict()
            position = body["position"]
            if not isinstance(position, int) or not 0 <= position < len(ids):
                raise ApiError(400, f"position must be in 0 .. {len(ids) - 1}, got {position!r}", "position")
            return page_data.lens_at(model, t, position)

    @router.post("/lens")
    async def lens_(request: Request):
        return await call(request, do_lens)

    def do_ablate(body):
        name, model = glass.model(body)
        if not body.get("remove"):
            raise ApiError(400, "remove lists the parts to take out, e.g. [\"head 0.1\"]", "remove")
        with locked(name):
            ids, _, _, data, t, intact = glass.traced(name, model, body)
            position = body.get("position", len(ids) - 1)
            return {"model": name, "removed": data["removed"], "loss": data["loss"],
                    "intact_loss": data["intact_loss"],
                    "loss_change": (None if data["loss"] is None else data["loss"] - data["intact_loss"]),
                    "token_loss_change": data.get("token_loss_change"),
                    "position": page_data.position_data(model, t, position, intact)}

    @router.post("/ablate")
    async def ablate_(request: Request):
        return await call(request, do_ablate)

    # -- step through generation ------------------------------------------------------------
    def state(s: dict) -> dict:
        session: Session = s["session"]
        tok = session.tokenizer
        with locked(s["model"]):
            logits = session.next_logits() if session.ids else None
        out = {"id": s["id"], "model": s["model"], "ids": session.ids,
               "pieces": [token_text(tok, i) for i in session.ids], "text": session.text, "steps": s["steps"],
               "context_length": session.model.config.context_length}
        if logits is not None:
            out["logits"] = page_data.f32(logits)
            out["vocab_size"] = logits.numel()
            out["pieces_top"] = {str(i): token_text(tok, i) for i in logits.topk(min(page_data.TOP,
                                                                                       logits.numel())).indices.tolist()}
        return out

    def sampling(body: dict, vocab_size: int) -> SamplingParams:
        fields = {k: body[k] for k in ("temperature", "top_k", "top_p", "min_p") if body.get(k) is not None}
        try:
            return SamplingParams(**fields).validate(vocab_size)
        except TypeError as e:
            raise ApiError(400, f"bad sampling setting: {e}") from None

    def do_start(body):
        name, model = glass.model(body)
        session = Session(model)
        text, ids = body.get("text"), body.get("ids")
        with locked(name):
            ids, _, _ = page_data.encode(model, text, ids)
            session.append(ids)
        s = {"id": uuid.uuid4().hex[:12], "model": name, "session": session, "steps": []}
        with glass.guard:
            glass.sessions[s["id"]] = s
            while len(glass.sessions) > MAX_SESSIONS:
                glass.sessions.popitem(last=False)
        return state(s)

    @router.post("/session")
    async def start_(request: Request):
        return await call(request, do_start)

    @router.get("/session/{sid}")
    async def get_(request: Request, sid: str):
        return await call(request, lambda body: state(glass.session(sid)))

    @router.delete("/session/{sid}")
    async def delete_(request: Request, sid: str):
        def work(body):
            glass.session(sid)
            with glass.guard:
                glass.sessions.pop(sid, None)
            return {"deleted": sid}
        return await call(request, work)

    def do_step(body, sid):
        s = glass.session(sid)
        session: Session = s["session"]
        V = session.model.config.vocab_size
        params = sampling(body, V)
        token, seed = body.get("token"), body.get("seed")
        if token is not None and (isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < V):
            raise ApiError(400, f"token must be an id in the vocabulary (0 .. {V - 1}), got {token!r}", "token")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ApiError(400, f"seed must be a whole number, got {seed!r}", "seed")
        if len(session.ids) >= session.model.config.context_length:
            raise ApiError(400, f"the context is full ({len(session.ids)} tokens): rewind first", "id")
        speculative = body.get("draft") is True
        k = body.get("draft_tokens", 4)
        if speculative and glass.draft is None:
            raise ApiError(400, "this server has no draft model: start it with --draft DRAFT_RUN", "draft")
        if speculative and (token is not None or isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 16):
            raise ApiError(400, "a speculative step samples (no token) with draft_tokens in 1 .. 16", "draft_tokens")
        if speculative and glass.draft.config.vocab_size != V:
            raise ApiError(400, "the draft's vocabulary differs from this model's", "draft")
        spec, start = None, len(session.ids)
        with locked(s["model"]):
            logits = session.next_logits()                                       # (V,) before this step
            after = SamplerChain(params, V).probabilities(logits[None])[0]         # what the chain samples from
            if speculative:
                spec = speculative_step(session.model, glass.draft, session.ids, params, draft_tokens=k, seed=seed)
                room = session.model.config.context_length - len(session.ids)
                session.append(spec["tokens"][:room])
                chosen, how = spec["tokens"][0], "speculative"
            elif token is None:
                g = session.generate(1, temperature=params.temperature, top_k=params.top_k, top_p=params.top_p,
                                     min_p=params.min_p, seed=seed)
                if not g.ids:
                    raise ApiError(400, "the model ended the text (end-of-text token): rewind or substitute", "id")
                chosen, how = g.ids[0], "sampled"
            else:
                session.append([token])
                chosen, how = token, "picked"
        raw = torch.softmax(logits, dim=-1)
        top = raw.topk(min(page_data.TOP, V)).indices.tolist()
        tok = session.tokenizer
        step = {"position": start, "id": chosen, "piece": token_text(tok, chosen), "how": how,
                "settings": {"temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p,
                             "min_p": params.min_p, "seed": seed},
                "prob": raw[chosen].item(), "prob_after": after[chosen].item(),
                "top": [{"id": i, "piece": token_text(tok, i), "prob": raw[i].item(), "prob_after": after[i].item()}
                        for i in top]}
        if spec is not None:
            n = spec["accepted"]
            step["speculative"] = {
                "proposed": [{"id": i, "piece": token_text(tok, i), "accepted": j < n}
                             for j, i in enumerate(spec["proposed"])],
                "accepted": n, "tokens": [{"id": i, "piece": token_text(tok, i)} for i in spec["tokens"]],
                "target_token": ({"id": spec["tokens"][n], "piece": token_text(tok, spec["tokens"][n]),
                                  "replaces": n < len(spec["proposed"])} if n < len(spec["tokens"]) else None)}
        s["steps"] = (s["steps"] + [step])[-MAX_STEPS:]
        return state(s)

    @router.post("/session/{sid}/step")
    async def step_(request: Request, sid: str):
        return await call(request, do_step, sid)

    def edit_session(body, sid, what):
        s = glass.session(sid)
        session: Session = s["session"]
        position = body.get("position")
        with locked(s["model"]):
            if what == "undo":
                session.undo()
            elif not isinstance(position, int) or isinstance(position, bool):
                raise ApiError(400, f"position must be a whole number in 0 .. {len(session.ids)}", "position")
            elif what == "rewind":
                session.rewind_to(position)
            else:
                text = body.get("text")
                if not isinstance(text, str) or not text:
                    raise ApiError(400, "substitute needs the new `text`", "text")
                page_data.encode(session.model, text)                    # the same checks as a prompt
                if position + len(session.tokenizer.encode(text)) > session.model.config.context_length:
                    raise ApiError(400, f"the result would exceed the context of "
                                        f"{session.model.config.context_length} tokens", "text")
                session.substitute(position, text)
            if not session.ids:
                session.undo()
                raise ApiError(400, "a session needs at least one token: rewind to position 1 or later", "position")
        return state(s)

    for what in ("rewind", "substitute", "undo"):
        async def endpoint(request: Request, sid: str, what=what):
            return await call(request, edit_session, sid, what)
        router.add_api_route(f"/session/{{sid}}/{what}", endpoint, methods=["POST"], name=f"session_{what}")

    return router


def glass_app(models: dict, draft=None) -> FastAPI:
    """A server with the glass API and the page only (the OpenAI endpoints are `glassgpt serve`'s)."""
    app = FastAPI(title="glassgpt glass page")
    router = glass_router(models, draft)
    app.include_router(router)
    app.state.glass = router.glass
    mount_page(app)
    return app
