"""`search.py serve`: a small local page over an index (the standard library's HTTP server, plain HTML).

    GET /[?q=TEXT]                the page: a query box, the ranked clips as thumbnail strips with scores, a player
    GET /api/search?q=TEXT&top_k=10&rerank=200    JSON {"query", "results": [{rank, id, score, time, ...}]}
    GET /thumb?id=ID              a JPEG strip of the clip's indexed frames
    GET /video?id=ID              the clip file itself (only ids of the index: no other file is ever served)
    GET, POST /api/first_stage    this machine's part of the first stage (modules/search/remote.py)
"""
from __future__ import annotations

import html
import json
import mimetypes
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

from modules.search.remote import identity

THUMB_HEIGHT = 72
THUMB_FRAMES = 6
VIDEO_CHUNK = 1 << 20

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>search: {title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
form input[type=text] {{ width: 30em; font-size: 1.1em; }}
.hit {{ display: flex; align-items: center; gap: 1em; margin: .6em 0; cursor: pointer; }}
.hit img {{ height: {height}px; }}
.score {{ font-family: monospace; width: 6em; }}
.missing {{ color: #a00; }}
video {{ max-width: 40em; display: block; margin: 1em 0; }}
video[hidden] {{ display: none; }}
</style></head>
<body>
<h1>Search {title}</h1>
<p>{count} videos, model <code>{model}</code></p>
<form id="f"><input type="text" id="q" placeholder="a man throws a frisbee to a dog" autofocus>
<input type="number" id="k" value="10" min="1" style="width:4em"> <button>search</button></form>
<video id="player" controls hidden></video>
<div id="results"></div>
<script>
const form = document.getElementById("f");
form.onsubmit = async (e) => {{
  e.preventDefault();
  const q = document.getElementById("q").value, k = document.getElementById("k").value;
  const r = await fetch(`/api/search?q=${{encodeURIComponent(q)}}&top_k=${{k}}`);
  const data = await r.json();
  const box = document.getElementById("results");
  box.innerHTML = "";
  if (data.error) {{ box.textContent = data.error; return; }}
  for (const hit of data.results) {{
    const row = document.createElement("div");
    row.className = "hit";
    const when = hit.time === null ? "" : ` at ${{hit.time.toFixed(1)}} s`;
    row.innerHTML = `<span class="score">${{hit.score.toFixed(4)}}</span>` +
      `<img src="/thumb?id=${{encodeURIComponent(hit.id)}}" alt="">` +
      `<a href="/video?id=${{encodeURIComponent(hit.id)}}">${{hit.id}}</a>${{when}}`;
    row.querySelector("img").onerror = (ev) => {{
      ev.target.replaceWith(Object.assign(document.createElement("span"),
        {{className: "missing", textContent: "no frame can be read: the file is gone or unreadable"}}));
    }};
    row.onclick = (ev) => {{
      if (ev.target.tagName === "A") return;
      const player = document.getElementById("player");
      player.src = `/video?id=${{encodeURIComponent(hit.id)}}`;
      player.hidden = false;
      player.currentTime = hit.time || 0;
      player.play();
    }};
    box.appendChild(row);
  }}
}};
const given = new URLSearchParams(location.search).get("q");  // /?q=TEXT opens with its results
if (given) {{ document.getElementById("q").value = given; form.requestSubmit(); }}
</script></body></html>
"""


def thumbnail_strip(path: str, times: np.ndarray, count: int = THUMB_FRAMES,
                    height: int = THUMB_HEIGHT) -> bytes | None:
    """JPEG of up to `count` frames of the clip at the indexed `times` (s), side by side, `height` px high; None
    when no frame can be read (the file is gone or unreadable)."""
    capture = cv2.VideoCapture(path)
    frames = []
    try:
        valid = [float(t) for t in times if t >= 0]
        for t in valid[:: max(1, len(valid) // count)][:count]:
            capture.set(cv2.CAP_PROP_POS_MSEC, 1000 * t)
            ok, frame = capture.read()
            if ok:
                width = max(1, round(frame.shape[1] * height / frame.shape[0]))
                frames.append(cv2.resize(frame, (width, height)))
    finally:
        capture.release()
    return cv2.imencode(".jpg", np.hstack(frames))[1].tobytes() if frames else None


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of an HTTP `Range: bytes=...` header (one range) for a file of `size` bytes, the whole
    file without one; None for a range the file cannot satisfy."""
    if not header:
        return 0, size - 1
    unit, _, spec = header.partition("=")
    first, dash, last = spec.strip().partition("-")
    if unit.strip() != "bytes" or not dash or "," in spec:
        return None
    try:
        if first:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        else:  # "-N": the last N bytes
            start, end = max(0, size - int(last)), size - 1
    except ValueError:
        return None
    return (start, end) if 0 <= start <= end else None


class SearchHandler(BaseHTTPRequestHandler):
    """Routes of the module docstring; `server.searcher` is a `modules.search.commands.Searcher`."""

    def log_message(self, format: str, *args) -> None:  # one readable line a request, on stderr
        print(f"serve: {self.address_string()} {format % args}", file=sys.stderr, flush=True)

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, obj, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _row(self, params: dict) -> int | None:
        """The gallery row of `?id=`, None (and a 404 sent) for anything that is not an indexed id."""
        row = self.server.rows.get(params.get("id", [""])[0])
        if row is None:
            self._send(HTTPStatus.NOT_FOUND, b"not an indexed video", "text/plain")
        return row

    def do_GET(self) -> None:
        url = urlparse(self.path)
        params = parse_qs(url.query)
        route = {"/": self._page, "/api/search": self._search, "/thumb": self._thumb, "/video": self._video,
                 "/api/first_stage": self._first_stage_info}
        handler = route.get(url.path)
        if handler is None:
            self._send(HTTPStatus.NOT_FOUND, b"no such page", "text/plain")
        else:
            handler(params)

    def do_POST(self) -> None:
        if urlparse(self.path).path != "/api/first_stage":
            return self._send(HTTPStatus.NOT_FOUND, b"no such endpoint", "text/plain")
        searcher = self.server.searcher
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            vectors = np.asarray(body["vectors"], dtype=np.float32)
            k, nprobe = int(body["k"]), body.get("nprobe")
            if vectors.ndim != 2 or vectors.shape[1] != searcher.gallery.dim or k < 1:
                raise ValueError(f"expected vectors (Q, {searcher.gallery.dim}) and a positive k")
            if nprobe is not None and (not isinstance(nprobe, int) or nprobe < 1):
                raise ValueError(f"nprobe {nprobe!r}: expected a positive integer or null")
        except (ValueError, KeyError, TypeError) as err:
            return self._json({"error": f"first-stage request: {err}"}, HTTPStatus.BAD_REQUEST)
        with self.server.lock:  # nprobe is set on the shared faiss index before each search
            sims, ids = searcher.first_stage.index.search(vectors, k, nprobe)
        self._json({"sims": np.where(ids >= 0, sims, 0).tolist(), "ids": ids.tolist()})

    def _first_stage_info(self, params: dict) -> None:
        searcher = self.server.searcher
        # A server of the whole first stage is its one part.
        part, parts = (1, 1) if searcher.part is None else (searcher.part, searcher.part_count)
        self._json({"index": identity(searcher.index), "mode": searcher.mode, "part": part, "parts": parts,
                    "rows": searcher.first_stage.index.ntotal})

    def _page(self, params: dict) -> None:
        searcher = self.server.searcher
        record = searcher.index.manifest["model"]
        page = PAGE.format(title=html.escape(str(searcher.index.folder)), count=len(searcher.gallery),
                           model=html.escape(Path(record["init_model"]).name), height=THUMB_HEIGHT)
        self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")

    def _search(self, params: dict) -> None:
        query = params.get("q", [""])[0].strip()
        if self.server.searcher.part is not None:
            return self._json({"error": "this server holds one part of the first stage: query through "
                                        "--first_stage_remote"}, HTTPStatus.BAD_REQUEST)
        if not query:
            return self._json({"error": "give a query: /api/search?q=TEXT"}, HTTPStatus.BAD_REQUEST)
        try:
            top_k = max(1, int(params.get("top_k", ["10"])[0]))
            rerank = max(1, int(params.get("rerank", [str(self.server.rerank)])[0]))
        except ValueError:
            return self._json({"error": "top_k and rerank are positive integers"}, HTTPStatus.BAD_REQUEST)
        with self.server.lock:  # one model, one query at a time
            rows = self.server.searcher.search([query], top_k, rerank)
        self._json({"query": query, "results": [{k: v for k, v in r.items() if k != "query"} for r in rows]})

    def _thumb(self, params: dict) -> None:
        row = self._row(params)
        if row is not None:
            gallery = self.server.searcher.gallery
            path = gallery.paths[row]
            strip = thumbnail_strip(path, gallery.array("times", [row])[0])
            if strip is None:
                return self._send(HTTPStatus.NOT_FOUND, f"{path}: no frame can be read (the file is gone or "
                                  "unreadable): re-run `search.py index`".encode(), "text/plain")
            self._send(HTTPStatus.OK, strip, "image/jpeg")

    def _video(self, params: dict) -> None:
        """The clip, streamed; one byte range on request, which the player needs to start at the best frame."""
        row = self._row(params)
        if row is None:
            return
        path = Path(self.server.searcher.gallery.paths[row])
        try:
            file = path.open("rb")
        except OSError as err:
            return self._send(HTTPStatus.NOT_FOUND, f"{path}: {err}".encode(), "text/plain")
        with file:
            size = path.stat().st_size
            span = byte_range(self.headers.get("Range"), size)
            if span is None:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                return self.end_headers()
            partial = "Range" in self.headers
            self.send_response(HTTPStatus.PARTIAL_CONTENT if partial else HTTPStatus.OK)
            self.send_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(span[1] - span[0] + 1))
            if partial:
                self.send_header("Content-Range", f"bytes {span[0]}-{span[1]}/{size}")
            self.end_headers()
            self._copy(file, *span)

    def _copy(self, file, start: int, end: int) -> None:
        """Bytes start..end of `file` to the client, a chunk at a time (a clip may be larger than memory)."""
        file.seek(start)
        left = end - start + 1
        try:
            while left > 0 and (chunk := file.read(min(left, VIDEO_CHUNK))):
                self.wfile.write(chunk)
                left -= len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the player stopped reading (a seek, a closed page): nothing more is owed to it


def make_server(searcher, host: str, port: int, rerank: int) -> ThreadingHTTPServer:
    """The page's server over `searcher` (not started: `serve_forever()`); port 0 picks a free one."""
    server = ThreadingHTTPServer((host, port), SearchHandler)
    server.searcher, server.rerank, server.lock = searcher, rerank, threading.Lock()
    server.rows = {video_id: row for row, video_id in enumerate(searcher.gallery.ids)}
    return server
