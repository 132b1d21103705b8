"""Weight files: tensors only; a file that needs unpickling objects is refused, and the message never advises
weights_only=False."""
from __future__ import annotations

import os

import pytest
import torch

from models.weights import CheckpointError, read_state_dict


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("content", ["random", "crafted"])
def test_a_file_that_is_not_tensors_is_refused_unexecuted(tmp_path, content, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "weights.bin"
    if content == "random":
        path.write_bytes(os.urandom(512))
    else:
        torch.save({"w": torch.zeros(2), "x": _Payload()}, path)
    with pytest.raises(CheckpointError, match=r"weights\.bin: not a readable weight file") as err:
        read_state_dict(path)
    assert "weights_only=False" not in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "pwned").exists()


def test_a_state_dict_reads_back(tmp_path):
    path = tmp_path / "w.bin"
    torch.save({"model": {"a": torch.ones(3)}}, path)
    assert torch.equal(read_state_dict(path)["a"], torch.ones(3))
