"""HBI computes only the levels its rate weighs at evaluation, and all three in training."""
from __future__ import annotations

import pytest
import torch

from models.clip.adapter import ClipConfig
from models.text_video.hbi import ALL_LEVELS, HBIModel

WIDTH = 64
CONFIG = ClipConfig(embed_dim=WIDTH, image_size=32, patch_size=16, vision_width=64, vision_layers=1,
                    context_length=16, vocab_size=1000, text_width=WIDTH, text_layers=1)


def hbi(rate=(1.0, 0.0, 0.0)) -> HBIModel:
    torch.manual_seed(0)
    return HBIModel(CONFIG, num_hidden_layers=1, rate=rate, jitter=False).eval()


def items(n: int, length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, length, WIDTH, generator=g)
    mask = (torch.arange(length)[None] < torch.randint(1, length + 1, (n,), generator=g)[:, None]).long()
    return feats, mask


def count_stage_calls(model: HBIModel) -> dict[str, int]:
    """Counts forward calls of each merge stage, keyed "text0", "text1", "video0", "video1"."""
    calls = {}
    for kind, stages in (("text", model.text_stages), ("video", model.video_stages)):
        for i, stage in enumerate(stages):
            calls[f"{kind}{i}"] = 0

            def hook(module, args, output, key=f"{kind}{i}"):
                calls[key] += 1
            stage.register_forward_hook(hook)
    return calls


@torch.no_grad()
@pytest.mark.parametrize("model_rate", [True, False], ids=["model-rate", "rate-argument"])
def test_entity_only_rate_merges_nothing(model_rate):
    model = hbi((1.0, 0.0, 0.0) if model_rate else ALL_LEVELS)
    text, video = items(6, 10, seed=1), items(5, 8, seed=2)
    full = model.score(model.prepare_text(*text, ALL_LEVELS), model.prepare_video(*video, ALL_LEVELS),
                       rate=(1, 0, 0))
    calls = count_stage_calls(model)
    rate = None if model_rate else (1.0, 0.0, 0.0)
    text_items, video_items = model.prepare_text(*text, rate), model.prepare_video(*video, rate)
    fast = model.score(text_items, video_items, rate)
    assert calls == {"text0": 0, "text1": 0, "video0": 0, "video1": 0}
    assert text_items.levels[1:] == (None, None) and video_items.levels[1:] == (None, None)
    assert torch.equal(fast, full)
    entity = model.interaction.score(model.interaction.prepare_text(*text), model.interaction.prepare_video(*video))
    assert torch.equal(fast, entity)
    assert torch.equal(model.similarity(*text, *video, rate=rate), full)
    assert sum(calls.values()) == 0


@torch.no_grad()
@pytest.mark.parametrize("rate,called,computed", [
    ((1.0, 0.0, 1.0), {"text0": 1, "text1": 1, "video0": 1, "video1": 1}, (True, True, True)),
    ((1.0, 1.0, 0.0), {"text0": 1, "text1": 0, "video0": 1, "video1": 0}, (True, True, False)),
    ((0.0, 0.0, 1.0), {"text0": 1, "text1": 1, "video0": 1, "video1": 1}, (True, True, True)),
])
def test_merged_levels_computed_when_weighted(rate, called, computed):
    """Event tokens are merged from action tokens: a weighted event level merges both stages."""
    model = hbi(rate)
    text, video = items(6, 10, seed=3), items(5, 8, seed=4)
    full = model.score(model.prepare_text(*text, ALL_LEVELS), model.prepare_video(*video, ALL_LEVELS))
    calls = count_stage_calls(model)
    text_items, video_items = model.prepare_text(*text), model.prepare_video(*video)
    assert calls == called
    assert tuple(level is not None for level in text_items.levels) == computed
    assert tuple(level is not None for level in video_items.levels) == computed
    assert torch.equal(model.score(text_items, video_items), full)


@torch.no_grad()
def test_scoring_an_unprepared_level_is_an_error():
    model = hbi()
    text, video = items(3, 6, seed=5), items(2, 4, seed=6)
    text_items = model.prepare_text(*text)
    with pytest.raises(ValueError, match=r"weighs the action level, but the captions were prepared without it"):
        model.score(text_items, model.prepare_video(*video, ALL_LEVELS), rate=(1, 1, 0))
    with pytest.raises(ValueError, match=r"weighs the event level, but the videos were prepared without it"):
        model.score(model.prepare_text(*text, ALL_LEVELS), model.prepare_video(*video, (1, 1, 0)), rate=(0, 0, 1))
    with pytest.raises(ValueError, match="depth 0"):
        model.merge_levels(*text, "text", depth=0)


def test_training_merges_every_level_whatever_the_rate():
    model = hbi((1.0, 0.0, 0.0)).train()
    calls = count_stage_calls(model)
    g = torch.Generator().manual_seed(7)
    text_mask = (torch.arange(10)[None] < torch.tensor([10, 6, 4])[:, None]).long()
    ids = torch.randint(1, 1000, (3, 10), generator=g) * text_mask
    frames, video_mask = torch.randn(3, 4, 3, 32, 32, generator=g), torch.ones(3, 4, dtype=torch.long)
    losses = model(ids, text_mask, frames, video_mask)
    assert calls == {"text0": 1, "text1": 1, "video0": 1, "video1": 1}
    assert all(torch.isfinite(losses[name]) for name in ("entity", "action", "event", "total"))
    # The default of merge_levels (what the VQA model trains and answers with) is every level too.
    levels = model.merge_levels(torch.randn(2, 10, WIDTH), text_mask[:2], "text")
    assert all(level is not None for level in levels)


class _Questions(list):
    """Questions as the VQA evaluation reads them: dict rows and each question's video."""

    def __init__(self, rows, text_to_video):
        super().__init__(rows)
        self.text_to_video = text_to_video


@torch.no_grad()
def test_vqa_answers_skip_levels_of_weight_zero():
    from models.vqa import HBIQAModel
    from modules.engine.distributed import DistInfo
    from modules.evaluation.qa import predict_answers

    torch.manual_seed(0)
    model = HBIQAModel(CONFIG, 7, num_hidden_layers=1, rate=(1.0, 0.0, 0.0), jitter=False).eval()
    g = torch.Generator().manual_seed(8)
    text_mask = (torch.arange(10)[None] < torch.tensor([10, 6, 4, 8, 5])[:, None]).long()
    ids = torch.randint(1, 1000, (5, 10), generator=g) * text_mask
    owner = [0, 0, 1, 2, 1]
    questions = _Questions([{"text_ids": ids[i], "text_mask": text_mask[i], "caption_index": i} for i in range(5)],
                           owner)
    frames = torch.randn(3, 4, 3, 32, 32, generator=g)
    videos = [{"video": frames[i], "video_mask": torch.ones(4, dtype=torch.long)} for i in range(3)]
    calls = count_stage_calls(model)
    answer_ids, scores = predict_answers(model, questions, videos, DistInfo(0, 1, 0, torch.device("cpu"), True),
                                         batch_size=2, workers=0, precision="fp32")
    assert sum(calls.values()) == 0
    # The same questions with every level merged, mixed with the same rate.
    text, full_mask = model.encode_text(ids, text_mask), torch.ones(5, 4, dtype=torch.long)
    video_levels = model.merge_levels(model.encode_video(frames[owner], full_mask), full_mask, "video")
    full = model.answer_logits(model.merge_levels(text, text_mask, "text"), text_mask, video_levels, full_mask)
    best = full.topk(5, dim=-1)
    assert (answer_ids == best.indices.numpy()).all()
    torch.testing.assert_close(torch.from_numpy(scores), best.values, rtol=1e-5, atol=1e-6)
    entity_only = model.merge_levels(text, text_mask, "text", depth=1)
    with pytest.raises(ValueError, match="weighs the action level, but the questions were merged without it"):
        model.answer_logits(entity_only, text_mask, video_levels, full_mask, rate=(1, 1, 0))
