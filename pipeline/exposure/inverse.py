"""Inverse index maps: document -> positions in the flat stream -> sample -> step.

The gpt-neox maps answer "what is in training sample g" (shuffle_idx -> sample_idx -> doc_idx).
These arrays answer the inverse in O(1) per lookup, written once next to the index maps:

    {base}_inv_shuffle.npy   shuffle_idx's dtype, [num_total]: training sample g of sample s
                             (inv_shuffle[shuffle_idx[g]] == g)
    {base}_item_pos.npy      uint32 (int64 beyond 2**32 - 1 positions), [items, epochs]: the doc_idx
                             position of epoch copy e of item i (doc_idx[item_pos[i, e]] == i;
                             copies in doc_idx order, as doc_epoch numbers them)
    {base}_exposure.npy      int64 [4, train_iters + 1, sources]: per step and pile_set_name the
                             tokens trained on, the documents first seen in part, first seen whole
                             once, and first seen whole a second time (bin train_iters = never:
                             after training or in no sample); cumulative sums give any checkpoint
    {base}.inverse.manifest.json   kind "inverse-maps": sha256 of the three, the source names, the
                             sizes and sha256 of the index maps they invert (written last)

with `{base}` = the index maps' `{prefix}_train_0_indexmap_{ns}ns_{sl}sl_{seed}s` (in --index-dir
when given). The flat start of a doc_idx position is not stored (8 bytes x 422M positions at Pile
scale): it is recovered in O(seq_length) from sample_idx, whose row j is flat token j*seq_length
(`flat_start`). Everything is built vectorised in chunks; peak memory at Pythia scale (211M items x
2 epochs, 147M samples) is the per-position first/last step (2 x 4 bytes per position) plus
item_pos (4 bytes per position): ~5 GB.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, IntegrityError
from pipeline.io import atomic_open, sha256_file
from pipeline.manifest import read_manifest, write_manifest
from pipeline.order.config import OrderConfig
from pipeline.order.indexmap import build_doc_epoch
from pipeline.order.mapfiles import ROLES as MAP_ROLES
from pipeline.order.mapfiles import OrderMaps, index_map_base
from pipeline.order.stage import order_command

log = logging.getLogger(__name__)

KIND = "inverse-maps"
VERSION = 1
ROLES = ("inv_shuffle", "item_pos", "exposure")
CHUNK = 1 << 22  # items / positions per vectorised chunk (~100-200 MB of temporaries)
SAMPLE_CHUNK = 1 << 20  # samples per chunk of the sample pass (~3 segments each: ~250 MB)
UNKNOWN_SET = "unknown"
# rows of the exposure histogram
TOKENS, DOCS_PART, DOCS_ONCE, DOCS_TWICE = range(4)


def names(
    prefix: str | os.PathLike, config: OrderConfig, index_dir: str | os.PathLike | None = None
) -> dict[str, Path]:
    """Paths of the inverse maps and their manifest (next to the index maps or in index_dir)."""
    base = str(index_map_base(prefix, config, index_dir))
    return {
        "inv_shuffle": Path(base + "_inv_shuffle.npy"),
        "item_pos": Path(base + "_item_pos.npy"),
        "exposure": Path(base + "_exposure.npy"),
        "manifest": Path(base + ".inverse.manifest.json"),
    }


def _save(path: Path, arr: np.ndarray) -> None:
    with atomic_open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)


# ----------------------------------------------------------------------------------------------
# item sources


def item_sources(
    prefix: str, n_items: int, maps_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, list[str]]:
    """(pile_set_name code per item, names): from the provenance table next to the index maps,
    else the tokenizer's `.docs.parquet` sidecar, else one source "unknown" (data made elsewhere)."""
    from pipeline.order.provenance import ProvenanceTable, Sidecar, sidecar_path

    t = ProvenanceTable.open(prefix, n_items, maps_dir) or ProvenanceTable.open(prefix, n_items)
    if t is not None:
        return np.asarray(t.set).astype(np.uint16), list(t.sets)
    sc = sidecar_path(prefix)
    if sc.exists():
        return Sidecar(sc, n_items).set_codes()
    log.info("%s: no provenance sidecar; every document counts as source %r", prefix, UNKNOWN_SET)
    return np.zeros(n_items, dtype=np.uint16), [UNKNOWN_SET]


# ----------------------------------------------------------------------------------------------
# building


def rows_of(arr: np.ndarray, a: int, b: int) -> np.ndarray:
    """arr[a:b] as an in-memory array. A memory-mapped .npy is read with pread (np.fromfile) so a
    pass over a multi-GB map does not leave its pages mapped into the process (and counted in
    its RSS); anything else is sliced."""
    fn = getattr(arr, "filename", None)
    base = getattr(arr, "offset", None)
    whole = isinstance(getattr(arr, "base", None), mmap.mmap)  # not a view of a memmap
    if fn is not None and base is not None and whole and arr.flags.c_contiguous and arr.ndim:
        b = min(b, arr.shape[0])
        row = int(np.prod(arr.shape[1:], dtype=np.int64)) if arr.ndim > 1 else 1
        if b <= a:
            return np.empty((0, *arr.shape[1:]), dtype=arr.dtype)
        out = np.fromfile(
            fn, dtype=arr.dtype, count=(b - a) * row, offset=int(base) + a * row * arr.itemsize
        )
        return out.reshape(b - a, *arr.shape[1:])
    return np.asarray(arr[a:b])


def invert_shuffle(shuffle_idx: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """inv[s] = g with shuffle_idx[g] == s (shuffle_idx is a permutation of 0..n-1)."""
    n = shuffle_idx.shape[0]
    inv = np.empty(n, dtype=shuffle_idx.dtype)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        inv[rows_of(shuffle_idx, a, b)] = np.arange(a, b, dtype=inv.dtype)
    return inv


def item_positions(
    doc_idx: np.ndarray,
    n_items: int,
    doc_epoch: np.ndarray | None = None,
    chunk: int = CHUNK,
) -> np.ndarray:
    """[n_items, epochs] doc_idx position of each epoch copy of each item (a scatter, no sort)."""
    n = len(doc_idx)
    if n_items == 0 or n % n_items:
        raise IntegrityError(
            f"doc_idx has {n} entries, not a multiple of the {n_items} items: the index maps "
            "belong to another dataset"
        )
    epochs = n // n_items
    if doc_epoch is None:
        doc_epoch = build_doc_epoch(doc_idx, n_items)
    dtype = np.uint32 if n < np.iinfo(np.uint32).max else np.int64
    sentinel = np.iinfo(dtype).max
    out = np.full(n, sentinel, dtype=dtype)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        items = rows_of(doc_idx, a, b).astype(np.int64)
        ep = rows_of(doc_epoch, a, b).astype(np.int64)
        if ep.size and (ep.max() >= epochs or items.min() < 0 or items.max() >= n_items):
            raise IntegrityError(
                f"doc_idx[{a}:{b}] names an item outside 0..{n_items - 1} or an item more than "
                f"{epochs} times: not a gpt-neox doc_idx of this dataset"
            )
        out[items * epochs + ep] = np.arange(a, b, dtype=dtype)
    for a in range(0, n, chunk):
        if (out[a : a + chunk] == sentinel).any():
            raise IntegrityError("doc_idx does not hold every item once per epoch")
    return out.reshape(n_items, epochs)


def position_steps(
    maps: OrderMaps,
    sizes: np.ndarray,
    inv_shuffle: np.ndarray,
    codes: np.ndarray,
    n_sets: int,
    chunk: int = SAMPLE_CHUNK,
    docs: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """(first, last, tokens): per doc_idx position the first step that trains on any of its tokens
    and the step by which all of them were trained (int32; train_iters = never), and the
    [train_iters + 1, n_sets] tokens per step and source. One pass over the samples in stream
    order: sample s spans positions sample_idx[s, 0] .. sample_idx[s + 1, 0] (non-decreasing)."""
    cfg = maps.config
    T, gb = cfg.train_iters, cfg.global_batch
    trained = cfg.train_samples
    doc_idx, sample_idx = maps.doc_idx, maps.sample_idx
    n_pos = len(doc_idx)
    num_total = sample_idx.shape[0] - 1
    # docs=False (token counts only, e.g. the build report): no per-position arrays
    first = np.full(n_pos if docs else 0, T, dtype=np.int32)
    last = np.full(n_pos if docs else 0, -1, dtype=np.int32)
    tokens = np.zeros((T + 1) * n_sets, dtype=np.int64)
    for s0 in range(0, num_total, chunk):
        s1 = min(s0 + chunk, num_total)
        rows = rows_of(sample_idx, s0, s1 + 1).astype(np.int64)
        k0, o0, k1, o1 = rows[:-1, 0], rows[:-1, 1], rows[1:, 0], rows[1:, 1]
        # steps of samples s0-1 .. s1 (neighbours decide who covers a shared boundary token)
        a, b = max(0, s0 - 1), min(num_total, s1 + 1)
        g = np.asarray(inv_shuffle[a:b]).astype(np.int64)
        ext = np.where(g < trained, g // gb, T).astype(np.int32)
        step = ext[s0 - a : s0 - a + (s1 - s0)]
        prev = ext[: s1 - s0] if s0 > 0 else np.concatenate([step[:1], step[:-1]])
        nxt = ext[s0 - a + 1 : s0 - a + 1 + (s1 - s0)]
        if nxt.size < s1 - s0:  # the last sample has no successor: its end token is its own
            nxt = np.concatenate([nxt, step[nxt.size :]])
        # flat token s*L is the last of sample s-1 and the first of sample s: it is trained on
        # at the earlier of the two steps
        b_start = np.minimum(prev, step)
        b_end = np.minimum(step, nxt)
        nseg = k1 - k0 + 1
        r = np.repeat(np.arange(s1 - s0, dtype=np.int64), nseg)
        firstseg = np.zeros(s1 - s0, dtype=np.int64)
        np.cumsum(nseg[:-1], out=firstseg[1:])
        pos = k0[r] + (np.arange(r.size, dtype=np.int64) - firstseg[r])
        p0 = int(k0[0])
        item = rows_of(doc_idx, p0, int(k1[-1]) + 1).astype(np.int64)[pos - p0]
        size = sizes[item].astype(np.int64)
        start = np.where(pos == k0[r], o0[r], 0)
        end = np.where(pos == k1[r], o1[r] + 1, size)
        st = step[r]
        lens = end - start
        tokens += np.bincount(
            st.astype(np.int64) * n_sets + codes[item], weights=lens, minlength=tokens.size
        ).astype(np.int64)
        if not docs:
            continue
        # the step by which all of a segment's tokens were trained on: its interior tokens at
        # this sample's step, a shared boundary token at the earlier of its two samples' steps
        is_first = pos == k0[r]
        is_last = pos == k1[r]
        interior = lens - is_first - is_last > 0
        full = np.where(interior, st, -1)
        full = np.where(is_first, np.maximum(full, b_start[r]), full)
        full = np.where(is_last, np.maximum(full, b_end[r]), full)
        full = full.astype(np.int32)
        new = np.empty(pos.size, dtype=bool)
        new[0] = True
        np.not_equal(pos[1:], pos[:-1], out=new[1:])
        runs = np.flatnonzero(new)
        u = pos[runs]
        first[u] = np.minimum(first[u], np.minimum.reduceat(st, runs))
        last[u] = np.maximum(last[u], np.maximum.reduceat(full, runs))
    if not docs:
        return None, None, tokens.reshape(T + 1, n_sets)
    # positions no sample reaches, and the tail item the last sample covers only in part
    last[last < 0] = T
    k_end, o_end = (int(x) for x in sample_idx[num_total])
    if o_end + 1 < int(sizes[int(doc_idx[k_end])]):
        last[k_end] = T
    return first, last, tokens.reshape(T + 1, n_sets)


def document_counts(
    item_pos: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    codes: np.ndarray,
    n_sets: int,
    T: int,
    chunk: int = CHUNK,
) -> np.ndarray:
    """[3, T + 1, n_sets]: per step and source, the documents first seen in part (any copy), first
    seen whole (a copy's last step), and seen whole a second time (second-smallest last step)."""
    n_items, epochs = item_pos.shape
    out = np.zeros((3, (T + 1) * n_sets), dtype=np.int64)
    for a in range(0, n_items, chunk):
        b = min(a + chunk, n_items)
        ip = rows_of(item_pos, a, b).astype(np.int64)
        f = first[ip].min(axis=1)
        ls = np.sort(last[ip], axis=1)
        b1 = ls[:, 0]
        b2 = ls[:, 1] if epochs > 1 else np.full(b - a, T, dtype=np.int32)
        c = codes[a:b].astype(np.int64)
        for row, st in enumerate((f, b1, b2)):
            out[row] += np.bincount(st.astype(np.int64) * n_sets + c, minlength=out.shape[1])
    return out.reshape(3, T + 1, n_sets)


def _maps_identity(maps: OrderMaps, rel_to: Path) -> dict[str, Any]:
    """Names (relative to `rel_to`), sizes and sha256 of the index maps (the manifest's sha256
    when it lists them at this size, else hashed now)."""
    listed = {}
    if maps.manifest:
        for f in maps.manifest.get("files", []):
            listed[f.get("role")] = f
    out: dict[str, Any] = {}
    for role in MAP_ROLES:
        p = maps.paths[role]
        entry = listed.get(role)
        sha = (
            entry["sha256"] if entry and entry.get("bytes") == p.stat().st_size else sha256_file(p)
        )
        st = p.stat()
        name = os.path.relpath(p, rel_to).replace(os.sep, "/")
        out[role] = {"name": name, "bytes": st.st_size, "sha256": sha, "mtime_ns": st.st_mtime_ns}
    if maps.manifest:
        out["maps_manifest_sha256"] = maps.manifest.get("manifest_sha256")
    return out


def write(
    maps: OrderMaps,
    sizes: np.ndarray,
    index_dir: str | os.PathLike | None = None,
    maps_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Build the inverse maps of `maps` (of the dataset with item `sizes`) and their manifest."""
    t0 = time.perf_counter()
    cfg = maps.config
    paths = names(maps.prefix, cfg, index_dir)
    paths["manifest"].parent.mkdir(parents=True, exist_ok=True)
    paths["manifest"].unlink(missing_ok=True)  # outputs are about to change
    n_items = len(sizes)
    ident = _maps_identity(maps, paths["manifest"].parent)
    codes, sets = item_sources(maps.prefix, n_items, maps_dir)
    inv = invert_shuffle(maps.shuffle_idx)
    _save(paths["inv_shuffle"], inv)
    item_pos = item_positions(maps.doc_idx, n_items, maps.doc_epoch)
    _save(paths["item_pos"], item_pos)
    del item_pos  # read back in chunks by document_counts: not held during the sample pass
    t1 = time.perf_counter()
    first, last, tokens = position_steps(maps, sizes, inv, codes, len(sets))
    del inv
    item_pos = np.load(paths["item_pos"], mmap_mode="r")
    docs = document_counts(item_pos, first, last, codes, len(sets), cfg.train_iters)
    del first, last, item_pos
    hist = np.concatenate([tokens[None], docs])
    _save(paths["exposure"], hist)
    t2 = time.perf_counter()
    log.info("inverse maps: %.1fs, exposure counts: %.1fs", t1 - t0, t2 - t1)
    from pipeline.order.provenance import ProvenanceTable

    prov = ProvenanceTable.open(maps.prefix, n_items, maps_dir) or ProvenanceTable.open(
        maps.prefix, n_items
    )
    doc_id_sorted = None
    if prov is not None:
        ids = prov.doc_id
        doc_id_sorted = bool(
            all(
                (np.diff(np.asarray(ids[a : a + CHUNK + 1])) > 0).all()
                for a in range(0, len(ids), CHUNK)
            )
        )
    return write_manifest(
        paths["manifest"],
        kind=KIND,
        config_fingerprint=ident["shuffle_idx"]["sha256"],
        files=[(paths[r], r) for r in ROLES],
        config={**cfg.to_dict(), "version": VERSION},
        counts={
            "items": n_items,
            "epochs": len(maps.doc_idx) // max(n_items, 1),
            "num_total_samples": maps.num_total,
            "train_samples": cfg.train_samples,
            "steps": cfg.train_iters,
            "tokens_trained": int(tokens[: cfg.train_iters].sum()),
        },
        extra={
            "index_maps": ident,
            "sets": sets,
            "doc_id_sorted": doc_id_sorted,
            "exposure_rows": ["tokens", "docs_part", "docs_once", "docs_twice"],
        },
    )


# ----------------------------------------------------------------------------------------------
# reading


@dataclass
class InverseMaps:
    maps: OrderMaps
    inv_shuffle: np.ndarray
    item_pos: np.ndarray
    exposure: np.ndarray
    manifest: dict[str, Any]
    paths: dict[str, Path]

    @property
    def sets(self) -> list[str]:
        return list(self.manifest["sets"])


def _stale(doc: dict[str, Any], maps_paths: dict[str, Path], full: bool, sha_of=sha256_file):
    """Messages for index maps that differ from the ones the inverse maps were built from."""
    out = []
    for role in MAP_ROLES:
        rec = (doc.get("index_maps") or {}).get(role) or {}
        p = maps_paths[role]
        if not p.exists():
            out.append((str(p), f"{role} map is missing (the inverse maps were built from it)"))
            continue
        if rec.get("bytes") != p.stat().st_size:
            out.append(
                (
                    str(p),
                    f"{p.stat().st_size} bytes; the inverse maps were built from "
                    f"{rec.get('bytes')} bytes",
                )  # fmt: skip
            )
        elif (full or rec.get("mtime_ns") != p.stat().st_mtime_ns) and rec.get("sha256") != sha_of(
            p
        ):
            # quick: a map whose mtime changed is re-hashed (maps without a manifest of ours)
            out.append((str(p), "sha256 differs from the one the inverse maps were built from"))
    return out


def read(
    maps: OrderMaps,
    index_dir: str | os.PathLike | None = None,
) -> InverseMaps | None:
    """The inverse maps of `maps` if built and current (manifest present, sizes match, and the
    index maps' manifest self-hash or sizes unchanged), else None."""
    paths = names(maps.prefix, maps.config, index_dir)
    if not paths["manifest"].exists():
        return None
    try:
        doc = read_manifest(paths["manifest"])
    except IntegrityError as e:
        log.warning("%s; rebuilding the inverse maps", e)
        return None
    if doc.get("kind") != KIND or doc.get("config", {}).get("version") != VERSION:
        return None
    rec = doc.get("index_maps") or {}
    if maps.manifest and rec.get("maps_manifest_sha256") != maps.manifest.get("manifest_sha256"):
        log.info("%s: index maps were rebuilt since; rebuilding", paths["manifest"])
        return None
    if _stale(doc, maps.paths, full=False):
        return None
    for f in doc["files"]:
        p = paths["manifest"].parent / f["name"]
        if not p.exists() or p.stat().st_size != f["bytes"]:
            raise IntegrityError(
                f"{p}: missing or {f['bytes']} bytes expected; the inverse maps are damaged. "
                f"Delete {paths['manifest']} to rebuild them (or run `pile verify`)."
            )
    arrs = {r: np.load(paths[r], mmap_mode="r", allow_pickle=False) for r in ROLES}
    return InverseMaps(maps, arrs["inv_shuffle"], arrs["item_pos"], arrs["exposure"], doc, paths)


def open_inverse(
    maps: OrderMaps,
    sizes: np.ndarray,
    index_dir: str | os.PathLike | None = None,
    maps_dir: str | os.PathLike | None = None,
    rebuild: bool = False,
) -> InverseMaps:
    """The inverse maps of `maps`, built first when missing or stale."""
    inv = None if rebuild else read(maps, index_dir)
    if inv is None:
        log.info("building the inverse maps of %s (%s)", maps.prefix, maps.config.map_tag)
        write(maps, sizes, index_dir, maps_dir)
        inv = read(maps, index_dir)
        if inv is None:  # pragma: no cover - just written
            raise IntegrityError(f"inverse maps of {maps.prefix} unreadable right after writing")
    return inv


# ----------------------------------------------------------------------------------------------
# `pile verify`


def check(manifest_path: Path, doc: dict, sha256_of=sha256_file, quick: bool = False):
    """(problems as (path, message), warnings): inverse maps whose index maps changed, or whose
    arrays do not have the shapes their counts say."""
    base = str(manifest_path)[: -len(".inverse.manifest.json")]
    maps_dir = manifest_path.parent
    rec = doc.get("index_maps") or {}
    maps_paths = {
        r: (maps_dir / rec[r]["name"]) if r in rec else Path(base + f"_{r}.npy") for r in MAP_ROLES
    }
    problems = _stale(doc, maps_paths, full=not quick, sha_of=sha256_of)
    counts = doc.get("counts", {})
    shapes = {
        "inv_shuffle": (counts.get("num_total_samples"),),
        "item_pos": (counts.get("items"), counts.get("epochs")),
        "exposure": (4, counts.get("steps", -1) + 1, len(doc.get("sets", []))),
    }
    for f in doc.get("files", []):
        p = maps_dir / f["name"]
        want = shapes.get(f.get("role"))
        if want is None or not p.exists():
            continue
        try:
            shape = np.load(p, mmap_mode="r", allow_pickle=False).shape
        except (ValueError, OSError) as e:
            problems.append((str(p), f"not a readable .npy ({e})"))
            continue
        if tuple(shape) != tuple(want):
            problems.append((str(p), f"shape {tuple(shape)}, the manifest's counts say {want}"))
    if problems:
        problems = [
            (p, m + f"; rebuild with `pile exposure` ({manifest_path.name})") for p, m in problems
        ]
    return problems, []


def maps_fix(maps: OrderMaps) -> str:
    return order_command(maps.prefix, maps.config)


def describe(inv: InverseMaps) -> dict[str, Any]:
    return json.loads(json.dumps({k: inv.manifest[k] for k in ("counts", "sets")}))


def check_step(step: int, T: int) -> None:
    if step < 0:
        raise ConfigError(f"--step {step} must be >= 0: steps count from 0 (0..{T - 1})")
    if step >= T:
        raise ConfigError(
            f"--step {step} is beyond the end of training: the data has steps 0..{T - 1} "
            f"(train_iters={T}); pass --step below {T}."
        )
