"""Bucket partitions, star edges and candidate verification, with bounded memory.

Buckets (written by the per-input-file signature tasks): for every document with shingles and
every band j, one record (key uint64, doc_id int64) = 16 bytes. Records go to partition
p = key >> (64 - log2(P)) (P = `partitions`, a power of two), file
`buckets/<p:05d>/<file_index:06d>.bin` (raw little-endian records, appended in document order).
A bucket (all records with one key) therefore lies entirely in one partition.

Edges (one task per partition): the partition's files are concatenated in file-index order, so
document ids ascend within equal keys; a stable argsort by key groups each bucket with its smallest
id first. Every other member d of a bucket gives one star edge (d -> smallest id): a bucket of s
documents gives s-1 edges, never s(s-1)/2, so a boilerplate bucket of 10**5 documents costs 10**5
edges. Edges of a partition are de-duplicated and written as `edges/<p:05d>.npy` (int64 [E, 2],
sorted by (src, dst)). Peak memory of a task: ~40 bytes per record of its partition, i.e.
~40 * bands * N / P bytes (Pile: 211M docs, 7 bands, P=64: ~0.9 GB); raise `partitions` to lower it.

Verification (optional, on by default): each distinct edge (u, v) is kept when the fraction of
equal rows of the full signatures of u and v is >= the cut (see DedupConfig.verify_cut). The rows
are gathered from the memory-mapped per-file signature arrays in chunks of `VERIFY_CHUNK` edges
(2 * chunk * K * 4 bytes of memory), edges sorted by source so reads are mostly sequential. Cost:
one random signature read (K*4 bytes) per edge endpoint plus a K-wide comparison; on the Pile's
scale that is ~2 * E * 512 bytes of mostly page-cache reads, far less than the signature pass.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from pipeline import docid
from pipeline.io import atomic_open

RECORD = np.dtype([("key", "<u8"), ("doc", "<i8")])
VERIFY_CHUNK = 1 << 16


def partition_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    bits = partitions.bit_length() - 1
    if bits == 0:
        return np.zeros(keys.shape, dtype=np.int64)
    return (keys >> np.uint64(64 - bits)).astype(np.int64)


def bucket_path(root: Path, partition: int, file_index: int) -> Path:
    return Path(root) / f"{partition:05d}" / f"{file_index:06d}.bin"


class BucketWriter:
    """Appends (key, doc) records of one input file to its per-partition files (atomically)."""

    def __init__(self, root: Path, file_index: int, partitions: int) -> None:
        self.root = Path(root)
        self.file_index = file_index
        self.partitions = partitions
        self._stack = ExitStack()
        self._files: dict[int, object] = {}
        self.records = 0

    def __enter__(self) -> BucketWriter:
        self._stack.__enter__()
        return self

    def __exit__(self, *exc) -> bool | None:
        if exc[0] is None:
            # every partition gets a file (possibly empty) so readers can check completeness
            for p in range(self.partitions):
                self._file(p)
        return self._stack.__exit__(*exc)

    def _file(self, p: int):
        f = self._files.get(p)
        if f is None:
            f = self._stack.enter_context(
                atomic_open(bucket_path(self.root, p, self.file_index), "wb")
            )
            self._files[p] = f
        return f

    def add(self, keys: np.ndarray, doc_ids: np.ndarray) -> None:
        """keys uint64 [n, bands], doc_ids int64 [n] (ascending)."""
        n, bands = keys.shape
        if n == 0:
            return
        rec = np.empty(n * bands, dtype=RECORD)
        rec["key"] = keys.ravel()
        rec["doc"] = np.repeat(doc_ids, bands)
        part = partition_of(rec["key"], self.partitions)
        order = np.argsort(part, kind="stable")
        rec = rec[order]
        part = part[order]
        bounds = np.searchsorted(part, np.arange(self.partitions + 1))
        for p in np.unique(part):
            lo, hi = bounds[p], bounds[p + 1]
            self._file(int(p)).write(rec[lo:hi].tobytes())
        self.records += len(rec)


def read_partition(root: Path, partition: int, file_indices: list[int]) -> np.ndarray:
    parts = []
    for fi in file_indices:
        path = bucket_path(root, partition, fi)
        parts.append(np.fromfile(path, dtype=RECORD))
    if not parts:
        return np.empty(0, dtype=RECORD)
    return np.concatenate(parts)


def star_edges(keys: np.ndarray, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Distinct star edges (src > dst) of the buckets of (key, doc) records.

    `docs` must ascend within equal keys after a stable sort by key (true for records in
    document order). Returns (src, dst, largest bucket size), edges sorted by (src, dst).
    """
    if len(keys) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), int(len(keys))
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    d = docs[order]
    first = np.empty(len(k), dtype=bool)
    first[0] = True
    np.not_equal(k[1:], k[:-1], out=first[1:])
    run_start = np.flatnonzero(first)
    run_id = np.cumsum(first) - 1
    root = d[run_start][run_id]
    member = ~first
    src = d[member]
    dst = root[member]
    largest = int(np.diff(np.append(run_start, len(k))).max())
    keep = src != dst  # the same document twice in a bucket cannot happen, but be safe
    src, dst = unique_edges(src[keep], dst[keep])
    return src, dst, largest


def unique_edges(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(src) == 0:
        return src.astype(np.int64), dst.astype(np.int64)
    order = np.lexsort((dst, src))
    s = src[order]
    t = dst[order]
    new = np.empty(len(s), dtype=bool)
    new[0] = True
    new[1:] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
    return s[new], t[new]


def write_edges(path: Path, src: np.ndarray, dst: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, np.stack([src, dst], axis=1).astype(np.int64), allow_pickle=False)


def read_edges(path: Path) -> tuple[np.ndarray, np.ndarray]:
    arr = np.load(path, allow_pickle=False)
    return arr[:, 0].copy(), arr[:, 1].copy()


class SignatureStore:
    """Random access to the per-file signature arrays (memory-mapped, rows = line index)."""

    def __init__(self, paths: dict[int, Path]) -> None:
        self.paths = paths
        self._maps: dict[int, np.ndarray] = {}

    def _map(self, fi: int) -> np.ndarray:
        m = self._maps.get(fi)
        if m is None:
            m = np.load(self.paths[fi], mmap_mode="r", allow_pickle=False)
            self._maps[fi] = m
        return m

    def gather(self, doc_ids: np.ndarray) -> np.ndarray:
        fi, rows = docid.file_index(doc_ids), docid.row(doc_ids)
        files = np.unique(fi)
        first = self._map(int(files[0]))
        out = np.empty((len(doc_ids), first.shape[1]), dtype=first.dtype)
        for f in files:
            sel = np.flatnonzero(fi == f)
            out[sel] = self._map(int(f))[rows[sel]]
        return out

    def close(self) -> None:
        self._maps.clear()


def signature_agreement(src: np.ndarray, dst: np.ndarray, store: SignatureStore) -> np.ndarray:
    """The MinHash estimate of each pair's Jaccard: the fraction of equal signature rows."""
    agree = np.empty(len(src), dtype=np.float64)
    for c0 in range(0, len(src), VERIFY_CHUNK):
        c1 = min(c0 + VERIFY_CHUNK, len(src))
        a = store.gather(src[c0:c1])
        b = store.gather(dst[c0:c1])
        agree[c0:c1] = np.count_nonzero(a == b, axis=1) / a.shape[1]
    return agree


def verify_edges(
    src: np.ndarray, dst: np.ndarray, store: SignatureStore, cut: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep edges whose signature agreement is >= cut; also returns the agreement of every edge."""
    agree = signature_agreement(src, dst, store)
    keep = agree >= cut - 1e-12
    return src[keep], dst[keep], agree


def remove_tree(path: Path) -> None:
    """Delete an intermediate directory tree (bucket files, edge files)."""
    path = Path(path)
    if not path.exists():
        return
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    os.rmdir(path)
