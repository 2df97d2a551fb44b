"""The numbers the glass page shows, as JSON-ready dicts.

The page (glassgpt/web/) draws; everything it shows is computed here by the library:
a trace (`trace`), the logit lens's readout (`lens_logits`), ablations (`removed`), the
pipeline's shapes and parameter counts read off the model itself. The server's
/glass/* endpoints (glassgpt.serve.glass) and the static export (`export_html`) both
call these functions, so a number means the same thing in both.

Large arrays travel as base64 of little-endian float32 (`f32`) or of bytes 0..255
(`u8`, attention thumbnails): a 50k-entry logit vector is 270 kB, not 1 MB of digits.
"""
from __future__ import annotations

import base64
import contextlib
import json
import math
import warnings
from importlib import resources

import numpy as np
import torch

from ..errors import GlassError
from .ablation import removed
from .lens import lens_logits
from ..jsonsafe import json_safe
from ..model.inputs import crop_to_context
from .trace import LN2, Trace, evaluating, token_text, trace

THUMB = 64            # attention thumbnails are at most THUMB x THUMB (max-pooled when longer)
TOP = 20              # bars in the output view
EXPORT_FULL_LOGITS = 4_000_000   # the export keeps whole distributions up to T x V numbers, else the top EXPORT_TOP
EXPORT_TOP = 1000


# -- encodings ------------------------------------------------------------------------------------
def f32(t: torch.Tensor) -> str:
    """A tensor as base64 of its float32 values (little-endian, row-major)."""
    return base64.b64encode(np.ascontiguousarray(t.detach().float().cpu().numpy(), dtype="<f4").tobytes()).decode()


def decode_f32(text: str) -> torch.Tensor:
    """The inverse of `f32`: base64 float32 -> a flat float32 tensor."""
    return torch.from_numpy(np.frombuffer(base64.b64decode(text), dtype="<f4").copy())


def u8(t: torch.Tensor) -> str:
    """Values in [0, 1] as base64 of bytes 0..255 (for pictures only)."""
    b = (t.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return base64.b64encode(np.ascontiguousarray(b).tobytes()).decode()


# -- the model --------------------------------------------------------------------------------------
def count(*modules) -> int:
    return sum(p.numel() for m in modules if m is not None for p in m.parameters())


def pipeline(model) -> list[dict]:
    """Every stage of this model in order, with the probe that holds its output, its shape per
    position, its parameter count, and the part name that removes it (if it can be removed)."""
    cfg = model.config
    C, V = cfg.d_model, cfg.vocab_size
    stages = [{"name": "embed", "label": "token embedding", "probe": "embed", "shape": ["T", C],
               "params": count(model.embed), "detail": f"one learned {C}-vector per token id ({V} ids)"}]
    if model.positional_encoding is not None:
        stages.append({"name": "positional_encoding", "label": f"+ positional encoding ({cfg.positional})",
                       "probe": "positional_encoding", "shape": ["T", C],
                       "params": count(model.positional_encoding), "remove": "positional encoding"})
    elif cfg.positional == "rope":
        stages.append({"name": "rope", "label": "rotary positions (inside attention)", "probe": None,
                       "shape": None, "params": 0, "remove": "positional encoding (rope)"})
    for i, block in enumerate(model.blocks):
        b = f"blocks.{i}."
        norm_where = "before" if cfg.norm == "pre" else "after"
        stages += [
            {"name": b + "attn_norm", "label": f"LayerNorm ({norm_where} attention)", "probe": b + "attn_norm",
             "shape": ["T", C], "params": count(block.attn_norm), "remove": f"attn_norm {i}", "block": i},
            {"name": b + "attn", "label": f"attention ({cfg.n_head} heads x {cfg.head_dim})", "probe": b + "attn.out",
             "shape": ["T", C], "params": count(block.attention), "remove": f"attention {i}", "block": i,
             "detail": "qkv (T, 3C) -> heads (H, T, hd) -> softmax(QK^T/sqrt(hd)) V -> proj"},
            {"name": b + "resid_mid", "label": "+ residual", "probe": b + "resid_mid", "shape": ["T", C],
             "params": 0, "block": i},
            {"name": b + "ff_norm", "label": f"LayerNorm ({norm_where} feed-forward)", "probe": b + "ff_norm",
             "shape": ["T", C], "params": count(block.ff_norm), "remove": f"ff_norm {i}", "block": i},
            {"name": b + "ff", "label": f"feed-forward ({C} -> {cfg.d_ff} -> {C}, {cfg.activation})",
             "probe": b + "ff.out", "shape": ["T", C], "params": count(block.feed_forward),
             "remove": f"feed-forward {i}", "block": i},
            {"name": b + "resid_post", "label": f"+ residual: leaves block {i}", "probe": b + "resid_post",
             "shape": ["T", C], "params": 0, "remove": f"block {i}", "block": i},
        ]
    if cfg.norm == "pre":
        stages.append({"name": "final_norm", "label": "final LayerNorm", "probe": "final_norm", "shape": ["T", C],
                       "params": count(model.final_norm), "remove": "final_norm"})
    tied = model.unembed.weight is model.embed.weight
    stages += [{"name": "unembed", "label": "unembed" + (" (shares the embedding matrix)" if tied else ""),
                "probe": "logits", "shape": ["T", V], "params": 0 if tied else count(model.unembed)},
               {"name": "softmax", "label": "softmax -> next-token probabilities", "probe": "softmax",
                "shape": ["T", V], "params": 0}]
    return stages


def model_info(name: str, model) -> dict:
    cfg = model.config
    return {"name": name, "config": json.loads(cfg.to_json()), "parameters": model.num_parameters(),
            "pipeline": pipeline(model), "has_tokenizer": model.tokenizer is not None}


# -- one text -------------------------------------------------------------------------------------------
def encode(model, text=None, ids=None) -> tuple[list[int], int, int]:
    """The text (or ids) as the ids the page traces: (ids cropped to the context, total, dropped)."""
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise GlassError("ids must be a list of whole numbers")
        bad = [i for i in ids if not 0 <= i < model.config.vocab_size]
        if bad:
            raise GlassError(f"token id {bad[0]} is outside the vocabulary (0 .. {model.config.vocab_size - 1})")
    else:
        if not isinstance(text, str):
            raise GlassError("text must be a string")
        if model.tokenizer is None:
            raise GlassError("this model has no tokenizer.json: send ids instead of text")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise GlassError(f"the text is not valid Unicode (a lone surrogate at character {e.start}): "
                             f"paste it again as UTF-8 text") from None
        ids = list(model.tokenizer.encode(text, allowed_special="all"))
    if not ids:
        raise GlassError("the prompt is empty: type some text")
    total = len(ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids, dropped = crop_to_context(ids, model.config.context_length)
    return ids, total, dropped


def ablated_trace(model, ids: list[int], remove=()) -> Trace:
    """The trace of `ids` with the named parts removed (the library's ablation edits)."""
    part = removed(model, remove)
    context = part.context(model) if part.context else contextlib.nullcontext()
    with context:
        return trace(model, ids, edit=part.edits or None)


def text_loss(t: Trace) -> float | None:
    """Mean negative log-probability of the text's tokens, in nats (None for one token)."""
    return -t.next_log_prob.mean().item() if len(t.ids) > 1 else None


def thumbnails(attention: torch.Tensor, size: int = THUMB) -> dict:
    """(L, H, T, T) -> every pattern as at most size x size bytes (max-pooled), for the grid."""
    L, H, T, _ = attention.shape
    a = attention.reshape(L * H, 1, T, T)
    if T > size:
        a = torch.nn.functional.adaptive_max_pool2d(a, size)
    n = a.shape[-1]
    return {"size": n, "data": u8(a.reshape(L, H, n, n))}


def token_rows(t: Trace) -> list[dict]:
    """Per position: the token, and how expected it was (from the position before it)."""
    entropy = t.entropy()
    rows = []
    for i, (token_id, piece) in enumerate(zip(t.ids, t.tokens)):
        row = {"id": token_id, "piece": piece, "entropy_bits": entropy[i].item() / LN2}
        if i > 0:
            lp = t.next_log_prob[i - 1].item()
            row.update(prob=math.exp(lp), rank=int(t.next_rank[i - 1]), surprisal_bits=-lp / LN2 + 0.0)
        rows.append(row)
    return rows


def trace_data(model, ids: list[int], *, remove=(), total: int | None = None, dropped: int = 0) -> tuple[dict, Trace,
                                                                                                        Trace | None]:
    """Views 1 and 3 (tokens, attention grid) and the loss, with the parts in `remove` taken out.
    Returns the JSON dict and the traces (ablated, intact or None) for `position_data`."""
    t = ablated_trace(model, ids, remove)
    intact = trace(model, ids, attention=False) if remove else None
    data = {"ids": t.ids, "tokens": token_rows(t), "total_tokens": total or len(ids), "dropped": dropped,
            "context_length": model.config.context_length, "removed": list(dict.fromkeys(remove)),
            "loss": text_loss(t), "intact_loss": text_loss(intact) if intact is not None else text_loss(t),
            "perplexity": t.perplexity, "attention_thumbs": thumbnails(t.attention),
            "n_layer": model.config.n_layer, "n_head": model.config.n_head}
    if intact is not None:                         # the change per token, against the intact model
        data["token_loss_change"] = (intact.next_log_prob - t.next_log_prob).tolist()
    return data, t, intact


def position_data(model, t: Trace, position: int, intact: Trace | None = None, top: int | None = None) -> dict:
    """Views 4 and 5 at one position: the next-token logits (the page runs the sampler chain on
    them), the attention row of every head, and the logit lens at this position."""
    T = len(t.ids)
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < T:
        raise GlassError(f"position must be a whole number in 0 .. {T - 1}, got {position!r}")
    logits = t.logits[position]                                           # (V,)
    out = {"position": position, "vocab_size": logits.numel(), "attention_rows": f32(t.attention[:, :, position, :T]),
           "lens": lens_at(model, t, position)}
    out.update(logit_payload(logits, top))
    top_ids = logits.topk(min(TOP, logits.numel())).indices.tolist()
    out["pieces"] = {str(i): token_text(t.tokenizer, i) for i in top_ids}
    if intact is not None:
        out["intact"] = logit_payload(intact.logits[position], top)
        out["pieces"].update({str(i): token_text(t.tokenizer, i)
                              for i in intact.logits[position].topk(min(TOP, logits.numel())).indices.tolist()})
    return out


def logit_payload(logits: torch.Tensor, top: int | None) -> dict:
    """All V logits, or only the `top` largest with their ids (the export of a big vocabulary)."""
    if top is None or top >= logits.numel():
        return {"logits": f32(logits)}
    values, ids = logits.topk(top)
    return {"logits": f32(values), "logit_ids": ids.tolist(), "sparse": True}


def lens_at(model, t: Trace, position: int) -> dict:
    """The logit lens at one position: each depth's top token, its probability, and the
    probability it gives the model's final prediction."""
    probs = torch.softmax(lens_logits(model, t.residual[:, position]), dim=-1)   # (L + 1, V)
    final = int(t.logits[position].argmax())
    p, i = probs.max(-1)
    return {"layers": ["embed"] + [f"block {k}" for k in range(len(t.residual) - 1)],
            "top_ids": i.tolist(), "top_tokens": [token_text(t.tokenizer, k) for k in i.tolist()],
            "top_probs": p.tolist(), "final_id": final, "final_token": token_text(t.tokenizer, final),
            "final_prob": probs[:, final].tolist()}


def attention_matrix(t: Trace, layer: int, head: int) -> dict:
    L, H = t.attention.shape[:2]
    if not (isinstance(layer, int) and isinstance(head, int) and 0 <= layer < L and 0 <= head < H):
        raise GlassError(f"layer and head must be in 0 .. {L - 1} and 0 .. {H - 1}, got {layer!r}, {head!r}")
    return {"layer": layer, "head": head, "size": len(t.ids), "pattern": f32(t.attention[layer, head])}


def stage_vectors(model, ids: list[int], probes: list[str], remove=()) -> dict[str, torch.Tensor]:
    """The activations (T, width) of pipeline stages, read from their probes in one pass
    ("softmax" is the probabilities computed from the logits)."""
    names = [p for p in probes if p != "softmax"]
    if "softmax" in probes and "logits" not in names:
        names.append("logits")
    valid = set(model.probe_names())
    unknown = [p for p in names if p not in valid]
    if unknown:
        raise GlassError(f"no stage reads probe {unknown[0]!r}: pick a stage of this model's pipeline")
    part = removed(model, remove)
    context = part.context(model) if part.context else contextlib.nullcontext()
    x = torch.tensor([ids], dtype=torch.long, device=model.device)
    with torch.no_grad(), evaluating(model), context, model.probing(read=names, edit=part.edits or None) as seen:
        model(x)
    out = {}
    for name in names:
        a = seen[name].float()
        a = a[0] if a.dim() == 3 else a                                # positional encoding may be (T, C)
        out[name] = a.reshape(len(ids), -1).cpu()
    if "softmax" in probes:
        out["softmax"] = torch.softmax(out["logits"], dim=-1)
    return {p: out[p] for p in probes}


def activation(model, ids: list[int], probe: str, position: int, remove=()) -> dict:
    """One stage's output vector at one position: a heat strip and its norm."""
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < len(ids):
        raise GlassError(f"position must be a whole number in 0 .. {len(ids) - 1}, got {position!r}")
    v = stage_vectors(model, ids, [probe], remove)[probe][position]
    return {"probe": probe, "position": position, "size": v.numel(), "norm": v.norm().item(), "vector": f32(v)}


# -- the static export -------------------------------------------------------------------------------------
def export_data(name: str, model, text: str) -> dict:
    """Everything views 1-5 need for every position of one text, for a page without a server."""
    ids, total, dropped = encode(model, text)
    data, t, _ = trace_data(model, ids, total=total, dropped=dropped)
    T, V = len(ids), model.config.vocab_size
    top = None if T * V <= EXPORT_FULL_LOGITS else EXPORT_TOP
    probes = [s["probe"] for s in pipeline(model) if s["probe"]]
    vectors = stage_vectors(model, ids, probes)
    return {"model": model_info(name, model), "text": text, "trace": data,
            "positions": [position_data(model, t, p, top=top) for p in range(T)],
            "attention": f32(t.attention), "activations": {p: f32(v) for p, v in vectors.items()},
            "activation_sizes": {p: v.shape[1] for p, v in vectors.items()},
            "logits_kept": top}


def export_html(name: str, model, text: str) -> str:
    """One self-contained HTML file (styles, script and data inline) showing views 1-5."""
    web = resources.files("glassgpt") / "web"
    page = (web / "index.html").read_text(encoding="utf-8")
    css = (web / "glass.css").read_text(encoding="utf-8")
    scripts = "\n".join((web / f).read_text(encoding="utf-8") for f in ("sampler.js", "glass.js"))
    data = json.dumps(json_safe(export_data(name, model, text)), separators=(",", ":"))
    data = data.replace("</", "<\\/")                                  # never closes the script element
    page = page.replace('<link rel="stylesheet" href="glass.css">', f"<style>\n{css}\n</style>")
    page = page.replace('<script src="sampler.js"></script>', "")
    page = page.replace('<script src="glass.js"></script>',
                        f'<script>window.GLASS_DATA = {data};</script>\n<script>\n{scripts}\n</script>')
    return page
