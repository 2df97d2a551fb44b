"""Constraints over HTTP: OpenAI's response_format and vLLM's guided_* extras on a real
`glassgpt serve` app, spoken to with the official client; bad fields are 400s naming them."""
from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

from glassgpt.generate import generate
from glassgpt.generate.constraints import Choice
from glassgpt.serve import create_app
from test_serve import Server, served_model


@pytest.fixture(scope="module")
def model():
    return served_model()


@pytest.fixture(scope="module")
def server(model):
    with Server(create_app({"tiny": model}, max_batch=8, max_queue=32)) as s:
        yield s


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def test_guided_choice_equals_the_library_and_finishes_with_stop(client, model):
    r = client.completions.create(model="tiny", prompt="the answer is ", max_tokens=10, temperature=0,
                                  extra_body={"guided_choice": ["yes", "no", "maybe"]})
    expected = generate(model, "the answer is ", max_new_tokens=10, temperature=0,
                        constraint=Choice(["yes", "no", "maybe"]))[0]
    assert r.choices[0].text == expected.text and r.choices[0].text in ("yes", "no", "maybe")
    assert r.choices[0].finish_reason == "stop"


def test_guided_regex_and_grammar_in_a_batch(client):
    r = client.completions.create(model="tiny", prompt=["a: ", "b: "], max_tokens=12, n=2, seed=3,
                                  extra_body={"guided_regex": "[0-9]{2}-[a-z]{2}"})
    assert len(r.choices) == 4 and all(re.fullmatch("[0-9]{2}-[a-z]{2}", c.text) for c in r.choices)
    r = client.completions.create(model="tiny", prompt="sum: ", max_tokens=8, seed=1,
                                  extra_body={"guided_grammar": 'start: D ("+" D)?\nD: /[1-9]/'})
    assert re.fullmatch(r"[1-9](\+[1-9])?", r.choices[0].text)


def test_chat_response_format_json_schema_streamed(client):
    schema = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 1,
              "maxItems": 3}
    stream = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "numbers?"}], max_tokens=30, seed=0, stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "numbers", "schema": schema}})
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    numbers = json.loads(text)
    assert 1 <= len(numbers) <= 3 and all(n in range(10) for n in numbers)


def test_logprobs_carry_the_constrained_distribution(client):
    r = client.completions.create(model="tiny", prompt="the answer is ", max_tokens=10, temperature=0.8, seed=2,
                                  logprobs=5, extra_body={"guided_choice": ["yes", "no"], "logprobs_mode": "processed"})
    lp = r.choices[0].logprobs
    for alternatives in lp.top_logprobs:     # sampled from the constrained distribution: only allowed tokens
        assert sum(pow(2.718281828459045, v) for v in alternatives.values()) == pytest.approx(1.0, abs=1e-4)
    removed = lp.model_extra["mass_removed"]             # extra: what the constraint took away per token
    assert len(removed) == len(lp.tokens) and all(0 <= m <= 1 for m in removed) and removed[0] > 0


@pytest.mark.parametrize("fields, param", [
    ({"guided_choice": []}, "guided_choice"), ({"guided_regex": "[0-9"}, "guided_regex"),
    ({"guided_grammar": "start: nothing_here"}, "guided_grammar"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object", "if": {}}}}},
     "response_format"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"guided_choice": ["a"], "guided_regex": "a"}, "guided_regex"),
    ({"guided_choice": ["\u00e9t\u00e9"]}, "guided_choice"),       # no token spells "é": nothing fits
])
def test_bad_constraint_fields_are_400_naming_the_field(server, fields, param):
    r = httpx.post(server.url + "/v1/completions", json={"model": "tiny", "prompt": "the ", "max_tokens": 5,
                                                           **fields}, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and "\n" not in error["message"]


def test_a_job_whose_constraint_runs_out_fails_alone(client, server):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="the answer is ", max_tokens=2, temperature=0,
                                  extra_body={"guided_choice": ["certainly not"]})
    assert e.value.body["param"] == "guided_choice"
    assert "within 2 tokens" in str(e.value) and "raise max_tokens" in str(e.value)
    r = client.completions.create(model="tiny", prompt="the ", max_tokens=3, temperature=0)
    assert r.choices[0].finish_reason == "length"           # the server goes on serving


def test_scheduler_jobs_sample_as_generate_does(model):
    from glassgpt.generate import Scheduler
    from glassgpt.generate.constraints import Regex

    scheduler = Scheduler(model, max_batch=6)
    settings = dict(max_new_tokens=12, temperature=0.9, seed=5, num_samples=2)
    constrained = scheduler.submit("a: ", constraint=Regex("[0-9]{2}-[a-z]{2,4}"), **settings)
    free = scheduler.submit("b: ", **settings)
    scheduler.run_until_done()
    expected = generate(model, "a: ", constraint=Regex("[0-9]{2}-[a-z]{2,4}"), **settings)
    assert [g.text for g in constrained.generations()] == [g.text for g in expected]
    assert [g.text for g in free.generations()] == [g.text for g in generate(model, "b: ", **settings)]
