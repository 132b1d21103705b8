"""Interaction heads: chunking, masking, directions."""
import torch

from models import interaction as inter
from models.interaction import MeanPooling, TokenInteraction, Tokens


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
