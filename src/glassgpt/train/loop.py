"""The training loop: batches in, loss down, checkpoints out.

One optimizer step:
    for each of grad_accum micro-batches:  x, y -> model -> loss / grad_accum -> backward
        (with a teacher, the loss compares the model's next-token distributions with the
        teacher's instead of with y: distillation)
    clip the global gradient norm -> AdamW step at the scheduled learning rate -> clear grads

Every eval_interval steps: validation loss on fixed batches, a checkpoint of the run
(and of best/ when the validation loss improved), the loss plot; and a checkpoint
whenever checkpoint_seconds have passed without one, so a run killed early still has
something to resume. Ctrl-C or SIGTERM finishes the current step, saves a resumable
checkpoint and stops; while a checkpoint is being written, further signals wait for it.
A non-finite loss stops the run (the last good checkpoint stays; best/ never gets NaNs).

The run directory is locked for the whole run (glassgpt.locks), and cleaned of whatever a
killed process left half-written before anything else happens (state.recover).
"""
from __future__ import annotations

import contextlib
import math
import os
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

from ..errors import DivergedError, GlassError
from ..fileio import remove_tree
from ..locks import DirectoryLock
from ..model import GPT, GPTConfig, load
from ..runtime import autocast, pick_device, pick_precision, set_threads
from . import distributed
from .config import RUN_CONFIG, TrainConfig, load_run_config, save_run_config
from .data import PrefetchedBatches, RandomBatches, fixed_batches, open_tokens
from .directories import check_train_output
from .plot import plot_losses
from .prepare import TOKENIZER, TRAIN, VAL, check_data, read_meta
from .schedule import learning_rate, progress
from .speed import (CompileDecision, PrecisionChoice, choose_precision, decide_compile, known_compile,
                    remember_compile, shape_key, time_precisions, use_compile_caches)
from .state import (BEST, CHECKPOINTS, LOG, PLOT, POINTER, STATE, append_log, current_checkpoint, load_train_state,
                    recover, restore_rng, rng_state, save_best, save_checkpoint, truncate_log)


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
          resume: bool = False, progress: bool = True, init_from=None, force: bool = False) -> TrainResult:
    """Train a GPT on the token files in `data_dir` (made by `prepare`), writing the run to `out_dir`.

    model_config: the architecture (default: the `small` preset); its vocab_size is taken
    from the data's tokenizer. resume=True continues the run in `out_dir` exactly where it
    stopped (data_dir may then be None: the run remembers it); a train_config given on
    resume replaces the saved one, e.g. to raise max_iters. init_from: a run or saved model
    whose weights (and architecture) a new run starts from, with a fresh optimizer.
    force: start the run in a directory that holds other files (a previous run there is replaced).
    """
    run_dir = Path(out_dir)
    say = _printer(progress)
    if resume and init_from is not None:
        raise GlassError("--resume continues a run and --init-from starts a new one from weights: give one of them")
    if init_from is not None and model_config is not None:
        raise GlassError("the architecture of a run started --init-from comes from its weights: "
                         "drop the model settings")
    main = os.environ.get("RANK", "0") == "0"           # under torchrun, rank 0 owns the run directory
    if resume:
        load_run_config(run_dir)                         # not a run: say so before creating anything
    elif main:
        check_train_output(run_dir, force, data_dir)     # refuse quickly, before any work
    with DirectoryLock(run_dir, "training run", say) if main else contextlib.nullcontext():
        if main:
            for note in recover(run_dir):
                say(f"note: {run_dir}: {note}")
        if resume:
            saved_config, saved_data_dir = load_run_config(run_dir)
            state = load_train_state(run_dir)
            config = train_config or saved_config
            data_dir = Path(data_dir) if data_dir is not None else saved_data_dir
        else:
            if main:
                check_train_output(run_dir, force, data_dir)   # again: now no one else can be writing here
                clear_run(run_dir)
            state, config = None, train_config or TrainConfig()
        procs, device = distributed.start(pick_device(config.device))
        try:
            trainer = Trainer(Path(data_dir), run_dir, model_config, config, state, procs, device, progress,
                              init_from)
            return trainer.run()
        finally:
            distributed.stop(procs)


def clear_run(run_dir: Path) -> None:
    """Remove what a previous run (never saved, or replaced with force) left: its settings,
    checkpoints, log and best/. The model files are replaced by the first save."""
    for name in (POINTER, STATE, RUN_CONFIG, LOG, PLOT):
        (run_dir / name).unlink(missing_ok=True)
    for name in (CHECKPOINTS, BEST):
        remove_tree(run_dir / name)


def weights_of(run) -> Path:
    """The directory holding a run's newest weights: its current checkpoint, or the run itself."""
    run = Path(run)
    if (run / POINTER).is_file():
        current = current_checkpoint(run)
        if current is not None and current.is_dir():
            return current
    return run


class Trainer:
    """The state of one run: model, optimizer, batches, step, clocks, log."""

    def __init__(self, data_dir: Path, run_dir: Path, model_config: GPTConfig | None, config: TrainConfig,
                 state: dict | None, procs: distributed.Processes, device: torch.device, progress: bool,
                 init_from=None):
        self.run_dir, self.config, self.procs, self.device = run_dir, config, procs, device
        self.show = progress and procs.is_main
        set_threads(config.threads)
        meta = read_meta(data_dir)
        from ..tokenizer import Tokenizer
        tokenizer = Tokenizer.load(data_dir / TOKENIZER)
        check_data(data_dir, meta, tokenizer)
        seed_everything(config.seed)                    # the same initial weights on every process
        if state is None and init_from is None:
            model_config = (model_config or GPTConfig.preset("small")).replace(vocab_size=tokenizer.vocab_size)
            self.model = GPT(model_config)
            if self.show:
                print(self.model.summary(), file=sys.stderr)
        else:
            source = weights_of(run_dir if state is not None else init_from)
            self.model = load(source, device="cpu", tokenizer=False).train()
            check_same_tokenizer(source, self.model, tokenizer, data_dir, resuming=state is not None)
        self.model.tokenizer = tokenizer
        self.model.to(device)
        T = self.model.config.context_length
        self.batches = RandomBatches(open_tokens(data_dir / TRAIN, meta["dtype"]), config.batch_size, T,
                                     device, seed=config.seed + 1000 * (procs.rank + 1))
        if config.prefetch:
            self.batches = PrefetchedBatches(self.batches)
        self.val_batches = fixed_batches(open_tokens(data_dir / VAL, meta["dtype"]), config.eval_iters,
                                         config.batch_size, T, device, seed=config.seed)
        self.teacher = load_teacher(config.teacher, self.model, device) if config.teacher else None
        self.optimizer = make_optimizer(self.model, config, device)
        self.step, self.elapsed, self.best_val = 0, 0.0, None
        self.saved_step, self.saved_at = None, time.perf_counter()      # the last published checkpoint
        self.signals = StopSignals(self.say)
        self.choose_speed(state)                        # precision and compile: measured, or as the run began
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
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
        self.saved_step = self.step
        self.batches.set_state(restore_rng(state["rng"][self.procs.rank]))

    def choose_speed(self, state: dict | None) -> None:
        """The precision (auto: the faster of fp32 and bf16 on a CPU with native bf16) and whether
        to compile (auto: when it pays within the run's budget). A resumed run keeps its choices."""
        config, device = self.config, self.device
        probe = self.probe_batch()
        saved = state or {}
        if config.precision == "auto" and saved.get("precision"):
            choice = PrecisionChoice(saved["precision"], f"precision: {saved['precision']} (as the run began)")
        else:
            choice = choose_precision(self.model, probe, device, config.precision, pick_precision(device, "auto"))
        self.precision = choice.precision
        self.compile_key = shape_key(self.model.config, config.batch_size, self.precision, device.type)
        self.eager_seconds = None                      # forward + backward, measured when compiling is weighed
        if config.compile == "auto" and "compiled" in saved:
            decision = CompileDecision(saved["compiled"], f"compile: {'on' if saved['compiled'] else 'off'} "
                                                          f"(as the run began)")
        else:
            decision = decide_compile(config.compile, self.budget_seconds(saved, choice, probe),
                                      known_compile(self.compile_key), device.type)
        self.compiled = decision.compile
        if self.procs.distributed:                     # every process takes rank 0's choices
            shared = [self.precision, self.compiled]
            torch.distributed.broadcast_object_list(shared, src=0)
            self.precision, self.compiled = shared
        if self.show:
            self.say(f"{choice.reason}; {decision.reason}")
        if self.compiled:
            use_compile_caches()

    def probe_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Random tokens of a training batch's shape, for timing (the data's generator is left alone)."""
        g = torch.Generator().manual_seed(0)
        T, V = self.model.config.context_length, self.model.config.vocab_size
        ids = torch.randint(V, (self.config.batch_size, T + 1), generator=g).to(self.device)
        return ids[:, :-1], ids[:, 1:]

    def budget_seconds(self, saved: dict, choice, probe) -> float | None:
        """How long the rest of the run will train: the time left, or the steps left times a
        measured step (forward + backward, x1.2 for the optimizer and the batch)."""
        config = self.config
        budgets = []
        if config.max_seconds is not None:
            budgets.append(config.max_seconds - saved.get("elapsed", 0.0))
        if config.max_iters is not None and config.compile == "auto":
            if choice.timings is not None:
                self.eager_seconds = choice.timings[choice.precision]
            else:
                self.eager_seconds = time_precisions(self.model, probe, self.device, (choice.precision,), 2)[
                    choice.precision]
            budgets.append((config.max_iters - saved.get("step", 0)) * self.eager_seconds * 1.2)
        return min(budgets) if budgets else None

    def wrap(self, model: GPT):
        """The callable that runs training forward passes: compiled and/or DDP-wrapped."""
        if self.compiled:
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
        with bar, self.signals:
            while True:
                self.elapsed = time.perf_counter() - started
                save_due = (config.checkpoint_seconds is not None
                            and time.perf_counter() - self.saved_at >= config.checkpoint_seconds)
                fraction, stop_now, save_now = self.agree(progress(config, self.step, self.elapsed),
                                                          self.signals.requested(), save_due)
                if stop_now:
                    self.save(val_loss)
                    self.say(f"{self.signals.name()} at step {self.step}; saved {self.run_dir}. "
                             f"Continue with: glassgpt train --resume {self.run_dir}")
                    raise KeyboardInterrupt
                if save_now and self.step > (self.saved_step or 0):
                    self.save(val_loss)                      # time-based: no evaluation
                if fraction >= 1.0:
                    bar.total = self.step              # a time-limited run ends at 100% too
                    bar.refresh()
                    break
                if self.compiled and self.step == start_step:       # the first compiled step compiles
                    bar.set_postfix_str("compiling...")
                    compile_start = time.perf_counter()
                window_loss += self.train_step(learning_rate(config, self.step, fraction))
                if self.compiled and self.step == start_step:
                    self.compiled_first_step(time.perf_counter() - compile_start)
                    window_start = time.perf_counter()       # compiling is not training speed
                self.step += 1
                window_steps += 1
                bar.update(1)
                if config.max_seconds is not None and fraction > 0:    # the time budget sets the end
                    bar.total = min(config.max_iters or 10**12, round(self.step / fraction))
                if self.step % config.log_interval == 0:
                    seconds = time.perf_counter() - window_start
                    train_loss = window_loss.item() / window_steps
                    self.check_finite("training", train_loss)
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
        elif self.step > (self.saved_step or 0):
            self.save(val_loss)            # the end fell between a time-based save and an evaluation
        elif self.step == start_step:
            self.say(f"{self.run_dir} already finished at step {self.step}: raise --max-iters/--max-seconds to go on")
        if window_steps and train_loss is None:
            train_loss = window_loss.item() / window_steps
        trained = self.step - start_step
        return TrainResult(self.run_dir, self.step, train_loss, val_loss, self.best_val,
                           self.tokens_per_step * self.step / max(self.elapsed, 1e-9) if trained else 0.0,
                           self.elapsed, self.model.eval())

    def compiled_first_step(self, seconds: float) -> None:
        """After the first compiled step: say what compiling cost, and remember it with the speedup
        (compiled against eager forward + backward) for the next run's `--compile auto`."""
        if self.eager_seconds is None:
            self.eager_seconds = time_precisions(self.model, self.probe_batch(), self.device, (self.precision,),
                                                 2)[self.precision]
        compiled = time_precisions(self.forward, self.probe_batch(), self.device, (self.precision,), 2)[self.precision]
        if self.show:
            self.say(f"compiled in {seconds:.1f} s; forward + backward {self.eager_seconds * 1e3:.1f} ms eager, "
                     f"{compiled * 1e3:.1f} ms compiled")
        if self.procs.is_main:
            remember_compile(self.compile_key, max(0.0, seconds - self.eager_seconds), self.eager_seconds / compiled)

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
        self.check_finite("validation", val_loss)
        if self.best_val is None or val_loss < self.best_val:
            self.best_val = val_loss
            if self.procs.is_main:
                with self.signals.saving():
                    save_best(self.run_dir, self.model, self.step, val_loss)
        self.log(val_loss=val_loss)
        self.save(val_loss)
        return val_loss

    def save(self, val_loss: float | None) -> None:
        """A resumable checkpoint of this step (every process contributes its RNG states),
        published as one unit; signals arriving meanwhile wait until it is complete."""
        if self.saved_step == self.step:
            return                                      # this step is saved already
        with self.signals.saving():
            if not all(torch.isfinite(p).all() for p in self.model.parameters()):
                self.check_finite("training", math.nan)
            rngs = distributed.gather(rng_state(self.batches.state()), self.procs)
            if self.procs.is_main:
                save_checkpoint(self.run_dir, self.model, {
                    "step": self.step, "elapsed": self.elapsed, "best_val_loss": self.best_val,
                    "val_loss": val_loss, "optimizer": self.optimizer.state_dict(),
                    "scaler": self.scaler.state_dict(), "rng": rngs,
                    "precision": self.precision, "compiled": self.compiled,
                })
                plot_losses(self.records, self.run_dir / PLOT, title=f"{self.run_dir.name}: loss")
        self.saved_step, self.saved_at = self.step, time.perf_counter()

    def check_finite(self, which: str, loss: float) -> None:
        """Stop a diverged run: nothing non-finite is ever saved, the last checkpoint stays."""
        if math.isfinite(loss):
            return
        kept = (f"the last good checkpoint (step {self.saved_step}) is kept in {self.run_dir}"
                if self.saved_step is not None else "nothing was saved")
        raise DivergedError(f"training diverged at step {self.step}: the {which} loss is {loss}; {kept}: "
                            f"start again with a lower --lr (it is {self.config.lr:g}) or a longer --warmup-iters")

    # -- agreement between processes, output -----------------------------------------------------
    def agree(self, fraction: float, interrupted: bool, save_due: bool) -> tuple[float, bool, bool]:
        """Rank 0's progress (it sets everyone's learning rate and end), whether anyone was
        interrupted, and whether rank 0's clock says a checkpoint is due."""
        if not self.procs.distributed:
            return fraction, interrupted, save_due
        main = self.procs.is_main
        values = torch.tensor([fraction if main else -1.0, float(interrupted), float(save_due and main)],
                              device=self.device)
        torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX)
        return values[0].item(), bool(values[1].item()), bool(values[2].item())

    def log(self, **values) -> None:
        if not self.procs.is_main:
            return
        record = {"step": self.step, **values, "elapsed": round(self.elapsed, 3)}
        self.records.append(record)
        append_log(self.run_dir, record)

    def say(self, message: str) -> None:
        if self.procs.is_main:
            print(message, file=sys.stderr, flush=True)

    @staticmethod
    def postfix(train_loss, val_loss, tokens_per_s) -> str:
        val = f" val {val_loss:.3f}" if val_loss is not None else ""
        return f"loss {train_loss:.3f}{val} | {tokens_per_s:,.0f} tok/s"


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


def check_same_tokenizer(source: Path, model: GPT, tokenizer, data_dir: Path, resuming: bool) -> None:
    """Weights continue only on ids they were trained on: same vocabulary, same tokenizer."""
    hint = "resume with the original data" if resuming else f"prepare the data with --tokenizer {source}/tokenizer.json"
    if model.config.vocab_size != tokenizer.vocab_size:
        raise GlassError(f"{source} was trained with vocab {model.config.vocab_size} but {data_dir} has vocab "
                         f"{tokenizer.vocab_size}: {hint}")
    if (source / TOKENIZER).is_file():
        from ..tokenizer import Tokenizer
        if Tokenizer.load(source / TOKENIZER).fingerprint() != tokenizer.fingerprint():
            raise GlassError(f"{source} was trained with another tokenizer than {data_dir}'s: {hint}")


class StopSignals:
    """Ctrl-C (SIGINT) and SIGTERM (timeout, a batch scheduler, docker stop) ask the loop to
    stop after the current step and save. A second one stops at once, except while a
    checkpoint is being written: it then waits for the save to complete (and says so).
    Signal handlers are Python's to install only in the main thread; elsewhere this is inert."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, say):
        self.say, self.received, self.writing, self.previous = say, None, False, {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self.handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        self.previous = {}

    def handle(self, signum, frame) -> None:
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        if self.writing:
            self.received = self.received or signum
            self.say(f"\n{name}: a checkpoint is being written; stopping as soon as it is complete")
            return
        if self.received:
            raise KeyboardInterrupt
        self.received = signum
        self.say(f"\n{name}: saving a checkpoint after this step (again to stop at once, losing this step)")

    def requested(self) -> bool:
        return self.received is not None

    def name(self) -> str:
        return "interrupted" if self.received in (None, signal.SIGINT) else "terminated"

    @contextlib.contextmanager
    def saving(self):
        self.writing = True
        try:
            yield
        finally:
            self.writing = False


def _printer(progress: bool):
    return (lambda message: print(message, file=sys.stderr, flush=True)) if progress else (lambda message: None)
