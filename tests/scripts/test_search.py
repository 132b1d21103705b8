"""scripts/search.py end to end on the tiny demo data with a tiny trained WTI model: querying every test caption
ranks the videos as test.py scores them (same argmax, same R@1, scores within fp16 storage error); re-indexing
encodes only new or changed files and drops removed ones; an unreadable file is listed and skipped; an index is
refused with another checkpoint, a changed one, or other input flags."""
from __future__ import annotations

import contextlib
import csv
import io
import os
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import main_retrieval
from models.text_video.retrieval import RetrievalModel
from modules.engine.errors import cli
from modules.search.index import MANIFEST
from scripts import search as script
from tests.helpers import argv, eval_argv, load_test_entry

# The tiny model's input flags, as tests/helpers.py's eval_argv gives them to test.py.
MODEL_FLAGS = ["--model", "wti", "--num_hidden_layers", "1", "--max_frames", "4", "--video_framerate", "4",
               "--workers", "0", "--batch_size_val", "3", "--device", "cpu"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    """The command in this process as `python -m scripts.search` runs it: (exit code, stdout, stderr)."""
    code = 0
    try:
        cli(script.main, [str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def index(capsys, checkpoint: Path, videos: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "index", "--init_model", checkpoint, "--videos", videos, "--index", out, *MODEL_FLAGS, *extra)


@pytest.fixture(scope="module")
def trained(tiny_demo, tmp_path_factory) -> Path:
    """One epoch of the tiny WTI model (tests/helpers.py's flags); tests change only copies of it."""
    out = tmp_path_factory.mktemp("trained")
    main_retrieval.main(argv(tiny_demo, out))
    return out / "pytorch_model.bin.best"


@pytest.fixture(scope="module")
def evaluated(tiny_demo, trained, tmp_path_factory) -> tuple[np.ndarray, list[str], dict]:
    """test.py on the checkpoint: (sims (8, 8), video ids of the columns, metrics)."""
    out = tmp_path_factory.mktemp("eval")
    metrics = load_test_entry().main(eval_argv(tiny_demo, out, "--init_model", str(trained)))
    return np.load(out / "sims_test.npy"), json.loads((out / "sims_test_ids.json").read_text())["cols"], metrics


@pytest.fixture(scope="module")
def captions(tiny_demo) -> list[str]:
    with open(tiny_demo / "MSRVTT_JSFUSION_test.csv", newline="") as f:
        return [row["sentence"] for row in csv.DictReader(f)]


def gallery(tiny_demo: Path, folder: Path, ids: list[str]) -> Path:
    """`folder` with the test videos of `ids`, in a sub-folder for every other one (the walk is recursive)."""
    for n, vid in enumerate(ids):
        target = folder / ("more" if n % 2 else "") / f"{vid}.mp4"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tiny_demo / "videos" / f"{vid}.mp4", target)
    return folder


def video_of(result_id: str) -> str:
    return Path(result_id).stem


def count_encoded(monkeypatch) -> list[int]:
    """Rows passed to the model's video encoder, call by call."""
    calls: list[int] = []
    original = RetrievalModel.encode_video

    def counting(self, frames, mask):
        calls.append(frames.shape[0])
        return original(self, frames, mask)
    monkeypatch.setattr(RetrievalModel, "encode_video", counting)
    return calls


@pytest.fixture(scope="module")
def built(tiny_demo, trained, evaluated, tmp_path_factory) -> tuple[Path, Path, str]:
    """(videos folder with all 8 test videos and a broken file, its index, what the second `index` printed);
    built in two steps: 6 videos, then the other 2 and the broken file."""
    root = tmp_path_factory.mktemp("search")
    ids = evaluated[1]
    videos = gallery(tiny_demo, root / "videos", ids[:6])
    command = ["index", "--init_model", str(trained), "--videos", str(videos), "--index", str(root / "index"),
               *MODEL_FLAGS]
    script.main(command)
    gallery(tiny_demo, videos, ids[6:])
    (videos / "broken.mp4").write_bytes(b"not a video")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        script.main(command)
    return videos, root / "index", printed.getvalue()


def test_adding_ten_videos_encodes_only_those_ten(tiny_demo, trained, tmp_path, capsys, monkeypatch):
    ids = sorted(p.stem for p in (tiny_demo / "videos").glob("*.mp4"))
    assert len(ids) >= 19
    videos = gallery(tiny_demo, tmp_path / "videos", ids[:9])
    calls = count_encoded(monkeypatch)
    code, out, err = index(capsys, trained, videos, tmp_path / "index", "--shard_size", "4")
    assert code == 0, err
    assert sum(calls) == 9 and "9 videos encoded (0 changed), 0 unchanged, 0 removed, 0 unreadable" in out
    gallery(tiny_demo, videos, ids[9:19])
    calls.clear()
    code, out, err = index(capsys, trained, videos, tmp_path / "index", "--shard_size", "4")
    assert code == 0, err
    assert sum(calls) == 10 and "10 videos encoded (0 changed), 9 unchanged, 0 removed" in out
    calls.clear()
    code, out, _ = index(capsys, trained, videos, tmp_path / "index", "--shard_size", "4")
    assert sum(calls) == 0 and "0 videos encoded (0 changed), 19 unchanged, 0 removed" in out
    manifest = json.loads((tmp_path / "index" / MANIFEST).read_text())
    keys = {v["id"]: v["key"] for v in manifest["videos"]}
    for vid in ids[:3]:  # with one changed, four of the first shard's six rows are dropped
        (videos / ("more" if ids.index(vid) % 2 else "") / f"{vid}.mp4").unlink()
    changed = videos / "more" / f"{ids[3]}.mp4"
    shutil.copy2(videos / f"{ids[4]}.mp4", changed)  # another file's bytes, and a new modification time
    os.utime(changed, ns=(1, 10**18))
    code, out, _ = index(capsys, trained, videos, tmp_path / "index", "--shard_size", "4")
    assert sum(calls) == 1 and "1 videos encoded (1 changed), 15 unchanged, 3 removed" in out
    assert "2 videos moved out of shards that were at least half dropped rows" in out  # the first shard held 6
    manifest = json.loads((tmp_path / "index" / MANIFEST).read_text())
    assert [v["id"] for v in manifest["videos"]] == sorted(p.relative_to(videos).as_posix()
                                                        for p in videos.rglob("*.mp4"))
    assert {s["name"] for s in manifest["shards"]} == {v["shard"] for v in manifest["videos"]}
    assert sorted(p.name for p in (tmp_path / "index").glob("shard-*")) == sorted(s["name"]
                                                                                 for s in manifest["shards"])
    now = {v["id"]: v["key"] for v in manifest["videos"]}
    changed_id = changed.relative_to(videos).as_posix()
    assert now[changed_id] > max(keys.values())  # a changed file is a new video
    assert all(now[i] == keys[i] for i in now if i != changed_id)  # compaction moves rows, keys stay


def test_every_caption_ranks_as_test_py(built, evaluated, captions, capsys):
    sims, cols, metrics = evaluated
    _, folder, _ = built
    for stage in ("tokens", "pooled"):
        code, out, err = run(capsys, "query", "--index", folder, *captions, "--top_k", "8", "--rerank", "8",
                             "--max_words", "12", "--first_stage", stage, "--json", "--device", "cpu")
        assert code == 0, err
        rows = [json.loads(line) for line in out.strip().splitlines()]
        scores = np.full(sims.shape, np.nan)
        for row in rows:
            scores[captions.index(row["query"]), cols.index(video_of(row["id"]))] = row["score"]
        # Features are stored in fp16: scores agree to well within the gaps between videos.
        assert np.abs(scores - sims).max() < 1e-3
        top = {row["query"]: video_of(row["id"]) for row in rows if row["rank"] == 1}
        assert [top[c] for c in captions] == [cols[i] for i in sims.argmax(1)]
        hits = [top[c] == cols[i] for i, c in enumerate(captions)]
        assert 100.0 * np.mean(hits) == pytest.approx(metrics["t2v_R1"])
        # 8 frames at 8 fps read at 4 per second: frames 0, 2, 4, 6.
        assert {row["time"] for row in rows} <= {0.0, 0.25, 0.5, 0.75}


def test_unreadable_file_is_listed_and_skipped(built, trained, capsys):
    videos, folder, out = built
    assert "search.py index: unreadable, skipped: broken.mp4: " in out
    assert "2 videos encoded (0 changed), 6 unchanged, 0 removed, 1 unreadable; 8 videos" in out
    manifest = json.loads((folder / MANIFEST).read_text())
    assert [v["id"] for v in manifest["unreadable"]] == ["broken.mp4"] and manifest["unreadable"][0]["reason"]
    code, out, _ = run(capsys, "query", "--index", folder, "a red circle", "--top_k", "20", "--json",
                       "--device", "cpu", "--max_words", "12")
    assert code == 0 and "broken.mp4" not in out and len(out.strip().splitlines()) == 8


def test_another_or_changed_checkpoint_is_refused(built, trained, tmp_path, capsys):
    videos, folder, _ = built
    other = tmp_path / "other.bin"
    state = torch.load(trained, weights_only=True)
    state["clip.logit_scale"] = state["clip.logit_scale"] + 1.0
    torch.save(state, other)
    code, _, err = run(capsys, "query", "--index", folder, "a red circle", "--init_model", other, "--device", "cpu")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert f"--init_model {other}: not the checkpoint {folder / MANIFEST} was built with" in err
    code, _, err = index(capsys, other, videos, folder)
    assert code == 1 and "built with another model (sha256" in err
    code, _, err = index(capsys, trained, videos, folder, "--max_frames", "3")
    assert code == 1 and "built with other input flags (max_frames 4 (now 3))" in err
    copy = tmp_path / "copy.bin"
    shutil.copy2(trained, copy)
    code, _, err = index(capsys, copy, videos, tmp_path / "index")
    assert code == 0, err
    shutil.copy2(other, copy)
    code, _, err = run(capsys, "query", "--index", tmp_path / "index", "a red circle", "--device", "cpu")
    assert code == 1 and f"{copy.resolve()}: changed since" in err and len(err.strip().splitlines()) == 1


def test_hbi_reranks_with_rate_as_test_py(tiny_demo, evaluated, captions, tmp_path, capsys):
    from models.clip.adapter import ClipConfig
    from models.text_video import build_retrieval_model
    from tests.helpers import ARCH

    torch.manual_seed(0)
    checkpoint = tmp_path / "hbi.bin"
    torch.save(build_retrieval_model(ClipConfig(**json.loads(ARCH)), "hbi", "seqTransf", 1).reference_state_dict(),
               checkpoint)
    rate = ["--rate", "1", "0.5", "0.25"]
    load_test_entry().main(eval_argv(tiny_demo, tmp_path / "eval", "--init_model", str(checkpoint), "--model", "hbi",
                                     *rate))
    sims = np.load(tmp_path / "eval" / "sims_test.npy")
    cols = evaluated[1]
    videos = gallery(tiny_demo, tmp_path / "videos", cols)
    code, _, err = index(capsys, checkpoint, videos, tmp_path / "index", "--model", "hbi")
    assert code == 0, err
    code, out, err = run(capsys, "query", "--index", tmp_path / "index", *captions, "--top_k", "8", "--rerank", "8",
                         "--max_words", "12", "--json", "--device", "cpu", *rate)
    assert code == 0, err
    scores = np.full(sims.shape, np.nan)
    for row in map(json.loads, out.strip().splitlines()):
        scores[captions.index(row["query"]), cols.index(video_of(row["id"]))] = row["score"]
    assert np.abs(scores - sims).max() < 1e-3
    code, out, _ = run(capsys, "query", "--index", tmp_path / "index", captions[0], "--top_k", "8", "--json",
                       "--max_words", "12", "--device", "cpu")  # the index's rate: 1 0 0, entity level only
    assert code == 0 and json.loads(out.splitlines()[0])["score"] != pytest.approx(np.nanmax(scores[0]), abs=1e-6)


def test_config_presets_work_as_in_test_py(tiny_demo, trained, evaluated, tmp_path, capsys):
    from tests.helpers import ROOT

    videos = gallery(tiny_demo, tmp_path / "videos", evaluated[1][:2])
    code, _, err = run(capsys, "index", "--config", ROOT / "config" / "demo.yaml", "--init_model", trained,
                       "--videos", videos, "--index", tmp_path / "index", "--workers", "0", "--max_frames", "3")
    assert code == 0, err
    assert "keys not used by this program: do_train" in err  # training keys are listed and skipped
    manifest = json.loads((tmp_path / "index" / MANIFEST).read_text())
    # The preset's video_framerate 2; the command line's --max_frames wins over the preset's 6.
    assert manifest["input"]["video_framerate"] == 2.0 and manifest["input"]["max_frames"] == 3


def test_a_stopped_index_run_keeps_its_finished_shards(tiny_demo, trained, evaluated, tmp_path, capsys,
                                                       monkeypatch):
    videos = gallery(tiny_demo, tmp_path / "videos", evaluated[1][:5])
    encode, calls = RetrievalModel.encode_video, []

    def stop_at_the_third_batch(self, frames, mask):
        calls.append(frames.shape[0])
        if len(calls) == 3:
            raise KeyboardInterrupt("stopped")
        return encode(self, frames, mask)
    monkeypatch.setattr(RetrievalModel, "encode_video", stop_at_the_third_batch)
    code, _, _ = index(capsys, trained, videos, tmp_path / "index", "--batch_size_val", "1", "--shard_size", "2")
    assert code == 130  # Ctrl-C after one shard of two videos was written
    monkeypatch.setattr(RetrievalModel, "encode_video", encode)
    calls = count_encoded(monkeypatch)
    code, out, err = index(capsys, trained, videos, tmp_path / "index", "--batch_size_val", "1")
    assert code == 0, err
    assert sum(calls) == 3 and "3 videos encoded (0 changed), 2 unchanged" in out


@pytest.fixture()
def page_server(built):
    """`search.py serve` on the built index, on a free port, in a thread of this process: (URL, server)."""
    import threading

    from modules.search import flags
    from modules.search.commands import Searcher
    from modules.search.serve import make_server

    cfg = flags.serve_parser().parse_args(["--index", str(built[1]), "--port", "0", "--device", "cpu",
                                           "--max_words", "12"])
    server = make_server(Searcher(cfg), cfg.host, cfg.port, cfg.rerank)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server
    server.shutdown()
    server.server_close()


@pytest.fixture()
def page(page_server):
    return page_server[0]


def fetch(url: str, headers: dict | None = None, body: dict | None = None) -> tuple[int, str, bytes]:
    import urllib.error
    import urllib.request
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read()


def test_the_page_answers_what_query_prints(page, built, captions, capsys):
    from urllib.parse import quote

    status, kind, body = fetch(f"{page}/")
    assert status == 200 and kind.startswith("text/html") and b'id="q"' in body and b"/api/search" in body
    status, kind, body = fetch(f"{page}/api/search?q={quote(captions[0])}&top_k=3&rerank=8")
    assert status == 200 and kind == "application/json"
    answer = json.loads(body)
    code, out, err = run(capsys, "query", "--index", built[1], captions[0], "--top_k", "3", "--rerank", "8",
                         "--json", "--device", "cpu", "--max_words", "12")
    printed = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["id"] for r in answer["results"]] == [r["id"] for r in printed] and len(printed) == 3
    assert answer["results"][0]["score"] == pytest.approx(printed[0]["score"], abs=1e-6)


def test_the_page_serves_thumbnails_and_clips_of_indexed_videos_only(page, built):
    manifest = json.loads((built[1] / MANIFEST).read_text())
    video = manifest["videos"][0]
    status, kind, body = fetch(f"{page}/thumb?id={video['id']}")
    assert status == 200 and kind == "image/jpeg" and body[:2] == b"\xff\xd8"
    status, kind, body = fetch(f"{page}/video?id={video['id']}")
    assert status == 200 and kind == "video/mp4" and body == Path(video["path"]).read_bytes()
    for probe in ("/video?id=../../../etc/passwd", "/video?id=broken.mp4", "/thumb?id=", "/nothing"):
        assert fetch(page + probe)[0] == 404, probe
    assert fetch(f"{page}/api/search?q=")[0] == 400


def test_the_clip_is_served_in_byte_ranges_for_the_player_to_seek(page, built):
    video = json.loads((built[1] / MANIFEST).read_text())["videos"][0]
    data = Path(video["path"]).read_bytes()
    url = f"{page}/video?id={video['id']}"
    assert fetch(url, {"Range": "bytes=10-19"})[::2] == (206, data[10:20])
    assert fetch(url, {"Range": "bytes=-5"})[::2] == (206, data[-5:])
    assert fetch(url, {"Range": "bytes=100-"})[::2] == (206, data[100:])
    assert fetch(url, {"Range": f"bytes={len(data)}-"})[0] == 416


def test_a_clip_gone_since_indexing_is_reported_not_drawn_as_a_blank_strip(page_server, tmp_path):
    url, server = page_server
    gallery = server.searcher.gallery
    video_id, kept = gallery.ids[0], gallery.paths[0]
    gallery.paths[0] = str(tmp_path / "gone.mp4")
    try:
        status, _, body = fetch(f"{url}/thumb?id={video_id}")
        assert status == 404 and b"gone.mp4: no frame can be read" in body
        status, _, body = fetch(f"{url}/video?id={video_id}")
        assert status == 404 and b"gone.mp4" in body
    finally:
        gallery.paths[0] = kept


def test_a_first_stage_request_of_the_wrong_shape_is_refused(page_server):
    url, server = page_server
    dim = server.searcher.gallery.dim
    ok = fetch(f"{url}/api/first_stage", body={"vectors": [[0.1] * dim], "k": 3, "nprobe": None})
    assert ok[0] == 200 and len(json.loads(ok[2])["ids"][0]) == 3
    for bad in ({"vectors": [[0.1] * (dim + 1)], "k": 3}, {"vectors": [[0.1] * dim], "k": 0},
                {"vectors": [[0.1] * dim], "k": 3, "nprobe": "8"}, {"k": 3}):
        status, _, body = fetch(f"{url}/api/first_stage", body=bad)
        assert status == 400 and b"first-stage request" in body, bad


def test_a_headless_browser_renders_the_results(page, captions, tmp_path):
    import shutil as which_shutil
    import subprocess
    from urllib.parse import quote

    browser = which_shutil.which("chromium") or which_shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`): no screenshot of the page")
    shot = tmp_path / "page.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1000,700", "--virtual-time-budget=20000",
                    f"{page}/?q={quote(captions[0])}"], check=True, capture_output=True, timeout=120)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000


def query_json(capsys, folder: Path, *args) -> list[dict]:
    code, out, err = run(capsys, "query", "--index", folder, "--json", "--device", "cpu", "--max_words", "12", *args)
    assert code == 0, err
    return [json.loads(line) for line in out.strip().splitlines()]


def test_a_trained_ivfpq_first_stage_is_saved_updated_and_searched(tiny_demo, trained, evaluated, captions,
                                                                     tmp_path, capsys):
    ids = evaluated[1]
    videos, folder = gallery(tiny_demo, tmp_path / "videos", ids[:6]), tmp_path / "index"
    code, out, err = index(capsys, trained, videos, folder, "--first_stage_index", "ivfpq", "--first_stage_shards", "2")
    assert code == 0, err
    assert "first stage tokens: ivfpq index trained (new): 24 rows, 16 lists, 2 shard(s)" in out
    manifest = json.loads((folder / MANIFEST).read_text())
    record = manifest["first_stage"]["tokens"]
    assert record["files"] == ["tokens-01-of-02.faiss", "tokens-02-of-02.faiss"] and record["covered_key"] == 6
    assert all((folder / "first_stage" / name).is_file() for name in record["files"])
    gallery(tiny_demo, videos, ids[6:])
    code, out, err = index(capsys, trained, videos, folder, "--first_stage_index", "ivfpq", "--first_stage_shards", "2")
    assert code == 0 and "first stage tokens: ivfpq index 2 videos added: 32 rows, 16 lists, 2 shard(s)" in out
    # With every video re-ranked the first stage's approximation cannot change the result: test.py's scores.
    exact = query_json(capsys, folder, *captions, "--top_k", "8", "--rerank", "8", "--first_stage_index", "flat")
    approx = query_json(capsys, folder, *captions, "--top_k", "8", "--rerank", "8", "--nprobe", "16")
    assert [(r["id"], r["rank"]) for r in approx] == [(r["id"], r["rank"]) for r in exact]
    assert [r["score"] for r in approx] == pytest.approx([r["score"] for r in exact], abs=1e-6)
    (videos / f"{ids[0]}.mp4").unlink()  # its 4 rows stay in the trained index and are skipped
    code, out, err = index(capsys, trained, videos, folder, "--first_stage_index", "ivfpq", "--first_stage_shards", "2")
    assert code == 0 and "first stage tokens: ivfpq index up to date (32 rows, 16 lists)" in out
    rows = query_json(capsys, folder, *captions, "--top_k", "8", "--rerank", "8", "--nprobe", "16")
    assert {r["id"] for r in rows} == {p.relative_to(videos).as_posix() for p in videos.rglob("*.mp4")}
    assert len(rows) == 7 * len(captions)
    code, out, err = index(capsys, trained, videos, folder, "--first_stage_index", "flat")
    assert code == 0 and "first stage tokens: exact (flat) over 28 rows, built when queried" in out
    assert json.loads((folder / MANIFEST).read_text())["first_stage"] == {}
    assert not list((folder / "first_stage").iterdir())  # the trained files went with their record


def test_a_flat_index_is_not_queried_as_ivfpq(built, capsys):
    _, folder, _ = built
    assert json.loads((folder / MANIFEST).read_text())["first_stage"] == {}  # small: exact, nothing saved
    code, _, err = run(capsys, "query", "--index", folder, "a circle", "--first_stage_index", "ivfpq",
                       "--device", "cpu")
    assert code == 1 and "has no trained tokens index: build one with" in err and len(err.strip().splitlines()) == 1


def test_a_video_query_finds_itself_first(built, evaluated, capsys):
    videos, folder, _ = built
    target = next(videos.rglob(f"{evaluated[1][3]}.mp4"))
    for stage in ("tokens", "pooled"):
        rows = query_json(capsys, folder, "--video", target, "--top_k", "3", "--rerank", "4", "--first_stage", stage)
        assert rows[0]["id"] == target.relative_to(videos).as_posix() and rows[0]["score"] == pytest.approx(1, abs=2e-3)
        assert [r["rank"] for r in rows] == [1, 2, 3] and rows[0]["query"] == str(target)
    code, _, err = run(capsys, "query", "--index", folder, "--video", videos / "broken.mp4", "--device", "cpu")
    assert code == 1 and f"--video {videos / 'broken.mp4'}: " in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "query", "--index", folder, "a circle", "--video", target, "--device", "cpu")
    assert code == 1 and "give query texts or --video files, not both" in err


def test_parallel_rerank_returns_what_one_thread_returns(built, captions, capsys):
    _, folder, _ = built
    one = query_json(capsys, folder, *captions, "--top_k", "3", "--rerank", "5")
    two = query_json(capsys, folder, *captions, "--top_k", "3", "--rerank", "5", "--rerank_workers", "3")
    assert one == two


def serve_part(folder: Path, part: int | None, *extra: str):
    """A running `serve` over `folder` (one first-stage part, or all): (server, its URL)."""
    import threading

    from modules.search import flags
    from modules.search.searcher import Searcher
    from modules.search.serve import make_server

    args = ["--index", str(folder), "--port", "0", "--device", "cpu", "--max_words", "12", *extra]
    cfg = flags.serve_parser().parse_args(args + ([] if part is None else ["--first_stage_part", str(part)]))
    server = make_server(Searcher(cfg), cfg.host, cfg.port, cfg.rerank)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_first_stage_parts_on_other_machines_answer_as_one_index(tiny_demo, trained, evaluated, captions, tmp_path,
                                                                   capsys, kind):
    videos, folder = gallery(tiny_demo, tmp_path / "videos", evaluated[1]), tmp_path / "index"
    code, _, err = index(capsys, trained, videos, folder, "--first_stage_index", kind, "--first_stage_shards", "2")
    assert code == 0, err
    servers = [serve_part(folder, part) for part in (1, 2)]
    try:
        infos = [json.loads(fetch(f"{url}/api/first_stage")[2]) for _, url in servers]
        assert [i["part"] for i in infos] == [1, 2] and sum(i["rows"] for i in infos) == 32
        assert infos[0]["rows"] == 16  # videos of even keys: 4 of the 8, 4 frames each
        local = query_json(capsys, folder, *captions, "--top_k", "3", "--rerank", "4", "--nprobe", "16")
        remote = query_json(capsys, folder, *captions, "--top_k", "3", "--rerank", "4", "--nprobe", "16",
                            "--first_stage_remote", *[url for _, url in servers])
        assert remote == local
        code, _, err = run(capsys, "query", "--index", folder, "a circle", "--device", "cpu",
                           "--first_stage_remote", servers[0][1])
        assert code == 1 and "parts [1] given, the first stage has parts 1 to 2" in err
        status, _, body = fetch(f"{servers[0][1]}/api/search?q=a+circle")
        assert status == 400 and b"one part of the first stage" in body
    finally:
        for server, _ in servers:
            server.shutdown()
            server.server_close()


def test_a_remote_part_of_another_index_is_refused(built, tiny_demo, trained, evaluated, tmp_path, capsys):
    other = tmp_path / "index"
    code, _, err = index(capsys, trained, gallery(tiny_demo, tmp_path / "videos", evaluated[1][:3]), other)
    assert code == 0, err
    server, url = serve_part(other, None)
    try:
        code, _, err = run(capsys, "query", "--index", built[1], "a circle", "--device", "cpu",
                           "--first_stage_remote", url)
        assert code == 1 and f"--first_stage_remote {url}: serves the tokens first stage of another index" in err
    finally:
        server.shutdown()
        server.server_close()
    code, _, err = run(capsys, "query", "--index", built[1], "a circle", "--device", "cpu",
                       "--first_stage_remote", "http://127.0.0.1:9")
    assert code == 1 and "--first_stage_remote http://127.0.0.1:9: no first-stage answer" in err


def test_videos_a_stopped_run_left_out_of_the_trained_first_stage_are_searched(tiny_demo, trained, evaluated,
                                                                                captions, tmp_path, capsys,
                                                                                monkeypatch):
    from modules.search import commands

    ids = evaluated[1]
    videos, folder = gallery(tiny_demo, tmp_path / "videos", ids[:6]), tmp_path / "index"
    assert index(capsys, trained, videos, folder, "--first_stage_index", "ivfpq")[0] == 0
    gallery(tiny_demo, videos, ids[6:])
    with monkeypatch.context() as patch:  # stopped after the shards, before the first stage was updated
        patch.setattr(commands, "_update_first_stages", lambda *args: None)
        assert index(capsys, trained, videos, folder, "--first_stage_index", "ivfpq")[0] == 0
    code, out, err = run(capsys, "query", "--index", folder, *captions, "--json", "--device", "cpu", "--max_words",
                         "12", "--top_k", "8", "--rerank", "8", "--nprobe", "16")
    assert code == 0 and "2 videos are not in the saved tokens first stage" in err
    assert {json.loads(line)["id"] for line in out.strip().splitlines()} == {
        p.relative_to(videos).as_posix() for p in videos.rglob("*.mp4")}
