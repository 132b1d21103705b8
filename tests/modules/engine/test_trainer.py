"""Trainer data path: augmentation draws change every epoch, also inside DataLoader workers."""
import torch

from dataloaders.tokenizer import ClipTokenizer
from dataloaders.text_video import build_dataset
from modules.engine.distributed import DistInfo
from modules.engine.trainer import TrainSettings, train_loader


def videos_by_caption(loader, dataset, epoch: int) -> dict[int, torch.Tensor]:
    loader.sampler.set_epoch(epoch)
    dataset.set_epoch(epoch)
    return {int(i): v for batch in loader for i, v in zip(batch["caption_index"], batch["video"])}


def test_augmentation_changes_each_epoch_with_workers(tiny_demo):
    dataset = build_dataset("msrvtt", "train", str(tiny_demo), str(tiny_demo / "videos"), ClipTokenizer(), "pairs",
                            max_words=12, max_frames=4, video_framerate=4, image_size=32, train=True)
    settings = TrainSettings(epochs=2, batch_size=8, lr=1e-3, coef_lr=1.0, weight_decay=0.0, warmup_proportion=0.1,
                             max_grad_norm=1.0, grad_accum_steps=1, precision="fp32", workers=1, n_display=1,
                             evals_per_epoch=1, seed=0, resume=0)
    loader = train_loader(dataset, settings, DistInfo(0, 1, 0, torch.device("cpu"), True))
    first, second, again = (videos_by_caption(loader, dataset, e) for e in (0, 1, 0))
    assert set(first) == set(second) == set(range(len(dataset)))
    assert not torch.equal(first[0], second[0])  # new draws in epoch 1
    assert torch.equal(first[0], again[0])  # and the same draws when epoch 0 comes back (resume)
