"""`search.py index` and `search.py query`: what each does, in order, and what it prints."""
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
from modules.search.encode import encode_captions, encode_videos, entity_tokens, pooled
from modules.search.first_stage import PooledSearch, TokenSearch, resolve_mode
from modules.search.flags import MODEL_FLAGS, PARSERS, not_used, pick_device
from modules.search.index import MANIFEST, SearchIndex
from modules.search.rerank import rerank
from modules.search.serve import make_server
from modules.search.videos import FRAME_SAMPLER, FolderVideos, find_videos

PROG = "search.py"


def _model_record(cfg: argparse.Namespace) -> dict:
    path = Path(cfg.init_model)
    if not path.is_file():
        raise RunError(f"--init_model {path}: checkpoint not found")
    return {"init_model": str(path.resolve()), "sha256": file_digest(path),
            "flags": {name: getattr(cfg, name) for name in MODEL_FLAGS}, "rate": list(cfg.rate)}


def _model_of(record: dict, device: torch.device) -> torch.nn.Module:
    """The model an index was built with, from its record (the weights file sets the sizes)."""
    cfg = argparse.Namespace(**record["flags"], rate=record["rate"], init_model=record["init_model"],
                             clip_path=None, base_encoder="ViT-B/32", clip_arch=None)
    return text_video.build_model(cfg).to(device).eval()


class _ShardWriter:
    """Collects encoded videos and writes a shard every `size` of them."""

    def __init__(self, index: SearchIndex, size: int) -> None:
        self.index, self.size = index, size
        self.files, self.parts = [], {"feats": [], "mask": [], "pooled": [], "times": []}

    def add(self, files, feats, mask, vectors, times) -> None:
        self.files += files
        for key, value in (("feats", feats.half()), ("mask", mask.to(torch.uint8)), ("pooled", vectors.half()),
                           ("times", times)):
            self.parts[key].append(value.numpy())
        if len(self.files) >= self.size:
            self.flush()

    def flush(self) -> None:
        """Writes the shard, then the manifest: a run stopped later keeps what was encoded so far."""
        if self.files:
            self.index.add_shard(self.files, {k: np.concatenate(v) for k, v in self.parts.items()})
            self.index.save()
        self.files, self.parts = [], {k: [] for k in self.parts}


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
                    vectors = pooled(entity_tokens(model, batch.feats.to(device), batch.mask.to(device), "video"))
                    writer.add([todo[r] for r in batch.rows], batch.feats, batch.mask, vectors.cpu(), batch.times)
                    encoded += len(batch.rows)
    writer.flush()
    index.save()
    unreadable = [{"id": v["id"], "reason": v["reason"]} for v in index.manifest["unreadable"]]
    for item in unreadable:
        print(f"{PROG} index: unreadable, skipped: {item['id']}: {item['reason']}", flush=True)
    print(f"{PROG} index: {encoded} videos encoded ({len(changed)} changed), {len(kept)} unchanged, "
          f"{len(removed)} removed, {len(unreadable)} unreadable; {len(index.manifest['videos'])} videos in "
          f"{folder}", flush=True)
    return {"encoded": encoded, "changed": len(changed), "unchanged": len(kept), "removed": len(removed),
            "unreadable": unreadable}


def _check_model(index: SearchIndex, expected: str | None) -> None:
    """RunError unless the index's model file still has the recorded sha256 (and is --init_model, if given)."""
    record, where = index.manifest["model"], index.folder / MANIFEST
    if expected is not None and file_digest(expected) != record["sha256"]:
        raise RunError(f"--init_model {expected}: not the checkpoint {where} was built with "
                       f"({record['init_model']}, sha256 {record['sha256'][:12]}): query with it or re-index")
    path = Path(record["init_model"])
    if not path.is_file():
        raise RunError(f"{path}: the checkpoint {where} was built with is gone: re-index with `search.py index`")
    if file_digest(path) != record["sha256"]:
        raise RunError(f"{path}: changed since {where} was built (sha256 {file_digest(path)[:12]}, indexed "
                       f"{record['sha256'][:12]}): re-index with `search.py index`")


def _texts(cfg: argparse.Namespace) -> list[str]:
    texts = list(cfg.text)
    if cfg.queries:
        try:
            lines = Path(cfg.queries).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise RunError(f"--queries {cfg.queries}: cannot read it ({err})") from None
        texts += [line.strip() for line in lines if line.strip()]
    if not texts:
        raise RunError("search.py query: give query texts as arguments or with --queries FILE")
    return texts


class Searcher:
    """An index with its model, gallery and first stage loaded once: `search(texts)` ranks the videos for each text
    (what `query` prints and `serve` answers)."""

    def __init__(self, cfg: argparse.Namespace):
        self.index = SearchIndex.load(cfg.index)
        _check_model(self.index, cfg.init_model)
        record = self.index.manifest["model"]
        self.kind = record["flags"]["model"]
        if cfg.rate is not None and self.kind != "hbi":
            raise RunError(f"--rate weighs HBI's levels; {cfg.index} holds a {self.kind!r} model")
        self.rate = tuple(cfg.rate or record["rate"]) if self.kind == "hbi" else None
        self.device, self.precision, self.max_words = pick_device(cfg.device), cfg.precision, cfg.max_words
        self.model = _model_of(record, self.device)
        self.gallery = self.index.gallery()
        self.mode = resolve_mode(cfg.first_stage, self.kind)
        with torch.no_grad():
            if self.mode == "pooled":
                self.first_stage = PooledSearch(self.gallery.pooled)
            else:
                frames = entity_tokens(self.model, self.gallery.feats.to(self.device),
                                       self.gallery.mask.to(self.device), "video")
                self.first_stage = TokenSearch(frames.feats.cpu().numpy(), self.gallery.mask.numpy())

    @torch.no_grad()
    def search(self, texts: list[str], top_k: int, rerank_count: int) -> list[dict]:
        """Rows {"query", "rank", "id", "path", "score", "time"}: the `top_k` best of `rerank_count` candidates
        re-scored with the model's own similarity."""
        gallery, model = self.gallery, self.model
        count = min(max(rerank_count, top_k), len(gallery))
        text, text_mask = encode_captions(model, texts, self.max_words, self.device, self.precision)
        words = entity_tokens(model, text, text_mask, "text")
        if self.mode == "pooled":
            candidates = self.first_stage.candidates(pooled(words).cpu().numpy(), count)
        else:
            real = [words.mask[q] != 0 for q in range(len(texts))]
            weights = None if words.weights is None else [words.weights[q][real[q]].cpu().numpy()
                                                          for q in range(len(texts))]
            candidates = self.first_stage.candidates([words.feats[q][real[q]].cpu().numpy()
                                                      for q in range(len(texts))], count, weights)
        rows = []
        for q, query in enumerate(texts):
            hits = rerank(model, text[q:q + 1], text_mask[q:q + 1], gallery.feats, gallery.mask, gallery.times,
                          candidates[q], top_k, self.precision, self.rate)
            rows += [{"query": query, "rank": rank, "id": gallery.ids[h.row], "path": gallery.paths[h.row],
                      "score": h.score, "time": h.time} for rank, h in enumerate(hits, 1)]
        return rows


def run_query(cfg: argparse.Namespace) -> list[dict]:
    """Ranks the indexed videos for every query; prints a table (or JSON lines) and returns the rows
    {"query", "rank", "id", "path", "score", "time"}."""
    texts = _texts(cfg)
    rows = Searcher(cfg).search(texts, cfg.top_k, cfg.rerank)
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
    """`index ...`, `query ...` or `serve ...`; --config presets as in test.py. Input errors are DataError, CheckpointError or
    RunError, which `cli` prints as one line `search.py: error: ...`."""
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
