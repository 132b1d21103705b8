"""Which glue module `main_retrieval.py` runs: text-video or music-video retrieval, by `--datatype`.

The datatype is read from the command line, else from the `--config` preset, else (with `--resume`) from the
saved config.yaml of `--output_dir`; text-video is the default (its parser then reports an unknown datatype).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

from dataloaders.text_video import DATASETS
from modules import music_video, text_video
from modules.engine.config import load_config

RETRIEVAL_SYSTEMS: dict[str, ModuleType] = {**{name: text_video for name in DATASETS},
                                            **{name: music_video for name in music_video.DATATYPES}}


def _preset_value(path: str | None, key: str) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    try:
        return load_config(path).get(key)
    except ValueError:  # the system's own parser reports a broken preset
        return None


def retrieval_system(argv: list[str] | None) -> ModuleType:
    """The glue module of the `--datatype` that `argv` asks for."""
    pre = argparse.ArgumentParser(add_help=False)
    for flag in ("--config", "--datatype", "--output_dir", "--resume"):
        pre.add_argument(flag, default=None)
    known, _ = pre.parse_known_args(argv)
    datatype = known.datatype or _preset_value(known.config, "datatype")
    if datatype is None and known.resume not in (None, "0") and known.output_dir:
        datatype = _preset_value(str(Path(known.output_dir) / "config.yaml"), "datatype")
    return RETRIEVAL_SYSTEMS.get(datatype or "msrvtt", text_video)
