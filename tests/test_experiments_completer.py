"""Completers: the OpenAI-style HTTP client against a real local fake server, and the
glassgpt completer's scoring pass against a direct computation."""
import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
import torch.nn.functional as F

from helpers import experiment_model
from glassgpt.errors import GlassError
from glassgpt.experiments.completer import GlassCompleter, OpenAICompleter, entropy_lower_bound

REPLY = {"choices": [{"text": "ab", "finish_reason": "length", "logprobs": {
    "tokens": ["a", "b"], "token_logprobs": [-0.5, -1.0],
    "top_logprobs": [{"a": -0.5, "c": -1.5}, {"b": -1.0, "d": -1.2}]}}]}


class FakeAPI(BaseHTTPRequestHandler):
    """Behaviour set per server: 'ok', 'flaky' (two 503s, then ok), 'down' (always 500),
    'slow' (answers after the client's timeout), 'auth' (401), 'garbage' (not JSON)."""

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append((self.path, body, self.headers.get("Authorization")))
        mode = server.mode
        if mode == "flaky" and len(server.requests) <= 2 or mode == "down":
            return self.reply(503 if mode == "flaky" else 500, b'{"error": "overloaded"}')
        if mode == "slow":
            time.sleep(0.5)
        if mode == "auth":
            return self.reply(401, b'{"error": "bad key"}')
        self.reply(200, b"<html>nope</html>" if mode == "garbage" else json.dumps(REPLY).encode())

    def reply(self, status, payload):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    servers = []

    def start(mode):
        server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAPI)
        server.mode, server.requests = mode, []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}/v1"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def client(url, **kw):
    return OpenAICompleter(url, "fake-model", backoff=0.01, **{"timeout": 5, "retries": 2, **kw})


def test_http_completion_parses_text_tokens_logprobs(fake_server, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sekrit")
    server, url = fake_server("ok")
    c = client(url, api_key_env="FAKE_KEY").complete("hi", max_tokens=2, temperature=0.7, seed=3, logprobs=2,
                                                     stop=["</picture>"])
    assert c.text == "ab" and c.tokens == ["a", "b"] and c.token_logprobs == [-0.5, -1.0]
    assert c.entropy_is_lower_bound and c.entropies[0] == pytest.approx(entropy_lower_bound([-0.5, -1.5]))
    path, body, auth = server.requests[0]
    assert path == "/v1/completions" and auth == "Bearer sekrit"
    assert body == {"model": "fake-model", "prompt": "hi", "max_tokens": 2, "temperature": 0.7, "seed": 3,
                    "logprobs": 2, "stop": ["</picture>"]}


def test_top_scores_from_endpoint(fake_server):
    _, url = fake_server("ok")
    top = client(url).top_scores("hi", 2)
    assert top.tokens == ["a", "c"] and top.scores == [-0.5, -1.5] and top.kind == "logprobs"


def test_retries_then_succeeds_on_5xx(fake_server):
    server, url = fake_server("flaky")
    assert client(url).complete("hi", max_tokens=2, temperature=1.0, seed=0).text == "ab"
    assert len(server.requests) == 3


@pytest.mark.parametrize("mode, message, attempts", [
    ("down", r"failed after 3 attempts \(last: HTTP 500", 3),
    ("slow", r"failed after 3 attempts \(last: timed out\)", 3),
    ("auth", r"HTTP 401 \(set OPENAI_API_KEY\)", 1),
    ("garbage", "did not answer with OpenAI-style JSON", 1),
])
def test_failing_endpoints_give_one_line_errors(fake_server, mode, message, attempts):
    server, url = fake_server(mode)
    with pytest.raises(GlassError, match=message) as e:
        # a short timeout only where timing out is the point: a loaded machine may answer others slowly
        client(url, timeout=0.2 if mode == "slow" else 10.0).complete("hi", max_tokens=2, temperature=1.0, seed=0)
    assert "\n" not in str(e.value)
    assert len(server.requests) == attempts


def test_refusing_endpoint_gives_one_line_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()                                    # nothing listens there now: connection refused
    with pytest.raises(GlassError, match="failed after 3 attempts .*refused") as e:
        client(f"http://127.0.0.1:{port}/v1").complete("hi", max_tokens=2, temperature=1.0, seed=0)
    assert "\n" not in str(e.value)
    with pytest.raises(GlassError, match="not an http"):
        OpenAICompleter("127.0.0.1:8000", "m")


def test_entropy_lower_bound():
    full = [math.log(0.5), math.log(0.25), math.log(0.25)]
    assert entropy_lower_bound(full) == pytest.approx(1.5 * math.log(2))
    assert entropy_lower_bound(full[:2]) <= entropy_lower_bound(full) + 1e-12


def test_glass_completion_logprobs_and_entropies_match_a_plain_forward_pass():
    model, tok = experiment_model(context_length=64)
    c = GlassCompleter(model).complete("hello ", max_tokens=12, temperature=0.8, seed=1, logprobs=3)
    assert len(c.token_ids) == len(c.token_logprobs) == len(c.entropies) == 12
    assert c.text == tok.decode(c.token_ids) and c.tokens == [tok.id_to_str(i) for i in c.token_ids]
    seq = tok.encode("hello ") + c.token_ids
    with torch.no_grad():
        logp = F.log_softmax(model(torch.tensor([seq[:-1]])).logits[0], -1)[5:]     # predictions of the sample
    expected = logp.gather(1, torch.tensor(c.token_ids)[:, None])[:, 0]
    assert c.token_logprobs == pytest.approx(expected.tolist(), abs=1e-4)
    assert c.entropies == pytest.approx((-(logp.exp() * logp).sum(-1)).tolist(), abs=1e-4)
    again = GlassCompleter(model).complete("hello ", max_tokens=12, temperature=0.8, seed=1)
    assert again.token_ids == c.token_ids                                         # seeded


def test_glass_top_scores_are_the_raw_logits():
    model, tok = experiment_model()
    top = GlassCompleter(model).top_scores("the ", 5)
    with torch.no_grad():
        logits = model(torch.tensor([tok.encode("the ")])).logits[0, -1]
    assert top.kind == "logits" and top.scores == pytest.approx(torch.topk(logits, 5).values.tolist(), abs=1e-6)
    assert len(top.rest) == tok.vocab_size - 5


def test_temperature_study_runs_on_an_endpoint(fake_server, tmp_path):
    from glassgpt.experiments.temperature import TemperatureSettings, run_temperature_study
    server, url = fake_server("ok")
    results = run_temperature_study(client(url), tmp_path / "r", TemperatureSettings(
        prompts=["hi"], temperatures=[0.5, 1.0], seeds=2, samples_per_seed=1, length=2), progress=False)
    assert results["entropy_is_lower_bound"] and not results["unavailable"]
    assert results["mechanism"]["normalised_over"] == "top 2 tokens only"
    assert results["per_temperature"][0]["metrics"]["cross_entropy"]["mean"] == pytest.approx(0.75)
    assert "lower bound" in (tmp_path / "r" / "report.md").read_text()
    assert len(server.requests) == 1 + 2 * 2 and server.requests[0][1]["max_tokens"] == 1
