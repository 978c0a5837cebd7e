"""Exact token-sequence search in a token stream: a sampled k-gram index, and a scan.

Index (built once per token dataset, with checksums): every `stride`-th token position p of the
`.bin` (p = 0, stride, 2*stride, ...) is an anchor; its key is a 32-bit hash of tokens [p, p+k).
Keys are sorted (with their anchor numbers) into

    {prefix}.ngram_k{k}_s{stride}_keys.npy   uint32 [anchors]
    {prefix}.ngram_k{k}_s{stride}_pos.npy    uint32 (int64 beyond 2**32 anchors) [anchors]
    {prefix}.ngram_k{k}_s{stride}.manifest.json   kind "ngram-index": sha256 of both, the k,
                                             stride and identity (bytes, head/tail hash) of the
                                             dataset it indexes

A query of n >= k + stride - 1 tokens starting at any position t covers exactly one anchor at
offset i = (-t) mod stride < stride: looking up the keys of its `stride` k-grams q[i:i+k] finds
every occurrence once, and each candidate t = p - i is checked against the tokens (32-bit keys
collide; a match must also lie inside one item). Size: (4 + 4) / stride bytes per token (0.5 at
stride 16: ~150 GB for the Pile's 300B tokens, a quarter of its .bin). Build: one pass hashing
anchors into 2**b key-range partitions on disk, then one in-memory sort per partition (bounded
memory at any size). Query: `stride` binary searches in the memory-mapped keys plus one random
read per candidate: milliseconds.

Shorter queries (and `--scan`) use a vectorised scan: positions equal to the query's rarest
token, then narrowed one token at a time, chunk by chunk (memory-bandwidth bound).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.dedup.hashing import fmix64
from pipeline.errors import IntegrityError
from pipeline.io import atomic_open
from pipeline.manifest import read_manifest, write_manifest

log = logging.getLogger(__name__)

KIND = "ngram-index"
KGRAM = 8
STRIDE = 16
MULT = np.uint64(0x9E3779B97F4A7C15)
CHUNK_TOKENS = 1 << 25  # tokens hashed per step of the build and of the scan
PART_ANCHORS = 1 << 25  # anchors per on-disk partition (sorted in memory: ~400 MB)


@dataclass
class TokenStream:
    """The tokens of one MMIDX dataset (joined .bin or byte shards) and its item boundaries."""

    prefix: str
    starts: np.ndarray  # token index of each item's first token (int64 view of pointers)
    sizes: np.ndarray
    n_tokens: int
    dtype: np.dtype
    _read: Any

    def read(self, a: int, b: int) -> np.ndarray:
        return self._read(max(0, a), min(b, self.n_tokens))

    def item_of(self, t: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, t, side="right") - 1


def stream_of(data) -> TokenStream:
    """TokenStream of an opened DocumentData or PreshuffledData (pipeline.order.document, pipeline.order.shuffled)."""
    if data.form == "document":
        idx = data.ds.index
        binm = data.ds.bin

        def read(a: int, b: int) -> np.ndarray:
            return np.asarray(binm[a:b])
    else:
        idx = data.index
        ranges = data.bytes
        isz = idx.dtype.itemsize

        def read(a: int, b: int) -> np.ndarray:
            return np.frombuffer(bytes(ranges.read(a * isz, b * isz)), dtype=idx.dtype)

    isz = idx.dtype.itemsize
    starts = np.asarray(idx.pointers) // isz
    sizes = np.asarray(idx.sizes)
    n = int(starts[-1] + sizes[-1]) if len(sizes) else 0
    return TokenStream(data.prefix, starts, sizes, n, idx.dtype, read)


def kgram_keys(tokens: np.ndarray, at: np.ndarray, k: int) -> np.ndarray:
    """uint32 keys of the k-grams tokens[at[i] : at[i] + k]."""
    h = np.zeros(at.size, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(k):
            h *= MULT
            h += tokens[at + j].astype(np.uint64) + np.uint64(1)
    fmix64(h, out=h)
    return (h >> np.uint64(32)).astype(np.uint32)


def paths(prefix: str, k: int, stride: int, index_dir=None) -> dict[str, Path]:
    p = Path(prefix)
    d = Path(index_dir) if index_dir is not None else p.parent
    base = str(d / f"{p.name}.ngram_k{k}_s{stride}")
    return {
        "keys": Path(base + "_keys.npy"),
        "pos": Path(base + "_pos.npy"),
        "manifest": Path(base + ".manifest.json"),
    }


def _identity(prefix: str) -> dict[str, Any]:
    from pipeline.order.mapfiles import dataset_identity

    return dataset_identity(prefix, full=False)


def build_index(
    stream: TokenStream, k: int = KGRAM, stride: int = STRIDE, index_dir=None
) -> dict[str, Any]:
    """Write the sampled k-gram index of `stream` (see the module docstring); returns the manifest."""
    t0 = time.perf_counter()
    ps = paths(stream.prefix, k, stride, index_dir)
    ps["manifest"].parent.mkdir(parents=True, exist_ok=True)
    ps["manifest"].unlink(missing_ok=True)
    n_anchors = max(0, (stream.n_tokens - k) // stride + 1) if stream.n_tokens >= k else 0
    pos_dtype = np.uint32 if n_anchors < np.iinfo(np.uint32).max else np.int64
    bits = 0
    while (n_anchors >> bits) > PART_ANCHORS and bits < 16:
        bits += 1
    parts = 1 << bits
    with tempfile.TemporaryDirectory(dir=ps["manifest"].parent, prefix=".ngram-") as tmp:
        files = [open(Path(tmp) / f"{i:05d}", "wb") for i in range(parts)]  # noqa: SIM115
        try:
            step = (CHUNK_TOKENS // stride) * stride
            for a in range(0, n_anchors * stride, step):
                anchors = np.arange(
                    a // stride, min(n_anchors, (a + step) // stride), dtype=np.int64
                )
                if not anchors.size:
                    continue
                toks = stream.read(a, int(anchors[-1]) * stride + k)
                keys = kgram_keys(toks, anchors * stride - a, k)
                rec = np.empty(keys.size, dtype=[("k", "<u4"), ("p", "<i8")])
                if bits:
                    part = (keys >> np.uint32(32 - bits)).astype(np.uint16)  # radix-sortable
                    order = np.argsort(part, kind="stable")
                    bounds = np.searchsorted(part[order], np.arange(parts + 1))
                    rec["k"], rec["p"] = keys[order], anchors[order]
                else:
                    bounds = np.array([0, keys.size])
                    rec["k"], rec["p"] = keys, anchors
                for i in range(parts):
                    rec[bounds[i] : bounds[i + 1]].tofile(files[i])
        finally:
            for f in files:
                f.close()
        with atomic_open(ps["keys"], "wb") as fk, atomic_open(ps["pos"], "wb") as fp:
            hdr = {"fortran_order": False, "shape": (n_anchors,)}
            np.lib.format.write_array_header_1_0(fk, {**hdr, "descr": "<u4"})
            np.lib.format.write_array_header_1_0(
                fp, {**hdr, "descr": np.lib.format.dtype_to_descr(np.dtype(pos_dtype))}
            )
            for i in range(parts):
                rec = np.fromfile(Path(tmp) / f"{i:05d}", dtype=[("k", "<u4"), ("p", "<i8")])
                # anchors were appended in increasing order: a stable sort on the key alone
                # leaves ties in anchor order (deterministic bytes)
                order = np.argsort(rec["k"], kind="stable")
                fk.write(rec["k"][order].tobytes())
                fp.write(rec["p"][order].astype(pos_dtype).tobytes())
                del rec, order
    secs = time.perf_counter() - t0
    log.info("ngram index of %s: %d anchors in %.1fs", stream.prefix, n_anchors, secs)
    return write_manifest(
        ps["manifest"],
        kind=KIND,
        config_fingerprint=f"k{k}_s{stride}",
        files=[(ps["keys"], "ngram_keys"), (ps["pos"], "ngram_pos")],
        config={"kgram": k, "stride": stride},
        counts={"anchors": n_anchors, "tokens": stream.n_tokens},
        extra={"dataset": _identity(stream.prefix)},
    )


class NgramIndex:
    def __init__(self, stream: TokenStream, keys: np.ndarray, pos: np.ndarray, k: int, stride: int):
        self.stream, self.keys, self.pos, self.k, self.stride = stream, keys, pos, k, stride

    def candidates(self, q: np.ndarray) -> np.ndarray:
        k, s = self.k, self.stride
        at = np.arange(s, dtype=np.int64)
        qk = kgram_keys(q, at, k)
        lo = np.searchsorted(self.keys, qk, side="left")
        hi = np.searchsorted(self.keys, qk, side="right")
        out = [np.asarray(self.pos[a:b]).astype(np.int64) * s - i
               for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist())) if b > a]  # fmt: skip
        return np.unique(np.concatenate(out)) if out else np.empty(0, np.int64)


def open_index(
    stream: TokenStream, k: int = KGRAM, stride: int = STRIDE, index_dir=None, build: bool = True
) -> NgramIndex | None:
    """The index of `stream` (built when missing or stale and `build`), else None."""
    ps = paths(stream.prefix, k, stride, index_dir)
    doc = None
    if ps["manifest"].exists():
        doc = read_manifest(ps["manifest"])
        if doc.get("kind") != KIND or doc.get("dataset", {}).get("idx_quick_sha256") != _identity(
            stream.prefix
        ).get("idx_quick_sha256"):
            log.info("%s belongs to another dataset; rebuilding", ps["manifest"])
            doc = None
        else:
            for f in doc["files"]:
                p = ps["manifest"].parent / f["name"]
                if not p.exists() or p.stat().st_size != f["bytes"]:
                    raise IntegrityError(
                        f"{p}: missing or not {f['bytes']} bytes; the n-gram index is damaged. "
                        f"Delete {ps['manifest']} to rebuild it."
                    )
    if doc is None:
        if not build:
            return None
        log.warning(
            "building the %d-gram index of %s once (%d tokens, ~%.1f bytes per token, in %s); "
            "at Pile scale this takes hours: --scan searches without it",
            k, stream.prefix, stream.n_tokens, 8 / stride, ps["manifest"].parent,
        )  # fmt: skip
        build_index(stream, k, stride, index_dir)
    keys = np.load(ps["keys"], mmap_mode="r", allow_pickle=False)
    pos = np.load(ps["pos"], mmap_mode="r", allow_pickle=False)
    return NgramIndex(stream, keys, pos, k, stride)


def verify_candidates(stream: TokenStream, q: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """The candidate starts where the whole query matches inside one item."""
    n = q.size
    cand = cand[(cand >= 0) & (cand + n <= stream.n_tokens)]
    if not cand.size:
        return cand
    item = stream.item_of(cand)
    cand = cand[cand + n <= stream.starts[item] + stream.sizes[item]]
    keep = [t for t in cand.tolist() if np.array_equal(stream.read(t, t + n), q)]
    return np.asarray(keep, dtype=np.int64)


def scan(stream: TokenStream, q: np.ndarray, chunk: int = CHUNK_TOKENS) -> np.ndarray:
    """Every start t with stream[t : t+n] == q inside one item, by a vectorised scan."""
    n = q.size
    q = q.astype(stream.dtype)
    out = []
    for a in range(0, max(0, stream.n_tokens - n + 1), chunk):
        toks = stream.read(a, a + chunk + n - 1)
        m = toks.size - n + 1
        if m <= 0:
            continue
        c = np.flatnonzero(toks[:m] == q[0])
        for j in range(1, n):
            if not c.size:
                break
            c = c[toks[c + j] == q[j]]
        out.append(c + a)
    cand = np.concatenate(out) if out else np.empty(0, np.int64)
    if not cand.size:
        return cand
    item = stream.item_of(cand)
    return cand[cand + n <= stream.starts[item] + stream.sizes[item]]


def search(
    stream: TokenStream,
    q: np.ndarray,
    index: NgramIndex | None,
) -> np.ndarray:
    """Sorted token starts of exact matches of q (inside one item)."""
    q = np.asarray(q, dtype=np.int64)
    if index is not None and q.size >= index.k + index.stride - 1:
        return verify_candidates(stream, q.astype(stream.dtype), index.candidates(q))
    return scan(stream, q)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def check(manifest_path: Path, doc: dict, sha256_of=None, quick: bool = False):
    """`pile verify`: an n-gram index whose dataset `.idx` (beside it) changed is stale."""
    ds = doc.get("dataset") or {}
    idx = manifest_path.parent / str(ds.get("idx", ""))
    if not ds.get("idx") or not idx.exists():
        return [], [
            f"{manifest_path}: its dataset {ds.get('idx')} is not beside it; not cross-checked"
        ]
    now = _identity(str(idx)[: -len(".idx")])
    for k in ("idx_bytes", "idx_quick_sha256"):
        if now.get(k) != ds.get(k):
            return [
                (
                    str(manifest_path),
                    f"built from another {idx.name} ({k} {ds.get(k)}, now {now.get(k)}); delete "
                    "it and rerun `pile find --text` to rebuild",
                )
            ], []
    return [], []
