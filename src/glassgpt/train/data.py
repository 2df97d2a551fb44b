"""Batches: random windows of the token stream, x = tokens[i : i+T], y = tokens[i+1 : i+T+1].

Every position of x is a training example: the model predicts y[t] from x[: t+1].
Window starts come from a seeded torch.Generator whose state is saved with each
checkpoint, so a resumed run draws exactly the batches the uninterrupted run would have.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import GlassError


def open_tokens(path: Path, dtype: str) -> np.memmap:
    return np.memmap(path, dtype=np.dtype(dtype), mode="r")


def check_length(tokens: np.ndarray, context_length: int, split: str) -> None:
    """A window needs context_length + 1 tokens (inputs plus the shifted targets)."""
    needed = context_length + 1
    if len(tokens) < needed:
        raise GlassError(f"the {split} split has {len(tokens):,} tokens but context length {context_length} "
                         f"needs at least {needed:,}: give a larger corpus or a smaller --context-length")


class RandomBatches:
    """An endless supply of (x, y) batches, each (batch_size, context_length) int64."""

    def __init__(self, tokens: np.ndarray, batch_size: int, context_length: int,
                 device: torch.device, seed: int):
        check_length(tokens, context_length, "train")
        self.tokens, self.batch_size, self.context_length, self.device = tokens, batch_size, context_length, device
        self.generator = torch.Generator().manual_seed(seed)
        self.window = np.arange(context_length + 1)                               # (T+1,)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.gather(self.draw_starts())

    def draw_starts(self) -> np.ndarray:
        """The next batch's window starts (B,), in the generator's order."""
        return torch.randint(len(self.tokens) - self.context_length, (self.batch_size,),
                             generator=self.generator).numpy()

    def gather(self, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return to_device(windows(self.tokens, starts, self.window), self.device)

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


class PrefetchedBatches:
    """`RandomBatches`, with the next `depth` batches gathered on a background thread while
    the current step runs. Window starts are still drawn in order from the same generator,
    so the batches are exactly those of the plain source; `state()` is the generator's state
    before the first batch not yet handed out, so a checkpoint resumes exactly."""

    def __init__(self, source: RandomBatches, depth: int = 2):
        import concurrent.futures

        self.source, self.depth = source, depth
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="glassgpt-batches")
        self.pending: list = []                  # (generator state before the batch, future batch)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        while len(self.pending) < self.depth + 1:
            state = self.source.state()
            self.pending.append((state, self.pool.submit(self.source.gather, self.source.draw_starts())))
        _, batch = self.pending.pop(0)
        return batch.result()

    def state(self) -> torch.Tensor:
        return self.pending[0][0] if self.pending else self.source.state()

    def set_state(self, state: torch.Tensor) -> None:
        for _, batch in self.pending:
            batch.cancel()
        self.pending.clear()
        self.source.set_state(state)

    def close(self) -> None:
        self.set_state(self.state())
        self.pool.shutdown(wait=True)


def fixed_batches(tokens: np.ndarray, n_batches: int, batch_size: int, context_length: int,
                  device: torch.device, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The same validation batches at every evaluation, so val losses compare step to step.

    A short validation split gives fewer batches rather than repeating windows."""
    check_length(tokens, context_length, "validation")
    generator = torch.Generator().manual_seed(seed)
    window = np.arange(context_length + 1)
    distinct = len(tokens) - context_length
    n_batches = max(1, min(n_batches, -(-distinct // batch_size)))
    return [to_device(windows(tokens, torch.randint(distinct, (batch_size,), generator=generator).numpy(), window),
                      device) for _ in range(n_batches)]


def windows(tokens: np.ndarray, starts: np.ndarray, window: np.ndarray) -> torch.Tensor:
    """One gather from the memmap: (B,) starts -> (B, T+1) int64 token windows."""
    return torch.from_numpy(tokens[starts[:, None] + window].astype(np.int64))


def to_device(block: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T+1) -> inputs x (B, T) and targets y (B, T) on `device`."""
    if device.type == "cuda":
        block = block.pin_memory().to(device, non_blocking=True)   # copy overlaps the previous step
    elif device.type != "cpu":
        block = block.to(device)
    return block[:, :-1], block[:, 1:]
