"""Structural checks of gpt-neox index maps, used by `pile verify` (one function per manifest role).

`CHECKS[role](path) -> list[str]`: the problems found in the `.npy` file at `path` (empty if fine).
They need only the file itself (no dataset, no config), read memory-mapped; doc_idx and shuffle_idx
are checked on one sorted copy (Pythia scale: 1.7 GB and 0.8 GB), sample_idx in chunks:

- "doc_idx":     1-D int32, values >= 0, every item index 0..n-1 appears the same number of times
                 (= the number of epochs), so len(doc_idx) = epochs * n (checked on a sorted copy).
- "sample_idx":  shape (k, 2), int32 or int64; row 0 is (0, 0); the doc_idx index column is
                 non-decreasing; offsets are >= 0; within one document offsets strictly increase.
- "shuffle_idx": 1-D uint32 or int64, a permutation of arange(len), i.e. it sorts to arange(len)
                 (Pythia users once found a published shuffle_idx that was 92% zeros).

`check_against_sizes(doc_idx, sample_idx, sizes, seq_length)` is the deeper check when the item
sizes and seq_length are known (offsets within the document, every sample seq_length + 1 tokens).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

CHUNK = 1 << 24  # elements per chunk (16M): bounded memory at any scale
MAX_REPORTED = 5


def _load(path: Path) -> tuple[np.ndarray | None, list[str]]:
    try:
        arr = np.load(Path(path), mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return None, [f"{path}: file not found"]
    except (ValueError, OSError) as e:
        return None, [f"{path}: not a readable .npy array ({e})"]
    return arr, []


def check_doc_idx(path: Path) -> list[str]:
    arr, problems = _load(path)
    if arr is None:
        return problems
    if arr.ndim != 1:
        return [f"{path}: doc_idx must be 1-D, got shape {arr.shape}"]
    if arr.dtype != np.int32:
        problems.append(f"{path}: doc_idx dtype is {arr.dtype}, gpt-neox writes int32")
    if arr.size == 0:
        return problems + [f"{path}: doc_idx is empty"]
    # sorted copy (4 bytes per entry): must be 0,0,...,1,1,...: every item `epochs` times
    srt = np.sort(np.asarray(arr))
    lo, hi = int(srt[0]), int(srt[-1])
    if lo < 0:
        return problems + [f"{path}: doc_idx has negative item index {lo}"]
    n_items = hi + 1
    epochs = arr.size // n_items
    bad_at = None
    if epochs * n_items != arr.size:
        bad_at = -1
    else:
        for s in range(0, arr.size, CHUNK):
            c = srt[s : s + CHUNK]
            want = np.arange(s, s + c.size, dtype=np.int64) // epochs
            diff = np.flatnonzero(c != want)
            if diff.size:
                bad_at = s + int(diff[0])
                break
    if bad_at is not None:
        counts = np.bincount(srt, minlength=n_items)
        first = int(counts[0])
        bad = np.flatnonzero(counts != first)
        ex = ", ".join(f"item {int(i)} x{int(counts[i])}" for i in bad[:MAX_REPORTED])
        problems.append(
            f"{path}: doc_idx must hold every item index 0..{hi} the same number of times "
            f"(item 0 appears {first} times) but {bad.size} items differ: {ex}"
        )
    return problems


def check_sample_idx(path: Path) -> list[str]:
    arr, problems = _load(path)
    if arr is None:
        return problems
    if arr.ndim != 2 or arr.shape[1] != 2:
        return [f"{path}: sample_idx must have shape (num_samples + 1, 2), got {arr.shape}"]
    if arr.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        problems.append(f"{path}: sample_idx dtype is {arr.dtype}, expected int32 or int64")
    if arr.shape[0] < 2:
        return problems + [f"{path}: sample_idx has {arr.shape[0]} rows; at least 2 are needed"]
    if int(arr[0, 0]) != 0 or int(arr[0, 1]) != 0:
        problems.append(f"{path}: sample_idx[0] is {arr[0].tolist()}, must be [0, 0]")
    n = arr.shape[0]
    for s in range(0, n, CHUNK):
        c = np.asarray(arr[s : min(n, s + CHUNK + 1)], dtype=np.int64)  # one row of overlap
        d, o = c[:, 0], c[:, 1]
        if (d < 0).any() or (o < 0).any():
            r = s + int(np.flatnonzero((d < 0) | (o < 0))[0])
            problems.append(f"{path}: sample_idx row {r} has a negative value {arr[r].tolist()}")
            break
        dd = np.diff(d)
        back = np.flatnonzero(dd < 0)
        if back.size:
            r = s + int(back[0]) + 1
            problems.append(
                f"{path}: sample_idx is not monotone: row {r} doc index {int(arr[r, 0])} < "
                f"row {r - 1} doc index {int(arr[r - 1, 0])}"
            )
            break
        same = dd == 0
        stuck = np.flatnonzero(same & (np.diff(o) <= 0))
        if stuck.size:
            r = s + int(stuck[0]) + 1
            problems.append(
                f"{path}: sample_idx is not monotone: row {r} {arr[r].tolist()} does not advance "
                f"past row {r - 1} {arr[r - 1].tolist()} in the same document"
            )
            break
    return problems


def check_shuffle_idx(path: Path) -> list[str]:
    arr, problems = _load(path)
    if arr is None:
        return problems
    if arr.ndim != 1:
        return [f"{path}: shuffle_idx must be 1-D, got shape {arr.shape}"]
    if arr.dtype not in (np.dtype(np.uint32), np.dtype(np.int64)):
        problems.append(f"{path}: shuffle_idx dtype is {arr.dtype}, gpt-neox writes uint32/int64")
    n = arr.size
    # a permutation of arange(n) sorts to arange(n) (sorted copy: one array's worth of memory)
    srt = np.sort(np.asarray(arr))
    if n and (int(srt[0]) < 0 or int(srt[-1]) >= n):
        v = int(srt[0]) if int(srt[0]) < 0 else int(srt[-1])
        i = int(np.flatnonzero(np.asarray(arr) == v)[0])
        return problems + [
            f"{path}: shuffle_idx[{i}] = {v} is outside 0..{n - 1}; not a permutation"
        ]
    for s in range(0, n, CHUNK):
        c = srt[s : s + CHUNK]
        if (c != np.arange(s, s + c.size, dtype=c.dtype)).any():
            break
    else:
        return problems
    dup = int((srt[1:] == srt[:-1]).sum())
    first_dup = int(srt[1:][srt[1:] == srt[:-1]][0])
    missing = dup  # all values are in range: each repeat displaces one value
    zeros = int(np.searchsorted(srt, 1) - np.searchsorted(srt, 0))
    problems.append(
        f"{path}: shuffle_idx is not a permutation of arange({n}): {dup} repeated values "
        f"(first {first_dup}), {missing} values missing, {100.0 * zeros / n:.1f}% zeros"
    )
    return problems


def check_against_sizes(
    doc_idx: np.ndarray, sample_idx: np.ndarray, sizes: np.ndarray, seq_length: int
) -> list[str]:
    """Deep check: sample j spans exactly seq_length + 1 tokens of the doc_idx-ordered stream."""
    problems: list[str] = []
    sizes = np.asarray(sizes, dtype=np.int64)
    n_docs = len(doc_idx)
    for s in range(0, sample_idx.shape[0], CHUNK):
        c = np.asarray(sample_idx[s : s + CHUNK], dtype=np.int64)
        d, o = c[:, 0], c[:, 1]
        if (d >= n_docs).any():
            r = s + int(np.flatnonzero(d >= n_docs)[0])
            return [f"sample_idx row {r} doc index {int(d[r - s])} >= len(doc_idx) {n_docs}"]
        dsz = sizes[np.asarray(doc_idx[d], dtype=np.int64)]
        # an offset may equal the size only when a sample ends exactly at a document end
        bad = np.flatnonzero(o > dsz)
        if bad.size:
            r = s + int(bad[0])
            return [
                f"sample_idx row {r} offset {int(o[bad[0]])} is beyond the end of its document "
                f"({int(dsz[bad[0]])} tokens)"
            ]
    # positions in the flat stream: start of doc_idx[k] + offset
    starts = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(sizes[np.asarray(doc_idx, dtype=np.int64)], out=starts[1:])
    pos = starts[np.asarray(sample_idx[:, 0], dtype=np.int64)] + np.asarray(
        sample_idx[:, 1], dtype=np.int64
    )
    expected = np.arange(pos.size, dtype=np.int64) * seq_length
    bad = np.flatnonzero(pos != expected)
    if bad.size:
        r = int(bad[0])
        problems.append(
            f"sample_idx row {r} points at flat token {int(pos[r])}, expected {int(expected[r])} "
            f"(= row x seq_length {seq_length}); samples do not tile the stream"
        )
    return problems


CHECKS: dict[str, Callable[[Path], list[str]]] = {
    "doc_idx": check_doc_idx,
    "sample_idx": check_sample_idx,
    "shuffle_idx": check_shuffle_idx,
}
