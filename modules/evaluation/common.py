"""What every evaluation shares: eval mode for its duration, and a loader over this process's shard."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from modules.engine.distributed import DistInfo, shard_indices


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode inside the block, back in the mode it was in afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def shard_loader(dataset: Dataset, dist: DistInfo, batch_size: int, workers: int) -> DataLoader:
    """This process's contiguous shard of `dataset`, in order (gathering in rank order restores the order)."""
    shard = Subset(dataset, list(shard_indices(len(dataset), dist.rank, dist.world_size)))
    return DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=dist.device.type == "cuda", persistent_workers=False)
