"""Choices a run makes by measuring, at its start: whether torch.compile pays for itself
within the run's budget, and which precision is faster for this model on this CPU.

Compiling (inductor) makes each step faster but costs time up front: about 40 s for a
small model on a CPU the first time, a few seconds once inductor's on-disk caches hold
the shape (glassgpt keeps them under its cache directory). It pays when

    budget x (1 - 1 / speedup)  >  compile time

with the budget the run's time (max_seconds, or max_iters x the measured eager step).
The compile time and speedup of each model shape are remembered after a compiled run
(compile_times.json in the cache directory); before the first one, a cautious guess.

bf16 is faster than fp32 only where the CPU has native bf16 instructions *and* the
matrices are large enough: a small model can be faster in fp32 even there. `auto`
times a few forward and backward passes in each (on a slice of the batch) and keeps the faster.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..fileio import atomic_write_text
from ..runtime import autocast, cpu_has_native_bf16
from .corpora import cache_dir

GUESS_COMPILE_SECONDS = {"cpu": 45.0, "cuda": 60.0}   # before any compile of this shape was measured
GUESS_SPEEDUP = 1.3
BF16_MARGIN = 1.1                                     # auto takes bf16 only when it is 10% faster or more


# -- compile --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompileDecision:
    compile: bool
    reason: str                       # one line, printed at the start of the run
    compile_seconds: float | None = None   # the estimate the decision used
    speedup: float | None = None


def compile_pays(budget_seconds: float, compile_seconds: float, speedup: float) -> bool:
    """Whether compiling saves more time over the budget than it costs."""
    return speedup > 1 and budget_seconds * (1 - 1 / speedup) > compile_seconds


def decide_compile(mode: str, budget_seconds: float | None, known: dict | None, device_type: str
                   ) -> CompileDecision:
    """mode 'on' / 'off' decide alone; 'auto' weighs the budget against the compile cost:
    `known` is what an earlier compiled run of this shape measured (or None)."""
    if mode == "on":
        return CompileDecision(True, "compile: on (--compile)")
    if mode == "off":
        return CompileDecision(False, "compile: off")
    if device_type not in ("cpu", "cuda"):
        return CompileDecision(False, f"compile: off (auto: torch.compile is not used on {device_type})")
    seconds = known["compile_seconds"] if known else GUESS_COMPILE_SECONDS[device_type]
    speedup = known["speedup"] if known else GUESS_SPEEDUP
    source = "measured before" if known else "first time, guessed"
    if budget_seconds is None:
        return CompileDecision(False, "compile: off (auto: the run's length is unknown)", seconds, speedup)
    pays = compile_pays(budget_seconds, seconds, speedup)
    verdict = "on" if pays else "off"
    return CompileDecision(pays, f"compile: {verdict} (auto: ~{seconds:.0f} s to compile, x{speedup:.2f} per step "
                                 f"({source}) against a ~{budget_seconds:.0f} s run)", seconds, speedup)


def shape_key(model_config, batch_size: int, precision: str, device_type: str) -> str:
    """What a compile depends on: the model's shape, the batch, precision, device, torch version."""
    text = json.dumps([sorted(vars(model_config).items()), batch_size, precision, device_type,
                       torch.__version__], default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def history_file() -> Path:
    """What earlier runs measured (GLASSGPT_SPEED_HISTORY names another file: the tests' own)."""
    return Path(os.environ.get("GLASSGPT_SPEED_HISTORY") or cache_dir() / "speed_history.json")


def _read(key: str) -> dict | None:
    try:
        return json.loads(history_file().read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def _write(key: str, value: dict) -> None:
    path = history_file()
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        history = {}
    history[key] = value
    try:
        atomic_write_text(path, json.dumps(history, indent=1))
    except OSError:
        pass                                   # a read-only cache only costs the next run a measurement


def known_compile(key: str) -> dict | None:
    return _read("compile:" + key)


def remember_compile(key: str, compile_seconds: float, speedup: float) -> None:
    """Keep what compiling this shape cost and gave, for the next run's decision."""
    _write("compile:" + key, {"compile_seconds": round(compile_seconds, 2), "speedup": round(speedup, 3)})


def use_compile_caches() -> None:
    """Inductor's FX-graph and autotune caches on disk under glassgpt's cache directory (unless
    the user chose a place), so a second run of the same shape compiles in seconds."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")


# -- precision ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    reason: str
    timings: dict[str, float] | None = None        # seconds per forward + backward, when measured


def choose_precision(model, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, requested: str,
                     auto_choice: str, rounds: int = 3, key: str | None = None) -> PrecisionChoice:
    """`requested` unless it is 'auto'. Auto on a CPU with native bf16: time forward + backward
    in fp32 and bf16 on `batch` (alternating, best of `rounds` each) and keep the faster; gradients
    and the random state are left as they were. Elsewhere 'auto' is `auto_choice`.
    With a `key` (the model's shape), the first measurement is remembered and later runs of the
    same shape take the same precision: two runs of one command train the same way."""
    if requested != "auto":
        return PrecisionChoice(requested, f"precision: {requested}")
    if device.type != "cpu" or not cpu_has_native_bf16():
        return PrecisionChoice(auto_choice, f"precision: {auto_choice} (auto)")
    known = _read("precision:" + key) if key else None
    if known and known.get("precision") in ("fp32", "bf16"):
        timings = known.get("timings") or {}
        shown = ", ".join(f"{p} {t * 1e3:.0f} ms" for p, t in timings.items())
        return PrecisionChoice(known["precision"], f"precision: {known['precision']} (auto, measured before for "
                                                   f"this shape: {shown}; --precision to choose)", timings or None)
    timings = time_precisions(model, batch, device, ("fp32", "bf16"), rounds)
    best = "bf16" if timings["bf16"] < timings["fp32"] / BF16_MARGIN else "fp32"   # clearly faster, or exact fp32
    if key:
        _write("precision:" + key, {"precision": best, "timings": timings})
    shown = ", ".join(f"{p} {t * 1e3:.0f} ms" for p, t in timings.items())
    return PrecisionChoice(best, f"precision: {best} (auto, measured per forward + backward: {shown})", timings)


PROBE_TOKENS = 4096     # timing a forward + backward of this many tokens tells fp32 from bf16 apart


def time_precisions(model, batch, device, precisions, rounds: int, tokens: int = PROBE_TOKENS) -> dict[str, float]:
    """Seconds per forward + backward of the whole batch in each precision (best of `rounds`
    after a warm-up round), timed on the batch's first rows holding at least `tokens` tokens
    and scaled to the batch: the products keep a realistic shape while a large model's
    probe costs a fraction of a step (6 x 384 at batch 64 x 256: a quarter)."""
    x, y = batch
    rows = min(x.shape[0], max(1, -(-tokens // x.shape[1])))
    x, y, scale = x[:rows], y[:rows], batch[0].shape[0] / rows
    rng = torch.get_rng_state()
    best = dict.fromkeys(precisions, float("inf"))
    for round_ in range(rounds + 1):                # round 0 warms up allocations and kernels
        for precision in precisions:
            start = time.perf_counter()
            with autocast(device, precision):
                loss = model(x, y).loss
            loss.backward()
            if round_:
                best[precision] = min(best[precision], (time.perf_counter() - start) * scale)
    model.zero_grad(set_to_none=True)
    torch.set_rng_state(rng)
    return best
