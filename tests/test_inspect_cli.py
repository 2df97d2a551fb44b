"""`glassgpt inspect` and `glassgpt ablate` run as subprocesses on a tiny checkpoint."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from glassgpt import Tokenizer
from glassgpt.inspect.render import ansi_tokens, use_color
from glassgpt.model import GPT, GPTConfig, save

REPO = Path(__file__).resolve().parents[1]
# Only these command groups are registered, so the tests do not depend on the other
# command modules; the dispatcher (error handling, exit codes) is the real one.
RUN_CLI = "import sys, glassgpt.cli as cli; cli.COMMANDS = ['inspect', 'ablate']; sys.exit(cli.main(sys.argv[1:]))"
CORPUS = "the cat sat on the mat. the dog sat on the log. " * 40


def glassgpt(*args, **env_extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(PYTHONPATH=str(REPO / "src"), **env_extra)
    return subprocess.run([sys.executable, "-c", RUN_CLI, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A checkpoint with a char tokenizer, and validation data recorded by 'training'."""
    d = tmp_path_factory.mktemp("inspect_cli")
    tok = Tokenizer.chars(CORPUS)
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("tiny", vocab_size=tok.vocab_size, context_length=32, d_model=32),
                tokenizer=tok)
    save(model, d / "run")
    (d / "data").mkdir()
    np.array(tok.encode(CORPUS), dtype=np.uint16).tofile(d / "data" / "val.bin")
    (d / "data" / "meta.json").write_text(json.dumps({"dtype": "uint16"}))
    (d / "run" / "train_config.json").write_text(json.dumps({"data_dir": str(d / "data")}))
    return d


def test_inspect_prints_table_and_writes_files(run):
    out = run / "out"
    r = glassgpt("inspect", run / "run", "the cat sat", "--attention", "1.2", "--lens", "--attribute", "8",
                 "--json", out / "trace.json", "-o", out, "--temperature", "0.7")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "the cat sat" and "\033[" not in r.stdout           # not a tty: plain text
    assert "perplexity" in r.stdout and "top 5" in r.stdout and "logit lens" in r.stdout
    assert "prediction for position 8" in r.stdout
    for png in ("attention_1.2.png", "lens.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    data = json.loads((out / "trace.json").read_text())
    assert data["trace"]["tokens"] == list("the cat sat") and data["trace"]["temperature"] == 0.7
    assert len(data["trace"]["attention"]) == 2 and data["lens"]["layers"] == ["embed", "block 0", "block 1"]
    assert data["attribution"]["position"] == 8 and len(data["attribution"]["occluded"]) == 8


def test_inspect_attention_grid_and_long_text(run):
    r = glassgpt("inspect", run / "run", "the dog sat on the log. " * 3, "--attention", "all", "-o", run / "grid")
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stderr and "last 32" in r.stderr and "did not fit the context" in r.stdout
    assert (run / "grid" / "attention_all.png").is_file()


def test_inspect_bad_input_is_one_line(run):
    r = glassgpt("inspect", run / "run", "the cat", "--attention", "2.0")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith("error: layer 2 is out of range: the model has layers 0 .. 1")


@pytest.mark.parametrize("spec, message", [("0.4", "head 4 is out of range: each layer has heads 0 .. 3"),
                                           ("-1.0", "layer -1 is out of range"), ("1", "LAYER.HEAD")])
def test_attention_spec(spec, message):
    from glassgpt.cli.inspect import parse_attention
    from glassgpt.errors import GlassError
    assert parse_attention("1.3", GPTConfig.preset("tiny")) == (1, 3) and parse_attention("all", None) == "all"
    with pytest.raises(GlassError, match=message):
        parse_attention(spec, GPTConfig.preset("tiny"))


def test_ablate_end_to_end(run):
    r = glassgpt("ablate", run / "run", "--batches", 2, "--batch-size", 2, "--samples", 1,
                 "--max-new-tokens", 5, "--json", run / "ablation.json")
    assert r.returncode == 0, r.stderr
    assert "intact model: validation loss" in r.stdout and "last blocks dropped" in r.stdout
    assert "== intact" in r.stdout and "ablation" in r.stderr                   # samples; progress bar
    data = json.loads((run / "ablation.json").read_text())
    assert len(data["ablations"]) == 1 + 2 * 8 + 1 and len(data["pruning"]) == 3
    assert data["samples"][0]["ablation"] == "intact" and len(data["samples"]) == 6
    for png in ("ablation.png", "pruning.png"):
        assert (run / "run" / "ablation" / png).read_bytes()[:4] == b"\x89PNG"


def test_ablate_without_validation_data(run, tmp_path):
    r = glassgpt("ablate", run / "run", "--data", tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: no validation data") and len(r.stderr.splitlines()) == 1


def test_colour_only_on_a_terminal(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True
    assert not use_color(io.StringIO()) and use_color(Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(Tty())
    coloured = ansi_tokens(["a", "b\n", "c"], [0.0, 0.5, 1.0])
    assert "\033[30;48;5;231m" in coloured and "\033[30;48;5;196m" in coloured and "b↵\033[0m\n" in coloured
