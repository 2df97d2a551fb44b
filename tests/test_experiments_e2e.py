"""Both experiment commands end to end on a tiny random GPT with a real char tokenizer,
through the library and through the CLI (`python -m glassgpt experiment ...`)."""
import json
import os
import string
import subprocess
import sys
from pathlib import Path

import pytest

from glassgpt.model import GPT, GPTConfig, save
from glassgpt.tokenizer import Tokenizer

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import torch
    torch.manual_seed(0)
    tok = Tokenizer.chars(string.printable)             # every character a prompt here can hold
    model = GPT(GPTConfig.preset("tiny", vocab_size=tok.vocab_size, context_length=128, d_model=32, n_layer=1,
                                 n_head=2), tokenizer=tok)
    return save(model, tmp_path_factory.mktemp("tiny") / "run")


def cli(*args):
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "glassgpt", "experiment", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=900)   # a hang guard, not a timing


def test_temperature_command(run_dir, tmp_path):
    out = tmp_path / "t"
    r = cli("temperature", run_dir, "--prompts", "The ", "fox", "--temperatures", "0.3", "1.0",
            "--seeds", "2", "--samples", "1", "--length", "20", "-o", out)
    assert r.returncode == 0, r.stderr
    results = json.loads((out / "results.json").read_text())
    assert [p["samples"] for p in results["per_temperature"]] == [4, 4]
    assert results["mechanism"]["normalised_over"] == "whole vocabulary" and not results["unavailable"]
    assert "## 2. The consequence" in (out / "report.md").read_text()
    assert len((out / "samples.jsonl").read_text().splitlines()) == 8


def test_ascii_diffusion_commands(run_dir, tmp_path):
    r = cli("ascii-diffusion", "run", run_dir, "--sizes", "3x3,5x4,6x5", "--examples", "1", "--test-kinds", "ring",
            "--pictures-per-kind", "1", "--temperatures", "0.5", "1.0", "--seeds", "1", "--max-tokens", "30",
            "-o", tmp_path / "d")
    assert r.returncode == 0, r.stderr
    results = json.loads((tmp_path / "d" / "results.json").read_text())
    assert [p["runs"] for p in results["per_temperature"]] == [1, 1]
    assert (tmp_path / "d" / "frames_T0.5.png").stat().st_size > 0
    r = cli("ascii-diffusion", "build", "--kind", "digit", "--seed", "3", "--png", tmp_path / "f.png")
    assert r.returncode == 0 and r.stdout.startswith("<picture>\n[step 1/4 4x4 noise 0.90]")
    assert (tmp_path / "f.png").stat().st_size > 0
    r = cli("ascii-diffusion", "corpus", "--documents", "3", "--sequences", "2", "-o", tmp_path / "c.txt")
    assert r.returncode == 0 and (tmp_path / "c.txt").read_text().count("</picture>") == 6


def test_ascii_diffusion_train_command_passes_the_model_and_optimizer_flags(tmp_path):
    out = tmp_path / "run"
    r = cli("ascii-diffusion", "train", "--sizes", "3x3,5x4", "--documents", "30", "--sequences", "2",
            "--d-model", "16", "--layers", "1", "--heads", "2", "--context", "64", "--batch-size", "2",
            "--max-iters", "2", "--positional", "learned", "--lr", "0.005", "-o", out)
    assert r.returncode == 0, r.stderr
    config = json.loads((out / "config.json").read_text())
    train_config = json.loads((out / "train_config.json").read_text())
    assert (config["positional"], config["context_length"], config["d_model"]) == ("learned", 64, 16)
    assert (train_config["lr"], train_config["min_lr"], train_config["batch_size"]) == (0.005, 0.0005, 2)
    assert (out / "data" / "corpus.txt").read_text().count("</picture>") == 60
    r = cli("ascii-diffusion", "train", "--documents", "3", "--positional", "alibi", "-o", tmp_path / "x")
    assert r.returncode == 2 and "invalid choice: 'alibi'" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["temperature", "-o", "x"], "give a run directory"),
    (["temperature", "--endpoint", "http://127.0.0.1:9/v1", "-o", "x"], "--endpoint needs --model"),
    (["ascii-diffusion", "build", "--sizes", "4x4,4x4"], "does not grow"),
    (["ascii-diffusion", "build", "no-such-file.png"], "does not exist"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, message):
    r = cli(*args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr


def test_cli_refusing_endpoint_keeps_partial_results(tmp_path):
    out = tmp_path / "t"
    r = cli("temperature", "--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--retries", "1",
            "--timeout", "1", "-o", out)
    assert r.returncode == 2 and "failed after 2 attempts" in r.stderr and r.stderr.count("\n") == 1
    assert (out / "settings.json").exists()
