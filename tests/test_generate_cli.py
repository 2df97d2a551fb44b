"""`glassgpt generate` and `glassgpt play`: in-process, and end to end in a subprocess."""
from __future__ import annotations

import argparse
import importlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import tiny_model
from glassgpt.cli import COMMANDS
from glassgpt.errors import GlassError

SRC = Path(__file__).resolve().parents[1] / "src"


def test_every_cli_module_imports():
    """`python -m glassgpt` needs the whole CLI: a broken import fails here, not as a skip."""
    for name in COMMANDS:
        importlib.import_module(f"glassgpt.cli.{name}")


def run_command(module: str, argv: list[str], monkeypatch, model) -> int:
    """Parse argv with one CLI module's parser and run it on `model` (load patched)."""
    import glassgpt.model

    monkeypatch.setattr(glassgpt.model, "load", lambda path, device="cpu": model)
    parser = argparse.ArgumentParser()
    importlib.import_module(f"glassgpt.cli.{module}").register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_generate_streams_the_greedy_continuation(monkeypatch, capsys):
    model = tiny_model(scale=4.0)
    expected = model.generate("the ", max_new_tokens=15, temperature=0)[0]
    assert run_command("generate", ["generate", "RUN", "--prompt", "the ", "--max-new-tokens", "15",
                                    "--temperature", "0"], monkeypatch, model) == 0
    out = capsys.readouterr()
    assert out.out == "the " + expected.text + "\n"
    assert f"stopped: {expected.finish_reason}" in out.err


def record_scopes(monkeypatch) -> list:
    """Keep every fast-decoding scope the command opens (its settings, the copies it held at the end)."""
    import contextlib

    import glassgpt.generate.fast as fast

    scopes, real = [], fast.fast_decode

    @contextlib.contextmanager
    def recording(model, *args, **kwargs):
        with real(model, *args, **kwargs) as scope:
            yield scope
            scopes.append((scope.dtype, scope.copies_enabled, scope.bytes_held))
    monkeypatch.setattr(fast, "fast_decode", recording)
    return scopes


def test_generate_with_half_precision_decode_weights(monkeypatch, capsys):
    model = tiny_model(scale=4.0)
    expected = model.generate("the ", max_new_tokens=15, temperature=0)[0]
    scopes = record_scopes(monkeypatch)
    run_command("generate", ["generate", "RUN", "--prompt", "the ", "--max-new-tokens", "15", "--temperature", "0",
                             "--decode-weights", "float16"], monkeypatch, model)
    assert [(dtype, copies) for dtype, copies, _ in scopes] == [(torch.float16, True)]
    assert scopes[0][2] > 0                                               # half copies were read
    assert capsys.readouterr().out == "the " + expected.text + "\n"


def test_generate_without_weight_copies_gives_the_same_text(monkeypatch, capsys):
    model = tiny_model(scale=4.0)
    expected = model.generate("the ", max_new_tokens=15, temperature=0)[0]
    scopes = record_scopes(monkeypatch)
    run_command("generate", ["generate", "RUN", "--prompt", "the ", "--max-new-tokens", "15", "--temperature", "0",
                             "--no-weight-copies"], monkeypatch, model)
    assert scopes == [(None, False, 0)]                                   # no copies made
    assert capsys.readouterr().out == "the " + expected.text + "\n"


def test_generate_with_a_draft_model_gives_the_greedy_text(monkeypatch, capsys):
    import glassgpt.model

    model, draft = tiny_model(scale=4.0), tiny_model(scale=2.0, seed=1)
    expected = model.generate("the ", max_new_tokens=15, temperature=0)[0]
    calls, forward = [], draft.forward
    monkeypatch.setattr(draft, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    monkeypatch.setattr(glassgpt.model, "load", lambda path, device="cpu", tokenizer=True: draft)
    parser = argparse.ArgumentParser()
    importlib.import_module("glassgpt.cli.generate").register(parser.add_subparsers())
    args = parser.parse_args(["generate", "RUN", "--prompt", "the ", "--max-new-tokens", "15", "--temperature", "0",
                              "--draft", "DRAFT", "--draft-tokens", "3"])
    monkeypatch.setattr("glassgpt.cli.generate.load_with_tokenizer", lambda args: model)
    assert args.func(args) == 0
    assert capsys.readouterr().out == "the " + expected.text + "\n"
    assert calls                                                    # the draft proposed the tokens


def test_generate_samples_with_logprobs_and_an_empty_prompt(monkeypatch, capsys):
    model = tiny_model(scale=4.0)
    run_command("generate", ["generate", "RUN", "--num-samples", "2", "--max-new-tokens", "5", "--seed", "1",
                             "--logprobs", "2", "--top-k", "5"], monkeypatch, model)
    out = capsys.readouterr().out
    assert out.count("--- sample") == 2 and "p model" in out


def test_generate_bad_temperature_is_a_glass_error(monkeypatch, capsys):
    with pytest.raises(GlassError, match="temperature"):
        run_command("generate", ["generate", "RUN", "--prompt", "a", "--temperature", "-1"], monkeypatch,
                    tiny_model())
    assert capsys.readouterr().out == ""                           # the error comes before the prompt


def test_generate_bad_draft_tokens_is_an_error_before_any_output(monkeypatch, capsys):
    import glassgpt.model

    model, draft = tiny_model(scale=4.0), tiny_model(scale=2.0, seed=1)
    monkeypatch.setattr(glassgpt.model, "load", lambda path, device="cpu", tokenizer=True: draft)
    monkeypatch.setattr("glassgpt.cli.generate.load_with_tokenizer", lambda args: model)
    parser = argparse.ArgumentParser()
    importlib.import_module("glassgpt.cli.generate").register(parser.add_subparsers())
    args = parser.parse_args(["generate", "RUN", "--prompt", "the ", "--draft", "DRAFT", "--draft-tokens", "0"])
    with pytest.raises(GlassError, match="draft_tokens"):
        args.func(args)
    assert capsys.readouterr().out == ""


def test_play_runs_piped_commands_over_a_session(monkeypatch, capsys):
    model = tiny_model(scale=4.0)
    commands = "the cat\n/top 3\n/temp 0\n\n/rewind 4\n/undo\n/rewind 999\n/bogus\n/show\n/quit\nnever read\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(commands))
    assert run_command("play", ["play", "RUN", "--chunk", "6"], monkeypatch, model) == 0
    out = capsys.readouterr().out.splitlines()
    greedy = model.generate("the cat", max_new_tokens=6, temperature=0)[0]
    assert "[7 tokens]" in out
    assert sum("█" in line for line in out) == 3                          # /top 3: three bars
    assert "temperature = 0.0" in out
    assert any(line.startswith(greedy.text + "   [") for line in out)    # the chunk at T=0 is greedy
    assert any(line.startswith("error: cannot rewind 999") for line in out)
    assert any(line.startswith("error: unknown command /bogus") for line in out)
    assert out[-1] == "the cat" + greedy.text                             # /show after rewind + undo
    assert not any("never read" in line for line in out)


def cli(*argv, stdin: str | None = None):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "glassgpt", *argv], input=stdin, capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from glassgpt.model import save
    from glassgpt.tokenizer import Tokenizer

    tok = Tokenizer.chars("the quick brown fox jumps over the lazy dog.\n", special_tokens=("<|endoftext|>",))
    model = tiny_model(scale=4.0, vocab_size=tok.vocab_size, tokenizer=tok)
    return save(model, tmp_path_factory.mktemp("run") / "run"), model


def test_cli_generate_end_to_end(run_dir):
    path, model = run_dir
    r = cli("generate", str(path), "--prompt", "the ", "--max-new-tokens", "12", "--temperature", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "the " + model.generate("the ", max_new_tokens=12, temperature=0)[0].text + "\n"


def test_cli_play_with_piped_commands_end_to_end(run_dir):
    path, model = run_dir
    r = cli("play", str(path), "--temperature", "0", "--chunk", "5",
            stdin="the \n\n/top 2\n/rewind 5\n/show\n/rewind 99\n")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.startswith(model.generate("the ", max_new_tokens=5, temperature=0)[0].text + "   [")
               for line in lines)
    assert lines[-2] == "the " and lines[-1].startswith("error: cannot rewind 99")


def test_cli_errors_exit_2_with_one_line(monkeypatch, capsys):
    import glassgpt.model
    from glassgpt.cli import main

    monkeypatch.setattr(glassgpt.model, "load", lambda path, device="cpu": tiny_model())
    assert main(["generate", "RUN", "--prompt", "the", "--top-p", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: top_p") and err.count("\n") == 1
    monkeypatch.setattr(glassgpt.model, "load", lambda path, device="cpu": tiny_model(vocab_size=40))
    assert main(["play", "RUN"]) == 2
    assert "no tokenizer.json" in capsys.readouterr().err
