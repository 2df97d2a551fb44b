"""Both experiments end to end on stand-in completers whose behaviour is known, including
resuming, and the temperature mechanism on a real (tiny) model."""
import json

import numpy as np
import pytest

from helpers import MarkovCompleter, experiment_model
from glassgpt.errors import GlassError
from glassgpt.experiments.ascii_diffusion import DiffusionSettings, run_ascii_diffusion
from glassgpt.experiments.ascii_diffusion.builder import Frame
from glassgpt.experiments.ascii_diffusion.prompt import open_sequence
from glassgpt.experiments.ascii_diffusion.runner import make_test_cases
from glassgpt.experiments.completer import Completion, GlassCompleter
from glassgpt.experiments.temperature import TemperatureSettings, run_temperature_study, temperature_mechanism


def settings(**kw):
    return TemperatureSettings(**{"prompts": ["a", "c"], "temperatures": [0.2, 1.0, 2.0], "seeds": 3,
                                  "samples_per_seed": 2, "length": 40, **kw})


def test_temperature_study_measures_the_collapse_of_a_known_chain(tmp_path):
    results = run_temperature_study(MarkovCompleter(margin=2.0), tmp_path / "report", settings(), progress=False)
    per_t = {p["temperature"]: p["metrics"] for p in results["per_temperature"]}
    # at T=0.2 the chain almost always takes its preferred step: the loop abcdefgh repeats
    assert per_t[0.2]["rep_4"]["mean"] > 0.7 > per_t[2.0]["rep_4"]["mean"]
    assert per_t[0.2]["loop_span"]["mean"] > per_t[2.0]["loop_span"]["mean"]
    ce = {t: per_t[t]["cross_entropy"]["mean"] for t in (0.2, 1.0, 2.0)}
    assert ce[0.2] < ce[1.0] < ce[2.0]
    # the entropy of this chain is the same at every position: measured, not assumed
    z = np.exp(2) + 7
    h = -np.exp(2) / z * np.log(np.exp(2) / z) + 7 / z * np.log(z)
    assert per_t[0.2]["mean_entropy"]["mean"] == pytest.approx(h)
    findings = {f["metric"]: f for f in results["findings"]}
    assert findings["rep_4"]["trend"] == "falls as T rises" and findings["rep_4"]["rho"] < -0.5
    report = (tmp_path / "report" / "report.md").read_text()
    assert "repeated 4-gram fraction** falls as T rises" in report
    assert "![mechanism](mechanism.png)" in report
    for name in ("results.json", "samples.jsonl", "mechanism.png", "metrics_vs_temperature.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    stored = json.loads((tmp_path / "report" / "results.json").read_text())
    assert stored["per_temperature"][0]["samples"] == 2 * 3 * 2
    lines = (tmp_path / "report" / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 3 * 3 * 2 * 2


def test_mechanism_divides_scores_and_keeps_the_order():
    mech = temperature_mechanism(MarkovCompleter(margin=2.0), "a", [0.5, 1.0, 2.0], k=3)
    assert mech["scores"] == [2.0, 0.0, 0.0] and mech["normalised_over"] == "whole vocabulary"
    rows = {r["temperature"]: r for r in mech["rows"]}
    assert rows[0.5]["scaled"] == [4.0, 0.0, 0.0]
    assert rows[1.0]["probs"][0] == pytest.approx(np.exp(2) / (np.exp(2) + 7))
    assert rows[0.5]["probs"][0] > rows[1.0]["probs"][0] > rows[2.0]["probs"][0] and mech["order_kept"]


def test_mechanism_on_a_real_model_uses_its_logits():
    model, _ = experiment_model()
    mech = temperature_mechanism(GlassCompleter(model), "the ", [0.01, 1.0], k=5)
    rows = {r["temperature"]: r for r in mech["rows"]}
    assert rows[0.01]["probs"][0] > 0.99 or mech["scores"][0] - mech["scores"][1] < 0.05
    assert sum(rows[1.0]["probs"]) + rows[1.0]["rest_mass"] == pytest.approx(1.0)


class FailingAfter(MarkovCompleter):
    def __init__(self, n):
        super().__init__()
        self.left = n

    def complete(self, *args, **kw):
        if self.left == 0:
            raise GlassError("endpoint down")
        self.left -= 1
        return super().complete(*args, **kw)


def test_partial_results_survive_an_error_and_the_run_resumes(tmp_path):
    out = tmp_path / "report"
    with pytest.raises(GlassError, match="endpoint down"):
        run_temperature_study(FailingAfter(5), out, settings(), progress=False)
    assert len((out / "samples.jsonl").read_text().splitlines()) == 5
    counting = FailingAfter(10 ** 6)
    run_temperature_study(counting, out, settings(), progress=False)
    assert 10 ** 6 - counting.left == 36 - 5                     # only the missing samples were made
    assert len((out / "samples.jsonl").read_text().splitlines()) == 36
    with pytest.raises(GlassError, match="other settings"):
        run_temperature_study(MarkovCompleter(), out, settings(length=10), progress=False)


def test_endpoint_without_logprobs_reports_what_it_could_not_compute(tmp_path):
    class TextOnly(MarkovCompleter):
        def complete(self, *args, **kw):
            c = super().complete(*args, **kw)
            return Completion(text=c.text, tokens=c.tokens)
    results = run_temperature_study(TextOnly(), tmp_path / "r", settings(seeds=2), progress=False)
    assert set(results["unavailable"]) == {"mean_entropy", "cross_entropy"}
    assert "Could not be computed" in (tmp_path / "r" / "report.md").read_text()


class CopyLastFrame:
    """A model that has learned nothing but copying: it repeats the last frame it was shown."""
    name = "copier"

    def complete(self, prompt, *, max_tokens, temperature, seed, logprobs=0, stop=None):
        last = prompt[prompt.rindex("[step"):]
        return Completion(text=(last * 3)[:max_tokens], tokens=list(last * 3)[:max_tokens])


def small_diffusion(**kw):
    return DiffusionSettings(**{"sizes": [[3, 3], [5, 4], [8, 5]], "noise": [0.8, 0.4, 0.0], "examples": 1,
                                "test_kinds": ["ring", "digit"], "pictures_per_kind": 1,
                                "temperatures": [0.5, 1.0], "seeds": 2, **kw})


def test_ascii_diffusion_run_scores_a_copying_model_as_stuck(tmp_path):
    results = run_ascii_diffusion(CopyLastFrame(), tmp_path / "d", small_diffusion(), progress=False)
    for p in results["per_temperature"]:
        assert p["runs"] == 4
        assert p["scores"]["stuck"]["mean"] == 1.0 and p["scores"]["finished"]["mean"] == 0.0
        assert p["scores"]["sizes_follow_schedule"]["mean"] == 0.0
        assert p["generated_frames"] == 3                          # three copies of the given frame
    report = (tmp_path / "d" / "report.md").read_text()
    assert "![frames at frames_T0.5.png](frames_T0.5.png)" in report and "| T | runs |" in report
    for name in ("frames_T0.5.png", "frames_T1.png", "scores_vs_temperature.png", "results.json"):
        assert (tmp_path / "d" / name).stat().st_size > 0
    assert len((tmp_path / "d" / "samples.jsonl").read_text().splitlines()) == 2 * 2 * 2


class Scripted:
    """A completer whose text for a prompt is `self.continuation(prompt, stop)`, ending at a stop."""

    def complete(self, prompt, *, max_tokens, temperature, seed, logprobs=0, stop=None):
        text = self.continuation(prompt, stop)
        return Completion(text=text, tokens=list(text), finish_reason="stop")


class Oracle(Scripted):
    """Writes the held-out picture's remaining frames exactly, then stops at </picture> and
    drops it from the text, as glassgpt and servers do with a stop string."""
    name = "oracle"

    def __init__(self, settings):
        self.targets = {c.prompt: c.target_text for c in make_test_cases(settings)}

    def continuation(self, prompt, stop):
        rest = self.targets[prompt][len(open_sequence(prompt)):]
        return rest[:rest.index(stop[0])]


def test_ascii_diffusion_run_scores_a_perfect_model_as_finished(tmp_path):
    settings = small_diffusion()
    results = run_ascii_diffusion(Oracle(settings), tmp_path / "d", settings, progress=False)
    for p in results["per_temperature"]:
        assert p["scores"]["finished"]["mean"] == 1.0 and p["scores"]["grows"]["mean"] == 1.0
        assert p["scores"]["sizes_follow_schedule"]["mean"] == 1.0 and p["scores"]["stuck"]["mean"] == 0.0
        assert p["scores"]["final_similarity"]["mean"] == 1.0
        assert p["scores"]["final_isolated"]["mean"] == pytest.approx(results["target_isolated"])
        assert p["scores"]["final_ink"]["mean"] == pytest.approx(results["target_ink"]) and 0 < results["target_ink"]


class BlankCanvas(Scripted):
    """Follows the schedule to the letter but draws nothing: every frame all blank."""
    name = "blank"

    def __init__(self, settings):
        self.settings = settings

    def continuation(self, prompt, stop):
        s = self.settings.schedule
        frames = [Frame(k + 1, s.frames, w, h, p, tuple(" " * w for _ in range(h)))
                  for k, ((w, h), p) in enumerate(zip(s.sizes, s.noise))][self.settings.given:]
        return "".join(f.text() + "\n" for f in frames)


def test_a_blank_canvas_finishes_but_draws_nothing(tmp_path):
    settings = small_diffusion()
    results = run_ascii_diffusion(BlankCanvas(settings), tmp_path / "d", settings, progress=False)
    for p in results["per_temperature"]:
        assert p["scores"]["finished"]["mean"] == 1.0 and p["scores"]["final_ink"]["mean"] == 0.0
        assert p["scores"]["final_similarity"]["mean"] == pytest.approx(results["blank_similarity"])
    assert results["blank_similarity"] < 1.0
    assert "a blank canvas: " in (tmp_path / "d" / "report.md").read_text()


def test_ascii_diffusion_on_image_files(tmp_path):
    from PIL import Image, ImageDraw
    image = Image.new("L", (64, 40))
    ImageDraw.Draw(image).ellipse((10, 5, 50, 35), fill=255)
    image.save(tmp_path / "blob.png")
    results = run_ascii_diffusion(CopyLastFrame(), tmp_path / "d", small_diffusion(
        test_files=[str(tmp_path / "blob.png")], temperatures=[1.0], seeds=1), progress=False)
    assert results["pictures"] == ["0:blob.png"]
    with pytest.raises(GlassError, match="cannot be read"):
        (tmp_path / "bad.png").write_text("nope")
        run_ascii_diffusion(CopyLastFrame(), tmp_path / "e", small_diffusion(test_files=[str(tmp_path / "bad.png")]),
                            progress=False)
