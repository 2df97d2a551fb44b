"""Escapes typed on the command line: \\n and friends work, non-ASCII text passes unchanged."""
from __future__ import annotations

import glassgpt.experiments.temperature as temperature_study
from glassgpt.cli import experiment, main
from glassgpt.cli.escapes import unescape


def test_unescape_keeps_non_ascii_and_turns_escapes_into_characters():
    assert unescape("café\\n") == "café\n"
    assert unescape("naïve\\t× 日本\\\\n") == "naïve\t× 日本\\n"
    assert unescape("plain") == "plain"


def test_experiment_prompts_pass_non_ascii_through(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(experiment, "make_completer", lambda args: object())
    monkeypatch.setattr(temperature_study, "run_temperature_study",
                        lambda completer, out, settings, **kw: seen.setdefault("prompts", settings.prompts))
    assert main(["experiment", "temperature", "RUN", "-o", str(tmp_path / "r"),
                 "--prompts", "café\\n", "Ünïcödé"]) == 0
    assert seen["prompts"] == ["café\n", "Ünïcödé"]
