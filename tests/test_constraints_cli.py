"""`glassgpt generate --choice/--regex/--integer/--json-schema/--grammar` and `glassgpt play`'s
constraint commands, in-process over a tiny model."""
from __future__ import annotations

import argparse
import importlib
import io
import json
import re

import pytest

from helpers import WIDE_ALPHABET, char_tokenizer, tiny_model
from glassgpt.cli import main


@pytest.fixture()
def model(monkeypatch):
    import glassgpt.model

    tok = char_tokenizer(WIDE_ALPHABET)
    m = tiny_model(scale=4.0, vocab_size=tok.vocab_size, tokenizer=tok)
    monkeypatch.setattr(glassgpt.model, "load", lambda path, device="cpu": m)
    return m


def run(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("flags, check", [
    (["--choice", "yes", "no", "maybe"], lambda t: t in ("yes", "no", "maybe")),
    (["--regex", "[0-9]{2}-[a-z]{3}"], lambda t: re.fullmatch("[0-9]{2}-[a-z]{3}", t)),
    (["--integer", "--min", "10", "--max", "99"], lambda t: 10 <= int(t) <= 99),
])
def test_generate_flags_constrain_the_output(model, capsys, flags, check):
    code, out, err = run(["generate", "RUN", "--prompt", "the ", "--seed", "1", "--max-new-tokens", "20", *flags],
                         capsys)
    assert code == 0, err
    assert out.startswith("the ") and check(out[len("the "):].rstrip("\n"))


def test_generate_json_schema_and_grammar_files(model, capsys, tmp_path):
    schema = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 1,
              "maxItems": 3}                                    # the alphabet has no braces: an array
    (tmp_path / "s.json").write_text(json.dumps(schema))
    code, out, err = run(["generate", "RUN", "--prompt", "x", "--max-new-tokens", "30", "--json-schema",
                          str(tmp_path / "s.json")], capsys)
    assert code == 0, err
    numbers = json.loads(out[1:])
    assert 1 <= len(numbers) <= 3 and all(n in range(10) for n in numbers)
    (tmp_path / "g.lark").write_text('start: NUM ("+" NUM)?\nNUM: /[1-9]/\n')
    code, out, err = run(["generate", "RUN", "--prompt", "x", "--max-new-tokens", "5", "--grammar",
                          str(tmp_path / "g.lark")], capsys)
    assert code == 0, err
    assert re.fullmatch(r"[1-9](\+[1-9])?", out[1:].rstrip("\n"))


def test_generate_logprobs_show_what_the_constraint_removed(model, capsys):
    code, out, err = run(["generate", "RUN", "--prompt", "the ", "--choice", "yes", "no", "--logprobs", "3",
                          "--temperature", "0"], capsys)
    assert code == 0, err
    assert "removed" in out and "allowed top" in out
    rows = [line for line in out.splitlines() if re.match(r"\s+0\s", line)]
    assert len(rows) == 2 and "%" in rows[1]           # the logprob table's row, then the constraint table's


@pytest.mark.parametrize("flags, message", [
    (["--regex", "[0-9"], "Regex"), (["--integer", "--min", "5", "--max", "1"], "greater than max"),
    (["--min", "3"], "--min and --max go with --integer"), (["--json-schema", "/nonexistent.json"], "cannot read"),
    (["--choice", "yes", "--regex", "x"], None),
])
def test_bad_constraint_flags_exit_2_with_one_line(model, capsys, flags, message):
    code = None
    try:
        code, _, err = run(["generate", "RUN", "--prompt", "the ", *flags], capsys)
    except SystemExit as e:             # argparse: mutually exclusive flags
        code, err = e.code, capsys.readouterr().err
    assert code == 2
    if message:
        assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_play_constrains_a_chunk_and_shows_the_removed_mass(model, monkeypatch, capsys):
    commands = "the \n/choice yes | no\n\n/free\n/integer 5 1\n/regex [a-z]{3}\n\n/quit\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(commands))
    parser = argparse.ArgumentParser()
    importlib.import_module("glassgpt.cli.play").register(parser.add_subparsers())
    args = parser.parse_args(["play", "RUN", "--seed", "0"])
    assert args.func(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("constraint: Choice(['yes', 'no'])") for line in out)
    chunks = [line for line in out if "tokens, constraint;" in line]
    assert chunks[0].split("   [")[0] in ("yes", "no")
    assert re.fullmatch("[a-z]{3}", chunks[1].split("   [")[0])
    assert any("removed" in line for line in out)
    assert any(line.startswith("error: Integer: min (5) is greater than max (1)") for line in out)
