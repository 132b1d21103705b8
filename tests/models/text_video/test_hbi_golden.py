"""HBI against the reference implementation's outputs (../shared/golden/hbi_reference_*.pt)."""
import pytest
import torch

from models.weights import CheckpointError
from models.text_video import HBIModel, load_retrieval_model
from tests.helpers import close

STATE = "hbi_reference_state_dict.pt"
# Every loss term agrees with the reference to ~1e-6 relative (no absolute floor); the unmasked entity
# distillation was 3e-5 off.
LOSS_TOL = 1e-5


def load_hbi(golden_dir, **options) -> HBIModel:
    # The golden run used --kl 2 --skl 1 and no density jitter.
    options = {"kl": 2.0, "skl": 1.0, "jitter": False, **options}
    return load_retrieval_model(golden_dir / STATE, model="hbi", num_hidden_layers=1, **options)


@pytest.fixture(scope="module")
def reference(golden_dir):
    io = torch.load(golden_dir / "hbi_reference_io.pt", weights_only=True)
    return load_hbi(golden_dir), io


def test_training_losses(reference):
    model, io = reference
    model.train()  # as in the reference run
    losses = model(io["text_ids"], io["text_mask"], io["video"], io["video_mask"])
    assert set(losses) == {"total", "entity", "action", "event"}
    torch.testing.assert_close(losses["action"].detach(), io["loss_action"], rtol=LOSS_TOL, atol=0)
    torch.testing.assert_close(losses["event"].detach(), io["loss_event"], rtol=LOSS_TOL, atol=0)
    torch.testing.assert_close(losses["total"].detach(), io["loss"], rtol=LOSS_TOL, atol=0)
    losses["total"].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert all(s.cnn1.weight.grad is not None for s in model.students)
    assert model.text_stages[0].merge.score.weight.grad is not None
    model.zero_grad(set_to_none=True)


@torch.no_grad()
def test_entity_distillation_ignores_the_teacher_on_padded_cells(reference):
    """As the retrieval reference, the student is not taught the teacher's values where a word or frame is
    padding: changing them leaves every loss term as it was (and would change it without the mask)."""
    model, io = reference
    model.train()
    args = (io["text_ids"], io["text_mask"], io["video"], io["video_mask"])
    expected = model(*args)
    perturbed_cells = []

    def perturb_padding(module, inputs, output):  # padded cells of the entity maps are exactly 0
        padded = inputs[0] == 0
        perturbed_cells.append(int(padded.sum()))
        return output + 1e3 * padded

    hook = model.teacher.register_forward_hook(perturb_padding)
    try:
        losses = model(*args)
        model.mask_distillation = False
        unmasked = model(*args)
    finally:
        hook.remove()
        del model.mask_distillation
    cells = io["text_mask"][:, :, None] * io["video_mask"][:, None, :]
    assert perturbed_cells[:3] == [int((cells == 0).sum()), 0, 0]  # entity level only: merged tokens are real
    for name in ("total", "entity", "action", "event"):
        torch.testing.assert_close(losses[name], expected[name], rtol=1e-6, atol=0, msg=name)
    assert (unmasked["entity"] - expected["entity"]).abs() > 1e-2


@torch.no_grad()
def test_entity_similarity_and_teacher(reference):
    model, io = reference
    model.eval()
    text = model.encode_text(io["text_ids"], io["text_mask"])
    video = model.encode_video(io["video"], io["video_mask"])
    assert close(model.similarity(text, io["text_mask"], video, io["video_mask"], rate=(1, 0, 0)), io["entity_sim"])
    diagonal = torch.diagonal(io["entity_token_sim"], dim1=0, dim2=1).permute(2, 0, 1)
    assert close(model.estimator(diagonal), io["teacher_on_diag"])


def test_state_dict_maps_one_to_one(reference, golden_dir):
    model, _ = reference
    assert model.unused_keys == []
    original = torch.load(golden_dir / STATE, weights_only=True)
    exported = model.reference_state_dict()
    assert set(exported) == set(original)
    assert all(torch.equal(exported[k], original[k]) for k in original)


def test_partial_state_dict_names_missing_keys(golden_dir, tmp_path):
    state = torch.load(golden_dir / STATE, weights_only=True)
    del state["t_ctm1.score.weight"], state["banzhafteacher.Q"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match=r"banzhafteacher\.Q.*t_ctm1\.score\.weight"):
        load_retrieval_model(tmp_path / "partial.pt", model="hbi", num_hidden_layers=1)


def test_load_estimator(golden_dir, tmp_path):
    model = load_hbi(golden_dir)
    torch.nn.init.zeros_(model.teacher.Q)
    model.load_estimator(golden_dir / "hbi_estimator_reference.pt")
    expected = torch.load(golden_dir / "hbi_estimator_reference.pt", weights_only=True)
    assert all(torch.equal(model.teacher.state_dict()[k], v) for k, v in expected.items())
    expected["extra.weight"] = expected.pop("Q")
    torch.save(expected, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match=r"missing: Q; unexpected: extra\.weight"):
        model.load_estimator(tmp_path / "wrong.pt")


@torch.no_grad()
def test_per_item_scoring_equals_per_block_hierarchy(reference):
    """Merging once per item, then scoring all pairs, gives the reference's numbers: it re-merges every block."""
    model, _ = reference
    model.eval()
    g = torch.Generator().manual_seed(0)
    text, video = torch.randn(10, 12, 512, generator=g), torch.randn(9, 12, 512, generator=g)
    text_mask = (torch.arange(12)[None] < torch.randint(2, 13, (10,), generator=g)[:, None]).long()
    video_mask = (torch.arange(12)[None] < torch.randint(1, 13, (9,), generator=g)[:, None]).long()
    rate = (1.0, 1.0, 1.0)
    once = model.similarity(text, text_mask, video, video_mask, rate=rate)
    block = 4
    rows = [torch.cat([model.similarity(text[i:i + block], text_mask[i:i + block], video[j:j + block],
                                        video_mask[j:j + block], rate=rate)
                       for j in range(0, 9, block)], dim=1) for i in range(0, 10, block)]
    torch.testing.assert_close(once, torch.cat(rows), rtol=1e-5, atol=1e-6)
    levels = sum(model.similarity(text, text_mask, video, video_mask, rate=r)
                 for r in ((1, 0, 0), (0, 1, 0), (0, 0, 1)))
    torch.testing.assert_close(once, levels, rtol=1e-5, atol=1e-6)
