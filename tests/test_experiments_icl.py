"""In-context learning experiment: the GINC generator, prompts, exact references, scoring,
patterns, and the whole pipeline end to end on a tiny model."""
import itertools
import json
import math

import numpy as np
import pytest

from glassgpt.cli import main
from glassgpt.errors import GlassError
from glassgpt.experiments.completer import TopScores
from glassgpt.experiments.icl import DELIMITER, DOCUMENT_SEPARATOR, Ginc, GincSettings
from glassgpt.experiments.icl.patterns import MAKERS, PatternSettings, remap, run_patterns
from glassgpt.experiments.icl.prompts import (check_fits, largest_k, make_prompt, nested_prompts, prompt_chars,
                                              reference_answers)
from glassgpt.experiments.icl.runner import IclSettings, make_cases, run_icl

SMALL = GincSettings(concepts=3, entities=3, properties=4, vocab=8, document_length=64, documents=10, sharpness=3.0)


def chi_square_bound(dof: int, z: float = 6.0) -> float:
    """Upper quantile of chi-square(dof) at ~z standard deviations (Wilson-Hilferty): far out, so
    a correct generator passes with any seed; the seeds are fixed anyway."""
    a = 2.0 / (9 * dof)
    return dof * (1 - a + z * math.sqrt(a)) ** 3


def chi_square(observed: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Statistic and degrees of freedom; cells with zero probability must be empty."""
    expected = observed.sum() * probs
    assert observed[probs == 0].sum() == 0, "a transition with probability 0 happened"
    keep = probs > 0
    return float(((observed[keep] - expected[keep]) ** 2 / expected[keep]).sum()), int(keep.sum()) - 1


# -- the HMM generator ---------------------------------------------------------------------------
def test_documents_follow_their_transition_matrices():
    ginc = Ginc(SMALL)
    rng = np.random.default_rng(0)
    for concept in range(SMALL.concepts):
        entities, properties = ginc.sample_states(concept, 2000, 30, rng)            # 58,000 transitions
        for name, states, matrix in (("property", properties, ginc.property_transition[concept]),
                                     ("entity", entities, ginc.entity_transition)):
            n = matrix.shape[0]
            counts = np.zeros((n, n))
            np.add.at(counts, (states[:, :-1].ravel(), states[:, 1:].ravel()), 1)
            for i in range(n):
                stat, dof = chi_square(counts[i], matrix[i])
                assert stat < chi_square_bound(dof), (name, concept, i, stat)
        # the check can fail: the same counts against another concept's matrix are far off
        other = ginc.property_transition[(concept + 1) % SMALL.concepts]
        counts = np.zeros((SMALL.properties,) * 2)
        np.add.at(counts, (properties[:, :-1].ravel(), properties[:, 1:].ravel()), 1)
        assert sum(((counts[i] - counts[i].sum() * other[i]) ** 2 / np.maximum(counts[i].sum() * other[i], 1e-9))
                   .sum() for i in range(SMALL.properties)) > 10 * chi_square_bound(SMALL.properties ** 2)
        stat, dof = chi_square(np.bincount(properties[:, 0], minlength=SMALL.properties),
                               ginc.property_start[concept])
        assert stat < chi_square_bound(dof)


def test_emissions_and_the_delimiter():
    ginc = Ginc(SMALL)
    entities, properties = ginc.sample_states(0, 50, 20, np.random.default_rng(1))
    ids = ginc.emit(entities, properties)
    assert ((ids == -1) == (properties == 0)).all()                  # property 0 shows the delimiter, only it
    assert (ids[properties > 0] == ginc.memory[entities, properties][properties > 0]).all()
    for e in range(SMALL.entities):                                 # an entity's properties show distinct symbols
        assert len(set(ginc.memory[e, 1:])) == SMALL.properties - 1
    _, properties = ginc.sample_states(0, 200, 20, np.random.default_rng(1), delimiter=False)
    assert (properties != 0).all()                                  # a prompt example never shows it


def test_seeds_reproduce():
    a, b = Ginc(SMALL), Ginc(SMALL)
    assert np.array_equal(a.property_transition, b.property_transition) and np.array_equal(a.memory, b.memory)
    assert a.documents() == b.documents() and a.corpus() == b.corpus()
    other = Ginc(GincSettings(**{**SMALL.to_dict(), "document_seed": 2}))
    assert other.documents() != a.documents() and np.array_equal(other.memory, a.memory)
    assert not np.array_equal(Ginc(GincSettings(**{**SMALL.to_dict(), "seed": 5})).property_transition,
                              a.property_transition)
    docs = a.documents()
    assert len(docs) == SMALL.documents and all(len(t) == SMALL.document_length for _, t in docs)
    assert set(a.corpus()) <= set(a.symbols) | {DELIMITER, DOCUMENT_SEPARATOR}


@pytest.mark.parametrize("changes, message", [
    ({"vocab": 0}, "vocabulary is empty"),
    ({"properties": 12, "vocab": 8}, "give --vocab >= 11"),
    ({"properties": 1}, "at least 2 properties"),
    ({"vocab": 100}, "single characters"),
])
def test_bad_settings_are_one_line_errors(changes, message):
    with pytest.raises(GlassError, match=message):
        Ginc(GincSettings(**{**SMALL.to_dict(), **changes}))


def test_forward_algorithm_matches_brute_force_over_state_paths():
    ginc = Ginc(SMALL)
    ids = [int(i) for i in ginc.emit(*ginc.sample_states(1, 1, 3, np.random.default_rng(3), delimiter=False))[0]]
    start, transition, symbol = ginc.chain(1)
    n_states = len(start)
    brute = 0.0
    for path in itertools.product(range(n_states), repeat=len(ids)):
        if all(symbol[s] == i for s, i in zip(path, ids)):
            p = start[path[0]]
            for s, t in zip(path, path[1:]):
                p *= transition[s, t]
            brute += p
    assert math.isclose(ginc.log_likelihood(1, ids), math.log(brute), rel_tol=1e-9)
    # p(next symbol | ids): brute force over the next state
    following = [sum(math.exp(ginc.log_likelihood(1, ids + [v])) for v in [v]) for v in range(SMALL.vocab)]
    assert np.allclose(ginc.next_symbol(1, ids), np.array(following) / brute)


# -- prompts -------------------------------------------------------------------------------------
def test_prompts_have_exactly_k_examples_from_one_concept():
    ginc = Ginc(SMALL)
    for k, length in ((0, 3), (1, 2), (5, 4), (12, 3)):
        p = make_prompt(ginc, k, length, np.random.default_rng(k), concept=2)
        text = p.text(ginc)
        assert text.startswith(DOCUMENT_SEPARATOR) and len(text) + 1 == prompt_chars(k, length)
        parts = text[1:].split(DELIMITER)
        assert len(parts) == k + 1 and all(len(x) == length for x in parts[:-1]) and len(parts[-1]) == length - 1
        assert p.shown_labels == p.gold_labels and len(p.inputs) == k
        for x, y in zip(p.inputs, p.gold_labels):                      # possible under the concept that made them
            assert ginc.log_likelihood(2, x + [y]) > -np.inf
    prompts = nested_prompts(ginc, [0, 2, 6], 4, np.random.default_rng(0))
    assert len({(p.concept, tuple(p.query), p.answer) for p in prompts}) == 1
    assert prompts[1].inputs == prompts[2].inputs[:2]


def test_random_labels_are_uniform_over_the_label_space():
    ginc = Ginc(SMALL)
    rng = np.random.default_rng(0)
    labels = [y for _ in range(300) for y in make_prompt(ginc, 20, 3, rng, labels="random").shown_labels]
    counts = np.array([labels.count(s) for s in ginc.label_space])
    assert counts.sum() == len(labels)                                # nothing outside the label space
    stat, dof = chi_square(counts, np.full(len(counts), 1 / len(counts)))
    assert stat < chi_square_bound(dof)


def test_the_bayes_reference_identifies_the_concept_from_many_examples():
    ginc = Ginc(SMALL)
    rng = np.random.default_rng(0)
    posts = [reference_answers(ginc, make_prompt(ginc, 40, 5, rng))["posterior_true"] for _ in range(10)]
    assert min(posts) > 0.99


def test_k_larger_than_the_context_names_the_largest_that_fits():
    assert prompt_chars(largest_k(5, 100), 5) <= 100 < prompt_chars(largest_k(5, 100) + 1, 5)
    with pytest.raises(GlassError, match=f"the largest k that fits is {largest_k(8, 100)}"):
        check_fits([0, 4, 32], [3, 8], 100)
    check_fits([0, largest_k(8, 100)], [3, 8], 100)


# -- scoring against scripted completers ---------------------------------------------------------
class ScriptedCompleter:
    """Answers by a rule: right (the answers of the prompts in the order the runner asks them) or
    uniformly random over the label space."""

    def __init__(self, ginc, answers: list[tuple[str, str]], right: bool, seed: int = 0):
        self.ginc, self.answers, self.right = ginc, iter(answers), right
        self.rng = np.random.default_rng(seed)
        self.name = "right" if right else "random"

    def top_scores(self, prompt, k):
        text, answer = next(self.answers)
        assert text == prompt
        guess = answer if self.right else self.ginc.text([self.rng.choice(self.ginc.label_space)])
        others = [s for s in self.ginc.symbols if s != guess]
        shown = others[:k - 1]
        return TopScores(tokens=[guess] + shown, scores=[5.0] + [0.0] * len(shown), kind="logits",
                         rest=[0.0] * (len(others) - len(shown)))


def test_a_right_completer_scores_one_and_a_random_one_scores_chance(tmp_path):
    ginc = Ginc(SMALL)
    settings = IclSettings(ks=[0, 2], lengths=[3], prompts=10, seeds=2)
    answers = [(c.prompt.text(ginc), ginc.text([c.prompt.answer])) for c in make_cases(ginc, settings)]
    right = run_icl(ScriptedCompleter(ginc, answers, True), ginc, tmp_path / "right", settings, progress=False)
    assert all(c["accuracy"]["mean"] == 1.0 for c in right["cells"])
    p = math.exp(5) / (math.exp(5) + len(ginc.symbols) - 1)
    assert all(math.isclose(c["p_answer"]["mean"], p) for c in right["cells"])
    settings = IclSettings(ks=[1], lengths=[3], labels=["gold"], prompts=100, seeds=2)
    answers = [(c.prompt.text(ginc), ginc.text([c.prompt.answer])) for c in make_cases(ginc, settings)]
    rand = run_icl(ScriptedCompleter(ginc, answers, False), ginc, tmp_path / "random", settings, progress=False)
    chance = rand["chance"]
    assert chance == 1 / len(ginc.label_space)
    for c in rand["cells"]:
        n = c["prompts"]
        sem = math.sqrt(chance * (1 - chance) / n)                   # binomial error of the pooled mean
        assert abs(c["accuracy"]["mean"] - chance) < 4 * sem
    report = (tmp_path / "random" / "report.md").read_text()
    assert "accuracy_vs_k.png" in report and (tmp_path / "random" / "accuracy_vs_k.png").stat().st_size > 0


# -- patterns ------------------------------------------------------------------------------------
def closes(symbols: list[str]) -> bool:
    """Every ;-separated word is a balanced Dyck-2 word."""
    for word in "".join(symbols).split(";"):
        stack = []
        for s in word:
            if s in "([":
                stack.append(s)
            elif not stack or {"(": ")", "[": "]"}[stack.pop()] != s:
                return False
        if stack:
            return False
    return True


def test_pattern_targets_continue_their_patterns():
    for seed in range(30):
        rng = np.random.default_rng(seed)
        b = MAKERS["brackets"](rng)
        assert closes(b.prompt + b.target) and not closes(b.prompt + b.target[1:])
        c = MAKERS["counting"](rng)
        runs = "".join(c.prompt).split("|")[:-1]
        assert [len(r) for r in runs] == list(range(1, len(runs) + 1)) and c.target == ["a"] * (len(runs) + 1) + ["|"]
        r = MAKERS["repetition"](rng)
        seq = r.prompt + r.target
        period = len(set(seq))
        assert all(seq[i] == seq[i - period] for i in range(period, len(seq)))
        m = remap(b, "xyzuvw", rng)
        table = dict(zip(b.prompt + b.target, m.prompt + m.target))
        assert len(set(table.values())) == len(table) and set(table.values()) <= set("xyzuvw")


class EchoCompleter:
    name = "oracle"

    def __init__(self, targets):
        self.targets = targets

    def complete(self, prompt, *, max_tokens, temperature, seed, logprobs=0, stop=None):
        from glassgpt.experiments.completer import Completion
        text = self.targets.get(prompt, "?")
        return Completion(text=text, tokens=list(text))


def test_patterns_score_an_oracle_one(tmp_path):
    from glassgpt.experiments.icl.patterns import make_instances

    settings = PatternSettings(instances=4, seeds=2, alphabet="pqrstuvw")
    targets = {"".join(i.prompt): "".join(i.target) for _, _, _, i in make_instances(settings, "pqrstuvw")}
    results = run_patterns(EchoCompleter(targets), tmp_path / "p", settings, progress=False)
    assert all(r["exact"]["mean"] == 1.0 for r in results["rows"])
    assert (tmp_path / "p" / "patterns.png").exists()


# -- end to end ----------------------------------------------------------------------------------
def test_the_whole_pipeline_on_a_tiny_model(tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "report"
    tiny = ["--concepts", "2", "--entities", "2", "--properties", "4", "--vocab", "6", "--documents", "30",
            "--document-length", "120"]
    assert main(["experiment", "icl", "train", *tiny, "--d-model", "16", "--layers", "1", "--heads", "2",
                 "--context", "48", "--max-iters", "3", "--batch-size", "2", "-o", str(run)]) == 0
    assert (run / "model.safetensors").exists() and (run / "data" / "ginc.json").exists()
    args = ["experiment", "icl", "run", str(run), "--ks", "0", "1", "4", "--lengths", "3", "--prompts", "3",
            "--seeds", "2", "-o", str(out)]
    assert main(args) == 0
    samples = (out / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 3 * 2 * 3 * 2                            # k x labels x prompts x seeds
    results = json.loads((out / "results.json").read_text())
    assert results["pretraining_fit"]["mixture"] <= results["pretraining_fit"]["model"]
    assert {"accuracy", "lengths", "attention"} <= set(results["figures"])
    assert "glassgpt.inspect.head_roles" in (out / "report.md").read_text()
    roles = results["head_roles"]
    assert set(roles["scores"]) >= {"induction", "previous_token"}
    assert all(0 <= v <= 1 for per_layer in roles["scores"]["induction"] for v in per_layer)
    assert main(args) == 0                                          # resumes: nothing new
    assert len((out / "samples.jsonl").read_text().splitlines()) == len(samples)
    assert main(["experiment", "icl", "patterns", str(run), "--instances", "1", "--seeds", "1",
                 "-o", str(tmp_path / "patterns")]) == 0
    capsys.readouterr()
    # bad input: one line, exit 2, what was written is kept
    assert main(["experiment", "icl", "run", str(run), "--ks", "0", "40", "--lengths", "3", "-o",
                 str(tmp_path / "big")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the largest k that fits is 11" in err
    assert main(["experiment", "icl", "run", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--ginc",
                 str(run), "--retries", "0", "--timeout", "1", "--ks", "0", "--lengths", "3", "-o",
                 str(tmp_path / "remote")]) == 2
    err = capsys.readouterr().err.splitlines()[-1]                  # after the progress bar
    assert err.startswith("error: ") and "failed after 1 attempts" in err and "samples so far are kept" in err
    assert (tmp_path / "remote" / "settings.json").exists()
    assert main(["experiment", "icl", "build", "--vocab", "0", "-o", str(tmp_path / "b")]) == 2
    assert "vocabulary is empty" in capsys.readouterr().err


def test_answers_from_an_endpoints_top_logprobs():
    from glassgpt.experiments.icl.runner import answer_of

    class Endpoint:
        name = "endpoint"

        def __init__(self, tokens, logprobs):
            self.top = TopScores(tokens=tokens, scores=logprobs, kind="logprobs")

        def top_scores(self, prompt, k):
            return self.top

    out = answer_of(Endpoint([" b", "a"], [math.log(0.6), math.log(0.3)]), "x", "b", 20)
    assert out == {"predicted": "b", "correct": True, "p_answer": pytest.approx(0.6)}     # a BPE token's space
    out = answer_of(Endpoint(["bc", "a"], [math.log(0.6), math.log(0.3)]), "x", "a", 20)
    assert out["predicted"] == "b" and not out["correct"] and out["p_answer"] == pytest.approx(0.3)
    assert answer_of(Endpoint(["b"], [0.0]), "x", "z", 20)["p_answer"] is None            # not among the top
