"""YAML presets under command-line flags."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from modules.engine.config import load_config, parse_with_config, save_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--datatype", type=str, default="msrvtt", choices=["msrvtt", "msvd"])
    parser.add_argument("--rate", type=float, nargs="+", default=[1.0, 0.0, 0.0])
    parser.add_argument("--output_dir", type=str, required=True)
    return parser


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "preset.yaml"
    path.write_text(text)
    return path


def test_yaml_sets_defaults(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "lr: 1e-5\nepochs: 3\nrate: [1, 0.5, 0]\noutput_dir: out\n")
    args = parse_with_config(_parser(), ["--config", str(cfg)])
    assert args.lr == pytest.approx(1e-5) and isinstance(args.lr, float)  # PyYAML reads 1e-5 as a string
    assert args.epochs == 3
    assert args.rate == [1.0, 0.5, 0.0]
    assert args.output_dir == "out"  # a required flag may come from the preset
    assert args.config == str(cfg)


def test_command_line_wins(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "lr: 0.001\nepochs: 3\n")
    args = parse_with_config(_parser(), ["--epochs", "7", "--config", str(cfg), "--output_dir", "o"])
    assert args.epochs == 7
    assert args.lr == pytest.approx(1e-3)


def test_no_config_uses_parser_defaults() -> None:
    args = parse_with_config(_parser(), ["--output_dir", "o"])
    assert args.lr == 1e-4 and args.config is None


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "lrr: 0.1\n")
    with pytest.raises(SystemExit) as err:
        parse_with_config(_parser(), ["--config", str(cfg), "--output_dir", "o"])
    message = str(err.value)
    assert "lrr" in message and str(cfg) in message and "'lr'" in message
    assert "\n" not in message


def test_bad_value_and_choice_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="epochs"):
        parse_with_config(_parser(), ["--config", str(_write(tmp_path, "epochs: [a]\n")), "--output_dir", "o"])
    with pytest.raises(SystemExit, match="datatype"):
        parse_with_config(_parser(), ["--config", str(_write(tmp_path, "datatype: kinetics\n")),
                                      "--output_dir", "o"])


def test_missing_config_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SystemExit, match="nope.yaml"):
        parse_with_config(_parser(), ["--config", str(missing), "--output_dir", "o"])


@pytest.mark.parametrize("flags", [["--local_rank", "0"], ["--local-rank=0"], ["--local-rank", "1"]])
def test_old_launcher_local_rank_accepted(flags: list[str]) -> None:
    args = parse_with_config(_parser(), [*flags, "--output_dir", "o"])
    assert not hasattr(args, "local_rank")  # ranks come from the environment


def test_save_load_round_trip(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "lr: 2.0e-4\ndatatype: msvd\n")
    args = parse_with_config(_parser(), ["--config", str(cfg), "--output_dir", str(tmp_path / "run")])
    saved = tmp_path / "run" / "config.yaml"
    save_config(args, saved)
    assert load_config(saved) == vars(args)
    assert not [p for p in saved.parent.iterdir() if p.name != "config.yaml"]  # no temporary left behind
    # The saved file is itself a valid preset that reproduces the run.
    again = parse_with_config(_parser(), ["--config", str(saved)])
    assert {k: v for k, v in vars(again).items() if k != "config"} == \
        {k: v for k, v in vars(args).items() if k != "config"}


def test_explicit_holds_what_the_preset_and_the_command_line_set(tmp_path: Path) -> None:
    preset = _write(tmp_path, "lr: 0.01\n")
    explicit: set[str] = set()
    args = parse_with_config(_parser(), ["--config", str(preset), "--output_dir", "o", "--epochs", "5"],
                             explicit=explicit)
    # --epochs 5 equals the default but was given; datatype and rate were not.
    assert explicit == {"lr", "output_dir", "epochs", "config"} and args.lr == 0.01


def test_a_preset_value_of_the_wrong_kind_says_what_was_expected(tmp_path: Path) -> None:
    from modules.engine.flags import positive_int

    parser = _parser()
    parser.add_argument("--batch_size", type=positive_int, default=8)
    with pytest.raises(SystemExit, match=r"preset.yaml: key 'batch_size': expected a positive integer, got 0"):
        parse_with_config(parser, ["--config", str(_write(tmp_path, "batch_size: 0\n")), "--output_dir", "o"])
