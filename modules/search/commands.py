"""`search.py index`, `query` and `serve`: what each does, in order, and what it prints."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from modules import text_video
from modules.clip_video import FRAME_FLAGS
from modules.engine.config import parse_with_config
from modules.engine.errors import RunError, debugging, set_debug
from modules.engine.provenance import file_digest
from modules.evaluation.common import evaluating
from modules.search.encode import encode_videos, stored_arrays
from modules.search.first_stage_files import update
from modules.search.flags import MODEL_FLAGS, PARSERS, not_used, pick_device
from modules.search.index import MANIFEST, SearchIndex
from modules.search.searcher import Searcher, prepare_with
from modules.search.serve import make_server
from modules.search.videos import FRAME_SAMPLER, FolderVideos, find_videos

PROG = "search.py"


def _model_record(cfg: argparse.Namespace) -> dict:
    path = Path(cfg.init_model)
    if not path.is_file():
        raise RunError(f"--init_model {path}: checkpoint not found")
    return {"init_model": str(path.resolve()), "sha256": file_digest(path),
            "flags": {name: getattr(cfg, name) for name in MODEL_FLAGS}, "rate": list(cfg.rate)}


class _ShardWriter:
    """Collects encoded videos and writes a shard every `size` of them."""

    def __init__(self, index: SearchIndex, size: int) -> None:
        self.index, self.size = index, size
        self.files, self.parts = [], {}

    def add(self, files: list, arrays: dict[str, np.ndarray]) -> None:
        self.files += files
        for key, value in arrays.items():
            self.parts.setdefault(key, []).append(value)
        if len(self.files) >= self.size:
            self.flush()

    def flush(self) -> None:
        """Writes the shard, then the manifest: a run stopped later keeps what was encoded so far."""
        if self.files:
            self.index.add_shard(self.files, {k: np.concatenate(v) for k, v in self.parts.items()})
            self.index.save()
        self.files, self.parts = [], {}


def _update_first_stages(index: SearchIndex, cfg: argparse.Namespace, prepare) -> None:
    """Both first stages brought up to date (trained ones saved), then the manifest."""
    index.manifest["first_stage_shards"] = cfg.first_stage_shards
    for mode in ("pooled", "tokens"):
        said = update(index, mode, cfg.first_stage_index, prepare, cfg.first_stage_shards)
        print(f"{PROG} index: first stage {said}", flush=True)
    index.save()


def run_index(cfg: argparse.Namespace) -> dict:
    """Builds or updates the index; returns {"encoded", "changed", "unchanged", "removed"} (counts) and
    "unreadable" (every unreadable file with its reason)."""
    if not cfg.init_model:
        raise RunError("search.py index: pass --init_model CHECKPOINT (the trained model that encodes the videos)")
    root, folder = Path(cfg.videos).resolve(), Path(cfg.index)
    device = pick_device(cfg.device)
    record = _model_record(cfg)
    model = text_video.build_model(cfg).to(device).eval()
    inputs = {**{name: getattr(cfg, name) for name in FRAME_FLAGS}, "frame_sampler": FRAME_SAMPLER,
              **model.input_spec}
    if (folder / MANIFEST).is_file():
        index = SearchIndex.load(folder)
        index.check_matches(root, record, inputs)
        index.manifest["model"]["rate"] = record["rate"]
    else:
        folder.mkdir(parents=True, exist_ok=True)
        index = SearchIndex.new(folder, root, record, inputs)
    todo, kept, changed, removed = index.plan(find_videos(root))
    writer, encoded = _ShardWriter(index, cfg.shard_size), 0
    if todo:
        dataset = FolderVideos(todo, cfg.max_frames, cfg.video_framerate, cfg.slice_framepos, cfg.video_backend,
                               model.input_spec["image_size"])
        with evaluating(model), torch.no_grad():
            for batch in encode_videos(model, dataset, device, cfg.precision, cfg.batch_size_val, cfg.workers):
                for row, reason in batch.failed:
                    index.add_unreadable(todo[row], reason)
                if batch.rows:
                    arrays = stored_arrays(model, batch.feats.to(device), batch.mask.to(device), batch.times)
                    writer.add([todo[r] for r in batch.rows], arrays)
                    encoded += len(batch.rows)
    writer.flush()
    moved = index.compact(cfg.shard_size)
    index.save()
    if moved:
        print(f"{PROG} index: {moved} videos moved out of shards that were at least half dropped rows", flush=True)
    unreadable = [{"id": v["id"], "reason": v["reason"]} for v in index.manifest["unreadable"]]
    for item in unreadable:
        print(f"{PROG} index: unreadable, skipped: {item['id']}: {item['reason']}", flush=True)
    print(f"{PROG} index: {encoded} videos encoded ({len(changed)} changed), {len(kept)} unchanged, "
          f"{len(removed)} removed, {len(unreadable)} unreadable; {len(index.manifest['videos'])} videos in "
          f"{folder}", flush=True)
    if index.manifest["videos"]:
        _update_first_stages(index, cfg, prepare_with(model, device))
    return {"encoded": encoded, "changed": len(changed), "unchanged": len(kept), "removed": len(removed),
            "unreadable": unreadable}


def _texts(cfg: argparse.Namespace) -> list[str]:
    texts = list(cfg.text)
    if cfg.queries:
        try:
            lines = Path(cfg.queries).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise RunError(f"--queries {cfg.queries}: cannot read it ({err})") from None
        texts += [line.strip() for line in lines if line.strip()]
    if not texts:
        raise RunError("search.py query: give query texts as arguments or with --queries FILE, or --video FILE")
    return texts


def run_query(cfg: argparse.Namespace) -> list[dict]:
    """Ranks the indexed videos for every query (texts, or --video files); prints a table (or JSON lines) and
    returns the rows {"query", "rank", "id", "path", "score", "time"}."""
    if cfg.video and (cfg.text or cfg.queries):
        raise RunError("search.py query: give query texts or --video files, not both")
    searcher = Searcher(cfg)
    if cfg.video:
        rows = searcher.search_videos(cfg.video, cfg.top_k, cfg.rerank)
    else:
        rows = searcher.search(_texts(cfg), cfg.top_k, cfg.rerank)
    _print(rows, bool(cfg.json))
    return rows


def _print(rows: list[dict], as_json: bool) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(row), flush=True)
        return
    query = None
    for row in rows:
        if row["query"] != query:
            query = row["query"]
            print(f"\n{query}\n{'rank':>4}  {'score':>8}  {'time':>7}  id")
        time = "-" if row["time"] is None else f"{row['time']:.2f}s"
        print(f"{row['rank']:>4}  {row['score']:>8.4f}  {time:>7}  {row['id']}", flush=True)


def run_serve(cfg: argparse.Namespace) -> None:
    """Serves the page until Ctrl-C (modules/search/serve.py)."""
    server = make_server(Searcher(cfg), cfg.host, cfg.port, cfg.rerank)
    host, port = server.server_address[:2]
    print(f"{PROG} serve: {len(server.searcher.gallery)} videos of {cfg.index} at http://{host}:{port}/ "
          "(Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


COMMANDS = {"index": run_index, "query": run_query, "serve": run_serve}


def main(argv: list[str]) -> dict | list[dict]:
    """`index ...`, `query ...` or `serve ...`; --config presets as in test.py. Input errors are DataError,
    CheckpointError or RunError, which `cli` prints as one line `search.py: error: ...`."""
    if not argv or argv[0] not in COMMANDS:
        raise SystemExit(f"usage: {PROG} {{index,query,serve}} ... (`{PROG} <command> --help`)")
    command = argv[0]
    cfg = parse_with_config(PARSERS[command](), argv[1:], not_used(command))
    set_debug(cfg.debug)
    try:
        return COMMANDS[command](cfg)
    except OSError as err:  # a file that cannot be read or written: one line, as the input errors (cli)
        if debugging():
            raise
        raise RunError(f"{command}: {err}") from None
