"""gpt-neox v1.0 training order: the `doc_idx`, `sample_idx` and `shuffle_idx` index maps.

This reproduces `megatron/data/gpt2_dataset.py::_build_index_mappings` and `helpers.cpp::
build_sample_idx` of gpt-neox v1.0 (the code Pythia was trained with) bit for bit, for the single
training dataset `train_0` that `data_utils.build_weighted_datasets` builds from `train-data-paths`:

    num_samples  = int(math.ceil(train_iters * global_batch * 1.0 * 1.005))   # weight 1.0, +0.5%
    tokens/epoch = sum(sizes)                                                  # np.sum -> int64
    num_epochs   = smallest e with (e * tokens_per_epoch - 1) // seq_length >= num_samples
    rng          = numpy.random.RandomState(seed)       # ONE stream, used twice, in this order:
    doc_idx      = e copies of arange(n_items) as int32, rng.shuffle(doc_idx)  (jointly, no
                   Megatron-LM "separate last epoch")
    sample_idx   = (num_total + 1, 2) int32 [index into doc_idx, token offset] with
                   num_total = (e * tokens_per_epoch - 1) // seq_length; int64 when
                   2 * ((e * tokens_per_epoch - 1) / seq_length + 1) >= 2**31 - 1 (float division,
                   as in gpt2_dataset.py)
    shuffle_idx  = arange(num_total) as uint32 (int64 if num_total >= 2**32 - 2), rng.shuffle

Sample j covers the flat tokens [j*seq_length, j*seq_length + seq_length + 1) of the items laid out
in doc_idx order (consecutive samples share one token), so row j of sample_idx is the position of
flat token j*seq_length: the doc_idx index k of the non-empty item containing it and the offset
inside that item. The C++ loop produces exactly this, including its edge case: when a sample ends
exactly at the end of an item, the next row points at that item's LAST token (offset size - 1),
never at offset 0 of the next item; zero-length items are skipped. Here it is computed vectorised
(cumulative sums over chunks of doc_idx + searchsorted), so ~211M items x 2 epochs build in a few
GB without any int32 overflow (all position arithmetic is int64).

Training sample g is sample s = shuffle_idx[g]; step N is samples [N*global_batch, (N+1)*global_batch)
and checkpoint `stepN` has seen the samples below N*global_batch.

Files (gpt-neox names, `np.save` of exactly these arrays):

    {prefix}_train_0_indexmap_{num_samples}ns_{seq_length}sl_{seed}s_doc_idx.npy
    {prefix}_train_0_indexmap_{num_samples}ns_{seq_length}sl_{seed}s_sample_idx.npy
    {prefix}_train_0_indexmap_{num_samples}ns_{seq_length}sl_{seed}s_shuffle_idx.npy
    {prefix}_train_0_indexmap_{num_samples}ns_{seq_length}sl_{seed}s_doc_epoch.npy   (ours)
    {prefix}_train_0_indexmap_{num_samples}ns_{seq_length}sl_{seed}s.manifest.json   (ours, last)

`doc_epoch[k]` (uint8; uint16/uint32 beyond 256 epochs) is which repetition of item doc_idx[k] position k is (0 = its first
occurrence in doc_idx); `pile inspect --provenance` reads it to report the epoch copy in O(batch).
"""

from __future__ import annotations

import glob
import hashlib
import logging
import math
import os
import re
import shlex
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import combine_fingerprints
from pipeline.errors import ConfigError, InputError, IntegrityError
from pipeline.io import atomic_open, human_bytes, sha256_file
from pipeline.lock import holds_dir_locks, lock_dir
from pipeline.manifest import read_manifest, write_manifest
from pipeline.order.config import INT32_MAX, OrderConfig, num_samples_for  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

DATASET_NAME = "train_0"  # gpt-neox: name=f"train_{i}" for the first of train-data-paths
MANIFEST_KIND = "index-maps"
ROLES = ("doc_idx", "sample_idx", "shuffle_idx")
EPOCH_ROLE = "sidecar"
CHUNK = 1 << 18  # doc_idx entries per chunk in the vectorised builders: temporaries stay in cache
QUICK_BYTES = 1 << 20  # head and tail bytes hashed for the quick dataset identity check


def num_epochs_for(tokens_per_epoch: int, seq_length: int, num_samples: int) -> int:
    """gpt2_dataset._num_epochs: smallest e with (e * tokens - 1) // seq_length >= num_samples."""
    if tokens_per_epoch < 2:
        raise InputError(
            f"the dataset holds {tokens_per_epoch} tokens; gpt-neox needs at least 2 "
            "(tokens_per_epoch > 1) to build index maps. Tokenize a non-empty input."
        )
    # closed form of the gpt-neox while-loop, then checked against its condition
    e = max(1, -(-(num_samples * seq_length + 1) // tokens_per_epoch))
    while e > 1 and ((e - 1) * tokens_per_epoch - 1) // seq_length >= num_samples:
        e -= 1
    while (e * tokens_per_epoch - 1) // seq_length < num_samples:
        e += 1
    return e


def index_map_base(prefix: str | os.PathLike, config: OrderConfig, out_dir=None) -> Path:
    """`{dir}/{basename(prefix)}_train_0_indexmap_{ns}ns_{sl}sl_{seed}s` (no suffix)."""
    p = Path(prefix)
    d = Path(out_dir) if out_dir is not None else p.parent
    return d / f"{p.name}_{DATASET_NAME}_indexmap_{config.map_tag}"


def index_map_paths(prefix, config: OrderConfig, out_dir=None) -> dict[str, Path]:
    """Paths of the three gpt-neox maps, the epoch-copy sidecar and the manifest."""
    base = str(index_map_base(prefix, config, out_dir))
    return {
        "doc_idx": Path(base + "_doc_idx.npy"),
        "sample_idx": Path(base + "_sample_idx.npy"),
        "shuffle_idx": Path(base + "_shuffle_idx.npy"),
        "doc_epoch": Path(base + "_doc_epoch.npy"),
        "manifest": Path(base + ".manifest.json"),
    }


# ----------------------------------------------------------------------------------------------
# the three maps


def build_doc_idx(n_items: int, num_epochs: int, rng: np.random.RandomState) -> np.ndarray:
    """gpt2_dataset._build_doc_idx for documents = arange(n_items): int32, one joint shuffle.

    Same array as `np.mgrid[0:e, 0:n][1].reshape(-1).astype(np.int32)` without its int64 temporaries.
    """
    if n_items > INT32_MAX:
        raise InputError(f"{n_items} items do not fit gpt-neox's int32 doc_idx (max {INT32_MAX})")
    doc_idx = np.empty(n_items * num_epochs, dtype=np.int32)
    base = np.arange(n_items, dtype=np.int32)
    for e in range(num_epochs):
        doc_idx[e * n_items : (e + 1) * n_items] = base
    del base
    rng.shuffle(doc_idx)
    return doc_idx


def sample_idx_dtype(num_epochs: int, tokens_per_epoch: int, seq_length: int) -> np.dtype:
    """gpt2_dataset: `build_sample_idx_int32` if 2 * (num_samples + 1) < int32 max, with the float
    num_samples = (num_epochs * tokens_per_epoch - 1) / seq_length; else int64."""
    num_samples_f = (num_epochs * tokens_per_epoch - 1) / seq_length
    return np.dtype(np.int32) if 2 * (num_samples_f + 1) < INT32_MAX else np.dtype(np.int64)


def iter_sample_idx(
    sizes: np.ndarray,
    doc_idx: np.ndarray,
    seq_length: int,
    num_epochs: int,
    tokens_per_epoch: int,
    chunk: int = CHUNK,
) -> Iterator[np.ndarray]:
    """helpers.cpp build_sample_idx as consecutive (rows, 2) blocks of sample_idx, in row order.

    Row j is the position of flat token j * seq_length. For each chunk of doc_idx (small enough
    that its temporaries stay in cache): the item sizes (the one random gather, as in the C loop),
    their int64 end positions by cumsum, and T_k = the number of rows j >= next with
    j * L < end_k, i.e. floor((end_k - next * L + L - 1) / L) (never negative: end_k >= the
    chunk's base > (next - 1) * L). Item k holds T_k - T_(k-1) rows (0 for an empty item, which is
    how the C loop skips it; a row on an item's last token when a sample ends exactly at its end);
    np.repeat gives the doc_idx column and j * L - start_k the offset column.
    """
    num_total = (num_epochs * tokens_per_epoch - 1) // seq_length
    dtype = sample_idx_dtype(num_epochs, tokens_per_epoch, seq_length)
    if dtype == np.int32 and len(doc_idx) > INT32_MAX:  # pragma: no cover - needs >2**31 items
        raise InputError("doc_idx is longer than int32 sample_idx can address")
    L = int(seq_length)
    j = 0  # next row to emit
    base = 0  # flat position of the first token of the chunk
    n = len(doc_idx)
    sizes = np.asarray(sizes)
    if not sizes.flags.aligned:  # the .idx sizes sit at byte 34: gathers from them are ~20x slower
        sizes = sizes.copy()
    for a in range(0, n, chunk):
        if j > num_total:
            break
        c = np.asarray(doc_idx[a : a + chunk])
        sz = np.take(sizes, c)
        ends = np.cumsum(sz, dtype=np.int64)
        chunk_tokens = int(ends[-1])
        # t = ends + base - j*L + L - 1, then T = t // L (all >= 0)
        t = ends + (base - j * L + L - 1)
        t //= L
        rows = int(t[-1])
        take = min(rows, num_total + 1 - j)
        if take > 0:
            counts = np.diff(t, prepend=0)
            del t
            k = np.repeat(np.arange(c.size, dtype=np.intp), counts)[:take]
            del counts
            # start_k - j*L relative to the chunk: ends - sz + base - j*L
            ends -= sz
            block = np.empty((take, 2), dtype=dtype)
            off = np.arange(take, dtype=np.int64)
            off *= L
            off -= np.take(ends, k)
            off -= base - j * L
            block[:, 1] = off
            k += a
            block[:, 0] = k
            if j == 0:
                # the C loop writes row 0 as (0, 0) before reading any item, even when doc_idx[0]
                # is an empty item; every later row lands in a non-empty item
                block[0] = 0
            j += take
            yield block
        base += chunk_tokens
    if j != num_total + 1:
        raise IntegrityError(
            f"sample_idx build filled {j} of {num_total + 1} rows; doc_idx holds fewer tokens than "
            f"num_epochs x tokens_per_epoch = {num_epochs * tokens_per_epoch}"
        )


def build_sample_idx(
    sizes: np.ndarray,
    doc_idx: np.ndarray,
    seq_length: int,
    num_epochs: int,
    tokens_per_epoch: int,
    chunk: int = CHUNK,
) -> np.ndarray:
    """helpers.cpp build_sample_idx in memory: the blocks of `iter_sample_idx` in one array."""
    num_total = (num_epochs * tokens_per_epoch - 1) // seq_length
    out = np.empty(
        (num_total + 1, 2), dtype=sample_idx_dtype(num_epochs, tokens_per_epoch, seq_length)
    )
    j = 0
    for block in iter_sample_idx(sizes, doc_idx, seq_length, num_epochs, tokens_per_epoch, chunk):
        out[j : j + len(block)] = block
        j += len(block)
    return out


def build_shuffle_idx(size: int, rng: np.random.RandomState) -> np.ndarray:
    """gpt2_dataset._build_shuffle_idx: arange(size) uint32 (int64 if size >= 2**32 - 2), shuffled."""
    dtype = np.uint32
    if size >= (np.iinfo(np.uint32).max - 1):
        dtype = np.int64
    shuffle_idx = np.arange(start=0, stop=size, step=1, dtype=dtype)
    rng.shuffle(shuffle_idx)
    return shuffle_idx


def doc_epoch_dtype(n: int, n_items: int) -> np.dtype:
    epochs = n // max(n_items, 1)
    return np.dtype(np.uint8 if epochs <= 1 << 8 else np.uint16 if epochs <= 1 << 16 else np.uint32)


def iter_doc_epoch(doc_idx: np.ndarray, n_items: int, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """doc_epoch in consecutive blocks: for each position, the earlier positions of its item.

    Per chunk (small, so the sort runs in cache): sort the (item << 32 | position) keys (unique, so
    a fast non-stable sort gives positions in order within each item), rank within each item's run,
    plus `seen[item]` (the item's count before the chunk, read and updated once per run).
    """
    n = len(doc_idx)
    dtype = doc_epoch_dtype(n, n_items)
    seen = np.zeros(max(n_items, 1), dtype=dtype)
    pos = np.arange(min(chunk, max(n, 1)), dtype=np.int64)
    for a in range(0, n, chunk):
        c = np.asarray(doc_idx[a : a + chunk])
        m = c.size
        keys = c.astype(np.int64)
        keys <<= 32
        keys |= pos[:m]
        keys.sort()
        items = keys >> 32
        keys &= 0xFFFFFFFF  # now the chunk positions, grouped by item
        new_run = np.empty(m, dtype=bool)
        new_run[0] = True
        np.not_equal(items[1:], items[:-1], out=new_run[1:])
        run_starts = np.flatnonzero(new_run)
        run_items = items[run_starts]
        del items
        before = np.take(seen, run_items)
        run_of = np.cumsum(new_run, dtype=np.intp)
        run_of -= 1
        # rank = sorted position - start of its run + count before the chunk
        rank = pos[:m] - np.take(run_starts, run_of)
        rank += np.take(before, run_of)
        block = np.empty(m, dtype=dtype)
        block[keys] = rank
        run_len = np.diff(run_starts, append=m)
        run_len += before
        seen[run_items] = run_len
        yield block


def build_doc_epoch(doc_idx: np.ndarray, n_items: int, chunk: int = CHUNK) -> np.ndarray:
    """doc_epoch[k] = number of earlier positions of item doc_idx[k] in doc_idx (its epoch copy)."""
    n = len(doc_idx)
    out = np.empty(n, dtype=doc_epoch_dtype(n, n_items))
    a = 0
    for block in iter_doc_epoch(doc_idx, n_items, chunk):
        out[a : a + block.size] = block
        a += block.size
    return out


@dataclass
class IndexMaps:
    doc_idx: np.ndarray
    sample_idx: np.ndarray
    shuffle_idx: np.ndarray
    num_epochs: int
    tokens_per_epoch: int
    num_total: int


def build_index_maps(sizes: np.ndarray, config: OrderConfig) -> IndexMaps:
    """The three maps in memory, in gpt-neox's order of rng use (for tests and small data)."""
    sizes = np.asarray(sizes)
    tokens_per_epoch = int(np.sum(sizes, dtype=np.int64))
    num_epochs = num_epochs_for(tokens_per_epoch, config.seq_length, config.num_samples)
    rng = np.random.RandomState(seed=config.seed)
    doc_idx = build_doc_idx(len(sizes), num_epochs, rng)
    sample_idx = build_sample_idx(sizes, doc_idx, config.seq_length, num_epochs, tokens_per_epoch)
    shuffle_idx = build_shuffle_idx(sample_idx.shape[0] - 1, rng)
    return IndexMaps(
        doc_idx, sample_idx, shuffle_idx, num_epochs, tokens_per_epoch, sample_idx.shape[0] - 1
    )


# ----------------------------------------------------------------------------------------------
# dataset identity


def dataset_identity(prefix: str | os.PathLike, full: bool = True) -> dict[str, Any]:
    """Identity of the `.idx` the maps are built from: bytes, quick hash, and (if full) sha256."""
    idx = Path(str(prefix) + ".idx")
    try:
        size = idx.stat().st_size
    except FileNotFoundError:
        raise InputError(
            f"{idx}: token dataset index not found; pass the dataset prefix without .idx/.bin "
            "(e.g. out/standard/pile_text_document) or run `pile tokenize` first."
        ) from None
    h = hashlib.sha256(str(size).encode())
    with open(idx, "rb") as f:
        h.update(f.read(QUICK_BYTES))
        if size > 2 * QUICK_BYTES:
            f.seek(size - QUICK_BYTES)
            h.update(f.read(QUICK_BYTES))
        elif size > QUICK_BYTES:
            h.update(f.read())
    d: dict[str, Any] = {"idx": idx.name, "idx_bytes": size, "idx_quick_sha256": h.hexdigest()}
    if full:
        d["idx_sha256"] = sha256_file(idx)
    return d


def order_fingerprint(config: OrderConfig, idx_sha256: str) -> str:
    return combine_fingerprints(config.fingerprint(), idx_sha256)


# ----------------------------------------------------------------------------------------------
# stage


@dataclass
class NpyBlocks:
    """An array written block by block (never whole in memory): its dtype, shape and blocks."""

    dtype: np.dtype
    shape: tuple[int, ...]
    blocks: Iterator[np.ndarray]


def _save_npy(path: Path, arr: np.ndarray | NpyBlocks) -> None:
    """np.save of `arr`, or the same bytes from the blocks of an NpyBlocks, via *.tmp + rename."""
    with atomic_open(path, "wb") as f:
        if isinstance(arr, np.ndarray):
            np.save(f, arr, allow_pickle=True)
            return
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(arr.dtype)),
                  "fortran_order": False, "shape": tuple(arr.shape)}  # fmt: skip
        np.lib.format.write_array_header_1_0(f, header)
        want = math.prod(arr.shape) * np.dtype(arr.dtype).itemsize
        wrote = 0
        for block in arr.blocks:
            if block.dtype != arr.dtype:  # pragma: no cover - a bug in a block builder
                raise IntegrityError(f"{path}: block dtype {block.dtype}, expected {arr.dtype}")
            f.write(np.ascontiguousarray(block).data)
            wrote += block.nbytes
        if wrote != want:
            raise IntegrityError(f"{path}: wrote {wrote} bytes of array data, expected {want}")


def _sizes_of(prefix) -> np.ndarray:
    from pipeline.shards.mmidx import MMIDXIndex

    idx = Path(str(prefix) + ".idx")
    if not idx.exists():
        raise InputError(
            f"{idx}: token dataset index not found; pass the dataset prefix without .idx/.bin "
            "(e.g. out/standard/pile_text_document) or run `pile tokenize` first."
        )
    return MMIDXIndex(idx).sizes


def index_map_bytes(
    n_items: int, num_epochs: int, tokens_per_epoch: int, seq_length: int, doc_epoch: bool = True
) -> int:
    """Bytes the index maps of run_order will take on disk (npy headers aside)."""
    doc_items = n_items * num_epochs
    samples = max(0, (num_epochs * tokens_per_epoch - 1) // seq_length)
    sample_w = 4 if 2 * (samples + 1) < INT32_MAX else 8
    shuffle_w = 4 if samples < np.iinfo(np.uint32).max - 1 else 8
    epoch_w = 1 if num_epochs <= 1 << 8 else 2 if num_epochs <= 1 << 16 else 4
    return (
        doc_items * 4
        + (samples + 1) * 2 * sample_w
        + samples * shuffle_w
        + (doc_items * epoch_w if doc_epoch else 0)
    )


def _check_space(
    out_dir: Path,
    n_items: int,
    num_epochs: int,
    tokens_per_epoch: int,
    config: OrderConfig,
    doc_epoch: bool,
) -> None:
    """Refuse up front when the maps cannot fit: a too-large preset for a small dataset (the
    Pythia preset on a few MB of text means ~10^5 epochs) must not fill the disk halfway."""
    need = index_map_bytes(n_items, num_epochs, tokens_per_epoch, config.seq_length, doc_epoch)
    where = Path(out_dir)
    while not where.exists() and where != where.parent:
        where = where.parent  # the directory is created when the first map is written
    free = shutil.disk_usage(where).free
    if need > free:
        raise ConfigError(
            f"order {out_dir}: the index maps need {human_bytes(need)} ({num_epochs} epochs of "
            f"{n_items} items for {config.num_samples} samples of {config.seq_length} tokens) but "
            f"only {human_bytes(free)} is free there. Pick a preset or --train-iters that fits the "
            "dataset (e.g. --preset sample for small corpora), or free space."
        )


@holds_dir_locks
def run_order(
    prefix: str | os.PathLike,
    config: OrderConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    reuse: bool = False,
    doc_epoch: bool = True,
    provenance: bool = True,
) -> dict[str, Any]:
    """Build the gpt-neox index maps of dataset `prefix` (needs only its `.idx` sizes).

    Writes the three `.npy` maps (+ `_doc_epoch.npy` unless doc_epoch=False, + the random-access
    provenance table of pipeline.order.provenance when `{prefix}.docs.parquet` exists and
    provenance=True) next to the dataset or in `out_dir`, then the manifest (kind "index-maps", roles doc_idx/sample_idx/shuffle_idx,
    fingerprint = combine(config fingerprint, .idx sha256)); returns the manifest dict. With
    `reuse`, an existing complete manifest with the same fingerprint is returned without rebuilding.
    doc_epoch and sample_idx are streamed to their files: peak memory is doc_idx (4 bytes per
    entry) + the sizes + a few MB; at Pythia scale (211M items, 2 epochs) ~2.6 GB.
    """
    paths = index_map_paths(prefix, config, out_dir)
    ident = dataset_identity(prefix, full=True)
    fp = order_fingerprint(config, ident["idx_sha256"])
    lock_dir(paths["manifest"].parent, "order")  # held until return: one writer per directory
    if reuse and paths["manifest"].exists():
        try:
            m = read_manifest(paths["manifest"])
        except IntegrityError:
            m = None
        if (
            m
            and m.get("config_fingerprint") == fp
            and all((paths["manifest"].parent / f["name"]).exists() for f in m["files"])
        ):
            log.info("index maps for %s already built (%s); reusing", prefix, paths["manifest"])
            return m
    sizes = _sizes_of(prefix)
    t0 = time.perf_counter()
    tokens_per_epoch = int(np.sum(sizes, dtype=np.int64))
    num_samples = config.num_samples
    num_epochs = num_epochs_for(tokens_per_epoch, config.seq_length, num_samples)
    log.info(
        "order %s: %d items, %d tokens/epoch, %d samples requested -> %d epochs",
        prefix, len(sizes), tokens_per_epoch, num_samples, num_epochs,
    )  # fmt: skip
    if num_epochs > 100:
        log.warning(
            "order %s: %d epochs of a %d-token dataset for %d samples; is this the intended "
            "preset (e.g. --preset sample for the bundled sample)?",
            prefix, num_epochs, tokens_per_epoch, num_samples,
        )  # fmt: skip
    _check_space(
        paths["manifest"].parent, len(sizes), num_epochs, tokens_per_epoch, config, doc_epoch
    )
    if paths["manifest"].exists():
        paths["manifest"].unlink()  # outputs are about to change: no stale completion marker
    rng = np.random.RandomState(seed=config.seed)
    doc_idx = build_doc_idx(len(sizes), num_epochs, rng)
    _save_npy(paths["doc_idx"], doc_idx)
    t1 = time.perf_counter()
    files: list[tuple[Path, str]] = [(paths["doc_idx"], "doc_idx")]
    if doc_epoch:  # streamed: only doc_idx is ever whole in memory
        epoch = NpyBlocks(doc_epoch_dtype(len(doc_idx), len(sizes)), (len(doc_idx),),
                          iter_doc_epoch(doc_idx, len(sizes)))  # fmt: skip
        _save_npy(paths["doc_epoch"], epoch)
        del epoch
    num_total = (num_epochs * tokens_per_epoch - 1) // config.seq_length
    dtype = sample_idx_dtype(num_epochs, tokens_per_epoch, config.seq_length)
    blocks = iter_sample_idx(sizes, doc_idx, config.seq_length, num_epochs, tokens_per_epoch)
    _save_npy(paths["sample_idx"], NpyBlocks(dtype, (num_total + 1, 2), blocks))
    del doc_idx, blocks
    sample_dtype = dtype.name
    t2 = time.perf_counter()
    shuffle_idx = build_shuffle_idx(num_total, rng)
    shuffle_dtype = shuffle_idx.dtype.name
    _save_npy(paths["shuffle_idx"], shuffle_idx)
    del shuffle_idx
    t3 = time.perf_counter()
    files += [(paths["sample_idx"], "sample_idx"), (paths["shuffle_idx"], "shuffle_idx")]
    if doc_epoch:
        files.append((paths["doc_epoch"], EPOCH_ROLE))
    if provenance:
        from pipeline.order.provenance import build_table

        table = build_table(prefix, len(sizes), out_dir)
        if table is not None:
            files += [(table[k], EPOCH_ROLE) for k in ("doc_id", "set", "meta")]
    log.info("order: doc_idx %.1fs, sample_idx %.1fs, shuffle_idx %.1fs", t1 - t0, t2 - t1, t3 - t2)
    data_rel = os.path.relpath(Path(str(prefix)), paths["manifest"].parent).replace(os.sep, "/")
    return write_manifest(
        paths["manifest"],
        kind=MANIFEST_KIND,
        config_fingerprint=fp,
        files=files,
        config={**config.to_dict(), "name": DATASET_NAME, "num_samples": num_samples},
        counts={
            "items": int(len(sizes)),
            "tokens_per_epoch": tokens_per_epoch,
            "num_epochs": num_epochs,
            "num_samples": num_samples,
            "num_total_samples": num_total,
            "train_samples": config.train_samples,
            "steps": config.train_iters,
            "doc_idx_len": int(len(sizes)) * num_epochs,
        },
        extra={
            "dataset": {**ident, "prefix": data_rel},
            "dtypes": {
                "doc_idx": "int32",
                "sample_idx": sample_dtype,
                "shuffle_idx": shuffle_dtype,
            },
            "reference": "gpt-neox v1.0 megatron/data/gpt2_dataset.py _build_index_mappings",
        },
    )


# ----------------------------------------------------------------------------------------------
# loading


@dataclass
class OrderMaps:
    """Memory-mapped index maps of one dataset + config, checked against the dataset."""

    prefix: str
    config: OrderConfig
    doc_idx: np.ndarray
    sample_idx: np.ndarray
    shuffle_idx: np.ndarray
    doc_epoch: np.ndarray | None
    manifest: dict[str, Any] | None
    paths: dict[str, Path]

    @property
    def num_total(self) -> int:
        return int(self.sample_idx.shape[0] - 1)

    @property
    def num_epochs(self) -> int:
        n = int(self.manifest["counts"]["items"]) if self.manifest else None
        if n:
            return len(self.doc_idx) // n
        return 0


ORDER_FIELDS = ("seq_length", "global_batch", "train_iters", "seed")
MAP_SUFFIXES = ("_doc_idx.npy", "_sample_idx.npy", "_shuffle_idx.npy", "_doc_epoch.npy",
                ".manifest.json")  # fmt: skip


def order_command(prefix, config: OrderConfig, out_dir=None) -> str:
    """The exact `pile order` command that (re)builds the maps of `config` for `prefix`.

    `--preset NAME` when the config equals a preset, else every flag: a flagless `pile order`
    builds the pythia preset, which is the wrong fix for any other config."""
    from pipeline.presets import preset_names

    args = ["pile", "order", shlex.quote(str(prefix))]
    for name in preset_names("order"):
        try:
            same = OrderConfig.from_preset(name) == config
        except ConfigError:  # a broken preset cannot match; the flags below still work
            same = False
        if same:
            args += ["--preset", name]
            break
    else:
        args += [f"--{k.replace('_', '-')} {getattr(config, k)}" for k in ORDER_FIELDS]
    if out_dir is not None:
        args += ["--out-dir", shlex.quote(str(out_dir))]
    return " ".join(args)


def _map_tags(prefix, out_dir) -> set[str]:
    """Tags `{ns}ns_{sl}sl_{seed}s` of every index-map file (any role or manifest) of `prefix`."""
    p = Path(prefix)
    d = Path(out_dir) if out_dir is not None else p.parent
    stem = f"{p.name}_{DATASET_NAME}_indexmap_"
    tags = set()
    for q in d.glob(glob.escape(stem) + "*"):
        rest = q.name[len(stem) :]
        for suffix in MAP_SUFFIXES:
            if rest.endswith(suffix) and re.fullmatch(r"\d+ns_\d+sl_\d+s", rest[: -len(suffix)]):
                tags.add(rest[: -len(suffix)])
    return tags


def _other_maps(prefix, out_dir, config: OrderConfig) -> list[str]:
    """Tags of the maps of `prefix` built for configs other than `config`, each with the flags
    that select it when its manifest records them."""
    p = Path(prefix)
    d = Path(out_dir) if out_dir is not None else p.parent
    out = []
    for tag in sorted(_map_tags(prefix, out_dir) - {config.map_tag}):
        manifest = d / f"{p.name}_{DATASET_NAME}_indexmap_{tag}.manifest.json"
        flags = ""
        try:
            c = read_manifest(manifest).get("config", {})
            flags = " (" + " ".join(f"--{k.replace('_', '-')} {c[k]}" for k in ORDER_FIELDS) + ")"
        except (IntegrityError, OSError, KeyError, AttributeError, TypeError):
            pass  # no or damaged manifest: the tag alone still says which config it is
        out.append(tag + flags)
    return out


def _load_npy(path: Path, fix: str) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise IntegrityError(
            f"{path}: not a readable .npy index map ({e}); rebuild with `{fix}`."
        ) from e


def load_order(
    prefix: str | os.PathLike,
    config: OrderConfig,
    maps_dir: str | os.PathLike | None = None,
    *,
    check_dataset: str = "quick",
) -> OrderMaps:
    """Open the index maps of `prefix` for `config` (memory-mapped).

    Raises InputError when the maps are missing, ConfigError when only maps for other settings
    exist, IntegrityError when some files of this config are missing (an incomplete set) or the
    maps were built from another dataset (the `.idx` changed; checked
    from the manifest: "quick" = size + head/tail hash, "full" = sha256, "none"). Maps without our
    manifest (e.g. built by gpt-neox itself) are accepted after a shape check against the sizes.
    """
    if check_dataset not in ("quick", "full", "none"):
        raise ConfigError(f"check_dataset {check_dataset!r} not in quick, full, none")
    paths = index_map_paths(prefix, config, maps_dir)
    fix = order_command(prefix, config, maps_dir)
    missing = [r for r in ROLES if not paths[r].exists()]
    if missing:
        where = paths["doc_idx"].parent
        present = [k for k in (*ROLES, "doc_epoch", "manifest") if paths[k].exists()]
        if present:
            # some files of THIS config exist: the set is damaged, not built for another config
            raise IntegrityError(
                f"index maps {config.map_tag} of {prefix} are incomplete: "
                f"{', '.join(paths[r].name for r in missing)} missing in {where} (present: "
                f"{', '.join(present)}). Rebuild them with `{fix}`."
            )
        others = _other_maps(prefix, maps_dir, config)
        if others:
            raise ConfigError(
                f"no index maps for {config.map_tag} (seq_length={config.seq_length}, "
                f"train_iters={config.train_iters} x global_batch={config.global_batch} -> "
                f"num_samples={config.num_samples}, seed={config.seed}) next to {prefix} in "
                f"{where}; found maps built with a different config: {'; '.join(others)}. Pass "
                f"the matching --seq-length/--train-iters/--global-batch/--seed, or build these "
                f"with `{fix}`."
            )
        raise InputError(
            f"index maps for {prefix} not found: {paths[missing[0]]} is missing. Build them with "
            f"`{fix}`."
        )
    manifest = None
    if paths["manifest"].exists():
        manifest = read_manifest(paths["manifest"])
        if manifest.get("kind") != MANIFEST_KIND:
            raise IntegrityError(
                f"{paths['manifest']}: kind {manifest.get('kind')!r}, expected {MANIFEST_KIND!r}"
            )
        mc = manifest.get("config", {})
        for k in ("seq_length", "seed"):
            if mc.get(k) != getattr(config, k):
                raise ConfigError(
                    f"{paths['manifest']}: maps were built with {k}={mc.get(k)}, requested "
                    f"{getattr(config, k)}; rebuild with `{fix}`."
                )
        if mc.get("num_samples", config.num_samples) != config.num_samples:
            raise ConfigError(
                f"{paths['manifest']}: maps were built for num_samples={mc.get('num_samples')}, "
                f"requested {config.num_samples}; rebuild with `{fix}`."
            )
        ds = manifest.get("dataset", {})
        if check_dataset != "none":
            ident = dataset_identity(prefix, full=check_dataset == "full")
            keys = ("idx_bytes", "idx_quick_sha256") + (
                ("idx_sha256",) if check_dataset == "full" else ()
            )
            for k in keys:
                if ds.get(k) != ident[k]:
                    raise IntegrityError(
                        f"index maps {paths['manifest'].name} were built from a different dataset: "
                        f"{ident['idx']} {k} is {ident[k]}, the maps record {ds.get(k)}. Rebuild "
                        f"them with `{fix}`."
                    )
    else:
        log.warning("%s: no manifest; using maps without dataset identity check", paths["manifest"])
    doc_idx = _load_npy(paths["doc_idx"], fix)
    sample_idx = _load_npy(paths["sample_idx"], fix)
    shuffle_idx = _load_npy(paths["shuffle_idx"], fix)
    if (
        sample_idx.ndim != 2
        or sample_idx.shape[1] != 2
        or shuffle_idx.ndim != 1
        or doc_idx.ndim != 1
    ):
        raise IntegrityError(
            f"index maps {config.map_tag} in {paths['doc_idx'].parent}: unexpected shapes "
            f"(doc_idx {doc_idx.shape}, sample_idx {sample_idx.shape}, shuffle_idx "
            f"{shuffle_idx.shape}); rebuild them with `{fix}`."
        )
    if shuffle_idx.shape[0] != sample_idx.shape[0] - 1:
        raise IntegrityError(
            f"{paths['shuffle_idx'].name}: {shuffle_idx.shape[0]} entries but sample_idx has "
            f"{sample_idx.shape[0] - 1} samples; the maps are from different builds. Rebuild "
            f"them with `{fix}`."
        )
    if manifest is None:
        sizes = _sizes_of(prefix)
        n = len(sizes)
        if n == 0 or len(doc_idx) % n:
            raise IntegrityError(
                f"{paths['doc_idx'].name}: length {len(doc_idx)} is not a multiple of the "
                f"{n} items of {prefix}; the maps belong to another dataset."
            )
        e = len(doc_idx) // n
        tpe = int(np.sum(sizes, dtype=np.int64))
        if (e * tpe - 1) // config.seq_length != sample_idx.shape[0] - 1:
            raise IntegrityError(
                f"{paths['sample_idx'].name}: {sample_idx.shape[0] - 1} samples, but {e} epochs of "
                f"{tpe} tokens give {(e * tpe - 1) // config.seq_length}; maps belong to another dataset."
            )
    epoch = _load_npy(paths["doc_epoch"], fix) if paths["doc_epoch"].exists() else None
    if epoch is not None and epoch.shape != doc_idx.shape:
        epoch = None
    if config.train_samples > shuffle_idx.shape[0]:
        raise IntegrityError(
            f"maps hold {shuffle_idx.shape[0]} samples, fewer than train_iters x global_batch = "
            f"{config.train_samples}; rebuild them with `{fix}`."
        )
    return OrderMaps(str(prefix), config, doc_idx, sample_idx, shuffle_idx, epoch, manifest, paths)
