"""`glassgpt prepare` and `glassgpt train` end to end, and their one-line errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from glassgpt.cli import main
from glassgpt.model import load
from glassgpt.train.state import current_checkpoint, load_train_state

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = ["--preset", "tiny", "--context-length", "16", "--d-model", "32", "--n-layer", "1", "--batch-size", "4",
        "--eval-interval", "3", "--eval-iters", "2", "--device", "cpu", "--threads", "1"]


def glassgpt(*args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "glassgpt", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def in_process(*args, cwd, capsys, monkeypatch) -> subprocess.CompletedProcess:
    """The same CLI entry point, called in this process: fast enough to check every error."""
    monkeypatch.chdir(cwd)
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def one_line_error(done: subprocess.CompletedProcess, message: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1], done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    (root / "corpus.txt").write_text("Now is the winter of our discontent\nMade glorious summer.\n" * 30)
    done = glassgpt("prepare", "corpus.txt", "-o", "data", "--tokenizer", "char", cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def test_prepare_train_resume_and_load(prepared, tmp_path):
    root = prepared
    run = tmp_path / "run"
    done = glassgpt("train", "data", "-o", run, *TINY, "--max-iters", "6", cwd=root)
    assert done.returncode == 0, done.stderr
    assert "trained 6 steps" in done.stderr
    model = load(run)
    assert model.config.d_model == 32 and model.config.vocab_size == model.tokenizer.vocab_size
    ids = torch.tensor([model.tokenizer.encode("Now is")])
    assert model(ids).logits.shape == (1, 6, model.config.vocab_size)
    done = glassgpt("train", "--resume", run, "--max-iters", "9", cwd=root)
    assert done.returncode == 0, done.stderr
    assert load_train_state(run)["step"] == 9


def test_prepare_errors(prepared, capsys, monkeypatch):
    root = prepared
    (root / "empty.txt").write_text("")
    one_line_error(glassgpt("prepare", "missing.txt", "-o", "d", cwd=root), "missing.txt does not exist")
    one_line_error(in_process("prepare", "empty.txt", "-o", "d", cwd=root, capsys=capsys, monkeypatch=monkeypatch),
                   "is empty")


@pytest.mark.parametrize("args, message", [
    (["train", "nowhere", "-o", "run"], "not a prepared data directory"),
    (["train", "data", "-o", "run", "--preset", "huge"], "unknown preset 'huge'"),
    (["train", "data", "-o", "run", "--d-model", "30", "--n-head", "4"], "n_head (4) must divide d_model (30)"),
    (["train", "data", "-o", "run", "--context-length", "4096"], "needs at least 4,097"),
    (["train", "--resume", "data"], "not a training run"),
    (["train", "data"], "give DATA_DIR and -o RUN_DIR"),
    (["train", "data", "-o", "run", "--teacher", "nowhere"], "nowhere is not a directory"),
    (["train", "--resume", "run", "--lr", "0.1"], "--lr cannot change on --resume"),
])
def test_train_errors(prepared, args, message, capsys, monkeypatch):
    one_line_error(in_process(*args, cwd=prepared, capsys=capsys, monkeypatch=monkeypatch), message)


def test_resume_with_corrupt_weights_keeps_the_files(prepared, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    cli = lambda *args: in_process(*args, cwd=prepared, capsys=capsys, monkeypatch=monkeypatch)  # noqa: E731
    assert cli("train", "data", "-o", run, *TINY, "--max-iters", "2").returncode == 0
    checkpoint = current_checkpoint(run)
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    state = (checkpoint / "train_state.pt").read_bytes()
    one_line_error(cli("train", "--resume", run), "corrupt or truncated")
    assert (checkpoint / "train_state.pt").read_bytes() == state and len(weights.read_bytes()) == 64


def test_training_into_an_existing_run_is_refused(prepared, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    cli = lambda *args: in_process(*args, cwd=prepared, capsys=capsys, monkeypatch=monkeypatch)  # noqa: E731
    assert cli("train", "data", "-o", run, *TINY, "--max-iters", "2").returncode == 0
    before = (run / "model.safetensors").read_bytes()
    one_line_error(cli("train", "data", "-o", run, *TINY), "already holds a training run")
    assert (run / "model.safetensors").read_bytes() == before


@pytest.mark.slow
def test_two_process_data_parallel_training_on_cpu(prepared, tmp_path):
    run = tmp_path / "run"
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "-m", "glassgpt", "train", "data",
                           "-o", str(run), *TINY, "--max-iters", "4", "--dropout", "0.1"],
                          cwd=prepared, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("trained 4 steps") == 1                 # only rank 0 prints
    state = load_train_state(run)
    assert state["step"] == 4 and len(state["rng"]) == 2            # both processes' RNGs saved
    assert not torch.equal(state["rng"][0]["sampler"], state["rng"][1]["sampler"])   # different batches
    load(run)
