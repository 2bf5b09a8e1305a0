"""Data-parallel training on PyTorch's own engine (torch.distributed), for `torchrun`, `accelerate launch` or
`logoapp train --processes N`. Each process trains on its shard of every epoch (same seed, same permutation,
disjoint slices, so the global batch stays the batch size asked for), DistributedDataParallel all-reduces the
gradients (NCCL on GPUs, gloo on CPUs), and rank 0 alone reports, evaluates for the record and saves: the model
folder is the same as a single process writes. Nothing else is shared: each node reads (or has cached) the data."""
from __future__ import annotations

import os
import subprocess
import sys

import torch
import torch.distributed as dist
from fastai.callback.core import Callback
from torch.nn.parallel import DistributedDataParallel


def world() -> int:
    """How many processes train together (WORLD_SIZE, set by torchrun and accelerate); 1 alone."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def setup() -> bool:
    """Join the process group when started as one of several processes; True when training is distributed."""
    if world() < 2:
        return False
    if not active():
        cuda = torch.cuda.is_available() and os.environ.get("LOGOAPP_DEVICE", "cuda").startswith("cuda")
        if cuda:
            torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl" if cuda else "gloo")
    return True


def cleanup() -> None:
    if active():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def shard(idx: torch.Tensor) -> torch.Tensor:
    """This process's slice of an epoch's (identically permuted) indices; every process gets as many."""
    if not active():
        return idx
    n = len(idx) // world() * world()
    return idx[:n][rank()::world()]


class DataParallel(Callback):
    """Wraps the model in DistributedDataParallel for each fit (fine_tune's frozen and unfrozen fits alike, so
    frozen parameters are left out of the all-reduce) and unwraps it after, so saving sees the plain model."""
    order = -5  # before anything that runs the model

    def before_fit(self):
        if active() and not isinstance(self.learn.model, DistributedDataParallel):
            dev = self.dls.device
            ids = [dev.index if dev.index is not None else local_rank()] if dev.type == "cuda" else None
            self.learn.model = DistributedDataParallel(self.learn.model, device_ids=ids)

    def after_fit(self):
        if isinstance(self.learn.model, DistributedDataParallel):
            self.learn.model = self.learn.model.module


def launch(processes: int, argv: list[str]) -> int:
    """Run `logoapp <argv>` as `processes` processes on this machine through torchrun; returns its exit status."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
           "-m", "logoapp", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS",
                                                          str(max(1, (os.cpu_count() or 1) // processes)))}
    return subprocess.call(cmd, env=env)
