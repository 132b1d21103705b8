"""Annotation files of the HAP-VR benchmarks (FIVR-5K / FIVR-200K, EVVE, SVD), in the layouts their authors publish.

Files, under one annotations directory (`data/hapvr/` by default), with the names the reference code reads:
- `fivr_audio.pickle` (the HAP-VR / S2VS name; ViSiL's `fivr.pickle` is accepted too):
  `{'5k': {'queries', 'database'}, '200k': {...}, 'annotation': {query: {label: [video ids]}}}`,
  labels ND, DS, CS, IS (and DA, the audio labels);
- `fivr_easy_duplicates.txt`: the ids the "hard" FIVR variants remove, one a line;
- `evve.pickle`: `{'annotation': {event: (queries, positives, null)}, 'queries', 'database'}`, the three as sets;
- `test_groundtruth` (SVD): lines `query_id candidate_id label`, label 0 or 1;
- `unlabeled-data-id` (SVD): the unlabelled distractor ids, one a line (only for scoring against them).
Pickles are read with a restricted unpickler (plain containers and strings only). A missing file, a malformed row or
a wrong structure is one DataError line naming the file (and the line or key) and what was expected.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dataloaders.errors import DataError
from dataloaders.video_video.pickles import load_plain_pickle

DEFAULT_DIR = Path("data/hapvr")
FIVR_FILES = ("fivr_audio.pickle", "fivr.pickle")
EASY_DUPLICATES_FILE = "fivr_easy_duplicates.txt"
EVVE_FILE = "evve.pickle"
SVD_GROUND_TRUTH_FILE = "test_groundtruth"
SVD_UNLABELED_FILE = "unlabeled-data-id"
FIVR_LABELS = ("ND", "DS", "CS", "IS", "DA")

_S2VS = "https://github.com/gkordo/s2vs/tree/main/data"
_SOURCES = {
    "fivr_audio.pickle": _S2VS,
    "fivr.pickle": "https://github.com/MKLab-ITI/visil/tree/master/datasets",
    EASY_DUPLICATES_FILE: _S2VS,
    EVVE_FILE: "https://github.com/MKLab-ITI/visil/tree/master/datasets",
    SVD_GROUND_TRUTH_FILE: "the SVD dataset (https://svdbase.github.io)",
    SVD_UNLABELED_FILE: "the SVD dataset (https://svdbase.github.io)",
}


@dataclass(frozen=True)
class FivrSplit:
    """One FIVR version: its queries (sorted) and database ids (sorted)."""
    queries: tuple[str, ...]
    database: tuple[str, ...]


@dataclass(frozen=True)
class FivrAnnotations:
    """`splits` by version ('5k', '200k'); `annotation[query][label]` the video ids of that label."""
    path: str
    splits: dict[str, FivrSplit]
    annotation: dict[str, dict[str, frozenset[str]]]


@dataclass(frozen=True)
class EvveEvent:
    queries: frozenset[str]
    positives: frozenset[str]
    null: frozenset[str]


@dataclass(frozen=True)
class EvveAnnotations:
    """`events` by name; `queries` and `database` sorted, as the reference sorts them."""
    path: str
    events: dict[str, EvveEvent]
    queries: tuple[str, ...]
    database: tuple[str, ...]

    def event_of(self) -> dict[str, str]:
        """query id -> its event."""
        return {q: name for name, event in self.events.items() for q in event.queries}


def find_file(annotations_dir: str | Path, names: tuple[str, ...] | str) -> Path:
    """The first of `names` present in `annotations_dir`; otherwise DataError saying where to get the first."""
    names = (names,) if isinstance(names, str) else names
    for name in names:
        path = Path(annotations_dir) / name
        if path.is_file():
            return path
    others = f" (nor {', '.join(names[1:])})" if len(names) > 1 else ""
    raise DataError(f"{Path(annotations_dir) / names[0]}: annotation file not found{others}; "
                    f"get it from {_SOURCES.get(names[0], 'the benchmark authors')} and put it in {annotations_dir}")


def _lines(path: Path) -> list[str]:
    """The file's lines (split at LF, so line numbers are an editor's; a CR before it stays, callers split it off)."""
    try:
        return path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def read_id_list(path: str | Path) -> list[str]:
    """Ids of a one-id-a-line file, in file order, blank lines skipped, a repeated id kept once."""
    path = Path(path)
    ids, seen = [], set()
    for line_no, line in enumerate(_lines(path), 1):
        fields = line.split()
        if len(fields) > 1:
            raise DataError(f"{path}: line {line_no}: expected one video id, got {len(fields)} fields {line!r}")
        if fields and fields[0] not in seen:
            seen.add(fields[0])
            ids.append(fields[0])
    return ids


def _string_set(value, path, key: str) -> frozenset[str]:
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{path}: {key} must be a collection of video id strings, got {type(value).__name__}")
    return frozenset(value)


def _dict(value, path, key: str) -> dict:
    if not isinstance(value, dict):
        raise DataError(f"{path}: {key} must be a dict, got {type(value).__name__}")
    return value


def load_fivr(annotations_dir: str | Path = DEFAULT_DIR) -> FivrAnnotations:
    """FIVR query / database lists of every version and the labels of every query (see the module docstring)."""
    path = find_file(annotations_dir, FIVR_FILES)
    data = _dict(load_plain_pickle(path), path, "the top level")
    if "annotation" not in data:
        raise DataError(f"{path}: no 'annotation' key (expected '5k', '200k' and 'annotation')")
    annotation = {}
    for query, labels in _dict(data["annotation"], path, "'annotation'").items():
        labels = _dict(labels, path, f"annotation[{query!r}]")
        annotation[query] = {label: _string_set(ids, path, f"annotation[{query!r}][{label!r}]")
                             for label, ids in labels.items()}
    splits = {}
    for version, split in data.items():
        if version == "annotation":
            continue
        split = _dict(split, path, f"[{version!r}]")
        missing = {"queries", "database"} - set(split)
        if missing:
            raise DataError(f"{path}: [{version!r}] has no {sorted(missing)} (expected 'queries' and 'database')")
        queries = _string_set(split["queries"], path, f"[{version!r}]['queries']")
        unlabelled = sorted(queries - set(annotation))
        if unlabelled:
            raise DataError(f"{path}: {len(unlabelled)} {version} queries have no annotation, e.g. {unlabelled[0]!r}")
        splits[version] = FivrSplit(tuple(sorted(queries)),
                                    tuple(sorted(_string_set(split["database"], path, f"[{version!r}]['database']"))))
    if not splits:
        raise DataError(f"{path}: no FIVR version (expected keys such as '5k' and '200k' beside 'annotation')")
    return FivrAnnotations(os.fspath(path), splits, annotation)


def load_easy_duplicates(annotations_dir: str | Path = DEFAULT_DIR) -> frozenset[str]:
    """The ids that the "hard" FIVR variants remove from the database."""
    return frozenset(read_id_list(find_file(annotations_dir, EASY_DUPLICATES_FILE)))


def load_evve(annotations_dir: str | Path = DEFAULT_DIR) -> EvveAnnotations:
    """EVVE events, queries and database; every query must belong to exactly one event."""
    path = find_file(annotations_dir, EVVE_FILE)
    data = _dict(load_plain_pickle(path), path, "the top level")
    missing = {"annotation", "queries", "database"} - set(data)
    if missing:
        raise DataError(f"{path}: no {sorted(missing)} (expected 'annotation', 'queries' and 'database')")
    events = {}
    for name, value in _dict(data["annotation"], path, "'annotation'").items():
        if not isinstance(value, (tuple, list)) or len(value) != 3:
            raise DataError(f"{path}: annotation[{name!r}] must be (queries, positives, null)")
        events[name] = EvveEvent(*(_string_set(v, path, f"annotation[{name!r}][{i}]") for i, v in enumerate(value)))
    queries = _string_set(data["queries"], path, "'queries'")
    owners: dict[str, str] = {}
    for name, event in events.items():
        for query in event.queries:
            if query in owners:
                raise DataError(f"{path}: query {query!r} belongs to two events, {owners[query]!r} and {name!r}")
            owners[query] = name
    orphans = sorted(queries - set(owners))
    if orphans:
        raise DataError(f"{path}: {len(orphans)} queries belong to no event, e.g. {orphans[0]!r}")
    return EvveAnnotations(os.fspath(path), events, tuple(sorted(queries)),
                           tuple(sorted(_string_set(data["database"], path, "'database'"))))


def read_svd_ground_truth(path: str | Path) -> dict[str, dict[str, int]]:
    """query -> {candidate: 0 or 1}, in file order, from lines `query_id candidate_id label`.

    Blank lines and CR line ends are tolerated; a row without exactly three fields, a label other than 0 or 1, or a
    repeated (query, candidate) pair is a DataError naming the file and the line.
    """
    path = Path(path)
    truth: dict[str, dict[str, int]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for line_no, line in enumerate(_lines(path), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or fields[2] not in ("0", "1"):
            raise DataError(f"{path}: line {line_no}: expected 'query_id candidate_id label' with label 0 or 1, "
                            f"got {line.strip()!r}")
        query, candidate, label = fields
        if (query, candidate) in first_line:
            raise DataError(f"{path}: line {line_no}: pair {query} {candidate} already labelled on line "
                            f"{first_line[query, candidate]}")
        first_line[query, candidate] = line_no
        truth.setdefault(query, {})[candidate] = int(label)
    if not truth:
        raise DataError(f"{path}: no ground-truth rows (expected lines 'query_id candidate_id label')")
    return truth


def load_svd_ground_truth(annotations_dir: str | Path = DEFAULT_DIR) -> dict[str, dict[str, int]]:
    """SVD test ground truth (see `read_svd_ground_truth`)."""
    return read_svd_ground_truth(find_file(annotations_dir, SVD_GROUND_TRUTH_FILE))


def load_svd_unlabeled(annotations_dir: str | Path = DEFAULT_DIR) -> list[str]:
    """SVD's unlabelled distractor ids, in file order."""
    path = find_file(annotations_dir, SVD_UNLABELED_FILE)
    ids = read_id_list(path)
    if not ids:
        raise DataError(f"{path}: no video ids")
    return ids
