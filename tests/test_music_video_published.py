"""The music-video paper's workflow as a user runs it: the demo clips laid out as `data/Music-Dance`, the README's
training command with `--exp_name Data2`, then the README's evaluation commands pasted character for character
(read from the README, every optional part with and without it)."""
from __future__ import annotations

import itertools
import json
import re
import shlex
from pathlib import Path

import pytest
import torch

import main_retrieval
import test_qb_norm
from dataloaders.synthetic.music_video import generate_demo_music_video
from tests.helpers import ROOT, load_test_entry

SIZES = ["--music_dim", "24", "--video_dim", "16", "--embed_dim", "16", "--num_layers", "1"]
FAST = ["--epochs", "2", "--batch_size", "8", "--lr", "1e-3", "--batch_size_val", "8", "--workers", "0",
        "--device", "cpu"]


def readme_commands(script: str) -> list[list[str]]:
    """The README's `<script> --exp_name=Data2 ...` commands (continuation lines joined), each optional `[...]`
    part expanded into the command without and with it; arguments after the script name."""
    text = (ROOT / "README.md").read_text().replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        if not line.startswith(f".venv/bin/python {script} --exp_name=Data2"):
            continue
        parts = re.split(r"\[([^\]]*)\]", line.split(script, 1)[1])
        plain, optional = parts[0::2], parts[1::2]
        for chosen in itertools.product((False, True), repeat=len(optional)):
            pieces = [plain[0]] + [(opt if take else "") + rest for opt, take, rest in zip(optional, chosen, plain[1:])]
            commands.append(shlex.split(" ".join(pieces)))
    assert commands, f"README.md has no `{script} --exp_name=Data2` command"
    return commands


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> tuple[Path, dict]:
    """A working folder with data/Music-Dance and outputs/Data2 trained by the README's command."""
    work = tmp_path_factory.mktemp("paper")
    generate_demo_music_video(work / "data" / "Music-Dance", num_train=24, num_val=8, num_test=10, seed=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        trained = main_retrieval.main(["--do_train", "1", "--do_eval", "1", "--datatype", "music_dance",
                                       "--videos_dir", "data/Music-Dance", "--exp_name", "Data2", *SIZES, *FAST])
    checkout = work / "checkout"  # the official querybank files, (N_train, 1, N_test) per direction and term
    checkout.mkdir()
    for direction, term in itertools.product(("m2v", "v2m"), ("feature", "beat")):
        torch.save(torch.rand(24, 1, 10), checkout / f"Data2_{direction}_train_{term}_sims.pt")
    return work, trained


def test_training_writes_what_the_papers_commands_load(workdir):
    work, _ = workdir
    run = work / "outputs" / "Data2"
    assert {p.name for p in run.glob("*.pth")} == {"model_best.pth", "checkpoint-epoch1.pth",
                                                  "checkpoint-epoch2.pth"}


def test_the_readme_test_commands_run_as_pasted(workdir, monkeypatch, capsys):
    work, trained = workdir
    monkeypatch.chdir(work)
    commands = readme_commands("test.py")
    assert len(commands) == 2  # without and with --metric v2t
    for argv in commands:
        result = load_test_entry().main(argv)
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == result
        direction = "v2m" if "v2t" in argv else "m2v"
        # The same best weights on the same test split: the training run's final test numbers.
        assert result[f"{direction}_R1"] == trained[f"{direction}_R1"]
        assert (work / "outputs" / "Data2" / f"metrics_test_{direction}.json").is_file()


def test_the_readme_qbnorm_commands_run_as_pasted(workdir, monkeypatch, capsys):
    work, trained = workdir
    monkeypatch.chdir(work)
    commands = readme_commands("test_qb_norm.py")
    assert len(commands) == 2  # with the model's own querybank and with the official files
    for argv in commands:
        result = test_qb_norm.main(argv) or json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        official = "--querybank_dir" in argv
        assert result["m2v_R1"] == trained["m2v_R1"]
        if not official:
            assert result["m2v_R1_qbnorm"] == trained["m2v_R1_qbnorm"]
        label = "test_m2v_qbnorm" + ("_official" if official else "")
        assert (work / "outputs" / "Data2" / f"metrics_{label}.json").is_file()
