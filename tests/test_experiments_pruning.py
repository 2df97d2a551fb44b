"""The layer-pruning experiment: angular distance, block choice, pruned = ablated, the
multiple-choice scorer against `trace`, tasks, bad input, and the whole command end to end
on a tiny model trained for a few steps."""
import json
import math
import random

import numpy as np
import pytest
import torch

from glassgpt.errors import GlassError
from glassgpt.experiments.pruning import (angular_distance, angular_distances, builtin_task, load_task_file,
                                          naive_blocks, paper_blocks)
from glassgpt.experiments.pruning.measure import accuracies, score_task
from glassgpt.experiments.pruning.models import count_parameters, narrower
from glassgpt.experiments.pruning.tasks import Question, Task, make_tasks
from glassgpt.inspect import trace
from glassgpt.inspect.ablation import removed, without_blocks
from glassgpt.model import GPT, GPTConfig
from glassgpt.tokenizer import Tokenizer

NAMES = ["ROMEO.", "JULIET.", "NURSE.", "FRIAR LAURENCE.", "MERCUTIO.", "TYBALT."]
WORDS = ("love night light fair sweet death heaven stars hand heart speak name rose moon swear blood "
         "banished morning lady lord friend house grave doth thou thee what would shall").split()


def play(n_speeches: int, seed: int = 0) -> str:
    """Text shaped like the plays: NAME. headings, speeches of a few lines, blank lines."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_speeches):
        out.append(rng.choice(NAMES))
        for _ in range(rng.randint(1, 3)):
            out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))).capitalize() + ",")
        out.append("")
    return "\n".join(out)


def tiny(n_layer=4, seed=0, **overrides):
    torch.manual_seed(seed)
    tok = Tokenizer.chars(play(200))
    config = GPTConfig.preset("tiny", vocab_size=tok.vocab_size, context_length=96, d_model=32, n_layer=n_layer,
                              n_head=2, **overrides)
    model = GPT(config, tokenizer=tok).eval()
    with torch.no_grad():                       # larger weights: every block visibly changes the stream
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    return model


def batches(model, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, model.config.vocab_size, (2, 40), generator=g),) * 2 for _ in range(n)]


# -- angular distance and the choice of blocks -----------------------------------------------------
def test_angular_distance_on_hand_made_streams():
    x = torch.randn(3, 5, 16)
    assert torch.allclose(angular_distance(x, x), torch.zeros(3, 5, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(angular_distance(x, 7.5 * x), torch.zeros(3, 5, dtype=torch.float64), atol=1e-6)
    a, b = torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 3.0, 0.0]])
    assert angular_distance(a, b).item() == pytest.approx(0.5)      # orthogonal: the paper's 1/pi makes it 0.5
    assert angular_distance(a, -a).item() == pytest.approx(1.0)
    c = torch.tensor([[1.0, 1.0, 0.0]])
    assert angular_distance(a, c).item() == pytest.approx(0.25)     # 45 degrees


def test_blocks_that_leave_the_stream_unchanged_are_chosen():
    model = tiny(n_layer=5)
    with torch.no_grad():
        for i in (2, 3):                        # blocks 2 and 3 add nothing to the residual stream
            block = model.blocks[i]
            for linear in (block.attention.proj, block.feed_forward.down):
                linear.weight.zero_()
                linear.bias.zero_()
    d = angular_distances(model, batches(model))
    assert d.shape == (5, 5)
    assert d[1, 2] == pytest.approx(0.0, abs=1e-6)                   # entering 2 vs entering 4
    assert np.all(d[1, [0, 1, 3]] > 0.01)
    assert paper_blocks(d, 2) == [2, 3]
    assert paper_blocks(d, 1) in ([2], [3])
    assert naive_blocks(5, 2) == [3, 4]
    assert np.isnan(d[4, 1]) and not np.isnan(d[4, 0])                 # n = 5 has only one start
    # the matrix agrees with the residual stream read through trace (an independent path)
    ids = batches(model, 1)[0][0][:1]
    t = trace(model, ids[0].tolist(), attention=False, residual=True)
    streams = t.residual                                                # (L + 1, T, C)
    one = angular_distances(model, [(ids, ids)])
    assert one[0, 1] == pytest.approx(angular_distance(streams[1], streams[2]).mean().item(), abs=1e-5)


def test_dropping_too_many_blocks_is_refused():
    d = np.zeros((4, 4))
    with pytest.raises(GlassError, match="choose n from 1 to 3"):
        paper_blocks(d, 4)
    with pytest.raises(GlassError, match="choose n from 1 to 3"):
        naive_blocks(4, 0)


# -- a pruned model is the intact model with those blocks ablated -----------------------------------
@pytest.mark.parametrize("overrides", [{}, {"positional": "rope"}, {"norm": "post"}, {"tie_embeddings": False}])
def test_pruned_model_equals_ablated_model(overrides):
    model = tiny(n_layer=4, **overrides)
    ids = batches(model, 1)[0][0]
    pruned = without_blocks(model, [1, 2])
    assert pruned.config.n_layer == 2 and pruned.num_parameters() == count_parameters(pruned.config)
    with torch.no_grad():
        with model.probing(edit=removed(model, ["block 1", "block 2"]).edits):
            ablated = model(ids).logits
        assert torch.allclose(pruned(ids).logits, ablated, atol=1e-5)
        assert not torch.allclose(model(ids).logits, ablated, atol=1e-3)
    # and it decodes with its own KV cache like any model
    out = pruned.generate(ids[0, :5].tolist(), max_new_tokens=4, temperature=0)[0]
    assert len(out.ids) == 4
    with pytest.raises(GlassError, match="keep at least one"):
        without_blocks(model, [0, 1, 2, 3])


@pytest.mark.parametrize("overrides", [{}, {"positional": "rope"}, {"tie_embeddings": False, "bias": False},
                                       {"norm": "post", "positional": "sinusoidal", "d_ff": 100}])
def test_parameter_count_matches_the_model(overrides):
    config = GPTConfig.preset("tiny", **overrides)
    assert count_parameters(config) == GPT(config).num_parameters()
    half = narrower(config, count_parameters(config) // 2)
    assert half.n_layer == config.n_layer and half.d_model < config.d_model
    assert abs(count_parameters(half) / count_parameters(config) - 0.5) < 0.1


# -- the multiple-choice scorer --------------------------------------------------------------------
def test_scorer_equals_summed_trace_logprobs():
    model = tiny()
    tok = model.tokenizer
    questions = [Question("ROMEO.\nSweet love, ", ("night", "heart of mine", "doth"), 1),
                 Question("JULIET.\n", ("Thou swear,", "What light", "Banished"), 2)]
    scored = score_task(model, Task("t", "test", questions), tok)
    for q, logprobs, pick, pick_norm in zip(questions, scored["logprobs"], scored["picks"], scored["picks_norm"]):
        n = len(tok.encode(q.context))
        expected = [trace(model, q.context + c, attention=False).next_log_prob[n - 1:].sum().item()
                    for c in q.choices]
        assert logprobs == pytest.approx(expected, abs=1e-4)
        assert pick == int(np.argmax(expected))
        assert pick_norm == int(np.argmax([e / len(c) for e, c in zip(expected, q.choices)]))
    answers = [q.answer for q in questions]
    assert scored["acc"] == np.mean(np.equal(scored["picks"], answers))
    assert accuracies([0, 1, 1, 1], [0, 0, 0, 1], [0, 1, 0, 0])["acc"] == 0.5
    assert accuracies([0, 1, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0])["acc_norm"] == 0.75


def test_long_contexts_are_cut_to_fit():
    model = tiny()
    q = Question(play(40), ("Sweet love night,", "Death doth"), 0)
    scored = score_task(model, Task("t", "test", [q]), model.tokenizer)    # 96-token context, no warning
    assert len(scored["logprobs"][0]) == 2


# -- tasks -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["next-line", "blank", "speaker"])
def test_builtin_tasks_from_text(name):
    text = play(300, seed=1)
    task = builtin_task(name, text, 25, seed=3, context_chars=200)
    assert len(task.questions) == 25 and task.chance == 0.25
    assert builtin_task(name, text, 25, seed=3, context_chars=200).questions == task.questions   # seeded
    for q in task.questions:
        assert len(q.choices) == 4 and len(set(q.choices)) == 4 and 0 < len(q.context) <= 200
        right = q.choices[q.answer]
        assert text.find(q.context + right) != -1                     # the right choice is what the text says
    if name == "speaker":
        assert all(c.split("\n")[0] in NAMES for q in task.questions for c in q.choices)
    with pytest.raises(GlassError, match="only 0 questions"):
        builtin_task("speaker", "no headings here\njust lines of text that go on\n" * 50, 20)


def test_task_file_and_its_errors(tmp_path):
    good = tmp_path / "quiz.jsonl"
    good.write_text('{"context": "a", "choices": ["b", "c"], "answer": 1}\n\n'
                    '{"context": "d", "choices": ["e", "f", "g"], "answer": 0}\n')
    task = load_task_file(good)
    assert task.name == "quiz" and len(task.questions) == 2 and task.chance == pytest.approx((1 / 2 + 1 / 3) / 2)
    cases = {'{"context": "a", "choices": ["b", "c"], "answer": 1}\n{"context": "a", "choices"\n':
             "quiz.jsonl:2: not valid JSON",
             '{"context": "a", "choices": ["b", "c"], "answer": 2}\n': "quiz.jsonl:1: answer 2 is out of range",
             '{"context": "a", "choices": ["b"], "answer": 0}\n': "at least two",
             '{"context": "a", "answer": 0}\n': "missing choices",
             '[1, 2]\n': "expected a JSON object"}
    for text, message in cases.items():
        good.write_text(text)
        with pytest.raises(GlassError, match=message):
            load_task_file(good)
    with pytest.raises(GlassError, match="unknown task"):
        make_tasks(["riddles"], "text", 10, 0, 100)


# -- a tiny prepared corpus ------------------------------------------------------------------------------
def prepared(tmp_path):
    from glassgpt.train import prepare
    corpus = tmp_path / "play.txt"
    corpus.write_text(play(900, seed=2))
    data = tmp_path / "data"
    prepare([str(corpus)], data, tokenizer="char", val_fraction=0.15, progress=False)
    return data


# -- end to end (the CLI in-process: the same parser and error handling as `glassgpt ...`) --------------
def cli(capsys, *args) -> tuple[int, str]:
    from glassgpt.cli import main
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from glassgpt.train import TrainConfig, train
    tmp = tmp_path_factory.mktemp("pruning")
    data = prepared(tmp)
    config = GPTConfig.preset("tiny", n_layer=4, d_model=32, n_head=2, context_length=128)
    train(data, tmp / "run", config, TrainConfig(batch_size=4, max_iters=6, eval_interval=3, eval_iters=1, lr=3e-3),
          progress=False)
    return tmp / "run", data


def test_pruning_command_end_to_end(trained_run, tmp_path, capsys):
    run, data = trained_run
    out = tmp_path / "report"
    args = ("experiment", "pruning", run, "-o", out, "--questions", "10", "--batches", "2", "--batch-size", "2",
            "--sizes", "1", "2", "--heal-steps", "2", "--train-baseline", "--context-chars", "120")
    code, err = cli(capsys, *args)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    names = [m["model"] for m in results["models"]]
    assert names == ["original", "paper -1", "naive -1", "paper -2", "naive -2", "paper -2 healed",
                     "naive -2 healed", "baseline, same size", "baseline, half size"]
    by = {m["model"]: m for m in results["models"]}
    assert by["paper -2"]["params"] == by["baseline, same size"]["params"] < by["original"]["params"]
    assert by["baseline, half size"]["params"] < by["baseline, same size"]["params"]
    assert by["naive -2"]["blocks_dropped"] == [2, 3]
    assert by["paper -2"]["blocks_dropped"] == results["choices"]["2"]["paper"]
    assert set(by["original"]["tasks"]) == {"next-line", "blank", "speaker"}
    assert results["chance"] == {"next-line": 0.25, "blank": 0.25, "speaker": 0.25}
    for m in results["models"]:
        assert math.isfinite(m["cross_entropy"]) and 0 <= m["tasks"]["blank"]["acc_norm"] <= 1
    healed = json.loads((out / "runs" / "healed-paper-2" / "train_config.json").read_text())
    assert healed["max_iters"] == 2 and json.loads((out / "runs" / "healed-paper-2" / "config.json").read_text())[
        "n_layer"] == 2                                                           # started from the pruned model
    baseline = json.loads((out / "runs" / "baseline-same-size" / "train_config.json").read_text())
    assert baseline["max_iters"] == 6 and baseline["max_seconds"] is None        # the original's token budget
    report = (out / "report.md").read_text()
    assert "| chance |" in report and "## Findings" in report
    for png in ("angular_distance.png", "accuracy_vs_cross_entropy.png", "cross_entropy_vs_parameters.png"):
        assert (out / png).stat().st_size > 1000
    assert len((out / "tasks" / "speaker.jsonl").read_text().splitlines()) == 10
    # the same command resumes: nothing is measured or trained again
    lines = (out / "samples.jsonl").read_text().splitlines()
    code, err = cli(capsys, *args)
    assert code == 0, err
    assert (out / "samples.jsonl").read_text().splitlines() == lines
    # a given baseline (here: one of the trained ones) is measured as another row
    code, err = cli(capsys, "experiment", "pruning", run, "-o", tmp_path / "given", "--questions", "10",
                    "--batches", "1", "--sizes", "2", "--task", "speaker",
                    "--baseline", out / "runs" / "baseline-half-size")
    assert code == 0, err
    given = json.loads((tmp_path / "given" / "results.json").read_text())
    assert [m["model"] for m in given["models"]][-1] == "baseline baseline-half-size"


def test_pruning_command_bad_input(trained_run, tmp_path, capsys):
    run, data = trained_run
    bad = tmp_path / "bad.jsonl"
    other = Tokenizer.chars("abcdefgh")
    from glassgpt.model import save
    save(GPT(GPTConfig.preset("tiny", vocab_size=other.vocab_size), tokenizer=other), tmp_path / "other")
    cases = [('{"context": "a", "choices": ["b", "c"], "answer": 0}\nnot json\n', ["--task", bad],
              "bad.jsonl:2: not valid JSON"),
             ('{"context": "a", "choices": ["b", "c"], "answer": 5}\n', ["--task", bad], "answer 5 is out of range"),
             ("", ["--sizes", "4"], "cannot drop 4 of 4 blocks"),
             ("", ["--focus", "0"], "cannot drop 0 of 4 blocks"),
             ("", ["--baseline", tmp_path / "other"], "uses another tokenizer")]
    for i, (text, extra, message) in enumerate(cases):
        bad.write_text(text)
        code, err = cli(capsys, "experiment", "pruning", run, "-o", tmp_path / str(i), *extra)
        assert code == 2 and message in err, err
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
