"""The VQA model: reference key names, pooling, per-video merging at evaluation, the loss of the reference."""
import pytest
import torch
import torch.nn.functional as F

from models.weights import CheckpointError
from models.vqa import HBIQAModel, load_qa_model
from models.clip.adapter import ClipConfig
from models.vqa.model import weighted_pool
from models.clip.adapter import freeze_clip_layers

CONFIG = ClipConfig(embed_dim=64, image_size=32, patch_size=16, vision_width=64, vision_layers=1,
                    context_length=16, vocab_size=49408, text_width=64, text_layers=1)
ANSWERS = 7


def model(**options) -> HBIQAModel:
    torch.manual_seed(0)
    return HBIQAModel(CONFIG, ANSWERS, num_hidden_layers=1, **options)


def inputs(batch: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 1000, (batch, 10), generator=g)
    lengths = torch.tensor([10, 6, 4, 8, 5, 3][:batch])
    text_mask = (torch.arange(10)[None] < lengths[:, None]).long()
    frames = torch.randn(batch, 4, 3, 32, 32, generator=g)
    video_mask = torch.ones(batch, 4, dtype=torch.long)
    video_mask[1, 3:] = 0
    answers = torch.randint(0, ANSWERS, (batch,), generator=g)
    return ids * text_mask, text_mask, frames, video_mask, answers


def test_reference_key_names_round_trip():
    net = model()
    state = net.reference_state_dict()
    for key in ("t_weight.0.weight", "v_weight.2.bias", "t_proj.weight", "v_proj0.weight", "classifier.2.weight",
                "classifier0.0.weight", "classifier1.2.bias", "t_weight1.0.weight", "text_weight_fc1.0.weight",
                "t_ctm0.score.weight", "banzhafmodel1.cnn1.weight", "banzhafteacher.Q"):
        assert any(k.startswith(key.rsplit(".", 1)[0]) for k in state), key
    assert state["classifier.2.weight"].shape == (ANSWERS, 16 * 64)
    assert state["classifier.0.weight"].shape == (16 * 64, 8 * 64)
    other = model()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    missing, unexpected = other.load_reference_state_dict(state)
    assert missing == [] and unexpected == []
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))


def test_pooling_weights_padding_as_the_reference():
    tokens = torch.randn(2, 5, 32)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    mlp = torch.nn.Linear(32, 1)
    weights = torch.softmax(mlp(tokens).squeeze(-1), dim=-1)  # over all five positions
    expected = (tokens * mask[..., None] * weights[..., None]).sum(1)
    torch.testing.assert_close(weighted_pool(tokens, mlp, mask), expected)
    assert weights[0, 3:].sum() > 0  # padding takes weight: the pooled vector is not a convex mean of real tokens


def test_evaluation_merges_each_video_once_with_the_same_answers():
    net = model().eval()
    ids, text_mask, frames, video_mask, _ = inputs()
    with torch.no_grad():
        text = net.encode_text(ids, text_mask)
        video = net.encode_video(frames[:2], video_mask[:2])
        video_levels = net.merge_levels(video, video_mask[:2], "video")
        owner = torch.tensor([0, 1, 1, 0])  # four questions over two videos
        indexed = net.answer_logits(net.merge_levels(text, text_mask, "text"), text_mask,
                                    tuple(level[owner] for level in video_levels), video_mask[owner])
        per_pair = net.answer_logits(net.merge_levels(text, text_mask, "text"), text_mask,
                                     net.merge_levels(video[owner], video_mask[owner], "video"), video_mask[owner])
    assert indexed.shape == (4, ANSWERS)
    torch.testing.assert_close(indexed, per_pair, atol=1e-6, rtol=1e-6)


def _reference_wti(text, video, text_mask, video_mask, text_mlp, video_mlp, masked: bool):
    """The reference's entity/action/event retrieval logits, written from its equations."""
    tw, vw = text_mlp(text).squeeze(-1), video_mlp(video).squeeze(-1)
    if masked:
        tw = tw.masked_fill(text_mask == 0, -9e15)
        vw = vw.masked_fill(video_mask == 0, -9e15)
    tw, vw = tw.softmax(-1), vw.softmax(-1)
    t, v = F.normalize(text, dim=-1), F.normalize(video, dim=-1)
    sims = torch.einsum("atd,bvd->abtv", t, v)
    if masked:
        sims = sims * text_mask[:, None, :, None] * video_mask[None, :, None, :]
    t2v = torch.einsum("abt,at->ab", sims.max(-1).values, tw)
    v2t = torch.einsum("abv,bv->ab", sims.max(-2).values, vw)
    return (t2v + v2t) / 2


def _kl(x, target):
    """The reference's KL: kl_div(log_softmax(x), softmax(target)) averaged over every element."""
    p = F.softmax(target, -1)
    return (p * (p.log() - F.log_softmax(x, -1))).mean()


def _reversed(x):
    """The reference's `.T` on a 3-D tensor (PyTorch of its time): every dim reversed."""
    return x.permute(2, 1, 0)


def _reference_losses(net, ids, text_mask, frames, video_mask, answers, kl: float, skl: float) -> dict:
    """The QA reference's loss terms, written from its equations: per level 0.5 x (contrastive + skl x
    distillation) + answer cross-entropy; the estimators see the masked diagonal maps and their outputs are
    used unmasked."""
    text = net.encode_text(ids, text_mask)
    video = net.encode_video(frames, video_mask)
    t_levels = net.merge_levels(text, text_mask, "text")
    v_levels = net.merge_levels(video, video_mask, "video")
    scale = net.clip.logit_scale.exp()
    terms, logits = {}, []
    for i, (name, t, v) in enumerate(zip(("entity", "action", "event"), t_levels, v_levels)):
        head = net.heads[i]
        sims = _reference_wti(t, v, text_mask, video_mask, head.text_weight_fc, head.video_weight_fc, i == 0)
        labels = torch.arange(len(sims))
        contrastive = (F.cross_entropy(sims * scale, labels) + F.cross_entropy(sims.T * scale, labels)) / 2
        if skl:
            maps = torch.einsum("btd,bvd->btv", F.normalize(t, dim=-1), F.normalize(v, dim=-1))
            if i == 0:
                maps = maps * text_mask[:, :, None] * video_mask[:, None, :]
            student, teacher = net.students[i](maps), net.teacher(maps.detach()).detach()
            contrastive = contrastive + skl * (_kl(student, teacher) + _kl(_reversed(student), _reversed(teacher)))
        answer_head = net.answer_heads[i]
        tw = answer_head.t_weight(t).squeeze(-1).softmax(-1)
        vw = answer_head.v_weight(v).squeeze(-1).softmax(-1)
        tm = text_mask[..., None] if i == 0 else 1
        vm = video_mask[..., None] if i == 0 else 1
        pooled = torch.cat([answer_head.v_proj(torch.einsum("btd,bt->bd", v * vm, vw)),
                            answer_head.t_proj(torch.einsum("btd,bt->bd", t * tm, tw))], -1)
        logits.append(answer_head.classifier(pooled))
        terms[name] = contrastive * 0.5 + F.cross_entropy(logits[-1], answers)
    terms["total"] = sum(terms.values()) + kl * (_kl(logits[1], logits[0]) + _kl(logits[2], logits[0]))
    terms["levels"] = (t_levels, v_levels)
    return terms


def test_training_loss_is_the_reference_sum():
    net = model(kl=2.0, skl=0.0).eval()  # eval: no dropout, no density jitter; skl 0: no teacher
    args = inputs()
    with torch.no_grad():
        losses = net.training_losses(*args)
        expected = _reference_losses(net, *args, kl=2.0, skl=0.0)
    torch.testing.assert_close(losses["total"], expected["total"], rtol=1e-5, atol=1e-6)
    t_levels, v_levels = expected["levels"]
    assert t_levels[1].shape[1] == 3 and t_levels[2].shape[1] == 1  # 10 words -> ceil(2.5) -> ceil(0.375)
    assert v_levels[1].shape[1] == 1 and v_levels[2].shape[1] == 1


def test_distillation_is_unmasked_as_in_the_qa_reference():
    """Unlike retrieval HBI, the QA reference uses the estimators' outputs at padded cells too: every loss term
    and every gradient equal the unmasked equations, and masking would change them."""
    net = model(kl=2.0, skl=1.0).eval()
    args = inputs()
    params = [p for p in net.parameters() if p.requires_grad]
    losses = net.training_losses(*args)
    expected = _reference_losses(net, *args, kl=2.0, skl=1.0)
    for name in ("total", "entity", "action", "event"):
        torch.testing.assert_close(losses[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    grads = torch.autograd.grad(losses["total"], params, allow_unused=True)
    expected_grads = torch.autograd.grad(expected["total"], params, allow_unused=True)
    for param, got, want in zip(params, grads, expected_grads):
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    net.mask_distillation = True  # the retrieval model's choice: these inputs have padding, so it must show
    with torch.no_grad():
        masked = net.training_losses(*args)
    assert (masked["entity"] - losses["entity"]).abs() > 1e-4
    torch.testing.assert_close(masked["action"], losses["action"])


def test_training_step_reaches_every_trained_part_and_skips_the_teacher_without_skl():
    net = model(skl=0.0).train()
    calls = []
    net.teacher.register_forward_hook(lambda *_: calls.append(1))
    losses = net(*inputs())
    losses["total"].backward()
    assert calls == [] and torch.isfinite(losses["total"])
    for name in ("answer_heads.2.classifier.2.weight", "answer_heads.0.t_weight.0.weight",
                 "text_stages.1.merge.score.weight", "clip.visual.transformer.resblocks.0.attn.in_proj_weight"):
        assert net.get_parameter(name).grad.abs().sum() > 0, name
    assert net.get_parameter("clip.visual.conv1.weight").grad is None  # frozen, as in the reference
    with_teacher = model(skl=1.0).train()
    with_teacher.teacher.register_forward_hook(lambda *_: calls.append(1))
    with_teacher(*inputs())
    assert len(calls) == 3  # one teacher call per level


def test_checkpoint_loads_and_a_different_vocabulary_is_named(tmp_path):
    net = model()
    path = tmp_path / "qa.bin"
    torch.save({f"clip.{k}": v for k, v in net.clip.state_dict().items()} | net.reference_state_dict(), path)
    loaded = load_qa_model(path, ANSWERS, num_hidden_layers=1)
    torch.testing.assert_close(loaded.answer_heads[1].classifier[2].weight, net.answer_heads[1].classifier[2].weight)
    with pytest.raises(CheckpointError, match=r"classifier\.2\.weight has shape \(7, 1024\)"):
        load_qa_model(path, ANSWERS + 1, num_hidden_layers=1)


def test_freeze_layer_num_follows_the_reference():
    net = model()
    frozen = set(freeze_clip_layers(net.clip, 0))
    assert {"token_embedding.weight", "positional_embedding", "visual.conv1.weight", "visual.class_embedding",
            "visual.ln_pre.weight"} <= frozen
    assert not any("resblocks" in n or n.startswith(("ln_final", "visual.proj", "logit_scale")) for n in frozen)
    frozen_one = set(freeze_clip_layers(model().clip, 1))
    assert "transformer.resblocks.0.attn.in_proj_weight" in frozen_one
    assert freeze_clip_layers(model().clip, -1) == []


@pytest.mark.parametrize("skl", [0.0, 1.0])
@pytest.mark.parametrize("qa", [True, False])
def test_every_trainable_parameter_gets_a_gradient(qa, skl):
    """DDP stops on parameters that take no part in the loss; HBI retrieval and VQA must have none."""
    from models.text_video.hbi import HBIModel

    torch.manual_seed(0)
    net = model(skl=skl) if qa else HBIModel(CONFIG, num_hidden_layers=1, skl=skl)
    args = inputs()
    net.train()(*(args if qa else args[:4]))["total"].backward()
    assert [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None] == []
