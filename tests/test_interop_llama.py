"""llama.cpp runs our GGUF: the same greedy tokens, the same logits, the same token ids.

Needs llama-cpp-python, which compiles llama.cpp at install: `make test-llama` installs it
(the `llama` extra) and runs this file; without it these tests skip with one line."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from glassgpt import Tokenizer, load
from glassgpt.interop import export_gguf
from interop_helpers import CORPUS, MIXED, train_tiny_run

try:
    import llama_cpp
except ImportError:
    llama_cpp = None

pytestmark = pytest.mark.skipif(llama_cpp is None, reason="llama.cpp checks need llama-cpp-python: `make test-llama` "
                                "installs it (it compiles llama.cpp: a C++ compiler and some minutes)")
F32 = 0          # GGML_TYPE_F32: llama.cpp's KV cache in float32 too (its default is float16)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("llama"), Tokenizer.train(CORPUS, vocab_size=360, progress=False))


def llama(path, **options):
    return llama_cpp.Llama(model_path=str(path), n_ctx=64, n_batch=64, n_threads=1, logits_all=True, verbose=False,
                           **options)


def greedy_both(model, llm, prompt: list[int], steps: int):
    """Greedy decoding in glassgpt and llama.cpp side by side: each one's tokens and the
    logits each gave at every step (ours from a plain full forward, no cache)."""
    ours, theirs, our_logits, their_logits = list(prompt), list(prompt), [], []
    llm.reset()
    llm.eval(prompt)
    for _ in range(steps):
        with torch.no_grad():
            logits = model(torch.tensor([ours])).logits[0, -1]
        our_logits.append(logits.numpy())
        ours.append(int(logits.argmax()))
        their = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        their_logits.append(their)
        theirs.append(int(their.argmax()))
        llm.eval([theirs[-1]])
    return ours[len(prompt):], theirs[len(prompt):], np.stack(our_logits), np.stack(their_logits)


def test_llama_cpp_greedy_tokens_and_top5_logits_equal_ours_at_f32(run, tmp_path):
    model = load(run)
    llm = llama(export_gguf(run, tmp_path / "run.gguf"), type_k=F32, type_v=F32)
    prompt = model.tokenizer.encode("The king spoke")
    ours, theirs, our_logits, their_logits = greedy_both(model, llm, prompt, 32)
    assert theirs == ours
    top5 = np.argsort(-our_logits, axis=-1)[:, :5]
    error = np.abs(np.take_along_axis(their_logits, top5, -1) - np.take_along_axis(our_logits, top5, -1)).max()
    print(f"llama.cpp f32: max |logit error| over the top 5, 32 steps: {error:.2e}; "
          f"over all logits: {np.abs(their_logits - our_logits).max():.2e}")
    assert error < 1e-3


def test_llama_cpp_runs_the_f16_file_with_the_same_greedy_tokens(run, tmp_path):
    model = load(run)
    llm = llama(export_gguf(run, tmp_path / "run-f16.gguf", dtype="f16"))
    prompt = model.tokenizer.encode("The king spoke")
    ours, theirs, our_logits, their_logits = greedy_both(model, llm, prompt, 32)
    error = np.abs(their_logits - our_logits).max()
    print(f"llama.cpp f16 (f16 KV cache): max |logit error| over 32 steps: {error:.2e}")
    assert theirs == ours and error < 0.05


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_llama_cpp_tokenizes_and_detokenizes_like_us(pattern, run, tmp_path):
    if pattern == "gpt2":
        tok = load(run).tokenizer
        path = export_gguf(run, tmp_path / "run.gguf")
    else:
        from glassgpt import GPT, GPTConfig

        tok = Tokenizer.train(CORPUS, vocab_size=400, pattern=pattern, progress=False)
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, context_length=64, d_model=32, n_layer=1, n_head=2),
                    tokenizer=tok)
        path = export_gguf(model, tmp_path / "gpt4.gguf")
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    ids = tok.encode(MIXED, allowed_special="all")
    assert llm.tokenize(MIXED.encode(), add_bos=False, special=True) == ids
    assert llm.detokenize(ids, special=True).decode() == MIXED
