"""`glassgpt tokenizer ...` run as a subprocess, as a user would."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from glassgpt import Tokenizer
from glassgpt.tokenizer.base import visible

REPO = Path(__file__).resolve().parents[1]
# Only the tokenizer group is registered, so these tests do not depend on the other
# command modules; the dispatcher (error handling, exit codes) is the real one.
RUN_CLI = "import sys, glassgpt.cli as cli; cli.COMMANDS = ['tokenizer']; sys.exit(cli.main(sys.argv[1:]))"
TEXT = "The cat sat on the mat. The dog sat on the log! 12345 naïve 🙂\n" * 20


def glassgpt(*args, stdin: str | None = None, **env_extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(PYTHONPATH=str(REPO / "src"), **env_extra)
    return subprocess.run([sys.executable, "-c", RUN_CLI, "tokenizer", *map(str, args)], input=stdin,
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "a.txt").write_text(TEXT)
    (d / "b.txt").write_text("Other words in another file.\n")
    result = glassgpt("train", d / "a.txt", d / "b.txt", "--vocab-size", 300, "-o", d / "tok.json")
    assert result.returncode == 0, result.stderr
    assert "vocab_size 300" in result.stdout
    return d


def test_train_writes_a_loadable_tokenizer(trained):
    tok = Tokenizer.load(trained / "tok.json")
    assert tok.kind == "bpe" and tok.vocab_size == 300 and tok.eot_id == 299


def test_encode_then_decode(trained):
    tok = Tokenizer.load(trained / "tok.json")
    encoded = glassgpt("encode", "-t", trained / "tok.json", "The cat 🙂")
    assert encoded.returncode == 0 and encoded.stdout.split() == [str(i) for i in tok.encode("The cat 🙂")]
    decoded = glassgpt("decode", "-t", trained / "tok.json", *encoded.stdout.split())
    assert decoded.stdout == "The cat 🙂"


def test_encode_and_decode_read_stdin(trained):
    ids = glassgpt("encode", "-t", trained / "tok.json", stdin="sat on\n<|endoftext|>").stdout
    assert "299" not in ids.split()
    allowed = glassgpt("encode", "-t", trained / "tok.json", "--allow-special", stdin="sat on\n<|endoftext|>").stdout
    assert allowed.split()[-1] == "299"
    assert glassgpt("decode", "-t", trained / "tok.json", stdin=allowed).stdout == "sat on\n<|endoftext|>"


def test_show_without_colour(trained):
    tok = Tokenizer.load(trained / "tok.json")
    result = glassgpt("show", "-t", trained / "tok.json", "The mat\tsat")
    tokens, ids, summary = result.stdout.splitlines()
    assert "\x1b[" not in result.stdout
    assert tokens == "".join(f"[{visible(tok.id_to_str(i))}]" for i in tok.encode("The mat\tsat"))
    assert "\t" not in tokens and "⇥" in tokens
    assert ids.split() == [str(i) for i in tok.encode("The mat\tsat")]
    assert summary == f"{len(ids.split())} tokens for 11 characters"


def test_show_with_colour_alternates_backgrounds(trained):
    result = glassgpt("show", "-t", trained / "tok.json", "--color", "always", "The cat sat")
    first_line = result.stdout.splitlines()[0]
    assert "48;5;153m" in first_line and "48;5;229m" in first_line and first_line.endswith("\x1b[0m")
    assert "\x1b[" not in glassgpt("show", "-t", trained / "tok.json", "x", NO_COLOR="1").stdout


def test_train_char(trained):
    result = glassgpt("train", trained / "a.txt", "--char", "-o", trained / "chars.json")
    assert result.returncode == 0, result.stderr
    tok = Tokenizer.load(trained / "chars.json")
    assert tok.kind == "char" and tok.vocab_size == len(set(TEXT)) and tok.special_tokens == {}


@pytest.mark.parametrize("args, message", [
    (["encode", "-t", "missing.json", "x"], "missing.json: no such tokenizer file"),
    (["decode", "-t", "{tok}", "1", "99999"], "id 99999 is not in the vocabulary"),
    (["decode", "-t", "{tok}", "1", "two"], "ids must be integers"),
    (["train", "missing.txt", "--vocab-size", "300", "-o", "x.json"], "missing.txt: no such text file"),
    (["train", "{dir}/a.txt", "--vocab-size", "100", "-o", "{dir}/x.json"], "vocab_size 100 is too small"),
    (["train", "{dir}/a.txt", "-o", "{dir}/x.json"], "--vocab-size is required"),
])
def test_errors_are_one_line(trained, args, message):
    args = [a.format(tok=trained / "tok.json", dir=trained) for a in args]
    result = glassgpt(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (trained / "x.json").exists()
