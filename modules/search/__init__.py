"""Search your own videos with a trained text-video checkpoint (scripts/search.py).

videos.py       the files of a folder and their decoded, normalised frames (one sample per video)
index.py        the on-disk index: a JSON manifest and shards of per-video features, incremental updates
encode.py       videos -> the model's per-frame features, pooled vectors and frame times
first_stage.py  faiss candidates: one pooled vector per video, or frame tokens that vote for their videos
rerank.py       the candidates re-scored with the model's own similarity (WTI, HBI with --rate)
flags.py        the two subcommands' flags; commands.py runs them
"""
