"""`glassgpt serve`: a real uvicorn on a free loopback port, spoken to with the official
`openai` client and raw HTTP; answers checked against `generate`, `model.trace` and the
sampler chain computed directly."""
from __future__ import annotations

import asyncio
import math
import socket
import threading
import time

import httpx
import openai
import pytest
import torch
import uvicorn

from glassgpt.generate import SamplerChain, SamplingParams, generate
from glassgpt.generate.decode import token_counts
from glassgpt.model import save
from glassgpt.serve import create_app
from glassgpt.serve.chat import render_chat
from helpers import WIDE_ALPHABET, char_tokenizer, tiny_model

KEY = "sekrit-key"


def served_model():
    return tiny_model(tokenizer=char_tokenizer(WIDE_ALPHABET), scale=3.0, context_length=128)


class Server:
    """uvicorn serving `app` from a thread, on a loopback port picked by the OS."""

    def __init__(self, app):
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@pytest.fixture(scope="module")
def model():
    return served_model()


@pytest.fixture(scope="module")
def server(model):
    app = create_app({"tiny": model}, max_batch=16, max_queue=64, max_body_bytes=64 * 1024)
    with Server(app) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def ids_of(model, text):
    return model.tokenizer.encode(text, allowed_special="all")


# -- completions ------------------------------------------------------------------------------------
def test_models_health_and_metrics(server, client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    client.completions.create(model="tiny", prompt="abc", max_tokens=3, temperature=0)
    text = httpx.get(server.url + "/metrics").text
    for name in ("glassgpt_requests_total", "glassgpt_generated_tokens_total", "glassgpt_queue_length",
                 "glassgpt_running_batch_size", "glassgpt_time_to_first_token_seconds_bucket",
                 "glassgpt_time_per_output_token_seconds_bucket", "glassgpt_prompt_tokens_total"):
        assert name in text


def test_completion_equals_generate_and_streaming_equals_non_streaming(client, model):
    settings = dict(temperature=0.9, top_p=0.95, seed=5)
    out = client.completions.create(model="tiny", prompt="the cat sat", max_tokens=30, **settings,
                                    extra_body=dict(top_k=20, repetition_penalty=1.2))
    (alone,) = generate(model, "the cat sat", max_new_tokens=30, top_k=20, repetition_penalty=1.2, **settings)
    choice = out.choices[0]
    assert choice.text == alone.text and choice.finish_reason == {"eot": "stop"}.get(alone.finish_reason,
                                                                                      alone.finish_reason)
    assert out.usage.prompt_tokens == len("the cat sat") and out.usage.completion_tokens == len(alone.ids)
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    chunks = list(client.completions.create(model="tiny", prompt="the cat sat", max_tokens=30, stream=True,
                                            **settings, extra_body=dict(top_k=20, repetition_penalty=1.2)))
    assert "".join(c.choices[0].text for c in chunks) == choice.text
    assert chunks[-1].choices[0].finish_reason == choice.finish_reason
    again = client.completions.create(model="tiny", prompt="the cat sat", max_tokens=30, **settings,
                                      extra_body=dict(top_k=20, repetition_penalty=1.2))
    assert again.choices[0].text == choice.text                                   # same seed, same text


def test_n_samples_and_several_prompts(client, model):
    out = client.completions.create(model="tiny", prompt=["ab", "xyz"], n=3, max_tokens=12, temperature=1.0, seed=2)
    assert [c.index for c in out.choices] == list(range(6))
    for i, prompt in enumerate(["ab", "xyz"]):
        alone = generate(model, prompt, max_new_tokens=12, temperature=1.0, seed=2, num_samples=3)
        assert [c.text for c in out.choices[3 * i:3 * i + 3]] == [g.text for g in alone]
    ids = client.completions.create(model="tiny", prompt=[ids_of(model, "ab"), ids_of(model, "xyz")], n=3,
                                    max_tokens=12, temperature=1.0, seed=2)
    assert [c.text for c in ids.choices] == [c.text for c in out.choices]        # token ids = the same text


def test_stop_strings(client, model):
    out = client.completions.create(model="tiny", prompt="hello", max_tokens=60, temperature=1.0, seed=3,
                                    stop=["e", "a"])
    (alone,) = generate(model, "hello", max_new_tokens=60, temperature=1.0, seed=3, stop=["e", "a"])
    assert out.choices[0].text == alone.text and "e" not in alone.text and "a" not in alone.text
    assert out.choices[0].finish_reason == ("stop" if alone.finish_reason in ("stop", "eot") else "length")


def test_raw_logprobs_equal_the_trace(client, model):
    prompt = "the quick brown fox"
    out = client.completions.create(model="tiny", prompt=prompt, max_tokens=20, temperature=0.8, seed=1, logprobs=5)
    lp = out.choices[0].logprobs
    generated = [model.tokenizer.encode(t)[0] for t in lp.tokens]
    trace = model.trace(ids_of(model, prompt) + generated)
    expected = trace.next_log_prob[len(prompt) - 1:]
    assert lp.token_logprobs == pytest.approx(expected.tolist(), abs=1e-5)
    top_p, top_i = trace.top(5)
    for t, top in enumerate(lp.top_logprobs):
        row = len(prompt) - 1 + t
        want = {model.tokenizer.id_to_str(i): math.log(p) for p, i in zip(top_p[row].tolist(), top_i[row].tolist())}
        assert top == pytest.approx(want, abs=1e-5)


def test_processed_logprobs_are_the_sampler_chains_distribution(client, model):
    prompt, settings = "once upon", dict(temperature=0.7, top_p=0.8, presence_penalty=0.5, seed=4)
    out = client.completions.create(model="tiny", prompt=prompt, max_tokens=15, logprobs=3, **settings,
                                    extra_body=dict(top_k=10, logprobs_mode="processed", return_entropy=True))
    lp = out.choices[0].logprobs
    ids = ids_of(model, prompt) + [model.tokenizer.encode(t)[0] for t in lp.tokens]
    chain = SamplerChain(SamplingParams(temperature=0.7, top_k=10, top_p=0.8, presence_penalty=0.5),
                         model.config.vocab_size)
    logits = model.trace(ids).logits
    for t, token in enumerate(ids[len(prompt):]):
        position = len(prompt) - 1 + t
        counts = token_counts([ids[:position + 1]], model.config.vocab_size, "cpu")
        probs = chain.probabilities(logits[position][None], counts)[0]
        assert lp.token_logprobs[t] == pytest.approx(math.log(probs[token]), abs=1e-5)
        best = probs.topk(3)
        kept = {model.tokenizer.id_to_str(i): (math.log(p) if p > 0 else -9999.0)
                for p, i in zip(best.values.tolist(), best.indices.tolist())}
        assert lp.top_logprobs[t] == pytest.approx(kept, abs=1e-5)
        entropy = -float(torch.special.xlogy(probs, probs).sum())
        assert lp.model_extra["entropies"][t] == pytest.approx(entropy, abs=1e-5)


def test_echo_with_zero_max_tokens_scores_the_prompt_like_the_trace(client, model):
    prompt = "to be or not to be"
    out = client.completions.create(model="tiny", prompt=prompt, max_tokens=0, echo=True, logprobs=2)
    choice = out.choices[0]
    assert choice.text == prompt and out.usage.completion_tokens == 0
    lp = choice.logprobs
    assert lp.tokens == list(prompt) and lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert lp.token_logprobs[1:] == pytest.approx(model.trace(prompt).next_log_prob.tolist(), abs=1e-5)
    assert lp.text_offset == list(range(len(prompt)))
    both = client.completions.create(model="tiny", prompt=prompt, max_tokens=5, echo=True, logprobs=1,
                                     temperature=0)
    assert both.choices[0].text.startswith(prompt) and len(both.choices[0].logprobs.tokens) == len(prompt) + 5


def test_prefix_reuse_is_reported_as_cached_tokens(client):
    prompt = "a long shared beginning of a prompt, "
    client.completions.create(model="tiny", prompt=prompt + "one", max_tokens=2, temperature=0)
    second = client.completions.create(model="tiny", prompt=prompt + "two", max_tokens=2, temperature=0)
    assert second.usage.prompt_tokens_details.cached_tokens >= len(prompt)


def test_tokenize_detokenize_round_trip(server, model):
    text = "hello, world:\nbye<|endoftext|>"
    got = httpx.post(server.url + "/tokenize", json={"prompt": text, "with_pieces": True}).json()
    assert got["tokens"] == ids_of(model, text) and got["count"] == len(got["tokens"])
    assert "".join(got["pieces"]) == text and got["max_model_len"] == 128
    back = httpx.post(server.url + "/detokenize", json={"model": "tiny", "tokens": got["tokens"]}).json()
    assert back["prompt"] == text


# -- chat ---------------------------------------------------------------------------------------------
def test_chat_renders_the_transcript_and_equals_generate(client, model):
    messages = [{"role": "system", "content": "be brief."}, {"role": "user", "content": "hi there"}]
    out = client.chat.completions.create(model="tiny", messages=messages, max_tokens=25, temperature=0.8, seed=9,
                                         logprobs=True, top_logprobs=2)
    prompt = render_chat([("system", "be brief."), ("user", "hi there")])
    assert prompt == "System: be brief.\nUser: hi there\nAssistant:"
    (alone,) = generate(model, prompt, max_new_tokens=25, temperature=0.8, seed=9, stop=["\nUser:"])
    message = out.choices[0].message
    assert message.role == "assistant" and message.content == alone.text
    content = out.choices[0].logprobs.content
    assert [c.logprob for c in content] == pytest.approx(
        model.trace(ids_of(model, prompt) + alone.ids).next_log_prob[len(prompt) - 1:].tolist(), abs=1e-5)
    assert all(len(c.top_logprobs) == 2 and c.bytes == list(c.token.encode()) for c in content)
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=25, temperature=0.8,
                                                 seed=9, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == message.content
    assert out.usage.prompt_tokens == len(prompt)


# -- concurrency ----------------------------------------------------------------------------------------
def test_sixteen_concurrent_clients_get_what_each_gets_alone(server, client):
    prompts = [f"{w} and {v}" for w, v in zip("the a one two six ten red old new big low far cat dog sun sky".split(),
                                              "abcdefghijklmnop")]
    lengths = [8 + 3 * i for i in range(16)]
    alone = [client.completions.create(model="tiny", prompt=p, max_tokens=n, temperature=0, logprobs=1)
             for p, n in zip(prompts, lengths)]

    async def together():
        async with openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=60) as c:
            return await asyncio.gather(*[c.completions.create(model="tiny", prompt=p, max_tokens=n, temperature=0,
                                                                logprobs=1) for p, n in zip(prompts, lengths)])

    scheduler = server.app.state.models["tiny"].scheduler
    scheduler.peak_batch = 0                                        # the requests alone ran one by one
    batch = asyncio.run(together())
    assert scheduler.peak_batch >= 4                                # together they shared the batch
    for a, b in zip(alone, batch):
        assert b.choices[0].text == a.choices[0].text
        assert b.choices[0].logprobs.token_logprobs == pytest.approx(a.choices[0].logprobs.token_logprobs, abs=1e-4)


def test_a_client_that_disconnects_frees_its_row(server, monkeypatch):
    scheduler = server.app.state.models["tiny"].scheduler
    jobs, step = [], scheduler.step

    def slow_step():                                   # about 10 ms a token, so 120 tokens take over a second
        time.sleep(0.01)
        jobs.extend(j for j in scheduler.running if j not in jobs)
        return step()

    monkeypatch.setattr(scheduler, "step", slow_step)
    eot = server.app.state.gpt_models["tiny"].tokenizer.eot_id
    body = {"model": "tiny", "prompt": "abc", "max_tokens": 120, "logit_bias": {str(eot): -1e9}}   # no early end
    with httpx.stream("POST", server.url + "/v1/completions", json={**body, "stream": True}) as r:
        next(r.iter_lines())                                      # the first token arrived
    deadline = time.time() + 10
    while scheduler.busy:
        assert time.time() < deadline, "the row was not freed"
        time.sleep(0.02)
    (job,) = jobs
    assert job.rows[0].finish_reason == "cancelled" and len(job.rows[0].ids) < 100
    jobs.clear()
    with pytest.raises(httpx.ReadTimeout):                          # a non-streaming client that gives up
        httpx.post(server.url + "/v1/completions", json=body, timeout=0.3)
    deadline = time.time() + 10
    while scheduler.busy:
        assert time.time() < deadline, "the row was not freed"
        time.sleep(0.02)
    (job,) = jobs
    assert job.rows[0].finish_reason == "cancelled" and len(job.rows[0].ids) < 100


def test_a_full_queue_answers_429(model):
    app = create_app({"tiny": model}, max_batch=1, max_queue=1)
    gate = threading.Event()
    with Server(app) as s, httpx.Client(base_url=s.url, timeout=30) as http:
        held = threading.Thread(target=asyncio.run, args=(app.state.worker.call(gate.wait),))
        held.start()                                       # the decoding thread waits: nothing leaves the queue
        body = {"model": "tiny", "prompt": "abc", "max_tokens": 2}
        waiting = threading.Thread(target=http.post, args=("/v1/completions",), kwargs={"json": body})
        waiting.start()
        deadline = time.time() + 10
        while app.state.models["tiny"].scheduler.queue_length < 1:
            assert time.time() < deadline
            time.sleep(0.01)
        refused = http.post("/v1/completions", json=body)
        gate.set()
        waiting.join()
        held.join()
        assert http.post("/v1/completions", json=body).status_code == 200        # and it serves again
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "queue_full"


def test_a_draft_model_decodes_lone_requests_speculatively(model):
    draft = tiny_model(seed=1, tokenizer=model.tokenizer, scale=3.0, context_length=128, n_layer=1)
    app = create_app({"tiny": model}, draft=draft, draft_tokens=3)
    with Server(app) as s:
        client = openai.OpenAI(base_url=s.url + "/v1", api_key="x", max_retries=0)
        out = client.completions.create(model="tiny", prompt="the cat", max_tokens=20, temperature=0)
        metrics = httpx.get(s.url + "/metrics").text
    assert out.choices[0].text == generate(model, "the cat", max_new_tokens=20, temperature=0)[0].text
    drafted = [line for line in metrics.splitlines() if line.startswith("glassgpt_speculative_drafted_tokens_total")]
    assert drafted and float(drafted[0].split()[-1]) > 0


def test_a_failing_step_fails_its_requests_only(model, monkeypatch):
    app = create_app({"tiny": model})
    with Server(app) as s:
        served = app.state.models["tiny"]
        monkeypatch.setattr(served.scheduler, "step", lambda: 1 / 0)
        r = httpx.post(s.url + "/v1/completions", json={"model": "tiny", "prompt": "ab", "max_tokens": 3})
        assert r.status_code == 500 and "ZeroDivisionError" in r.json()["error"]["message"]
        assert "Traceback" not in r.text
        r = httpx.post(s.url + "/v1/completions", json={"model": "tiny", "prompt": "ab", "max_tokens": 3})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3     # a fresh scheduler


# -- bad input ------------------------------------------------------------------------------------------
BAD = [
    ({"temperature": -1}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"logprobs": 21}, "logprobs"),
    ({"n": 0}, "n"),
    ({"n": 17}, "n"),
    ({"prompt": [1, 2.5]}, "prompt"),
    ({"prompt": [1, 9999]}, "prompt"),
    ({"prompt": "abc", "max_tokens": 200}, "max_tokens"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": "ten"}, "max_tokens"),
    ({"temperature": "hot"}, "temperature"),
    ({"logit_bias": {"x": 1}}, "logit_bias"),
    ({"logit_bias": {"99999": 1}}, "logit_bias"),
    ({"stop": [""]}, "stop"),
    ({"top_k": 0}, "top_k"),
    ({"logprobs_mode": "cooked"}, "logprobs_mode"),
    ({"suffix": "end"}, "suffix"),
    ({"seed": 1.5}, "seed"),
    ({"seed": 2**64}, "seed"),
]


@pytest.mark.parametrize("change, param", BAD, ids=[f"{p}-{i}" for i, (_, p) in enumerate(BAD)])
def test_bad_fields_answer_400_naming_the_field(server, change, param):
    r = httpx.post(server.url + "/v1/completions", json={"model": "tiny", "prompt": "abc", "max_tokens": 3, **change})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]
    assert "Traceback" not in r.text and "\n" not in error["message"]


def test_other_bad_requests_and_the_server_goes_on(server, client):
    url = server.url
    r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": "a" * 120, "max_tokens": 20})
    message = r.json()["error"]["message"]
    assert r.status_code == 400 and "120 tokens" in message and "128" in message and "at most 8" in message
    r = httpx.post(url + "/v1/completions", content=b'{"model": "tiny", "prompt": ',
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(url + "/v1/completions", json={"model": "nope", "prompt": "a"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"
    r = httpx.post(url + "/v1/completions", content=b"x" * (100 * 1024))
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    chunked = httpx.post(url + "/v1/completions", content=(b"x" * 1024 for _ in range(100)))   # no Content-Length
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "request_too_large"
    r = httpx.post(url + "/v1/chat/completions", json={"model": "tiny", "messages": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    picture = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    r = httpx.post(url + "/v1/chat/completions", json={"model": "tiny", "messages": picture})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages" and "text" in r.json()["error"]["message"]
    r = httpx.post(url + "/v1/completions", json={"model": "tiny", "prompt": ["a"] * 81, "max_tokens": 1})
    assert r.status_code == 400 and "81 samples" in r.json()["error"]["message"]                # never fits: not 429
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="other", prompt="a", max_tokens=1)
    assert client.completions.create(model="tiny", prompt="a", max_tokens=2, temperature=0).choices[0].text


def test_the_api_key(model):
    app = create_app({"tiny": model}, api_key=KEY)
    with Server(app) as s:
        assert httpx.get(s.url + "/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = httpx.get(s.url + "/v1/models", headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=s.url + "/v1", api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=s.url + "/v1", api_key=KEY, max_retries=0)
        assert good.completions.create(model="tiny", prompt="ab", max_tokens=2).usage.completion_tokens <= 2


# -- the experiments' endpoint completer -------------------------------------------------------------------
def test_the_temperature_study_runs_against_a_live_server(server, tmp_path, model):
    from glassgpt.experiments.completer import OpenAICompleter
    from glassgpt.experiments.temperature import TemperatureSettings, run_temperature_study

    completer = OpenAICompleter(server.url + "/v1", "tiny", timeout=30, retries=0)
    results = run_temperature_study(completer, tmp_path / "report", TemperatureSettings(
        prompts=["the "], temperatures=[0.5, 1.0], seeds=2, samples_per_seed=1, length=8), progress=False)
    assert len(results["per_temperature"]) == 2 and (tmp_path / "report" / "report.md").is_file()
    c = completer.complete("the ", max_tokens=6, temperature=0.5, seed=1, logprobs=3)
    (alone,) = generate(model, "the ", max_new_tokens=6, temperature=0.5, seed=1)
    assert c.text == alone.text and len(c.token_logprobs) == len(alone.ids)


# -- the command ------------------------------------------------------------------------------------------
def test_glassgpt_serve_command(tmp_path, model, monkeypatch, capsys):
    """The command's wiring (runs named after their directories, the key file, the limits), served by
    our Server helper in place of uvicorn.run's own loop."""
    from glassgpt.cli import main

    run = tmp_path / "demo"
    save(model, run, tokenizer=model.tokenizer)
    (tmp_path / "key").write_text(KEY + "\n")
    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: started.update(app=app, host=host, port=port))
    assert main(["serve", str(run), "--port", "8123", "--api-key-file", str(tmp_path / "key"), "--device", "cpu",
                 "--max-batch", "3"]) == 0
    assert started["host"] == "127.0.0.1" and started["port"] == 8123 and "warning" not in capsys.readouterr().err
    with Server(started["app"]) as s:
        assert httpx.get(s.url + "/v1/models").status_code == 401
        client = openai.OpenAI(base_url=s.url + "/v1", api_key=KEY, max_retries=0)
        assert [m.id for m in client.models.list().data] == ["demo"]
        out = client.completions.create(model="demo", prompt="ab", max_tokens=4, temperature=0)
        assert out.choices[0].text == generate(model, "ab", max_new_tokens=4, temperature=0)[0].text
        r = httpx.post(s.url + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"},
                       json={"model": "demo", "prompt": "ab", "n": 4})
        assert r.status_code == 400 and "1..3" in r.json()["error"]["message"]
    assert main(["serve", str(run), "--host", "0.0.0.0", "--device", "cpu"]) == 0
    assert "warning: listening on 0.0.0.0 without an API key" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
