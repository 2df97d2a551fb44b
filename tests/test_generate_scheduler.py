"""Continuous batching: jobs that join and leave a running batch give what `generate` gives
for each alone, with the same seed and settings."""
from __future__ import annotations

import pytest
from glassgpt.errors import GlassError
from glassgpt.generate import PromptCache, generate
from glassgpt.generate.scheduler import Scheduler
from glassgpt.tokenizer.base import EOT
from helpers import char_tokenizer, tiny_model


def make_model(seed=0, scale=4.0, eot=True, **overrides):
    return tiny_model(seed, tokenizer=char_tokenizer(specials=(EOT,) if eot else ()), scale=scale, **overrides)


@pytest.fixture(scope="module")
def model():
    return make_model(eot=False)


JOBS = [  # prompt, settings: different lengths, samplers, seeds, n, stops, logprobs
    ("the cat", dict(max_new_tokens=12, temperature=0)),
    ("a much longer prompt here", dict(max_new_tokens=9, temperature=0.8, top_p=0.9, seed=3, logprobs=2)),
    ("zz", dict(max_new_tokens=15, temperature=1.2, top_k=5, seed=7, num_samples=3)),
    ("hello world", dict(max_new_tokens=10, temperature=0.7, repetition_penalty=1.3, frequency_penalty=0.5,
                         presence_penalty=0.4, logit_bias={3: 2.0}, seed=1, logprobs=1)),
    ("q", dict(max_new_tokens=20, temperature=0.9, min_p=0.1, seed=5, stop=["e"])),
    ("the dog ran", dict(max_new_tokens=5, temperature=1.0, seed=11, num_samples=2)),
]


def check_equal(model, prompt, options, generations):
    alone = generate(model, prompt, **options)
    assert len(alone) == len(generations)
    for a, g in zip(alone, generations):
        assert (g.ids, g.text, g.finish_reason) == (a.ids, a.text, a.finish_reason)
        if a.logprobs is not None:
            assert [r.id for r in g.logprobs] == [r.id for r in a.logprobs]
            assert [r.logprob for r in g.logprobs] == pytest.approx([r.logprob for r in a.logprobs], abs=1e-4)
            assert [r.logprob_after for r in g.logprobs] == pytest.approx(
                [r.logprob_after for r in a.logprobs], abs=1e-4)


@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_jobs_joining_and_leaving_a_running_batch_equal_generate_alone(positional):
    model = make_model(positional=positional, eot=False)
    scheduler = Scheduler(model, max_batch=6)
    jobs, sizes = [], []
    for i, (prompt, options) in enumerate(JOBS):       # a new job every other step
        jobs.append(scheduler.submit(prompt, **options))
        for _ in range(1 + i % 2):
            scheduler.step()
            sizes.append(scheduler.batch_size)
    while scheduler.busy:
        scheduler.step()
        sizes.append(scheduler.batch_size)
    assert max(sizes) <= 6 and max(sizes) >= 4          # they did share the batch, within its limit
    for (prompt, options), job in zip(JOBS, jobs):
        assert job.done
        check_equal(model, prompt, options, job.generations())


def test_events_are_the_stream_of_each_sample(model):
    scheduler = Scheduler(model, max_batch=4)
    a = scheduler.submit("the cat", max_new_tokens=8, temperature=0)
    b = scheduler.submit("xy", max_new_tokens=5, temperature=0.5, seed=2, num_samples=2)
    texts = {(a, 0): "", (b, 0): "", (b, 1): ""}
    while scheduler.busy:
        for job, sample, event in scheduler.step():
            texts[job, sample] += event.text
    for job in (a, b):
        for k, g in enumerate(job.generations()):
            assert texts[job, k] == g.text


def test_a_full_batch_queues_and_a_cancelled_job_frees_its_rows(model):
    scheduler = Scheduler(model, max_batch=2)
    long = scheduler.submit("ab", max_new_tokens=40, temperature=0, num_samples=2)
    waiting = scheduler.submit("cd", max_new_tokens=3, temperature=0)
    for _ in range(3):
        scheduler.step()
    assert scheduler.queue_length == 1 and waiting.state == "waiting" and scheduler.batch_size == 2
    scheduler.cancel(long)
    scheduler.step()
    assert long.done and waiting.state in ("running", "done")
    assert {g.finish_reason for g in long.generations()} == {"cancelled"}
    scheduler.run_until_done()
    check_equal(model, "cd", dict(max_new_tokens=3, temperature=0), waiting.generations())
    assert scheduler.cache is None                       # idle: nothing held
    job = scheduler.submit("ef", max_new_tokens=30)
    scheduler.step()
    scheduler.cancel(job)
    scheduler.step()
    assert job.done and not scheduler.busy and scheduler.cache is None


def test_prompt_plus_new_tokens_beyond_the_context_is_refused(model):
    scheduler = Scheduler(model)
    with pytest.raises(GlassError, match=r"60 tokens and 10 new .* 70 > the context length 64.*at most 4"):
        scheduler.submit("a" * 60, max_new_tokens=10)
    with pytest.raises(GlassError, match="do not fit a batch of 8"):
        scheduler.submit("a", num_samples=9)


def test_rows_filling_the_context_are_compacted_and_still_equal_generate(model):
    scheduler = Scheduler(model, max_batch=4)
    first = ("a" * 40, dict(max_new_tokens=20, temperature=0))
    jobs = [scheduler.submit(first[0], **first[1])]
    for _ in range(15):
        scheduler.step()
    later = ("short one", dict(max_new_tokens=50, temperature=0.9, seed=4))
    jobs.append(scheduler.submit(later[0], **later[1]))   # padded far to the left
    scheduler.run_until_done()
    for (prompt, options), job in zip([first, later], jobs):
        check_equal(model, prompt, options, job.generations())


def test_echo_prompt_logprobs_equal_the_trace_and_max_tokens_zero_only_scores(model):
    scheduler = Scheduler(model)
    text = "the quick brown fox"
    job = scheduler.submit(text, max_new_tokens=0, prompt_logprobs=3)
    scheduler.run_until_done()
    trace = model.trace(text)
    records = job.prompt_records
    assert records[0] is None and len(records) == len(text)
    assert [r.logprob for r in records[1:]] == pytest.approx(trace.next_log_prob.tolist(), abs=1e-5)
    assert job.generations()[0].ids == []
    top_p, top_i = trace.top(3)
    assert [a.id for a in records[1].top] == top_i[0].tolist()


def test_a_shared_prefix_is_taken_from_the_prompt_cache(model):
    scheduler = Scheduler(model, prompt_cache=PromptCache())
    base = "the quick brown fox "
    a = scheduler.submit(base + "jumps", max_new_tokens=6, temperature=0)
    scheduler.run_until_done()
    b = scheduler.submit(base + "naps", max_new_tokens=6, temperature=0)
    scheduler.run_until_done()
    assert a.cached_tokens == 0 and b.cached_tokens == len(base)
    check_equal(model, base + "naps", dict(max_new_tokens=6, temperature=0), b.generations())


def test_a_lone_job_decodes_speculatively_like_generate_with_a_draft():
    target, draft = make_model(seed=0), make_model(seed=1, n_layer=1)
    scheduler = Scheduler(target, draft=draft, draft_tokens=3)
    options = dict(max_new_tokens=16, temperature=0.8, seed=2)
    job = scheduler.submit("the cat", **options)
    scheduler.step()
    other = scheduler.submit("zz", max_new_tokens=5, temperature=0)   # joins the batch
    scheduler.run_until_done()
    assert job.speculative and not other.speculative and scheduler.drafted > 0
    (g,) = job.generations()
    (alone,) = generate(target, "the cat", draft=draft, draft_tokens=3, **options)
    assert (g.ids, g.text, g.finish_reason) == (alone.ids, alone.text, alone.finish_reason)
    check_equal(target, "zz", dict(max_new_tokens=5, temperature=0), other.generations())
