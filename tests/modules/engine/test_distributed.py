"""A real 2-process gloo group on CPU: gathers, gradient correctness of the training gather, sharding."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from modules.engine.distributed import (
    all_gather_with_grad,
    cleanup,
    gather_rows,
    init_distributed,
    seed_everything,
    shard_indices,
)

WORLD_SIZE = 2
GLOBAL_BATCH = 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(5, 3)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Paired 'text' and 'video' inputs of the global batch."""
    gen = torch.Generator().manual_seed(1)
    return torch.randn(GLOBAL_BATCH, 5, generator=gen), torch.randn(GLOBAL_BATCH, 5, generator=gen)


def _contrastive(model: nn.Module, a: torch.Tensor, b: torch.Tensor, gather) -> torch.Tensor:
    """Symmetric InfoNCE over the (gathered) batch; one forward call so DDP sees the model once."""
    feats = F.normalize(model(torch.cat([a, b])), dim=-1)
    fa, fb = gather(feats[: len(a)]), gather(feats[len(a):])
    logits = fa @ fb.t() / 0.1
    target = torch.arange(len(logits))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank))
    info = init_distributed("cpu")
    seed_everything(0, info.rank)
    try:
        # (a) evaluation gather with unequal row counts (3 and 5 rows; bool too).
        n_local = 3 if rank == 0 else 5
        rows = torch.arange(n_local * 2, dtype=torch.float32).reshape(n_local, 2) + 100 * rank
        gathered = gather_rows(rows)
        mask = gather_rows(torch.arange(n_local) % 2 == 0)

        # (b) DDP + gathered contrastive loss: gradients after one backward.
        model = nn.parallel.DistributedDataParallel(_model())
        a, b = _batch()
        shard = list(shard_indices(GLOBAL_BATCH, rank, WORLD_SIZE))
        loss = _contrastive(model, a[shard], b[shard], all_gather_with_grad)
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.module.named_parameters()}
        torch.save({"info": (info.rank, info.world_size, info.local_rank, info.is_main), "gathered": gathered,
                    "mask": mask, "grads": grads, "loss": loss.detach()}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        cleanup()


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("dist")
    mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD_SIZE, join=True)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]


def test_ranks_from_environment(results: list[dict]) -> None:
    assert [r["info"] for r in results] == [(0, 2, 0, True), (1, 2, 1, False)]


def test_gather_rows_unequal_sizes(results: list[dict]) -> None:
    expected = torch.cat([torch.arange(6.0).reshape(3, 2), torch.arange(10.0).reshape(5, 2) + 100])
    expected_mask = torch.cat([torch.arange(3) % 2 == 0, torch.arange(5) % 2 == 0])
    for r in results:
        assert torch.equal(r["gathered"], expected)
        assert r["mask"].dtype == torch.bool and torch.equal(r["mask"], expected_mask)


def test_gathered_loss_gradients_equal_single_process(results: list[dict]) -> None:
    model = _model()
    a, b = _batch()
    loss = _contrastive(model, a, b, lambda x: x)
    loss.backward()
    for r in results:
        assert torch.allclose(r["loss"], loss.detach(), atol=1e-6)
        for name, param in model.named_parameters():
            assert torch.allclose(r["grads"][name], param.grad, atol=1e-6, rtol=0), name


def test_single_process_is_identity_without_group(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.is_main, info.device.type) == (0, 1, True, "cpu")
    assert not torch.distributed.is_initialized()
    x = torch.randn(4, 3, requires_grad=True)
    assert all_gather_with_grad(x) is x
    assert torch.equal(gather_rows(x), x.detach())


@pytest.mark.parametrize("n,world_size", [(0, 2), (1, 3), (7, 2), (10, 3), (12, 4), (5, 8)])
def test_shard_indices_cover_in_order(n: int, world_size: int) -> None:
    shards = [shard_indices(n, r, world_size) for r in range(world_size)]
    assert [i for s in shards for i in s] == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(ValueError):
        shard_indices(n, world_size, world_size)


def test_global_batches_gathered_in_rank_order_equal_one_process():
    from modules.engine.distributed import GlobalBatchSampler

    one = list(GlobalBatchSampler(30, 8, rank=0, world_size=1, seed=5))
    shards = [list(GlobalBatchSampler(30, 8, rank=r, world_size=2, seed=5)) for r in range(2)]
    assert len(one) == 24 and all(len(s) == 12 for s in shards)  # 3 full batches of 8; 6 items dropped
    gathered = [shards[0][i:i + 4] + shards[1][i:i + 4] for i in range(0, 12, 4)]
    assert sum(gathered, []) == one and len(set(one)) == 24
    # The same permutation as DistributedSampler (seed + epoch), and a new one each epoch.
    assert one == torch.randperm(30, generator=torch.Generator().manual_seed(5)).tolist()[:24]
    sampler = GlobalBatchSampler(30, 8, rank=0, world_size=1, seed=5)
    sampler.set_epoch(1)
    assert list(sampler) != one
