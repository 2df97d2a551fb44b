"""The training loop: batches in, loss down, checkpoints out.

One optimizer step:
    for each of grad_accum micro-batches:  x, y -> model -> loss / grad_accum -> backward
        (with a teacher, the loss compares the model's next-token distributions with the
        teacher's instead of with y: distillation)
    clip the global gradient norm -> AdamW step at the scheduled learning rate -> clear grads

Every eval_interval steps: validation loss on fixed batches, a checkpoint of the run
(and of best/ when the validation loss improved), the loss plot. Ctrl-C finishes the
current step, saves a resumable checkpoint and stops.
"""
from __future__ import annotations

import contextlib
import json
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..errors import GlassError
from ..model import GPT, GPTConfig, load
from ..runtime import autocast, pick_device, pick_precision, set_threads
from . import distributed
from .config import TrainConfig, load_run_config, save_run_config
from .data import RandomBatches, fixed_batches, open_tokens
from .plot import plot_losses
from .prepare import TOKENIZER, TRAIN, VAL, read_meta
from .schedule import learning_rate, progress
from .state import (BEST, LOG, PLOT, STATE, load_train_state, restore_rng, rng_state, save_best,
                    save_checkpoint, truncate_log)


@dataclass
class TrainResult:
    run_dir: Path
    step: int                        # optimizer steps done
    train_loss: float | None         # mean over the last log window
    val_loss: float | None           # at the last evaluation
    best_val_loss: float | None
    tokens_per_second: float         # over the whole run, all processes
    elapsed: float                   # seconds of training, over all resumes
    model: GPT = field(repr=False)   # the final weights, in eval mode

    @property
    def best_dir(self) -> Path:
        return self.run_dir / BEST


def train(data_dir, out_dir, model_config: GPTConfig | None = None, train_config: TrainConfig | None = None,
          resume: bool = False, progress: bool = True) -> TrainResult:
    """Train a GPT on the token files in `data_dir` (made by `prepare`), writing the run to `out_dir`.

    model_config: the architecture (default: the `small` preset); its vocab_size is taken
    from the data's tokenizer. resume=True continues the run in `out_dir` exactly where it
    stopped (data_dir may then be None: the run remembers it); a train_config given on
    resume replaces the saved one, e.g. to raise max_iters.
    """
    run_dir = Path(out_dir)
    if resume:
        saved_config, saved_data_dir = load_run_config(run_dir)
        state = load_train_state(run_dir)
        config = train_config or saved_config
        data_dir = Path(data_dir) if data_dir is not None else saved_data_dir
    else:
        if (run_dir / STATE).exists():
            raise GlassError(f"{run_dir} already holds a training run: continue it with "
                             f"`glassgpt train --resume {run_dir}` or choose another -o")
        state, config = None, train_config or TrainConfig()
    procs, device = distributed.start(pick_device(config.device))
    try:
        trainer = Trainer(Path(data_dir), run_dir, model_config, config, state, procs, device, progress)
        return trainer.run()
    finally:
        distributed.stop(procs)


class Trainer:
    """The state of one run: model, optimizer, batches, step, clocks, log."""

    def __init__(self, data_dir: Path, run_dir: Path, model_config: GPTConfig | None, config: TrainConfig,
                 state: dict | None, procs: distributed.Processes, device: torch.device, progress: bool):
        self.run_dir, self.config, self.procs, self.device = run_dir, config, procs, device
        self.precision = pick_precision(device, config.precision)
        self.show = progress and procs.is_main
        set_threads(config.threads)
        meta = read_meta(data_dir)
        from ..tokenizer import Tokenizer
        tokenizer = Tokenizer.load(data_dir / TOKENIZER)
        seed_everything(config.seed)                    # the same initial weights on every process
        if state is None and config.init_from:
            self.model = load_initial(config.init_from, tokenizer.vocab_size)
        elif state is None:
            model_config = (model_config or GPTConfig.preset("small")).replace(vocab_size=tokenizer.vocab_size)
            self.model = GPT(model_config)
            if self.show:
                print(self.model.summary(), file=sys.stderr)
        else:
            self.model = load(run_dir, device="cpu", tokenizer=False).train()
            if self.model.config.vocab_size != tokenizer.vocab_size:
                raise GlassError(f"{run_dir} was trained with vocab {self.model.config.vocab_size} but "
                                 f"{data_dir} has vocab {tokenizer.vocab_size}: resume with the original data")
        self.model.tokenizer = tokenizer
        self.model.to(device)
        T = self.model.config.context_length
        self.batches = RandomBatches(open_tokens(data_dir / TRAIN, meta["dtype"]), config.batch_size, T,
                                     device, seed=config.seed + 1000 * (procs.rank + 1))
        self.val_batches = fixed_batches(open_tokens(data_dir / VAL, meta["dtype"]), config.eval_iters,
                                         config.batch_size, T, device, seed=config.seed)
        self.teacher = load_teacher(config.teacher, self.model, device) if config.teacher else None
        self.optimizer = make_optimizer(self.model, config, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self.step, self.elapsed, self.best_val = 0, 0.0, None
        torch.manual_seed(config.seed + procs.rank)     # dropout differs between processes
        if state is not None:
            self.restore(state)
        self.forward = self.wrap(self.model)
        self.tokens_per_step = config.batch_size * config.grad_accum * T * procs.world_size
        if procs.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_run_config(run_dir, config, data_dir)
            self.records = truncate_log(run_dir, self.step)

    def restore(self, state: dict) -> None:
        if len(state["rng"]) != self.procs.world_size:
            raise GlassError(f"{self.run_dir} was trained on {len(state['rng'])} process(es): "
                             f"resume it with the same number")
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.elapsed, self.best_val = state["step"], state["elapsed"], state["best_val_loss"]
        self.batches.set_state(restore_rng(state["rng"][self.procs.rank]))

    def wrap(self, model: GPT):
        """The callable that runs training forward passes: compiled and/or DDP-wrapped."""
        if self.config.compile:
            model = torch.compile(model)
        if self.procs.distributed:
            model = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return model

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> TrainResult:
        config, start_step = self.config, self.step
        started = time.perf_counter() - self.elapsed
        bar = tqdm(total=config.max_iters, initial=self.step, disable=not self.show, unit="step",
                   dynamic_ncols=True, file=sys.stderr)
        window_loss, window_steps, window_start = torch.zeros((), device=self.device), 0, time.perf_counter()
        train_loss = val_loss = None
        last_saved = self.step
        with bar, ctrl_c() as interrupted:
            while True:
                self.elapsed = time.perf_counter() - started
                fraction, stop_now = self.agree(progress(config, self.step, self.elapsed), interrupted())
                if stop_now:
                    self.save(val_loss)
                    self.say(f"interrupted at step {self.step}; saved {self.run_dir}. "
                             f"Continue with: glassgpt train --resume {self.run_dir}")
                    raise KeyboardInterrupt
                if fraction >= 1.0:
                    bar.total = self.step              # a time-limited run ends at 100% too
                    bar.refresh()
                    break
                window_loss += self.train_step(learning_rate(config, self.step, fraction))
                self.step += 1
                window_steps += 1
                bar.update(1)
                if config.max_seconds is not None and fraction > 0:    # the time budget sets the end
                    bar.total = min(config.max_iters or 10**12, round(self.step / fraction))
                if self.step % config.log_interval == 0:
                    seconds = time.perf_counter() - window_start
                    train_loss = window_loss.item() / window_steps
                    speed = self.tokens_per_step * window_steps / seconds
                    self.log(train_loss=train_loss, lr=self.optimizer.param_groups[0]["lr"], tokens_per_s=speed)
                    bar.set_postfix_str(self.postfix(train_loss, val_loss, speed))
                    window_loss.zero_()
                    window_steps, window_start = 0, time.perf_counter()
                if self.step % config.eval_interval == 0:
                    val_loss = self.evaluate_and_save()
                    last_saved = self.step
                    window_start = time.perf_counter()       # evaluation time is not training speed
        if self.step > last_saved:
            val_loss = self.evaluate_and_save()
        elif self.step == start_step:
            self.say(f"{self.run_dir} already finished at step {self.step}: raise --max-iters/--max-seconds to go on")
        if window_steps and train_loss is None:
            train_loss = window_loss.item() / window_steps
        trained = self.step - start_step
        return TrainResult(self.run_dir, self.step, train_loss, val_loss, self.best_val,
                           self.tokens_per_step * self.step / max(self.elapsed, 1e-9) if trained else 0.0,
                           self.elapsed, self.model.eval())

    def train_step(self, lr: float) -> torch.Tensor:
        """One optimizer step over grad_accum micro-batches; returns the mean loss (no sync)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        for micro in range(self.config.grad_accum):
            x, y = self.batches.next()                                  # (B, T), (B, T)
            last = micro == self.config.grad_accum - 1
            # DDP averages gradients across processes on the last micro-batch only
            sync = contextlib.nullcontext() if last or not self.procs.distributed else self.forward.no_sync()
            with sync:
                with autocast(self.device, self.precision):
                    loss = self.loss(x, y) / self.config.grad_accum
                self.scaler.scale(loss).backward()
            total += loss.detach()
        if self.config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return total

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss: cross-entropy against the next tokens, or, with a teacher,
        against the teacher's next-token distributions (soft targets)."""
        if self.teacher is None:
            return self.forward(x, y).loss
        with torch.no_grad():
            soft = torch.softmax(self.teacher(x).logits.float(), dim=-1)              # (B, T, V)
        logits = self.forward(x).logits.float()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), soft.view(-1, soft.size(-1)))

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss on the fixed validation batches (dropout off)."""
        self.model.eval()
        losses = []
        for x, y in self.val_batches:
            with autocast(self.device, self.precision):
                losses.append(self.model(x, y).loss)
        self.model.train()
        return torch.stack(losses).mean().item()

    def evaluate_and_save(self) -> float:
        val_loss = self.evaluate()
        if self.best_val is None or val_loss < self.best_val:
            self.best_val = val_loss
            if self.procs.is_main:
                save_best(self.run_dir, self.model, self.step, val_loss)
        self.log(val_loss=val_loss)
        self.save(val_loss)
        return val_loss

    def save(self, val_loss: float | None) -> None:
        """A resumable checkpoint of this step (every process contributes its RNG states)."""
        rngs = distributed.gather(rng_state(self.batches.state()), self.procs)
        if not self.procs.is_main:
            return
        save_checkpoint(self.run_dir, self.model, {
            "step": self.step, "elapsed": self.elapsed, "best_val_loss": self.best_val, "val_loss": val_loss,
            "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "rng": rngs,
        })
        plot_losses(self.records, self.run_dir / PLOT, title=f"{self.run_dir.name}: loss")

    # -- agreement between processes, output -----------------------------------------------------
    def agree(self, fraction: float, interrupted: bool) -> tuple[float, bool]:
        """Rank 0's progress (it sets everyone's learning rate and end) and whether anyone was interrupted."""
        if not self.procs.distributed:
            return fraction, interrupted
        values = torch.tensor([fraction if self.procs.is_main else -1.0, float(interrupted)], device=self.device)
        torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX)
        return values[0].item(), bool(values[1].item())

    def log(self, **values) -> None:
        if not self.procs.is_main:
            return
        record = {"step": self.step, **values, "elapsed": round(self.elapsed, 3)}
        self.records.append(record)
        with open(self.run_dir / LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def say(self, message: str) -> None:
        if self.procs.is_main:
            print(message, file=sys.stderr, flush=True)

    @staticmethod
    def postfix(train_loss, val_loss, tokens_per_s) -> str:
        val = f" val {val_loss:.3f}" if val_loss is not None else ""
        return f"loss {train_loss:.3f}{val} | {tokens_per_s:,.0f} tok/s"


def load_initial(path, vocab_size: int) -> GPT:
    """The saved model a fine-tuning run starts from (its shape replaces the model config)."""
    model = load(path, device="cpu", tokenizer=False).train()
    if model.config.vocab_size != vocab_size:
        raise GlassError(f"{path} has a vocabulary of {model.config.vocab_size} ids and the data {vocab_size}: "
                         f"fine-tune on data made with the same tokenizer")
    return model


def load_teacher(run, model: GPT, device: torch.device) -> GPT:
    """The run to distil, checked against the student: same vocabulary, context at least as long."""
    teacher = load(run, device=device, tokenizer=False).eval().requires_grad_(False)
    if teacher.config.vocab_size != model.config.vocab_size:
        raise GlassError(f"the teacher {run} has a vocabulary of {teacher.config.vocab_size} ids and the data "
                         f"{model.config.vocab_size}: distil a teacher trained with the same tokenizer")
    if teacher.config.context_length < model.config.context_length:
        raise GlassError(f"the teacher {run} sees {teacher.config.context_length} tokens, fewer than the student's "
                         f"{model.config.context_length}: give the student --context-length "
                         f"{teacher.config.context_length} or less")
    return teacher


def make_optimizer(model: GPT, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (embeddings, linear weights) only: decaying
    biases and LayerNorm gains towards zero only hurts."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    fused = device.type in ("cuda", "cpu", "mps")       # one kernel for all parameters
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, fused=fused, foreach=None if fused else True)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@contextlib.contextmanager
def ctrl_c():
    """While training, Ctrl-C asks the loop to stop after the current step (a second one stops at once).

    Yields a function saying whether Ctrl-C was pressed."""
    pressed = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(signum)
        print("\nCtrl-C: saving a checkpoint after this step (press again to stop at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)
