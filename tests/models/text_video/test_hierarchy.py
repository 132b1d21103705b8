"""Token merging of HBI's action and event levels: shapes, masks, centres, batch independence."""
import math

import pytest
import torch

from models.text_video.hierarchy import CrossAttentionBlock, MergeStage, Refined, TokenMerge, dpc_knn_assign, merge_clusters

WIDTH = 32


def batch(n_items: int, length: int, seed: int = 0, min_len: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_items, length, WIDTH, generator=g)
    lengths = torch.randint(min_len, length + 1, (n_items,), generator=g)
    lengths[0] = length  # one full item
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    return x, mask


def reference_style_assign(x, mask, centres, k):
    """DPC-KNN as the reference writes it: padded columns at the largest distance of the whole batch + 1."""
    dist = torch.cdist(x, x) / math.sqrt(x.shape[-1])
    valid = mask > 0
    dist = dist * valid[:, None, :] + (dist.max() + 1) * (~valid[:, None, :])
    density = (-(torch.topk(dist, k=k, dim=-1, largest=False).values ** 2).mean(-1)).exp() * valid
    denser = (density[:, None, :] > density[:, :, None]).float()
    dist_max = dist.flatten(1).max(-1).values[:, None, None]
    parent = (dist * denser + dist_max * (1 - denser)).min(-1).values
    index = torch.topk(parent * density, k=centres, dim=-1).indices
    rows = torch.stack([dist[b, index[b]] for b in range(len(x))])
    assign = rows.argmin(dim=1)
    for b in range(len(x)):
        assign[b, index[b]] = torch.arange(centres)
    return assign


@pytest.mark.parametrize("length,ratio", [(12, 0.25), (12, 0.5), (7, 1 / 3), (32, 0.25), (3, 0.5)])
def test_shapes_and_number_of_centres(length, ratio):
    x, mask = batch(5, length, min_len=min(3, length))
    stage = MergeStage(WIDTH, ratio, k=3, heads=4, jitter=False).eval()
    with torch.no_grad():
        refined = stage.merge(x, mask)
        out = stage(x, mask)
    centres = math.ceil(length * ratio)
    assert refined.merged.shape == out.shape == (5, centres, WIDTH)
    assert refined.tokens.shape == x.shape and refined.scores.shape == mask.shape
    assign = dpc_knn_assign(refined.tokens, mask, centres, 3)
    assert assign.shape == mask.shape and int(assign.max()) < centres
    # Every cluster is non-empty: each centre belongs to its own cluster.
    assert all(len(set(row.tolist())) == centres for row in assign)


def test_padded_tokens_have_no_weight_and_no_say_in_attention():
    x, mask = batch(6, 12, seed=1, min_len=4)
    merge = TokenMerge(WIDTH, 0.25, jitter=False)
    with torch.no_grad():
        refined = merge(x, mask)
        assert torch.isneginf(refined.scores[mask == 0]).all() and torch.isfinite(refined.scores[mask == 1]).all()
        # Centres are real tokens when there are enough of them, and padded tokens add nothing to a cluster.
        assign = dpc_knn_assign(refined.tokens, mask, 3, 3)
        noisy = refined.tokens.masked_fill((mask == 0)[..., None], 1e3)
        weights = refined.scores.exp()
        torch.testing.assert_close(merge_clusters(noisy, assign, weights, 3), refined.merged)
        # Keys at padded positions carry -inf and drop out of the attention.
        block = CrossAttentionBlock(WIDTH, heads=4)
        garbage = refined.tokens + 50 * (mask == 0)[..., None]
        torch.testing.assert_close(block(Refined(refined.merged, garbage, refined.scores)), block(refined))


def test_merge_is_a_weighted_mean_of_each_cluster():
    g = torch.Generator().manual_seed(2)
    x, weights = torch.randn(2, 6, 4, generator=g), torch.rand(2, 6, generator=g)
    assign = torch.tensor([[0, 1, 0, 2, 1, 0], [2, 2, 1, 0, 0, 1]])
    merged = merge_clusters(x, assign, weights, 3)
    for b in range(2):
        for c in range(3):
            members = assign[b] == c
            w = weights[b, members]
            expected = (x[b, members] * w[:, None]).sum(0) / (w.sum() + 1e-6)
            torch.testing.assert_close(merged[b, c], expected)


def test_batched_equals_per_item():
    x, mask = batch(7, 12, seed=3)
    stage = MergeStage(WIDTH, 0.25, heads=4, jitter=False).eval()
    with torch.no_grad():
        whole = stage(x, mask)
        single = torch.cat([stage(x[i:i + 1], mask[i:i + 1]) for i in range(len(x))])
        unmasked = stage(x, None)
        single_unmasked = torch.cat([stage(x[i:i + 1], None) for i in range(len(x))])
    torch.testing.assert_close(whole, single, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(unmasked, single_unmasked, rtol=1e-5, atol=1e-6)


def test_same_clusters_as_the_reference_batch_wide_padding_distance():
    # Items with fewer real tokens than k (and than centres) are where the padding distance enters the density.
    x, mask = batch(16, 12, seed=4)
    mask[1:4, 2:] = 0
    for centres in (3, 6):
        ours = dpc_knn_assign(x, mask, centres, k=3)
        assert torch.equal(ours, reference_style_assign(x, mask, centres, k=3))


def test_jitter_is_on_by_default_and_keeps_distinct_densities_in_order():
    x, mask = batch(4, 12, seed=5)
    assert TokenMerge(WIDTH, 0.25).jitter
    torch.manual_seed(0)
    jittered = dpc_knn_assign(x, mask, 3, 3, jitter=True)
    assert torch.equal(jittered, dpc_knn_assign(x, mask, 3, 3))
