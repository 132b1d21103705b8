"""scripts/visualize.py writes the HBI figure for a checkpoint, a video and a caption."""
import torch

from models.clip.adapter import ClipConfig
from models.text_video import build_retrieval_model
from scripts import visualize

TINY = ClipConfig(embed_dim=64, image_size=32, patch_size=16, vision_width=64, vision_layers=1,
                  context_length=16, vocab_size=49408, text_width=64, text_layers=1)


def test_writes_png_with_three_levels(tiny_demo, tmp_path):
    torch.manual_seed(0)
    checkpoint = tmp_path / "hbi.bin"
    torch.save(build_retrieval_model(TINY, model="hbi", num_hidden_layers=1).reference_state_dict(), checkpoint)
    video = sorted((tiny_demo / "videos").iterdir())[0]
    out = visualize.main(["--init_model", str(checkpoint), "--num_hidden_layers", "1", "--video", str(video),
                          "--caption", "a red circle moves to the left", "--max_words", "12", "--max_frames", "4",
                          "--video_framerate", "4", "--out", str(tmp_path / "fig.png")])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    model = build_retrieval_model(TINY, model="hbi", num_hidden_layers=1).eval()
    ids = torch.tensor([[49406, 320, 736, 7117, 49407, 0, 0, 0]])
    mask = (ids > 0).long()
    maps = visualize.level_maps(model, ids, mask, torch.randn(1, 4, 3, 32, 32), torch.ones(1, 4, dtype=torch.long))
    # merged levels keep ceil(N * rate) of the N padded positions: 8 words -> 2 -> 1, 4 frames -> 1 -> 1
    assert [m[0].shape for m in maps] == [(5, 4), (2, 1), (1, 1)]
    assert all(s.shape == b.shape for s, b in maps)
