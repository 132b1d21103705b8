"""CLIP's patch embedding (`visual.conv1`) is frozen by default, as the reference's CLIP; an option trains it."""
import json

import pytest
import torch

import main_vqa
from models.text_video import HBIModel, load_retrieval_model
from models.vqa import HBIQAModel, load_qa_model
from modules import text_video, vqa
from modules.engine.config import parse_with_config
from modules.engine.optim import param_groups
from tests.models.vqa.test_model import ANSWERS, CONFIG, inputs

CONV1 = "clip.visual.conv1.weight"
ARCH = json.dumps({"embed_dim": 64, "image_size": 32, "patch_size": 16, "vision_width": 64, "vision_layers": 1,
                   "context_length": 16, "vocab_size": 49408, "text_width": 64, "text_layers": 1})


def build(qa: bool, **options) -> HBIModel:
    torch.manual_seed(0)
    if qa:
        return HBIQAModel(CONFIG, ANSWERS, num_hidden_layers=1, **options)
    return HBIModel(CONFIG, num_hidden_layers=1, **options)


@pytest.mark.parametrize("train_patch_embedding", [False, True])
@pytest.mark.parametrize("qa", [True, False])
def test_one_optimiser_step_leaves_conv1_unless_asked(qa, train_patch_embedding):
    """A full step (the trainer's parameter groups, AdamW with weight decay): conv1 stays bit for bit, and it is
    in no group, so DDP never waits for its gradient; with the option it changes like any other weight."""
    net = build(qa, skl=1.0, train_patch_embedding=train_patch_embedding).train()
    conv1, block = net.get_parameter(CONV1), net.get_parameter("clip.visual.transformer.resblocks.0.mlp.c_fc.weight")
    before, block_before = conv1.detach().clone(), block.detach().clone()
    groups = param_groups(net, lr=1e-2, coef_lr=1.0, weight_decay=0.2)
    assert any(p is conv1 for g in groups for p in g["params"]) == train_patch_embedding
    optimizer = torch.optim.AdamW(groups, lr=1e-2)
    args = inputs()
    net(*(args if qa else args[:4]))["total"].backward()
    optimizer.step()
    assert not torch.equal(block, block_before)  # the rest of the vision tower trains
    assert torch.equal(conv1, before) != train_patch_embedding
    assert (conv1.grad is None) != train_patch_embedding


@pytest.mark.parametrize("train_patch_embedding", [False, True])
def test_loading_weights_keeps_the_choice(tmp_path, train_patch_embedding):
    """Loading CLIP or a checkpoint copies values into the parameters and does not reset requires_grad."""
    net = build(qa=True)
    clip_file, checkpoint = tmp_path / "clip.pt", tmp_path / "qa.bin"
    torch.save(net.clip.state_dict(), clip_file)  # an OpenAI-format CLIP state dict: init_from_clip
    torch.save({f"clip.{k}": v for k, v in net.clip.state_dict().items()} | net.reference_state_dict(), checkpoint)
    loaded = [load_retrieval_model(clip_file, model=model, num_hidden_layers=1,
                                   train_patch_embedding=train_patch_embedding) for model in ("hbi", "wti")]
    loaded += [load_qa_model(path, ANSWERS, num_hidden_layers=1, train_patch_embedding=train_patch_embedding)
               for path in (clip_file, checkpoint)]
    for model in loaded:
        conv1 = model.get_parameter(CONV1)
        assert conv1.requires_grad == train_patch_embedding
        torch.testing.assert_close(conv1, net.get_parameter(CONV1), rtol=0, atol=0)
        assert all(p.requires_grad for n, p in model.clip.named_parameters() if not n.startswith("visual.conv1"))


@pytest.mark.parametrize("flag", [None, "0", "1"])
def test_flag_reaches_both_entry_scripts(flag):
    extra = [] if flag is None else ["--train_patch_embedding", flag]
    cfg = parse_with_config(text_video.parser(), ["--clip_arch", ARCH, "--num_hidden_layers", "1", *extra])
    retrieval = text_video.build_model(cfg)
    cfg = parse_with_config(vqa.parser(), ["--clip_arch", ARCH, "--num_hidden_layers", "1", "--freeze_layer_num",
                                            "-1", *extra])
    qa = vqa.build_model(cfg, ANSWERS)
    for model in (retrieval, qa):
        assert model.get_parameter(CONV1).requires_grad == (flag == "1")


def test_vqa_stops_when_freeze_layer_num_would_freeze_it_anyway():
    with pytest.raises(SystemExit, match="--train_patch_embedding 1 needs --freeze_layer_num -1"):
        main_vqa.main(["--do_train", "--clip_arch", ARCH, "--train_patch_embedding", "1"])
