"""Data-parallel training across processes started by `torchrun`.

Every process holds the whole model and trains on its own batches; DDP averages the
gradients during backward, so all copies take the same optimizer step. Only rank 0
writes files and prints. Launch with e.g.

    torchrun --standalone --nproc_per_node=2 -m glassgpt train DATA -o RUN
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start(device: torch.device) -> tuple[Processes, torch.device]:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); else a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Processes(), device
    procs = Processes(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world_size)
    if device.type == "cuda":
        device = torch.device("cuda", procs.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return procs, device


def stop(procs: Processes) -> None:
    if procs.distributed and dist.is_initialized():
        dist.destroy_process_group()


def any_process(flag: bool, procs: Processes, device: torch.device) -> bool:
    """True if `flag` is set on any process (so all stop at the same step)."""
    if not procs.distributed:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather(obj, procs: Processes) -> list:
    """`obj` from every process, in rank order (a one-element list when not distributed)."""
    if not procs.distributed:
        return [obj]
    out = [None] * procs.world_size
    dist.all_gather_object(out, obj)
    return out


def average(value: float, procs: Processes, device: torch.device) -> float:
    if not procs.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / procs.world_size
