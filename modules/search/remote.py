"""First-stage shards on other machines, searched over HTTP (JSON, no pickle) and merged as faiss's `IndexShards`
merges local ones.

Each machine holds the index folder (or at least its manifest and first-stage files) and serves one part:
`search.py serve --index OUT --first_stage_part K` searches the K-th of the index's `--first_stage_shards` parts
(the videos whose key modulo the part count is K-1). The querying machine, which holds the features the re-rank
reads, names them all: `search.py query --index OUT --first_stage_remote URL1 URL2 ...`. A part from another index
(other model, folder or videos), a missing or repeated part, or an unreachable machine is an error naming the URL.

    GET  /api/first_stage   {"index", "mode", "part", "parts", "rows"}
    POST /api/first_stage   {"vectors": [[float]], "k": int, "nprobe": int | null} -> {"sims": [[]], "ids": [[]]}
"""
from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from modules.engine.errors import RunError
from modules.search.index import SearchIndex


def identity(index: SearchIndex) -> str:
    """What two machines' copies of one index share: its folder of videos, model file and video keys."""
    manifest = index.manifest
    keys = ",".join(str(v["key"]) for v in manifest["videos"])
    text = json.dumps([manifest["root"], manifest["model"]["sha256"], manifest["next_key"], keys])
    return hashlib.sha256(text.encode()).hexdigest()


def _call(url: str, body: dict | None = None, timeout: float = 120.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url.rstrip('/')}/api/first_stage", data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as err:
        raise RunError(f"--first_stage_remote {url}: no first-stage answer ({err})") from None


class RemoteShards:
    """The parts of one first stage served by other machines, with `VectorIndex`'s `search` and `ntotal`."""

    kind = "remote"

    def __init__(self, urls: list[str], index: SearchIndex, mode: str) -> None:
        self.urls = urls
        infos = [_call(url) for url in urls]
        wanted = identity(index)
        for url, info in zip(urls, infos):
            if info.get("index") != wanted or info.get("mode") != mode:
                raise RunError(f"--first_stage_remote {url}: serves the {info.get('mode')} first stage of another "
                               f"index than {index.folder} ({mode}): give the parts of this one")
        parts = infos[0]["parts"]
        given = sorted(info["part"] for info in infos)
        if given != list(range(1, parts + 1)) or any(info["parts"] != parts for info in infos):
            raise RunError(f"--first_stage_remote: parts {given} given, the first stage has parts 1 to {parts}: "
                           "give each exactly once")
        self.ntotal = sum(info["rows"] for info in infos)

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) -> the best k of every part's best k: sims (Q, k), ids (Q, k)."""
        body = {"vectors": np.asarray(queries, dtype=np.float32).tolist(), "k": int(k), "nprobe": nprobe}
        with ThreadPoolExecutor(len(self.urls)) as pool:
            answers = list(pool.map(lambda url: _call(url, body), self.urls))
        sims = np.concatenate([np.asarray(a["sims"], dtype=np.float32).reshape(len(queries), -1) for a in answers], 1)
        ids = np.concatenate([np.asarray(a["ids"], dtype=np.int64).reshape(len(queries), -1) for a in answers], 1)
        sims = np.where(ids >= 0, sims, -np.inf)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)
