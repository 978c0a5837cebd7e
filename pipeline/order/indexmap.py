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
(cumulative sums over chunks of doc_idx + np.repeat), so ~211M items x 2 epochs build in a few
GB without any int32 overflow (global positions are int64; positions inside a chunk are int32
only when the chunk's tokens cannot overflow it).

Training sample g is sample s = shuffle_idx[g]; step N is samples [N*global_batch, (N+1)*global_batch)
and checkpoint `stepN` has seen the samples below N*global_batch.

The files these maps are saved in (names, manifest, reading, checks) are pipeline.order.mapfiles;
the `pile order` stage that writes them is pipeline.order.stage.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import InputError, IntegrityError
from pipeline.order.config import INT32_MAX, OrderConfig, num_samples_for  # noqa: F401 (re-exported)

CHUNK = 1 << 18  # doc_idx entries per chunk in the vectorised builders: temporaries stay in cache
# doc_epoch chunk: smaller, so that few items repeat inside one chunk (measured best at 2**16)
EPOCH_CHUNK = 1 << 16


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
    their end positions relative to the chunk by cumsum (int32 when the chunk's tokens surely fit,
    else int64), and T_k = the number of rows j >= next with
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
    shift = L.bit_length() - 1 if L & (L - 1) == 0 else -1  # L = 2**shift: divide by shifting
    item = np.arange(min(chunk, max(n, 1)), dtype=np.intp)
    # positions relative to the chunk: int32 when a chunk's tokens + 2L fit (cumsum of int32 into
    # int32 is ~2.5x faster than into int64, and half the bytes for every later pass)
    biggest = int(sizes.max(initial=0)) if sizes.size else 0
    acc = np.dtype(np.int32 if biggest * chunk + 2 * L < INT32_MAX else np.int64)
    row_pos = np.arange(0, dtype=acc)  # r * L for the rows of one chunk, grown on demand
    for a in range(0, n, chunk):
        if j > num_total:
            break
        c = np.asarray(doc_idx[a : a + chunk])
        sz = np.take(sizes, c)
        ends = np.cumsum(sz, dtype=acc)
        chunk_tokens = int(ends[-1])
        # t = ends + base - j*L + L - 1, then T = t // L (all >= 0; -L < base - j*L <= 0)
        t = ends + (base - j * L + L - 1)
        if shift >= 0:
            t >>= shift
        else:
            t //= L
        rows = int(t[-1])
        take = min(rows, num_total + 1 - j)
        if take > 0:
            counts = t  # T_k - T_(k-1), in place from the end
            counts[1:] -= t[:-1].copy()
            k = np.repeat(item[: c.size], counts)[:take]
            del counts, t
            if row_pos.size < take:
                grow = min(2 * row_pos.size, INT32_MAX // L)  # r * L stays in int32
                row_pos = np.arange(max(take, grow), dtype=acc)
                row_pos *= L
            # start_k - j*L relative to the chunk: ends - sz + base - j*L
            ends -= sz
            ends += base - j * L
            block = np.empty((take, 2), dtype=dtype)
            np.subtract(row_pos[:take], np.take(ends, k), out=block[:, 1], casting="unsafe")
            np.add(k, a, out=block[:, 0], casting="unsafe")
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


def iter_doc_epoch(
    doc_idx: np.ndarray, n_items: int, chunk: int = EPOCH_CHUNK
) -> Iterator[np.ndarray]:
    """doc_epoch in consecutive blocks: for each position, the earlier positions of its item.

    Per chunk: `before = seen[c]`, then `np.add.at(seen, c, 1)` (numpy >= 1.25 runs it as one
    fast pass) and `after = seen[c]`; an item seen once in the chunk has after - before == 1 and
    rank `before`. Only the few items repeated inside the chunk (~C / n_items of the positions for
    a chunk of C) need their in-chunk rank, from a small stable sort of just those positions.
    Three gathers/scatters per entry, no full sort.
    """
    n = len(doc_idx)
    dtype = doc_epoch_dtype(n, n_items)
    seen = np.zeros(max(n_items, 1), dtype=dtype)
    one = dtype.type(1)
    for a in range(0, n, chunk):
        c = np.asarray(doc_idx[a : a + chunk])
        block = np.take(seen, c)
        np.add.at(seen, c, one)
        mult = np.take(seen, c)
        mult -= block  # occurrences of the item in this chunk (mod 2**bits, and < 2**bits)
        dup = np.flatnonzero(mult != one)
        if dup.size:
            items = c[dup]
            order = np.argsort(items, kind="stable")  # positions in order within each item
            items = items[order]
            new_run = np.empty(items.size, dtype=bool)
            new_run[0] = True
            np.not_equal(items[1:], items[:-1], out=new_run[1:])
            run_starts = np.flatnonzero(new_run)
            run_of = np.cumsum(new_run, dtype=np.intp)
            run_of -= 1
            rank = np.arange(items.size, dtype=np.intp) - np.take(run_starts, run_of)
            block[dup[order]] += rank.astype(dtype)
        yield block


def build_doc_epoch(doc_idx: np.ndarray, n_items: int, chunk: int = EPOCH_CHUNK) -> np.ndarray:
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


# Names that lived here when one module held the maps, their files and the stage; still importable
# from here (resolved on first use: the stage imports this module).
_MOVED = {
    **{n: "pipeline.order.stage" for n in ("run_order", "order_command")},
    **{
        n: "pipeline.order.mapfiles"
        for n in (
            "DATASET_NAME", "EPOCH_ROLE", "MANIFEST_KIND", "MAP_SUFFIXES", "ORDER_FIELDS",
            "QUICK_BYTES", "ROLES", "NpyBlocks", "OrderMaps", "dataset_identity",
            "index_map_base", "index_map_paths", "load_order", "order_fingerprint",
        )
    },
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
