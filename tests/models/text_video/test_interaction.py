"""Interaction heads: chunking, masking, directions."""
import torch

from models.text_video import interaction as inter
from models.text_video.interaction import MeanPooling, TokenInteraction, Tokens


def items(n, length, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, length, dim, generator=g)
    mask = (torch.arange(length)[None] < torch.randint(1, length + 1, (n,), generator=g)[:, None]).long()
    return feats, mask


def test_chunked_scores_equal_one_block(monkeypatch):
    head = TokenInteraction(16).eval()
    text, video = items(37, 7), items(23, 5, seed=1)
    with torch.no_grad():
        whole = head.score(head.prepare_text(*text), head.prepare_video(*video))
        monkeypatch.setattr(inter, "_BLOCK_ELEMENTS", 7 * 5 * 23 * 3)  # forces chunks of 3 rows
        chunked = head.score(head.prepare_text(*text), head.prepare_video(*video))
    assert whole.shape == (37, 23)
    torch.testing.assert_close(chunked, whole)


def test_padded_tokens_do_not_change_scores():
    head = TokenInteraction(16).eval()
    text, video = items(4, 6), items(3, 5, seed=1)
    noisy = text[0].clone()
    noisy[text[1] == 0] = 1e3  # garbage in padded positions
    with torch.no_grad():
        a = head.score(head.prepare_text(*text), head.prepare_video(*video))
        b = head.score(head.prepare_text(noisy, text[1]), head.prepare_video(*video))
    torch.testing.assert_close(a, b)


def test_wti_by_hand():
    t = Tokens(torch.eye(2)[None], torch.ones(1, 2, dtype=torch.long), torch.tensor([[0.25, 0.75]]))
    v = Tokens(torch.tensor([[[1.0, 0.0]]]), torch.ones(1, 1, dtype=torch.long), torch.tensor([[1.0]]))
    # words: best frame sims 1 and 0 weighted 0.25/0.75 -> 0.25; frame: best word 1 -> 1; mean 0.625
    assert torch.allclose(inter._wti_block(t, v, weighted=True), torch.tensor([[0.625]]))
    # mean-max: words mean (1 + 0) / 2 = 0.5, frame 1 -> 0.75
    assert torch.allclose(inter._wti_block(t, v, weighted=False), torch.tensor([[0.75]]))


def test_meanp_uses_end_token_and_masked_mean():
    head = MeanPooling()
    text = torch.zeros(1, 4, 2)
    text[0, 2] = torch.tensor([0.0, 3.0])  # end token at position mask.sum() - 1 = 2
    video = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [100.0, 0.0]]])
    sims = head.score(head.prepare_text(text, torch.tensor([[1, 1, 1, 0]])),
                      head.prepare_video(video, torch.tensor([[1, 1, 0]])))
    assert torch.allclose(sims, torch.tensor([[2 ** -0.5]]))


def reference_wti(head, t_feat, t_mask, v_feat, v_mask):
    """The reference's formula, padded tokens included: weights, cosine maps times masks, maxima."""
    t_w = torch.softmax(head.text_weight_fc(t_feat).squeeze(-1).masked_fill(t_mask == 0, -9e15), dim=-1)
    v_w = torch.softmax(head.video_weight_fc(v_feat).squeeze(-1).masked_fill(v_mask == 0, -9e15), dim=-1)
    t = t_feat / t_feat.norm(dim=-1, keepdim=True)
    v = v_feat / v_feat.norm(dim=-1, keepdim=True)
    maps = torch.einsum("atd,bvd->abtv", t, v) * t_mask[:, None, :, None] * v_mask[None, :, None, :]
    t2v = torch.einsum("abt,at->ab", maps.max(-1).values, t_w)
    v2t = torch.einsum("abv,bv->ab", maps.max(-2).values, v_w)
    return (t2v + v2t) / 2


def test_scoring_on_real_tokens_only_equals_the_padded_reference(monkeypatch):
    torch.manual_seed(0)
    head = TokenInteraction(8).eval()
    text, video = items(29, 9, dim=8, seed=3), items(17, 6, dim=8, seed=4)
    # Some pairs whose real similarities are all negative: the reference's max then sees the padding's zeros.
    video[0][:5] = -text[0][:5, :6].clone()
    monkeypatch.setattr(inter, "_BLOCK_ELEMENTS", 9 * 6 * 5)  # several caption chunks and video groups
    with torch.no_grad():
        ours = head.score(head.prepare_text(*text), head.prepare_video(*video))
        reference = reference_wti(head, text[0], text[1], video[0], video[1])
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=1e-5)


def test_scores_under_autocast_match_fp32():
    """--precision amp_bf16 / amp_fp16: half-precision blocks are written into the float32 score matrix."""
    torch.manual_seed(0)
    head = TokenInteraction(16)
    text, video = items(7, 9, seed=1), items(5, 6, seed=2)
    with torch.no_grad():
        full = head.score(head.prepare_text(*text), head.prepare_video(*video))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = head.score(head.prepare_text(*text), head.prepare_video(*video))
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, atol=3e-2, rtol=0)


def test_length_groups_split_where_the_length_changes():
    lengths = torch.tensor([3, 1, 3, 2, 1, 3, 5])
    groups = [lengths[g].tolist() for g in inter._length_groups(lengths, 1)]
    assert groups == [[1, 1], [2], [3, 3, 3], [5]]
    # Runs shorter than the minimum join the next; a short last run joins the previous group.
    assert [lengths[g].tolist() for g in inter._length_groups(lengths, 3)] == [[1, 1, 2], [3, 3, 3, 5]]
    assert [len(g) for g in inter._length_groups(lengths, 10)] == [7]


def test_length_bucketed_scores_equal_the_padded_blocks(monkeypatch):
    """Groups of one length each, several caption chunks, pairs whose real similarities are all negative."""
    torch.manual_seed(0)
    head = TokenInteraction(8).eval()
    text, video = items(29, 9, dim=8, seed=5), items(17, 6, dim=8, seed=6)
    video[0][:5] = -text[0][:5, :6].clone()
    monkeypatch.setattr(inter, "_BLOCK_ELEMENTS", 9 * 6 * 5)
    with torch.no_grad():
        t, v = head.prepare_text(*text), head.prepare_video(*video)
        padded = inter._wti_block(t, v, weighted=True)
        for min_group in (1, 4, 100):
            torch.testing.assert_close(inter.length_bucketed_scores(t, v, True, min_group), padded,
                                       atol=1e-6, rtol=1e-5)
