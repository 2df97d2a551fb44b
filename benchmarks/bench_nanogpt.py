"""Training end to end against nanoGPT's own train.py, same settings, same corpus, same run.

nanoGPT is not a package: point NANOGPT_DIR at a checkout of it (its train.py, model.py,
configurator.py and config/ are copied into a temporary directory and run there with the
same character-level Shakespeare token files glassgpt trains on). Without it this prints
one line; `bench_train` compares against transformers' GPT-2 instead.

(a) the 2,000-iteration character run of nanoGPT's README for CPUs: 4 layers x 4 heads x
    128 dims, context 64, batch 12, lr 1e-3 -> 1e-4 cosine, 100 warmup, no dropout, fp32,
    eval every 250 steps on 20 batches: wall time from start to finished run (glassgpt:
    `glassgpt prepare` + `glassgpt train`, compile left to `--compile auto`, run twice so
    the second has inductor's cache warm), and the validation loss at the end;
(b) a time budget (default 10 minutes): steps glassgpt trains in it (`--max-seconds`)
    against the steps nanoGPT trains in it (its measured step rate from (a));
(c) 6 layers x 6 heads x 384 dims, context 256, batch 64 (nanoGPT's Shakespeare config, no
    dropout): seconds per step, glassgpt with automatic precision (bf16 where the CPU has
    it natively and it is faster) against nanoGPT's fp32 (nanoGPT runs fp32 on a CPU).

    NANOGPT_DIR=~/nanoGPT python -m benchmarks.bench_nanogpt [--budget-minutes 10] [--big-iters 30]
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import header, ratio, table
from glassgpt.train import prepare
from glassgpt.train.corpora import cache_dir

SMALL = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12)
BIG = dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64)
SCHEDULE = dict(learning_rate=1e-3, min_lr=1e-4, warmup_iters=100, dropout=0.0, eval_interval=250, eval_iters=20)


def shakespeare_chars() -> Path:
    data = cache_dir() / "bench" / "shakespeare-char"
    if not (data / "meta.json").is_file():
        prepare(["shakespeare"], data, tokenizer="char", progress=False)
    return data


def nanogpt_workdir(nanogpt: Path, data: Path, tmp: Path) -> Path:
    """nanoGPT's scripts beside a data/shakespeare_char/ holding glassgpt's own token files."""
    tmp.mkdir(parents=True, exist_ok=True)
    for name in ("train.py", "model.py", "configurator.py"):
        shutil.copy(nanogpt / name, tmp / name)
    shutil.copytree(nanogpt / "config", tmp / "config")
    target = tmp / "data" / "shakespeare_char"
    target.mkdir(parents=True)
    meta = json.loads((data / "meta.json").read_text())
    if meta["dtype"] != "uint16":
        raise SystemExit(f"error: nanoGPT reads uint16 token files; {data} holds {meta['dtype']}")
    for split in ("train.bin", "val.bin"):
        shutil.copy(data / split, target / split)
    with open(target / "meta.pkl", "wb") as f:          # written for nanoGPT's reader (it loads a pickle)
        pickle.dump({"vocab_size": meta["tokenizer"]["vocab_size"]}, f)
    return tmp


def run_nanogpt(workdir: Path, shape: dict, iters: int) -> tuple[float, float | None, str]:
    """Wall seconds of `python train.py ...`, its last validation loss, its output."""
    settings = {**shape, **SCHEDULE, "max_iters": iters, "lr_decay_iters": iters, "device": "cpu",
                "compile": False, "dtype": "float32", "log_interval": 10, "always_save_checkpoint": False,
                "out_dir": str(workdir / "out"), "bias": True}
    argv = [sys.executable, "train.py", "config/train_shakespeare_char.py"]
    argv += [f"--{k}={v}" for k, v in settings.items()]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: nanoGPT's train.py failed: {done.stderr.strip().splitlines()[-1:]}")
    vals = re.findall(r"val loss ([0-9.]+)", done.stdout)
    return seconds, float(vals[-1]) if vals else None, done.stdout


def nanogpt_step_ms(stdout: str) -> float | None:
    """The median of nanoGPT's per-iteration times ("iter N: loss L, time T ms"), its first
    iterations (warm-up, the evaluation at iteration 0) left out."""
    times = [float(t) for n, t in re.findall(r"iter (\d+): loss [0-9.]+, time ([0-9.]+)ms", stdout) if int(n) >= 5]
    return statistics.median(times) if times else None


def glassgpt_step_ms(records: list[dict], tokens_per_step: int) -> float | None:
    """The median step time of glassgpt's log (tokens/s over each log interval, evaluation excluded)."""
    speeds = [r["tokens_per_s"] for r in records if "tokens_per_s" in r and r["step"] > 10]
    return tokens_per_step / statistics.median(speeds) * 1e3 if speeds else None


def run_glassgpt(out: Path, shape: dict, iters: int | None, seconds: float | None = None,
                 extra: tuple = ()) -> tuple[float, dict]:
    """Wall seconds of `glassgpt prepare` + `glassgpt train`, and the run's last log records."""
    glass = [sys.executable, "-m", "glassgpt"]
    args = ["--n-layer", shape["n_layer"], "--n-head", shape["n_head"], "--d-model", shape["n_embd"],
            "--context-length", shape["block_size"], "--batch-size", shape["batch_size"],
            "--lr", SCHEDULE["learning_rate"], "--min-lr", SCHEDULE["min_lr"],
            "--warmup-iters", SCHEDULE["warmup_iters"], "--dropout", 0.0,
            "--eval-interval", SCHEDULE["eval_interval"], "--eval-iters", SCHEDULE["eval_iters"], "--device", "cpu"]
    args += ["--max-iters", iters] if iters else ["--max-iters", 10**9, "--max-seconds", seconds]
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run(glass + ["prepare", "shakespeare", "-o", str(out / "data"), "--tokenizer", "char"],
                   check=True, capture_output=True)
    done = subprocess.run(glass + ["train", str(out / "data"), "-o", str(out / "run")] + [str(a) for a in args]
                          + list(extra), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"error: glassgpt train failed: {done.stderr.strip().splitlines()[-1:]}")
    records = [json.loads(line) for line in (out / "run" / "log.jsonl").read_text().splitlines()]
    last = {"step": records[-1]["step"], "val_loss": next((r["val_loss"] for r in reversed(records)
                                                           if "val_loss" in r), None),
            "choices": next((line for line in done.stderr.splitlines() if line.startswith("precision:")), ""),
            "step_ms": glassgpt_step_ms(records, shape["batch_size"] * shape["block_size"])}
    return wall, last


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="bench_nanogpt")
    p.add_argument("--quick", action="store_true", help="200 iterations, a 1-minute budget, 5 big steps")
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--budget-minutes", type=float, default=10.0)
    p.add_argument("--big-iters", type=int, default=30)
    args = p.parse_args(argv)
    if args.quick:
        args.iters, args.budget_minutes, args.big_iters = 200, 1.0, 5
    nanogpt = os.environ.get("NANOGPT_DIR")
    header("training end to end: glassgpt vs nanoGPT's train.py")
    if not nanogpt or not (Path(nanogpt) / "train.py").is_file():
        print("   NANOGPT_DIR is not set to a nanoGPT checkout: skipped (bench_train compares against transformers)")
        return
    data = shakespeare_chars()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-nanogpt-") as tmp:
        tmp = Path(tmp)
        work = nanogpt_workdir(Path(nanogpt).expanduser(), data, tmp / "nanogpt")
        ref_seconds, ref_val, ref_out = run_nanogpt(work, SMALL, args.iters)
        cold, cold_last = run_glassgpt(tmp / "ours", SMALL, args.iters)
        warm, warm_last = run_glassgpt(tmp / "ours", SMALL, args.iters)
        rows.append((f"(a) {args.iters} iterations 4x128 char, wall s (first run)", cold, ref_seconds,
                     ratio(ref_seconds, cold)))
        rows.append(("(a) the same, second run (inductor cache warm)", warm, ref_seconds, ratio(ref_seconds, warm)))
        rows.append(("(a) validation loss at the end", cold_last["val_loss"], ref_val, ""))
        ref_ms = nanogpt_step_ms(ref_out)
        rows.append(("(a) one training step, ms (median of the logged steps)", cold_last["step_ms"], ref_ms,
                     ratio(ref_ms, cold_last["step_ms"]) if ref_ms and cold_last["step_ms"] else ""))
        rows.append((f"    glassgpt's choices: {cold_last['choices']}", None, None, ""))
        budget = args.budget_minutes * 60
        _, timed = run_glassgpt(tmp / "ours-budget", SMALL, None, seconds=budget)
        ref_steps = args.iters / ref_seconds * budget
        rows.append((f"(b) steps in {args.budget_minutes:g} min (nanoGPT: its rate from (a))", float(timed["step"]),
                     ref_steps, ratio(timed["step"], ref_steps)))
        rows.append((f"    glassgpt's choices: {timed['choices']}", None, None, ""))
        ref_big, _, ref_big_out = run_nanogpt(work, BIG, args.big_iters)
        ours_big, big_last = run_glassgpt(tmp / "ours-big", BIG, args.big_iters)
        rows.append((f"(c) 6x384 ctx 256 batch 64, {args.big_iters} iterations, wall s (ours auto precision, "
                     f"nanoGPT fp32)", ours_big, ref_big, ratio(ref_big, ours_big)))
        ref_ms = nanogpt_step_ms(ref_big_out)
        rows.append(("(c) one training step, ms (median)", big_last["step_ms"], ref_ms,
                     ratio(ref_ms, big_last["step_ms"]) if ref_ms and big_last["step_ms"] else ""))
        rows.append((f"    glassgpt's choices: {big_last['choices']}", None, None, ""))
    table(rows, ("measure", "glassgpt", "nanoGPT", "speedup"))


if __name__ == "__main__":
    main()
