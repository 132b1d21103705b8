"""Process-group setup for `torchrun`, cross-rank gathers, sharding and seeding.

One process without torchrun is the same code path with world size 1 and no process group.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass
class DistInfo:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    is_main: bool


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def _pick_device(device: str, local_rank: int) -> torch.device:
    """`auto` means cuda when available; a cuda process uses the GPU numbered by its local rank."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    if device != "cuda":
        raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
    if not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but CUDA is not available")
    if local_rank >= torch.cuda.device_count():
        raise RuntimeError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_distributed(device: str = "auto") -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK set by torchrun and join the process group (nccl on GPU, gloo on CPU).

    Without those variables this is a single process and no group is created.
    """
    rank = _env_int("RANK", 0)
    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = _pick_device(device, local_rank)
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if launched and not dist.is_initialized():
        if dev.type == "cuda":
            # Binding the device lets NCCL set up eagerly and barriers know which GPU to use.
            dist.init_process_group(backend="nccl", device_id=dev)
        else:
            dist.init_process_group(backend="gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, is_main=rank == 0)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums the gathered gradient over ranks and keeps this rank's rows.

    torch.distributed.nn's all_gather emulates reduce-scatter with all-to-all on gloo, which hands back wrong
    gradients when the incoming gradient is not contiguous (seen with the video features); an all-reduce of a
    contiguous copy is correct on every backend.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rows = (dist.get_rank() * x.shape[0], x.shape[0])
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start, rows = ctx.rows
        return grad[start:start + rows]


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate (B_local, ...) from every rank in rank order into (B_global, ...), keeping autograd.

    Every rank must pass the same shape (equal local batch sizes: use drop_last in the training sampler).
    Backward sums the incoming gradients over ranks before handing this rank its slice. With the loss
    computed identically on every rank from the gathered batch, each rank's parameter gradient is then
    world_size times its share, and DDP's averaging turns that into exactly the gradient of one process
    on the global batch. (The reference's AllGather returned only the local slice, i.e. 1/world_size of it.)
    Every rank must also run backward, because the backward pass is itself a collective.
    """
    if _world_size() == 1:
        return x
    if not x.requires_grad:
        return gather_rows(x)
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate (N_local, ...) from every rank in rank order; N_local may differ, trailing dims may not.

    For evaluation: no gradient. Rows are padded to the largest N_local for the collective, then trimmed.
    """
    world_size = _world_size()
    if world_size == 1:
        return x.detach()
    x = x.detach().contiguous()
    # Some backends cannot gather bool; bytes carry the same information.
    is_bool = x.dtype == torch.bool
    if is_bool:
        x = x.to(torch.uint8)
    size = torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device)
    sizes = [torch.empty_like(size) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    padded = x.new_zeros((max(counts), *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(parts, padded)
    out = torch.cat([part[:n] for part, n in zip(parts, counts)], dim=0)
    return out.bool() if is_bool else out


def shard_indices(n: int, rank: int, world_size: int) -> range:
    """Contiguous slice of 0..n-1 for `rank`; shards differ in size by at most one.

    Concatenating the shards in rank order gives 0..n-1 back, so gathered evaluation rows keep dataset order.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


class GlobalBatchSampler(Sampler[int]):
    """Training order for one process: the dataset shuffled per epoch (torch.randperm seeded with seed + epoch, as
    DistributedSampler), cut into global batches (incomplete last one dropped), of which this rank takes the
    rank-th contiguous slice. Gathering the ranks' batches in rank order then gives back the one-process batch in
    the same row order, so row-wise randomness such as dropout masks lines up whatever the number of processes.
    Use with DataLoader(batch_size=global_batch // world_size)."""

    def __init__(self, num_items: int, global_batch: int, rank: int, world_size: int, seed: int = 0):
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by {world_size} processes")
        self.num_items, self.global_batch, self.seed, self.epoch = num_items, global_batch, seed, 0
        self.local = global_batch // world_size
        self.offset = rank * self.local

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.num_items, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        for start in range(0, self.num_items - self.global_batch + 1, self.global_batch):
            yield from order[start + self.offset:start + self.offset + self.local].tolist()

    def __len__(self) -> int:
        return (self.num_items // self.global_batch) * self.local


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` (picklable) on every rank; `obj` itself in a single process."""
    if _world_size() == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj` (picklable), in rank order, on every rank; `[obj]` in a single process."""
    if _world_size() == 1:
        return [obj]
    gathered = [None] * _world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    """Wait for every rank; a no-op in a single process."""
    if _world_size() > 1:
        dist.barrier()


def cleanup() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch (CPU and all GPUs) with `seed + rank`.

    Ranks get different streams so their dropout masks and augmentations differ; the model's initial
    weights still agree because DDP broadcasts rank 0's parameters when it wraps the model.
    cuDNN is made deterministic, as in the reference.
    """
    value = seed + rank
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)  # also seeds every CUDA device
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy and python in a DataLoader worker from its torch seed (base seed + worker id).

    The base seed is drawn from the main process's torch RNG, so restoring that RNG replays the workers.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
