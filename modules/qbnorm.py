"""QB-Norm: querybank normalisation with the dynamic inverted softmax (Bogolin et al., CVPR 2022).

Inputs are a querybank ``B`` (Nb, G) -- similarities between extra queries (e.g. training captions) and the
test gallery -- and the test similarities ``S`` (Nq, G). The inverted softmax rescores entry (i, j) as

    exp(beta * S[i, j]) / sum_b exp(beta * B[b, j]),

which pushes down "hub" gallery items that many queries score highly. The dynamic variant (``mode="dynamic"``)
rescores only the test rows whose top-1 gallery item is in the *activation set*: the items that are among the
top-k of at least one querybank row. The other rows keep their raw similarities, as in the official code, so
scores are comparable within a row only, never across rows; ``mode="inverted"`` rescores every row.

Where this differs from the official code (none of it changes a row's ranking):
- Rescored entries are stored as log-scores ``beta * S[i, j] - logsumexp_b(beta * B[b, j])`` in float64: the
  same order as the ratio, without the overflow of ``exp(beta * s)`` (inf/nan from beta * s ~ 710 on).
  float64 because nearby normalised scores of a row can differ by less than float32 resolution.
- The querybank is streamed in chunks of rows; one pass yields both the per-column logsumexp and the activation
  set, so memory grows with ``chunk_rows x G``, not with Nb. A ``np.memmap`` input (``np.load(mmap_mode="r")``,
  any float dtype, e.g. float16) has its pages released after every chunk: file-backed pages that stay mapped
  count as resident memory.
- The input matrices are not modified (the official code overwrites the test matrix it is given).
- Ties: a row's top-1 is the lowest column index among equal maxima; ties at the k-th place of a querybank row
  (k > 1) are broken arbitrarily, as by the official ``argsort``.

Video-to-text (``transpose=True``) follows the official music-video code: the test matrix, given as
(texts, videos), is transposed so that videos are the queries, normalised against a querybank of *videos*
scored against the test texts (Nb_videos, N_texts), and transposed back.
"""
from __future__ import annotations

import codecs
import mmap
import pickle
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

MODES = ("dynamic", "inverted")
WEIGHTED_MODES = ("mode1", "mode2")
MMAP_MIN_BYTES = 256 << 20  # .npy files at least this large are memory-mapped instead of read

# The only globals a similarity pickle may reference: numpy's own array reconstruction under its numpy 1 and 2
# module names (protocols 2-4 use _reconstruct, protocol 5 _frombuffer), and _codecs.encode, with which
# protocol 2 stores the raw bytes of an array. Containers (dict, list, tuple) are opcodes, not globals.
_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]
_PICKLE_GLOBALS: Dict[Tuple[str, str], Callable] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _Rows:
    """Rows of ``sum_i weights[i] * terms[i]`` (each (N, G), or its transpose), read as float64 on demand.

    Reading lazily keeps a weighted or memory-mapped matrix from ever being materialised whole.
    """

    def __init__(self, name: str, terms: Sequence[np.ndarray], weights: Sequence[float], transpose: bool):
        if not terms or len(terms) != len(weights):
            raise ValueError(f"{name}: got {len(terms)} matrices and {len(weights)} weights, expected as many of each")
        arrays = [np.asarray(t) for t in terms]  # a memmap stays reachable through .base for `release`
        for i, a in enumerate(arrays):
            if a.ndim != 2 or not np.issubdtype(a.dtype, np.floating):
                raise ValueError(f"{name} term {i}: expected a 2-D float matrix, got shape {a.shape} {a.dtype}")
            if a.shape != arrays[0].shape:
                raise ValueError(f"{name} term {i}: shape {a.shape} differs from term 0 {arrays[0].shape}")
        self.name = name
        self.arrays = arrays
        self.views = [a.T if transpose else a for a in arrays]
        self.weights = [float(w) for w in weights]
        self.shape = self.views[0].shape

    def read_into(self, start: int, out: np.ndarray) -> None:
        """Fill ``out`` (n, G) float64 with rows ``start:start + n``; stops on a non-finite value."""
        stop = start + out.shape[0]
        np.multiply(self.views[0][start:stop], self.weights[0], out=out, dtype=np.float64)
        for view, weight in zip(self.views[1:], self.weights[1:]):
            out += weight * view[start:stop].astype(np.float64)
        finite = np.isfinite(out).all(axis=1)
        if not finite.all():
            raise ValueError(f"{self.name}: row {start + int(np.argmin(finite))} has a non-finite similarity")
        self.release()

    def release(self) -> None:
        """Unmap the pages of memory-mapped terms that were read; they stay in the page cache, not in our RSS."""
        for a in self.arrays:
            mapping = _shared_file_mapping(a)
            if mapping is not None:
                mapping.madvise(mmap.MADV_DONTNEED)


def _shared_file_mapping(array: np.ndarray) -> Optional[mmap.mmap]:
    """The mmap behind a np.memmap (or a view of one), unless it is copy-on-write (mode "c").

    Dropping pages of a shared file mapping only unmaps them (the file keeps the data); on a copy-on-write
    mapping it would discard the caller's in-memory edits.
    """
    if not hasattr(mmap, "MADV_DONTNEED"):
        return None
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        if isinstance(base, np.memmap) and base.mode == "c":
            return None
        base = getattr(base, "base", None)
    return base


def check_finite(sims: np.ndarray, path: str | Path, chunk_rows: int = 4096) -> None:
    """Stop with one line naming the file when entries of a loaded matrix are inf or NaN (read in chunks of rows,
    the pages of a memory-mapped file released after each)."""
    bad, first = 0, None
    for start in range(0, sims.shape[0], chunk_rows):
        block = ~np.isfinite(np.asarray(sims[start:start + chunk_rows]))
        count = int(block.sum())
        if count and first is None:
            row, col = np.argwhere(block)[0]
            first = (start + int(row), int(col))
        bad += count
        mapping = _shared_file_mapping(sims)
        if mapping is not None:
            mapping.madvise(mmap.MADV_DONTNEED)
    if bad:
        entries = "entry" if bad == 1 else "entries"
        raise ValueError(f"{path}: {bad} non-finite {entries} (inf or NaN) in the {sims.shape[0]} x "
                         f"{sims.shape[1]} similarity matrix, the first at row {first[0]}, column {first[1]}")


def _check_params(k: int, beta: float, mode: str, chunk_rows: int) -> None:
    """Stop with one line on a bad hyper-parameter."""
    if int(k) != k or k < 1:
        raise ValueError(f"qbnorm k must be a positive integer, got {k}")
    if not beta > 0:
        raise ValueError(f"qbnorm beta must be > 0, got {beta}")
    if mode not in MODES:
        raise ValueError(f"qbnorm mode must be one of {MODES}, got {mode!r}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")


def _top_k_columns(x: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the top-k entries of every row of ``x`` (n, G), flattened (n * k,)."""
    if k == 1:
        return x.argmax(axis=1)  # lowest index among tied maxima, like a stable sort
    # torch.topk avoids the (n, G) index array that np.argpartition would allocate
    return torch.from_numpy(x).topk(k, dim=1).indices.numpy().reshape(-1)


def _scan_querybank(bank: _Rows, k: int, beta: float, chunk_rows: int) -> Tuple[np.ndarray, np.ndarray]:
    """One streamed pass over the querybank (Nb, G).

    Returns ``lse`` (G,) float64, the per-column ``logsumexp_b(beta * B[b, j])``, and ``active`` (G,) bool,
    the activation set (columns in the top-k of at least one querybank row).
    """
    num_rows, num_cols = bank.shape
    if num_rows == 0:
        raise ValueError(f"{bank.name}: the querybank has no rows")
    k = int(k)
    running_max = np.full(num_cols, -np.inf)
    scaled_sum = np.zeros(num_cols)  # sum_b exp(beta * B[b, j] - running_max[j])
    active = np.zeros(num_cols, dtype=bool)
    buffer = np.empty((min(chunk_rows, num_rows), num_cols))
    for start in tqdm(range(0, num_rows, chunk_rows), desc="querybank", unit="chunk", leave=False, disable=None):
        x = buffer[:min(chunk_rows, num_rows - start)]
        bank.read_into(start, x)
        x *= beta
        active[_top_k_columns(x, k)] = True  # beta > 0 keeps every row's order
        new_max = np.maximum(running_max, x.max(axis=0))
        scaled_sum *= np.exp(running_max - new_max)  # rescale what was summed under the old maximum
        x -= new_max
        np.exp(x, out=x)
        scaled_sum += x.sum(axis=0)
        running_max = new_max
    return running_max + np.log(scaled_sum), active


def _normalise_rows(test: _Rows, lse: np.ndarray, active: np.ndarray, beta: float, mode: str,
                    chunk_rows: int, linear: bool) -> np.ndarray:
    """Rescore the test rows (Nq, G) chunk by chunk; returns (Nq, G) float64.

    ``linear`` gives the official ratio ``exp(beta * s - lse)`` instead of its log (needed where normalised
    scores are summed, see :func:`qb_norm_weighted`); it can overflow to inf for extreme beta.
    """
    out = np.empty(test.shape)
    num_rows = test.shape[0]
    for start in range(0, num_rows, chunk_rows):
        block = out[start:start + chunk_rows]
        test.read_into(start, block)
        if mode == "dynamic":
            rescore = active[block.argmax(axis=1)][:, None]  # argmax: the official test uses the top-1 item
        else:
            rescore = np.ones((block.shape[0], 1), dtype=bool)
        # ufunc `where` rescores the selected rows in place, without copying them out
        np.multiply(block, beta, out=block, where=rescore)
        np.subtract(block, lse, out=block, where=rescore)
        if linear:
            np.exp(block, out=block, where=rescore)
    return out


def _run(bank: _Rows, test: _Rows, k: int, beta: float, mode: str, chunk_rows: int, linear: bool) -> np.ndarray:
    """Check the parameters, scan the querybank once and rescore the test rows."""
    _check_params(k, beta, mode, chunk_rows)
    if bank.shape[1] != test.shape[1]:
        raise ValueError(f"the querybank scores {bank.shape[1]} gallery items but the test matrix {test.shape[1]}; "
                         f"both must score the same gallery (for v2t the querybank is videos x test texts)")
    if k > bank.shape[1]:
        raise ValueError(f"qbnorm k={k} is larger than the {bank.shape[1]} gallery items each querybank row's "
                         f"top-k is taken from")
    lse, active = _scan_querybank(bank, k, beta, chunk_rows)
    return _normalise_rows(test, lse, active, beta, mode, chunk_rows, linear)


def qb_norm(querybank_sims: np.ndarray, test_sims: np.ndarray, k: int = 1, beta: float = 20.0,
            mode: str = "dynamic", chunk_rows: int = 4096, transpose: bool = False) -> np.ndarray:
    """QB-Norm of ``test_sims`` (Nq, G) with the querybank ``querybank_sims`` (Nb, G); returns (Nq, G) float64.

    Rescored rows hold log-scores ``beta * s - logsumexp(beta * querybank column)`` (same ranking as the
    official ratio); other rows keep the raw similarities (``mode="dynamic"``). Rank within rows only.
    ``transpose=True`` (video-to-text): ``test_sims`` is (texts, videos), ``querybank_sims`` is
    (querybank videos, texts); the result is returned as (texts, videos) (a transposed view).
    Either input may be a ``np.memmap`` of any float dtype. Memory: the (Nq, G) float64 result plus a few
    (chunk_rows, G) float64 buffers, whatever Nb is.
    """
    bank = _Rows("querybank", [querybank_sims], [1.0], transpose=False)
    test = _Rows("test matrix", [test_sims], [1.0], transpose=transpose)
    out = _run(bank, test, k, beta, mode, chunk_rows, linear=False)
    return out.T if transpose else out


def qb_norm_weighted(querybank_terms: Sequence[np.ndarray], test_terms: Sequence[np.ndarray],
                     weights: Sequence[float], mode: str = "mode1", method: str = "dynamic", k: int = 1,
                     beta: float = 20.0, chunk_rows: int = 4096, transpose: bool = False) -> np.ndarray:
    """QB-Norm of similarities that are a weighted sum of terms (the music-video ``--qbnorm_mode``).

    ``querybank_terms[i]`` (Nb, G) and ``test_terms[i]`` (Nq, G) are term i; ``weights[i]`` its weight.
    - ``mode1``: normalise ``sum_i w_i * test_i`` with the querybank ``sum_i w_i * querybank_i`` (log-scores,
      as :func:`qb_norm`); the sums are formed chunk by chunk, never whole.
    - ``mode2``: normalise every term with its own querybank, then sum with the weights. As in the official code
      the summed values are the normalised *ratios* (not their logs), and a row rescored in one term but not in
      another adds a ratio to a raw similarity; ratios overflow to inf for extreme beta.
    ``method`` is ``dynamic`` or ``inverted``; ``transpose`` as in :func:`qb_norm`. Returns (Nq, G) float64.
    """
    if mode not in WEIGHTED_MODES:
        raise ValueError(f"qbnorm_mode must be one of {WEIGHTED_MODES}, got {mode!r}")
    if not len(querybank_terms) == len(test_terms) == len(weights):
        raise ValueError(f"got {len(querybank_terms)} querybank terms, {len(test_terms)} test terms and "
                         f"{len(weights)} weights; expected one of each per term")
    if mode == "mode1":
        bank = _Rows("querybank", querybank_terms, weights, transpose=False)
        test = _Rows("test matrix", test_terms, weights, transpose=transpose)
        out = _run(bank, test, k, beta, method, chunk_rows, linear=False)
    else:
        out = None
        for i, (bank_term, test_term, weight) in enumerate(zip(querybank_terms, test_terms, weights)):
            bank = _Rows(f"querybank term {i}", [bank_term], [1.0], transpose=False)
            test = _Rows(f"test term {i}", [test_term], [1.0], transpose=transpose)
            part = _run(bank, test, k, beta, method, chunk_rows, linear=True)
            part *= weight
            out = part if out is None else np.add(out, part, out=out)
    return out.T if transpose else out


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals in ``_PICKLE_GLOBALS``; anything else is refused unexecuted."""

    def find_class(self, module: str, name: str):
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global '{module}.{name}'") from None


def _single_matrix(obj, path: Path, kind: str) -> np.ndarray:
    """The one array in ``obj`` (an array/tensor, or a dict holding exactly one)."""
    if isinstance(obj, dict):
        if len(obj) != 1:
            raise ValueError(f"{path}: expected one similarity {kind} (or a dict with one), "
                             f"got a dict with keys {sorted(map(str, obj))[:8]}")
        obj = next(iter(obj.values()))
    if isinstance(obj, torch.Tensor):
        obj = (obj.float() if obj.dtype == torch.bfloat16 else obj).numpy()
    if not isinstance(obj, np.ndarray):
        raise ValueError(f"{path}: expected a similarity {kind}, got {type(obj).__name__}")
    return obj


def load_sims(path: str | Path) -> np.ndarray:
    """Load a similarity matrix (rows x cols) from ``.npy``, ``.pt``/``.pth`` or an official ``.pkl``/``.pickle``.

    ``.npy`` files of at least ``MMAP_MIN_BYTES`` come back memory-mapped (read-only). ``.pt`` loads with
    ``weights_only=True`` (a tensor, or a dict with one tensor). Pickles go through an unpickler that admits only
    numpy array reconstruction and plain containers. A (N, 1, M) matrix -- the layout the official music-video
    code saves -- is squeezed to (N, M).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: similarity file not found")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        mmap_mode = "r" if path.stat().st_size >= MMAP_MIN_BYTES else None
        try:
            sims = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{path}: not a readable numeric .npy ({err})") from None
    elif suffix in (".pt", ".pth"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError) as err:
            raise ValueError(f"{path}: not loadable with weights_only=True ({str(err).splitlines()[0]})") from None
        sims = _single_matrix(obj, path, "tensor")
    elif suffix in (".pkl", ".pickle"):
        try:
            with open(path, "rb") as f:
                obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()  # latin1: Python 2 numpy pickles
        except pickle.UnpicklingError as err:
            raise ValueError(f"{path}: {err} (only numpy arrays and plain containers are allowed)") from None
        except EOFError:
            raise ValueError(f"{path}: truncated pickle") from None
        sims = _single_matrix(obj, path, "array")
    else:
        raise ValueError(f"{path}: unknown similarity format '{suffix}', expected .npy, .pt, .pth, .pkl or .pickle")
    if sims.ndim == 3 and sims.shape[1] == 1:
        sims = sims[:, 0]
    if sims.ndim != 2 or not np.issubdtype(sims.dtype, np.floating):
        raise ValueError(f"{path}: expected a 2-D float similarity matrix, got shape {sims.shape} {sims.dtype}")
    return sims
