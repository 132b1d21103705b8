"""The flags of `search.py index` and `search.py query`.

`index` takes the model flags of evaluation (modules/text_video.py: --model --agg_module --num_hidden_layers
--init_model ... HBI's merge rates) and the frame-sampling flags (modules/clip_video.py: --max_frames
--video_framerate --slice_framepos --video_backend), so a video is read and encoded as test.py reads and encodes it;
`--config` presets work as in test.py (keys of training and of the data sets are listed and skipped).
`query` takes nothing that shapes the video side: the model and its flags come from the index.
"""
from __future__ import annotations

import argparse

import torch

from modules import text_video
from modules.clip_video import add_frame_flags
from modules.engine.flags import dests, positive_int, non_negative_int
from modules.engine.precision import PRECISIONS
from modules.search.first_stage import FLAT_MAX_ROWS, KINDS, MODES

# Model flags that do not shape the model once --init_model is given (the weights file sets the sizes), and the
# level weights, which only scoring uses: none of them is part of what an index must match.
NOT_MODEL_SHAPE = {"init_model", "clip_path", "base_encoder", "clip_arch", "rate"}
MODEL_FLAGS = sorted(dests(text_video.add_model_flags, False) - NOT_MODEL_SHAPE)


def _add_device_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda")
    g.add_argument("--precision", default="fp32", choices=list(PRECISIONS))
    g.add_argument("--debug", type=int, default=0, help="1: errors about the input show their traceback")


def index_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="search.py index", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Encode every video under --videos into the index --index (new and "
                                            "changed files only when the index exists).")
    g = p.add_argument_group("index")
    g.add_argument("--videos", required=True, help="folder of video files, searched recursively")
    g.add_argument("--index", required=True, help="folder of the index (created if absent)")
    g.add_argument("--shard_size", type=positive_int, default=1000, help="videos per shard file")
    g.add_argument("--batch_size_val", type=positive_int, default=16, help="videos per encoder call")
    g.add_argument("--workers", "--num_thread_reader", dest="workers", type=non_negative_int, default=4,
                   help="decoding processes")
    g.add_argument("--first_stage_index", default="auto", choices=list(KINDS),
                   help=f"faiss index of each first stage: flat (exact, built when queried), ivfpq (trained and "
                        f"saved now); auto: flat up to {FLAT_MAX_ROWS} rows (tokens or videos), ivfpq beyond")
    g.add_argument("--first_stage_shards", type=positive_int, default=1,
                   help="split each first-stage index into this many faiss shards of disjoint videos (searched in "
                        "parallel; one file each)")
    add_frame_flags(p.add_argument_group("video"))
    text_video.add_model_flags(p, training=False)
    _add_device_flags(p)
    return p


def _add_search_flags(g) -> None:
    """What `query` and `serve` share: the index, the two stages, the text length, HBI's rate, the model check."""
    g.add_argument("--index", required=True, help="folder of an index built by `search.py index`")
    g.add_argument("--rerank", type=positive_int, default=200,
                   help="candidates of the first stage re-scored with the model (at least --top_k)")
    g.add_argument("--first_stage", default="auto", choices=list(MODES),
                   help="pooled: one vector per video; tokens: frame tokens vote; auto: pooled for meanP, tokens "
                        "for the token-wise models")
    g.add_argument("--first_stage_index", default="auto", choices=list(KINDS),
                   help="auto: the index's trained ivfpq if it has one, else exact; flat: exact (every row in "
                        "memory); ivfpq: the trained one (an error if the index has none)")
    g.add_argument("--nprobe", type=positive_int, default=None,
                   help="ivfpq lists searched per query vector (default: a 16th of the lists)")
    g.add_argument("--per_word", type=positive_int, default=None,
                   help="tokens first stage: nearest frame tokens fetched per query word (default: --rerank, at "
                        "least 1024)")
    g.add_argument("--rerank_workers", type=positive_int, default=1, help="queries re-ranked in parallel threads")
    g.add_argument("--first_stage_remote", nargs="+", default=None, metavar="URL",
                   help="search the first stage on other machines, each serving one part (`serve "
                        "--first_stage_part K`), instead of here")
    g.add_argument("--max_words", type=positive_int, default=32, help="tokens of a query text")
    g.add_argument("--rate", type=float, nargs=3, default=None, metavar=("ENTITY", "ACTION", "EVENT"),
                   help="HBI level weights (default: the index's --rate)")
    g.add_argument("--init_model", default=None,
                   help="optional: the checkpoint you expect; refused unless it is the one the index was built with")


def query_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="search.py query", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="Rank the indexed videos for each query text.")
    p.add_argument("text", nargs="*", help="query texts (each one argument)")
    g = p.add_argument_group("query")
    g.add_argument("--queries", default=None, help="file of query texts, one a line (added to the texts given)")
    g.add_argument("--video", nargs="+", default=None, metavar="FILE",
                   help="query with video files instead of texts (video-to-video: the entity head's score)")
    g.add_argument("--top_k", type=positive_int, default=10, help="results per query")
    g.add_argument("--json", type=int, nargs="?", const=1, default=0, help="print JSON lines instead of a table")
    _add_search_flags(g)
    _add_device_flags(p)
    return p


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="search.py serve", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description="A local web page (and JSON API) to search an index and watch the clips.")
    g = p.add_argument_group("serve")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    g.add_argument("--port", type=non_negative_int, default=8000, help="0 picks a free port")
    g.add_argument("--first_stage_part", type=positive_int, default=None, metavar="K",
                   help="serve only the K-th part of the first stage (of the index's --first_stage_shards) to "
                        "machines that query with --first_stage_remote")
    _add_search_flags(g)
    _add_device_flags(p)
    return p


PARSERS = {"index": index_parser, "query": query_parser, "serve": serve_parser}


def not_used(command: str) -> frozenset[str]:
    """Keys of a preset (a training or evaluation config) that `command` skips: every other flag of
    main_retrieval.py and of the other subcommand."""
    every = {a.dest for a in text_video.parser()._actions}
    for make in PARSERS.values():
        every |= {a.dest for a in make()._actions}
    return frozenset(every - {a.dest for a in PARSERS[command]()._actions})


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available here")
    return torch.device(name)
