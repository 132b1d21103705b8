"""Search your own videos with a trained text-video checkpoint.

    python -m scripts.search index --init_model CKPT --videos DIR --index OUT [--config config/X.yaml] [--max_frames ...]
    python -m scripts.search query --index OUT "a red circle moves to the left" [--queries FILE] --top_k 10 \
        [--rerank 200] [--first_stage auto|pooled|tokens] [--rate E A V] [--json]

See modules/search/ and the README section "Search your own videos".
"""
from __future__ import annotations

from modules.engine.errors import cli
from modules.search.commands import main

if __name__ == "__main__":
    cli(main)
