"""Search your own videos with a trained text-video checkpoint (scripts/search.py).

videos.py             the files of a folder and their decoded, normalised frames (one sample per video)
index.py              the on-disk index: a JSON manifest and memory-mapped shard folders, updates, compaction
encode.py             videos -> the model's per-frame features, frame weights, pooled vectors and frame times
first_stage.py        faiss candidates (flat or IVF-PQ, in shards): pooled vectors, or frame tokens that vote
first_stage_files.py  the first stages of an index: built, trained and saved, updated, opened for queries
remote.py             first-stage parts served by other machines, merged over HTTP
rerank.py             the candidates re-scored with the model's own similarity (WTI, HBI with --rate)
searcher.py           an index opened for queries: model, gallery and first stage loaded once; the two stages
flags.py              the subcommands' flags; commands.py runs them; serve.py is the page
"""
