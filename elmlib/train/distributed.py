"""Data-parallel supernet training under ``torchrun`` (PyTorch DistributedDataParallel).

Every rank builds the same global batch and the same path (seeded from the step), keeps its
contiguous shard of the batch, and DDP averages gradients; losses use global denominators, so N
processes with the same global batch compute what one process computes. Only rank 0 writes.

    torchrun --nproc_per_node 4 -m elmlib search --scale small --task boolq --run-dir runs/x

nccl on GPUs (one device per local rank), gloo on CPU. Without torchrun everything is a no-op.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


class Distributed:
    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        nccl = self.world > 1 and torch.cuda.is_available()
        self.reduce_device = torch.device("cuda", self.local_rank) if nccl else torch.device("cpu")
        if self.world > 1 and not dist.is_initialized():
            if nccl:
                torch.cuda.set_device(self.local_rank)
            dist.init_process_group("nccl" if nccl else "gloo")

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, default: torch.device) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.active and default.type == "cuda" else default

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def main_first(self, fn):
        """Run ``fn`` on rank 0, then on the others: rank 0 fills on-disk caches (tokenized data, task
        teachers) that the others then read instead of racing to write them."""
        out = fn() if self.is_main else None
        self.barrier()
        return out if self.is_main else fn()

    def wrap(self, module: nn.Module) -> nn.Module:
        """DDP around the module whose forward holds everything differentiable; paths leave most
        candidate blocks unused in a step, hence ``find_unused_parameters``. Re-wrap after growth."""
        if not self.active:
            return module
        ids = [self.local_rank] if next(module.parameters()).is_cuda else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)

    def shard(self, batch: dict) -> dict:
        """This rank's contiguous slice of a global batch (equal sizes: the global batch must divide)."""
        if not self.active:
            return batch
        size = next(iter(batch.values())).shape[0]
        if size % self.world:
            raise ValueError(f"global batch size {size} is not divisible by the {self.world} processes")
        part = size // self.world
        return {k: v[self.rank * part:(self.rank + 1) * part] for k, v in batch.items()}

    def denominator(self, count: torch.Tensor) -> torch.Tensor:
        """Per-rank denominator that makes DDP's gradient average equal the global mean:
        (global count) / world."""
        if not self.active:
            return count
        total = count.detach().float().to(self.reduce_device)
        dist.all_reduce(total)
        return total.to(count.device) / self.world

    def mean(self, metrics: dict) -> dict:
        """Average scalar metrics over ranks (for logging the global loss)."""
        values = {k: float(v.detach() if torch.is_tensor(v) else v) for k, v in metrics.items()}
        if not self.active:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=self.reduce_device)
        dist.all_reduce(t)
        return dict(zip(values, (t / self.world).cpu().tolist()))

    def close(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()
