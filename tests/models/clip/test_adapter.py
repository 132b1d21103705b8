"""CLIP adapter: sizes from tensor shapes, OpenAI-format files, seqTransf initialisation."""
import pytest
import torch

from models.text_video import build_retrieval_model, load_retrieval_model
from models.clip.adapter import ClipBackbone, ClipConfig, clip_config_from_state_dict

TINY = ClipConfig(embed_dim=64, image_size=32, patch_size=16, vision_width=64, vision_layers=1,
                  context_length=16, vocab_size=100, text_width=64, text_layers=2)


def test_config_read_off_tensor_shapes():
    state = ClipBackbone(TINY).state_dict()
    assert clip_config_from_state_dict(state) == TINY
    assert TINY.text_heads == 1 and ClipConfig(**{**TINY.__dict__, "text_width": 512}).text_heads == 8


def test_embed_dim_must_equal_text_width():
    with pytest.raises(ValueError, match="embed_dim"):
        build_retrieval_model(ClipConfig(**{**TINY.__dict__, "text_width": 128}))


def test_openai_state_dict_loads_and_starts_seqtransf_from_text_blocks(tmp_path):
    torch.manual_seed(0)
    clip = ClipBackbone(TINY)
    path = tmp_path / "openai.pt"
    torch.save(clip.state_dict(), path)
    model = load_retrieval_model(path, model="wti", num_hidden_layers=1)
    assert torch.equal(model.clip.token_embedding.weight, clip.token_embedding.weight)
    block = model.temporal.transformer.resblocks[0]
    assert torch.equal(block.attn.in_proj_weight, clip.transformer.resblocks[0].attn.in_proj_weight)
    assert torch.equal(model.temporal.frame_position_embeddings.weight, clip.positional_embedding)
    ids = torch.tensor([[5, 7, 9, 99, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        text = model.encode_text(ids, mask)
        video = model.encode_video(torch.randn(1, 3, 3, 32, 32), torch.ones(1, 3, dtype=torch.long))
    assert text.shape == (1, 6, 64) and video.shape == (1, 3, 64)


def test_torchscript_archive_loads(tmp_path):
    """OpenAI ships TorchScript archives; they load through torch.jit, with the same parameter names."""
    torch.manual_seed(0)
    clip = ClipBackbone(TINY).eval()
    archive = tmp_path / "ViT-tiny.pt"
    torch.jit.trace_module(clip, {"encode_image": torch.randn(1, 3, 32, 32)}).save(str(archive))
    model = load_retrieval_model(archive, model="meanp", agg_module="meanP")
    frames = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.clip.encode_frames(frames), clip.encode_frames(frames))


def test_text_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    clip = ClipBackbone(TINY).eval()
    ids = torch.tensor([[5, 7, 99, 0, 0], [5, 7, 99, 42, 42]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        out = clip.encode_text_tokens(ids, mask)
    torch.testing.assert_close(out[0, :3], out[1, :3])
