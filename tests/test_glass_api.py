"""The glass page's JSON API over real HTTP, checked against the library computed independently
(a plain forward with probe edits, trace, Session), and its bad-input answers."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from glassgpt import cli
from glassgpt.generate import Session
from glassgpt.inspect import page_data
from glassgpt.inspect.ablation import removed
from glassgpt.inspect.lens import logit_lens
from glassgpt.inspect.page_data import decode_f32, export_html, pipeline

REPO = Path(__file__).resolve().parents[1]
TEXT = "the cat sat on the mat. the dog"


def call(base, path, body=None, method=None, raw=None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(base + path, data=data, method=method or ("GET" if data is None else "POST"),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def plain_logits(model, ids, edits=None):
    with torch.no_grad(), model.probing(edit=edits):
        return model(torch.tensor([ids])).logits[0].float()


def zero_heads(*heads):
    def edit(z):                                          # (B, H, T, hd)
        z = z.clone()
        z[:, list(heads)] = 0
        return z
    return edit


def test_trace_equals_the_library(glass_server):
    base, model = glass_server
    status, d = call(base, "/glass/trace", {"model": "demo", "text": TEXT})
    assert status == 200
    t = model.trace(TEXT)
    assert d["ids"] == t.ids and [r["piece"] for r in d["tokens"]] == t.tokens
    for i, row in enumerate(d["tokens"][1:], start=1):
        assert row["prob"] == pytest.approx(t.next_prob[i - 1].item(), abs=1e-6)
        assert row["rank"] == int(t.next_rank[i - 1])
    assert d["loss"] == pytest.approx(-t.next_log_prob.mean().item(), abs=1e-6)
    pos = d["position"]
    assert pos["position"] == len(t.ids) - 1
    assert torch.equal(decode_f32(pos["logits"]), t.logits[-1])
    rows = decode_f32(pos["attention_rows"]).view(model.config.n_layer, model.config.n_head, -1)
    assert torch.allclose(rows, t.attention[:, :, -1], atol=1e-6)
    lens = logit_lens(model, t)
    assert pos["lens"]["top_ids"] == lens.top_ids[:, -1].tolist()
    assert pos["lens"]["top_probs"] == pytest.approx(lens.top_probs[:, -1].tolist(), abs=1e-6)


def test_position_attention_activation(glass_server):
    base, model = glass_server
    t = model.trace(TEXT)
    _, p = call(base, "/glass/position", {"model": "demo", "text": TEXT, "position": 5})
    assert torch.equal(decode_f32(p["logits"]), t.logits[5])
    _, a = call(base, "/glass/attention", {"model": "demo", "text": TEXT, "layer": 1, "head": 2})
    assert torch.allclose(decode_f32(a["pattern"]).view(len(t.ids), -1), t.attention[1, 2], atol=1e-6)
    with torch.no_grad(), model.probing(read=["blocks.1.ff.out"]) as probes:
        model(torch.tensor([t.ids]))
    _, v = call(base, "/glass/activation", {"model": "demo", "text": TEXT, "probe": "blocks.1.ff.out", "position": 7})
    assert torch.allclose(decode_f32(v["vector"]), probes["blocks.1.ff.out"][0, 7], atol=1e-5)
    assert v["norm"] == pytest.approx(probes["blocks.1.ff.out"][0, 7].norm().item(), rel=1e-5)


def test_ablation_equals_probe_edits(glass_server):
    base, model = glass_server
    ids = model.tokenizer.encode(TEXT)
    status, d = call(base, "/glass/ablate", {"model": "demo", "text": TEXT, "remove": ["head 0.1", "head 0.2",
                                                                                      "feed-forward 1"]})
    assert status == 200
    expected = plain_logits(model, ids, {"blocks.0.attn.z": zero_heads(1, 2),
                                         "blocks.1.ff.out": torch.zeros_like})           # (T, V)
    intact = plain_logits(model, ids)
    assert torch.allclose(decode_f32(d["position"]["logits"]), expected[-1], atol=1e-5)
    assert torch.allclose(decode_f32(d["position"]["intact"]["logits"]), intact[-1], atol=1e-5)
    targets = torch.tensor(ids[1:])
    loss = torch.nn.functional.cross_entropy(expected[:-1], targets).item()
    assert d["loss"] == pytest.approx(loss, abs=1e-5)
    assert d["intact_loss"] == pytest.approx(torch.nn.functional.cross_entropy(intact[:-1], targets).item(), abs=1e-5)
    assert d["loss"] > d["intact_loss"]
    # a whole attention and a skipped block, against their definitions
    _, d = call(base, "/glass/ablate", {"model": "demo", "text": TEXT, "remove": ["attention 1"]})
    expected = plain_logits(model, ids, {"blocks.1.attn.out": torch.zeros_like})
    assert torch.allclose(decode_f32(d["position"]["logits"]), expected[-1], atol=1e-5)
    assert removed(model, ["block 0"]).edits.keys() == {"blocks.0.resid_pre", "blocks.0.resid_post"}


def test_pipeline_counts_every_parameter(glass_run):
    _, model = glass_run
    stages = pipeline(model)
    assert sum(s["params"] for s in stages) == model.num_parameters()
    names = [s["name"] for s in stages]
    assert names[0] == "embed" and names[-2:] == ["unembed", "softmax"]
    assert sum(s["name"].endswith(".attn") for s in stages) == model.config.n_layer


def test_session_equals_library_session(glass_server):
    base, model = glass_server
    status, s = call(base, "/glass/session", {"model": "demo", "text": "the cat"})
    assert status == 200
    sid = s["id"]
    lib = Session(model)
    lib.append("the cat")
    for _ in range(3):
        _, s = call(base, f"/glass/session/{sid}/step", {"temperature": 0})
    lib.generate(3, temperature=0)
    assert s["ids"] == lib.ids
    _, s = call(base, f"/glass/session/{sid}/step", {"token": 5})
    lib.append([5])
    _, s = call(base, f"/glass/session/{sid}/rewind", {"position": 4})
    lib.rewind_to(4)
    _, s = call(base, f"/glass/session/{sid}/substitute", {"position": 2, "text": "e dog"})
    lib.substitute(2, "e dog")
    assert s["ids"] == lib.ids and s["text"] == lib.text
    assert torch.allclose(decode_f32(s["logits"]), lib.next_logits(), atol=1e-5)
    _, s = call(base, f"/glass/session/{sid}/undo", {})
    lib.undo()
    assert s["ids"] == lib.ids
    assert [st["how"] for st in s["steps"]] == ["sampled"] * 3 + ["picked"]
    step = s["steps"][0]
    assert step["prob_after"] == 1.0 and step["id"] == step["top"][0]["id"]    # greedy: the argmax, one-hot
    # seeded sampling: the library's Session with the same seed and settings draws the same token
    _, s = call(base, f"/glass/session/{sid}/step", {"temperature": 1.2, "top_p": 0.95, "seed": 7})
    lib.generate(1, temperature=1.2, top_p=0.95, seed=7)
    assert s["ids"] == lib.ids
    assert call(base, f"/glass/session/{sid}", method="DELETE")[0] == 200
    assert call(base, f"/glass/session/{sid}")[0] == 404


@pytest.mark.parametrize("path, body, status, words", [
    ("/glass/trace", {"model": "demo", "text": ""}, 400, "empty"),
    ("/glass/trace", {"model": "demo", "text": "the \ud800 cat"}, 400, "not valid Unicode"),
    ("/glass/trace", {"model": "nope", "text": "the"}, 404, "no model named 'nope'"),
    ("/glass/trace", {"model": "demo"}, 400, "text"),
    ("/glass/trace", {"model": "demo", "ids": [1, 999]}, 400, "outside the vocabulary"),
    ("/glass/ablate", {"model": "demo", "text": "the", "remove": ["head 9.9"]}, 400, "no part named"),
    ("/glass/attention", {"model": "demo", "text": "the", "layer": 5, "head": 0}, 400, "layer and head"),
    ("/glass/position", {"model": "demo", "text": "the", "position": 3}, 400, "position"),
    ("/glass/activation", {"model": "demo", "text": "the", "probe": "blocks.7.ff.out"}, 400, "probe"),
    ("/glass/session/nothere/step", {}, 404, "no session"),
])
def test_bad_input_answers_4xx(glass_server, path, body, status, words):
    base, _ = glass_server
    code, d = call(base, path, body)
    assert code == status and words in d["error"]["message"], d
    assert set(d["error"]) == {"message", "type", "param", "code"}


def test_bad_json_and_bad_sampling(glass_server):
    base, _ = glass_server
    code, d = call(base, "/glass/trace", raw=b"{not json")
    assert code == 400 and "not valid JSON" in d["error"]["message"]
    _, s = call(base, "/glass/session", {"model": "demo", "text": "the"})
    code, d = call(base, f"/glass/session/{s['id']}/step", {"temperature": -1})
    assert code == 400 and "temperature" in d["error"]["message"]
    code, d = call(base, f"/glass/session/{s['id']}/rewind", {"position": 0})
    assert code == 400 and "at least one token" in d["error"]["message"]
    assert call(base, f"/glass/session/{s['id']}")[1]["ids"] == s["ids"]          # unchanged


def test_long_prompt_is_cropped_and_said(glass_server):
    base, model = glass_server
    text = "the cat sat on the mat. " * 4                                        # 96 chars, context 64
    code, d = call(base, "/glass/trace", {"model": "demo", "text": text})
    assert code == 200 and d["dropped"] == 32 and d["total_tokens"] == 96
    assert d["ids"] == model.tokenizer.encode(text)[-64:]
    assert "the first 32 are cropped" in d["warning"]


def test_page_is_served(glass_server):
    base, _ = glass_server
    for name, kind in (("", "text/html"), ("glass.js", "javascript"), ("sampler.js", "javascript"),
                       ("glass.css", "text/css")):
        with urllib.request.urlopen(f"{base}/{name}", timeout=10) as r:
            assert kind in r.headers["Content-Type"]


def test_export_is_self_contained(glass_run):
    _, model = glass_run
    page = export_html("demo", model, TEXT)
    assert "window.GLASS_DATA" in page and "<script src" not in page and 'rel="stylesheet"' not in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
    data = page_data.export_data("demo", model, TEXT)
    assert len(data["positions"]) == len(model.tokenizer.encode(TEXT))


def test_view_cli_serves_the_page_and_rejects_bad_runs(glass_run, tmp_path, capsys):
    path, _ = glass_run
    assert cli.main(["view", str(tmp_path / "nope"), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert cli.main(["view", str(path), "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "glassgpt", "view", str(path), "--no-browser", "--text", "the"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line + proc.stderr.read()
        url = re.search(r"http://\S+", line).group(0)
        assert url.endswith("?text=the")
        with urllib.request.urlopen(url, timeout=10) as r:
            assert b"glass" in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_speculative_step_is_seen(glass_server, glass_draft):
    base, model = glass_server
    _, info = call(base, "/glass/models")
    assert info["draft"]["parameters"] == glass_draft.num_parameters()
    _, s = call(base, "/glass/session", {"model": "demo", "text": "a dog ran"})
    sid, start = s["id"], list(s["ids"])
    for _ in range(4):
        _, s = call(base, f"/glass/session/{s['id']}/step", {"temperature": 0, "draft": True, "draft_tokens": 3})
        spec = s["steps"][-1]["speculative"]
        assert 0 <= spec["accepted"] <= 3 and len(spec["tokens"]) == spec["accepted"] + 1
        assert [t["id"] for t in spec["tokens"][:spec["accepted"]]] == [p["id"] for p in spec["proposed"]][
            :spec["accepted"]]
        assert [p["accepted"] for p in spec["proposed"]] == [i < spec["accepted"] for i in range(3)]
        if spec["accepted"] < 3:                                  # the target's own token replaced a wrong draft
            assert spec["target_token"]["replaces"]
            assert spec["target_token"]["id"] != spec["proposed"][spec["accepted"]]["id"]
    # at temperature 0 speculative decoding is greedy decoding of the target, checked k at a time
    greedy = model.generate(start, temperature=0, max_new_tokens=len(s["ids"]) - len(start))[0].ids
    assert s["ids"] == start + greedy
    code, d = call(base, f"/glass/session/{sid}/step", {"draft": True, "token": 3})
    assert code == 400 and d["error"]["param"] == "draft_tokens"
