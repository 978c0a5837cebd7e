"""Batch-exact replay: the tokens (and their provenance) of training step N.

Two data forms give the same [global_batch, seq_length + 1] token matrix of step N:

- `DocumentData`: a document-level MMIDIDX dataset (`{prefix}.idx/.bin`) + its gpt-neox index
  maps. Training sample g is sample s = shuffle_idx[g], i.e. flat tokens
  [s*seq_length, s*seq_length + seq_length + 1) of the items in doc_idx order, read exactly as
  gpt-neox v1.0 `GPT2Dataset.__getitem__` does (rest of the first item from its offset, whole items
  in between, the first offset_l + 1 tokens of the last one).
- `PreshuffledData`: a pre-shuffled `document` dataset (ours or EleutherAI's for Pythia) where item
  g is training sample g, stored joined (`document.bin`) or byte-sharded
  (`document-00000-of-000NN.bin`, Pythia's naming): step N is one contiguous byte range.

Either answers a step in O(global_batch) time and memory: everything else is memory-mapped and only
the rows of the step are touched. `provenance()` lists, per sample, the item segments it spans
(item index, `doc_id`/`pile_set_name`/file/line from the tokenizer's `.docs.parquet` sidecar, token
range inside the item and inside the sample, and which epoch copy of the item it is).
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, InputError, IntegrityError
from pipeline.manifest import read_manifest
from pipeline.order.indexmap import OrderConfig, OrderMaps, index_map_paths, load_order
from pipeline.order.integrity import ReadCheck
from pipeline.order.provenance import ProvenanceTable, table_paths
from pipeline.shards.mmidx import HEADER_SIZE, MMIDXDataset, MMIDXIndex, data_paths

log = logging.getLogger(__name__)

PRESHUFFLED_NAME = "document"
PRESHUFFLED_MANIFEST = "document.manifest.json"
PRESHUFFLED_KIND = "preshuffled"
SHARD_RE = re.compile(r"^(?P<base>.+)-(?P<i>\d{5})-of-(?P<last>\d{5})\.bin$")
SIDECAR_COLUMNS = ("doc_id", "file", "line", "pile_set_name", "tokens")


def _damaged(path: str | os.PathLike, what: str) -> IntegrityError:
    """The error for a file whose content is inconsistent: names it, what is wrong and the fix."""
    return IntegrityError(
        f"{path} is damaged: {what}. Check it with `pile verify` and rebuild it (`pile build` "
        "redoes the stage that writes it)."
    )


def _check_step(step: int, num_steps: int, what: str) -> None:
    if step < 0:
        raise ConfigError(
            f"step {step} must be >= 0: steps count from 0 ({what} has steps 0..{num_steps - 1})."
        )
    if step >= num_steps:
        raise ConfigError(
            f"step {step} is beyond the end of {what}: it has steps 0..{num_steps - 1} "
            f"({num_steps} steps); pass --step below {num_steps}."
        )


# ----------------------------------------------------------------------------------------------
# provenance sidecar


class Sidecar:
    """`{prefix}.docs.parquet` (row i = item i), read one row group at a time (LRU of 4)."""

    def __init__(self, path: Path, n_items: int) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        try:
            self._pf = pq.ParquetFile(self.path)
        except FileNotFoundError:
            raise InputError(
                f"{self.path}: provenance sidecar not found; it is written by `pile tokenize` next "
                "to the .bin/.idx. Run inspect without --provenance, or re-tokenize."
            ) from None
        except Exception as e:  # pyarrow raises ArrowInvalid & co.
            raise IntegrityError(f"{self.path}: not a readable parquet file ({e}).") from e
        md = self._pf.metadata
        if md.num_rows != n_items:
            raise IntegrityError(
                f"{self.path}: {md.num_rows} rows but the dataset has {n_items} items; the sidecar "
                "belongs to another dataset. Re-tokenize."
            )
        names = set(self._pf.schema_arrow.names)
        missing = [c for c in SIDECAR_COLUMNS if c not in names]
        if missing:
            raise IntegrityError(f"{self.path}: columns {missing} missing (has {sorted(names)}).")
        rows = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        self._starts = np.concatenate([[0], np.cumsum(rows, dtype=np.int64)])
        self._cache: OrderedDict[int, Any] = OrderedDict()

    def _group(self, rg: int):
        if rg in self._cache:
            self._cache.move_to_end(rg)
            return self._cache[rg]
        t = self._pf.read_row_group(rg, columns=list(SIDECAR_COLUMNS))
        self._cache[rg] = t
        if len(self._cache) > 4:
            self._cache.popitem(last=False)
        return t

    def rows(self, items: np.ndarray) -> list[dict[str, Any]]:
        items = np.asarray(items, dtype=np.int64)
        rgs = np.searchsorted(self._starts, items, side="right") - 1
        out: list[dict[str, Any]] = [{} for _ in range(items.size)]
        for rg in np.unique(rgs):
            where = np.flatnonzero(rgs == rg)
            local = items[where] - self._starts[rg]
            t = self._group(int(rg)).take(local)  # convert only the rows asked for
            cols = {c: t.column(c).to_pylist() for c in SIDECAR_COLUMNS}
            for k, j in enumerate(where.tolist()):
                out[j] = {c: cols[c][k] for c in SIDECAR_COLUMNS}
        return out


def sidecar_path(prefix: str | os.PathLike) -> Path:
    return Path(str(prefix) + ".docs.parquet")


# ----------------------------------------------------------------------------------------------
# document-level data + index maps


PAGE = mmap.PAGESIZE
NOWAIT = getattr(os, "RWF_NOWAIT", 0)  # Linux >= 4.14: pread only from the page cache


def _mmap_of(arr) -> mmap.mmap | None:
    """The mmap behind a numpy memmap (or a view of one), if any."""
    while arr is not None:
        mm = getattr(arr, "_mmap", None)
        if isinstance(mm, mmap.mmap):
            return mm
        arr = getattr(arr, "base", None)
    return None


class Prefetch:
    """Cold-cache help for scattered reads of one file: `posix_fadvise(WILLNEED)` on the merged
    pages of all ranges a stage needs (the kernel reads them in parallel) before the stage reads
    them, and MADV_RANDOM on its mmap (no 128 KiB read-around per fault). A step needs ~5
    dependent stages (shuffle_idx -> sample_idx -> doc_idx -> sizes/pointers -> .bin), so a cold
    step costs ~5 rounds of parallel I/O instead of thousands of serial page faults."""

    def __init__(self, path: Path, arrays=()) -> None:
        self.path = Path(path)
        try:
            self.fd: int | None = os.open(self.path, os.O_RDONLY)
        except OSError:
            self.fd = None
        for a in arrays:
            mm = _mmap_of(a)
            if mm is not None and hasattr(mmap, "MADV_RANDOM"):
                try:
                    mm.madvise(mmap.MADV_RANDOM)
                except (OSError, ValueError):  # pragma: no cover - platform specific
                    pass

    def cached(self, offsets: np.ndarray, probes: int = 8) -> bool:
        """True when a few of the pages at `offsets` are in the page cache (1-byte preads with
        RWF_NOWAIT), so a warm step skips the fadvise syscalls."""
        if self.fd is None or not NOWAIT:
            return False
        offsets = np.asarray(offsets, dtype=np.int64)
        pick = offsets[np.linspace(0, offsets.size - 1, min(probes, offsets.size)).astype(np.int64)]
        buf = bytearray(1)
        try:
            for off in pick.tolist():
                if os.preadv(self.fd, [buf], off, NOWAIT) != 1:
                    return False
        except OSError:  # BlockingIOError (not cached), EOPNOTSUPP, ...
            return False
        return True

    def willneed(self, offsets: np.ndarray, lengths: np.ndarray | int, probe: bool = True) -> None:
        if self.fd is None or not hasattr(os, "posix_fadvise"):
            return
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.size == 0 or (probe and self.cached(offsets)):
            return
        first = offsets // PAGE
        last = (offsets + lengths + PAGE - 1) // PAGE
        order = np.argsort(first, kind="stable")
        first, last = first[order], last[order]
        # merge overlapping / adjacent page runs
        run_end = np.maximum.accumulate(last)
        new = np.empty(first.size, dtype=bool)
        new[0] = True
        new[1:] = first[1:] > run_end[:-1]
        starts = first[new]
        ends = np.append(run_end[np.flatnonzero(new)[1:] - 1], run_end[-1])
        for a, b in zip(starts.tolist(), ends.tolist()):
            os.posix_fadvise(self.fd, a * PAGE, (b - a) * PAGE, os.POSIX_FADV_WILLNEED)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:
        self.close()


def _npy_offset(arr) -> int:
    return int(getattr(arr, "offset", 0) or 0)


@dataclass
class Segments:
    """Item segments of a set of samples (vectorised; one row per (sample, doc_idx position))."""

    row: np.ndarray  # which requested sample (0..len(g)-1)
    pos: np.ndarray  # index into doc_idx
    item: np.ndarray  # item index in the dataset
    start: np.ndarray  # first token inside the item
    end: np.ndarray  # one past the last token inside the item
    sample_start: np.ndarray  # first token inside the sample
    ptr: np.ndarray  # byte offset of the item in the .bin
    size: np.ndarray  # tokens of the item


class DocumentData:
    """A document-level token dataset with its gpt-neox index maps."""

    form = "document"

    def __init__(
        self,
        prefix: str | os.PathLike,
        config: OrderConfig,
        maps_dir: str | os.PathLike | None = None,
        *,
        check_dataset: str = "quick",
        check: ReadCheck | None = None,
    ) -> None:
        self.prefix = str(prefix)
        self.config = config
        self.maps_dir = maps_dir
        self.check = check  # manifest size / sha256 checks of the files read (open_data)
        self.ds = MMIDXDataset(self.prefix)
        self.maps: OrderMaps = load_order(
            self.prefix, config, maps_dir, check_dataset=check_dataset
        )
        self.seq_length = config.seq_length
        self.global_batch = config.global_batch
        self.num_steps = config.train_iters
        self.dtype = self.ds.dtype
        self._itemsize = self.dtype.itemsize
        self._sidecar: Sidecar | ProvenanceTable | None = None
        m = self.maps
        self._pf_shuffle = Prefetch(m.paths["shuffle_idx"], [m.shuffle_idx])
        self._pf_sample = Prefetch(m.paths["sample_idx"], [m.sample_idx])
        self._pf_doc = Prefetch(m.paths["doc_idx"], [m.doc_idx])
        self._pf_epoch = (
            Prefetch(m.paths["doc_epoch"], [m.doc_epoch]) if m.doc_epoch is not None else None
        )
        self._pf_idx = Prefetch(self.ds.index.path, [self.ds.index._mm])
        self._pf_bin = Prefetch(self.ds.bin_path, [self.ds.bin])
        self._n_items = len(self.ds)

    def _touch_maps(self) -> None:
        if self.check is not None:
            for role in ("shuffle_idx", "sample_idx", "doc_idx"):
                self.check.touch(self.maps.paths[role])
            self.check.touch(self.ds.index.path)

    def segments(self, g: np.ndarray) -> Segments:
        """The item segments of training samples `g` (gpt-neox __getitem__ order).

        Cheap checks of everything touched (O(len(g)) work, no extra I/O round): shuffle_idx
        values in range, sample_idx rows in range and non-decreasing, doc_idx values in range,
        the items' pointers inside the .bin and consistent with their sizes, every sample
        seq_length + 1 tokens. A failure names the file that is damaged."""
        g = np.asarray(g, dtype=np.int64)
        m = self.maps
        if g.size and (g.min() < 0 or g.max() >= m.shuffle_idx.shape[0]):
            raise ConfigError(
                f"sample index out of range 0..{m.shuffle_idx.shape[0] - 1} of the index maps"
            )
        self._touch_maps()
        paths = m.paths
        isz = m.shuffle_idx.dtype.itemsize
        self._pf_shuffle.willneed(_npy_offset(m.shuffle_idx) + g * isz, isz)
        s = np.asarray(m.shuffle_idx[g]).astype(np.int64)
        n_total = m.sample_idx.shape[0] - 1
        bad = np.flatnonzero((s < 0) | (s >= n_total))
        if bad.size:
            j = int(bad[0])
            raise _damaged(
                paths["shuffle_idx"],
                f"shuffle_idx[{int(g[j])}] = {int(s[j])} is outside 0..{n_total - 1}",
            )
        row_bytes = 2 * m.sample_idx.dtype.itemsize
        self._pf_sample.willneed(_npy_offset(m.sample_idx) + s * row_bytes, 2 * row_bytes)
        a = np.asarray(m.sample_idx[s]).astype(np.int64)
        b = np.asarray(m.sample_idx[s + 1]).astype(np.int64)
        k0, o0, k1, o1 = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
        n_doc = m.doc_idx.shape[0]
        bad = np.flatnonzero(
            (k0 < 0) | (k1 >= n_doc) | (k1 < k0) | (o0 < 0) | (o1 < 0) | ((k1 == k0) & (o1 <= o0))
        )
        if bad.size:
            j = int(bad[0])
            raise _damaged(
                paths["sample_idx"],
                f"rows {int(s[j])} {a[j].tolist()} and {int(s[j]) + 1} {b[j].tolist()} are not "
                f"increasing positions of doc_idx (0..{n_doc - 1})",
            )
        dsz = m.doc_idx.dtype.itemsize
        self._pf_doc.willneed(_npy_offset(m.doc_idx) + k0 * dsz, (k1 - k0 + 1) * dsz)
        nseg = k1 - k0 + 1
        row = np.repeat(np.arange(g.size, dtype=np.int64), nseg)
        first = np.zeros(g.size, dtype=np.int64)
        if g.size > 1:
            np.cumsum(nseg[:-1], out=first[1:])
        pos = k0[row] + (np.arange(row.size, dtype=np.int64) - first[row])
        item = np.asarray(m.doc_idx[pos]).astype(np.int64)
        last = self._n_items - 1
        bad = np.flatnonzero((item < 0) | (item > last))
        if bad.size:
            j = int(bad[0])
            raise _damaged(
                paths["doc_idx"],
                f"doc_idx[{int(pos[j])}] = {int(item[j])} is outside the items 0..{last} of "
                f"{self.prefix}",
            )
        # item sizes: both the pointers and sizes[] (one more page per item on a cold cache,
        # fetched in the same parallel round) so a damaged .idx entry cannot shift the tokens
        self._pf_idx.willneed(HEADER_SIZE + 4 * self._n_items + 8 * item, 16)
        self._pf_idx.willneed(HEADER_SIZE + 4 * item, 4)
        ptr = np.asarray(self.ds.index.pointers[item]).astype(np.int64)
        nxt = np.asarray(self.ds.index.pointers[np.minimum(item + 1, last)]).astype(np.int64)
        size = np.asarray(self.ds.sizes[item]).astype(np.int64)
        nbytes = self.ds.index.data_bytes()
        bad = np.flatnonzero(
            (size < 0)
            | (ptr < 0)
            | (ptr % self._itemsize != 0)
            | (ptr + size * self._itemsize > nbytes)
            | ((item < last) & (nxt - ptr != size * self._itemsize))
        )
        if bad.size:
            j, i = int(bad[0]), int(item[bad[0]])
            nx = f", pointers[{i + 1}] = {int(nxt[j])}" if i < last else ""
            raise _damaged(
                self.ds.index.path,
                f"item {i}: sizes[{i}] = {int(size[j])} tokens, pointers[{i}] = {int(ptr[j])}"
                f"{nx}; they disagree (itemsize {self._itemsize}, .bin {nbytes} bytes)",
            )
        start = np.where(pos == k0[row], o0[row], 0)
        end = np.where(pos == k1[row], o1[row] + 1, size)
        lens = end - start
        if lens.size and (lens.min() < 0 or (end > size).any()):
            j = int(np.flatnonzero((lens < 0) | (end > size))[0])
            raise _damaged(
                paths["sample_idx"],
                f"sample {int(s[row[j]])} reads tokens [{int(start[j])}, {int(end[j])}) of item "
                f"{int(item[j])}, which has {int(size[j])}; the maps do not match the dataset",
            )
        total = np.bincount(row, weights=lens, minlength=g.size).astype(np.int64)
        bad = np.flatnonzero(total != self.seq_length + 1)
        if bad.size:
            raise _damaged(
                paths["sample_idx"],
                f"training sample {int(g[bad[0]])} (sample_idx row {int(s[bad[0]])}) has "
                f"{int(total[bad[0]])} tokens, expected seq_length + 1 = {self.seq_length + 1}; "
                "the index maps do not match the dataset",
            )
        cum = np.cumsum(lens) - lens  # exclusive
        sample_start = cum - (cum[first][row] if row.size else 0)
        return Segments(row, pos, item, start, end, sample_start, ptr, size)

    def samples(self, g: np.ndarray) -> np.ndarray:
        """[len(g), seq_length + 1] tokens of training samples g, in the dataset dtype."""
        g = np.asarray(g, dtype=np.int64)
        seg = self.segments(g)
        lens = seg.end - seg.start
        keep = lens > 0
        offs = seg.ptr[keep] + seg.start[keep] * self._itemsize
        nbytes = lens[keep] * self._itemsize
        if not NOWAIT:
            self._pf_bin.willneed(offs, nbytes)
        if self.check is not None:
            self.check.touch(self.ds.bin_path)
        out = np.empty(g.size * (self.seq_length + 1), dtype=self.dtype)
        view = memoryview(out).cast("B")
        fd = self._pf_bin.fd
        if fd is None:  # pragma: no cover - unreadable .bin is caught when opening
            raise IntegrityError(f"{self.ds.bin_path}: cannot be opened for reading")
        # pread straight into the output: memory O(batch), no file pages mapped into the process.
        # First from the page cache only (RWF_NOWAIT); what is not cached is fadvise'd as one
        # batch (parallel I/O) and then read.
        ol, nl = offs.tolist(), nbytes.tolist()
        dest = np.concatenate([[0], np.cumsum(nbytes)]).tolist()
        todo = range(len(ol))
        if NOWAIT:
            missing = []
            try:
                for i in todo:
                    try:
                        if os.preadv(fd, [view[dest[i] : dest[i + 1]]], ol[i], NOWAIT) != nl[i]:
                            missing.append(i)
                    except BlockingIOError:
                        missing.append(i)
                todo = missing
            except OSError:  # RWF_NOWAIT unsupported here: plain reads
                todo = range(len(ol))
            if todo:
                sel = np.asarray(todo, dtype=np.int64)
                self._pf_bin.willneed(offs[sel], nbytes[sel], probe=False)
        for i in todo:
            got = os.preadv(fd, [view[dest[i] : dest[i + 1]]], ol[i])
            if got != nl[i]:
                raise IntegrityError(
                    f"{self.ds.bin_path}: short read of {nl[i]} bytes at {ol[i]}; the .bin is "
                    "truncated"
                )
        return out.reshape(g.size, self.seq_length + 1)

    def step(self, n: int) -> np.ndarray:
        _check_step(n, self.num_steps, f"training (train_iters={self.num_steps})")
        gb = self.global_batch
        return self.samples(np.arange(n * gb, (n + 1) * gb, dtype=np.int64))

    def steps(self, a: int, b: int) -> np.ndarray:
        """Steps a..b inclusive, rows in training order (batch_viewer.py's range)."""
        _check_step(a, self.num_steps, f"training (train_iters={self.num_steps})")
        _check_step(b, self.num_steps, f"training (train_iters={self.num_steps})")
        gb = self.global_batch
        return self.samples(np.arange(a * gb, (b + 1) * gb, dtype=np.int64))

    def epoch_copies(self, pos: np.ndarray, item: np.ndarray) -> np.ndarray:
        """Which repetition of `item` doc_idx position `pos` is (0 = first occurrence)."""
        if self.maps.doc_epoch is not None:
            if self.check is not None:
                self.check.touch(self.maps.paths["doc_epoch"])
            if self._pf_epoch is not None:
                isz = self.maps.doc_epoch.dtype.itemsize
                self._pf_epoch.willneed(_npy_offset(self.maps.doc_epoch) + pos * isz, isz)
            return np.asarray(self.maps.doc_epoch[pos]).astype(np.int64)
        # no doc_epoch sidecar (maps built by gpt-neox): count earlier occurrences, chunked scan
        doc_idx = self.maps.doc_idx
        want = np.unique(item)
        hits_pos, hits_item = [], []
        step = 1 << 24
        for a in range(0, len(doc_idx), step):
            c = np.asarray(doc_idx[a : a + step])
            h = np.flatnonzero(np.isin(c, want))
            hits_pos.append(h + a)
            hits_item.append(c[h].astype(np.int64))
        hp = np.concatenate(hits_pos)
        hi = np.concatenate(hits_item)
        key = hi * (len(doc_idx) + 1) + hp
        key.sort()
        q = item * (len(doc_idx) + 1) + pos
        return np.searchsorted(key, q) - np.searchsorted(key, item * (len(doc_idx) + 1))

    def _open_sidecar(self) -> Sidecar | ProvenanceTable:
        n = len(self.ds)
        table = ProvenanceTable.open(self.prefix, n, self.maps_dir)
        if table is not None and self.check is not None:
            paths = list(table_paths(self.prefix, self.maps_dir).values())
            if self.check.verify_hashes and not all(self.check.entry(p) for p in paths):
                table = None  # built by an earlier inspect, no manifest lists it: use the parquet
            else:
                for p in paths:
                    self.check.touch(p)
        if table is not None:
            return table
        if self.check is not None and sidecar_path(self.prefix).exists():
            self.check.touch(sidecar_path(self.prefix))
        return Sidecar(sidecar_path(self.prefix), n)

    def provenance(self, g: np.ndarray, with_sidecar: bool = True) -> list[list[dict[str, Any]]]:
        """Per training sample in g: the item segments it spans, in order."""
        g = np.asarray(g, dtype=np.int64)
        seg = self.segments(g)
        epochs = self.epoch_copies(seg.pos, seg.item)
        meta: list[dict[str, Any]] = [{} for _ in range(seg.row.size)]
        if with_sidecar:
            if self._sidecar is None:
                self._sidecar = self._open_sidecar()
            if isinstance(self._sidecar, ProvenanceTable):
                meta = self._sidecar.rows(seg.item, seg.size)
            else:
                meta = self._sidecar.rows(seg.item)
        s = np.asarray(self.maps.shuffle_idx[g]).astype(np.int64)
        out: list[list[dict[str, Any]]] = [[] for _ in range(g.size)]
        for j in range(seg.row.size):
            r = int(seg.row[j])
            n = int(seg.end[j] - seg.start[j])
            if n == 0:
                continue  # an empty item at doc_idx[0] (row 0 of sample_idx)
            d = {
                "item": int(seg.item[j]),
                "doc_idx_pos": int(seg.pos[j]),
                "epoch": int(epochs[j]),
                "item_tokens": [int(seg.start[j]), int(seg.end[j])],
                "sample_tokens": [int(seg.sample_start[j]), int(seg.sample_start[j]) + n],
                "sample_idx": int(s[r]),
            }
            md = meta[j]
            if md:
                d.update(
                    doc_id=int(md["doc_id"]),
                    pile_set_name=md["pile_set_name"],
                    file=md["file"],
                    line=int(md["line"]),
                    item_size=int(md["tokens"]),
                )
            out[r].append(d)
        return out


# ----------------------------------------------------------------------------------------------
# pre-shuffled data


class ByteRanges:
    """Read byte ranges of the concatenation of files (a joined .bin or its byte shards)."""

    def __init__(self, files: list[Path], check: ReadCheck | None = None) -> None:
        self.files = files
        self.check = check  # each file is checked the first time a read touches it
        sizes = [f.stat().st_size for f in files]
        self.starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self.total = int(self.starts[-1])

    def read(self, a: int, b: int) -> bytearray:
        if not 0 <= a <= b <= self.total:
            raise IntegrityError(
                f"byte range [{a}, {b}) is outside the {self.total} bytes of {self.files[0].name}"
                f"{' ...' if len(self.files) > 1 else ''}; the data is truncated"
            )
        buf = bytearray(b - a)
        view = memoryview(buf)
        i = int(np.searchsorted(self.starts, a, side="right") - 1)
        got = 0
        while got < b - a:
            lo = a + got - int(self.starts[i])
            n = min(b - a - got, int(self.starts[i + 1] - self.starts[i]) - lo)
            if n > 0:
                if self.check is not None:
                    self.check.touch(self.files[i])
                with open(self.files[i], "rb", buffering=0) as f:
                    f.seek(lo)
                    m = f.readinto(view[got : got + n])
                if m != n:
                    raise IntegrityError(f"{self.files[i]}: short read at byte {lo}")
                got += n
            i += 1
        return buf


def find_bin_files(prefix: str | os.PathLike) -> list[Path]:
    """`{prefix}.bin`, or Pythia-style shards `{prefix}-00000-of-000NN.bin` (all NN+1 of them)."""
    p = Path(str(prefix))
    joined = Path(str(prefix) + ".bin")
    if joined.exists():
        return [joined]
    shards = []
    for q in sorted(p.parent.glob(p.name + "-?????-of-?????.bin")):
        m = SHARD_RE.match(q.name)
        if m and m.group("base") == p.name:
            shards.append((int(m.group("i")), int(m.group("last")), q))
    if not shards:
        raise InputError(
            f"no data for {p}: neither {joined.name} nor shards {p.name}-00000-of-000NN.bin in "
            f"{p.parent}."
        )
    lasts = {s[1] for s in shards}
    if len(lasts) != 1:
        raise IntegrityError(
            f"{p.parent}: shards of {p.name} disagree on their count: {sorted(lasts)}"
        )
    last = lasts.pop()
    have = [s[0] for s in shards]
    if have != list(range(last + 1)):
        missing = sorted(set(range(last + 1)) - set(have))
        raise InputError(
            f"{p.parent}: shard(s) {', '.join(f'{p.name}-{i:05d}-of-{last:05d}.bin' for i in missing[:5])} "
            f"missing ({len(have)} of {last + 1} present)"
        )
    return [s[2] for s in shards]


DOC_IDX_FORMS = ("pythia", "full")


def preshuffled_doc_idx_form(index: MMIDXIndex) -> str:
    """ "pythia" (doc_idx = [0], EleutherAI's published file) or "full" (0..N, what Megatron-LM's
    IndexedDataset requires); anything else is a damaged index (IntegrityError naming it). Only
    the ends are checked: doc_idx is never used to read pre-shuffled samples."""
    n, d = len(index), int(index.doc_idx.size)
    first = int(index.doc_idx[0]) if d else None
    if d == 1 and first == 0:
        return "pythia"
    if d == n + 1 and first == 0 and int(index.doc_idx[-1]) == n:
        return "full"
    shown = index.doc_idx[:3].tolist() + (["...", int(index.doc_idx[-1])] if d > 3 else [])
    raise _damaged(
        index.path,
        f"its doc_idx has {d} entries {shown}; a pre-shuffled index has either [0] (Pythia's "
        f"form) or 0..{n} ({n + 1} entries, the full form) for its {n} samples",
    )


def _sample_tokens(index: MMIDXIndex, total: int, recorded: int | None) -> int:
    """Tokens per sample of a pre-shuffled index, cross-checked: sizes[0], sizes[-1], the pointer
    stride, the .bin size and the manifest's count must agree; one that does not is named."""
    n, isz = len(index), index.dtype.itemsize

    def ratio(a: int, b: int) -> int | float:
        return a // b if a % b == 0 else a / b

    views: dict[str, int | float] = {"sizes[0]": int(index.sizes[0])}
    views[f"sizes[{n - 1}]"] = int(index.sizes[-1])
    if n > 1:
        views["pointers[1] / itemsize"] = ratio(int(index.pointers[1]), isz)
        views[f"pointers[{n - 1}] / ({n - 1} x itemsize)"] = ratio(
            int(index.pointers[-1]), (n - 1) * isz
        )
    binview = f".bin bytes / ({n} samples x itemsize)"
    if total % (n * isz) == 0:
        views[binview] = total // (n * isz)
    if recorded is not None:
        want = int(recorded)
    else:
        values = list(views.values())
        want = max(set(values), key=lambda v: (values.count(v), v == values[0]))
    wrong = {k: v for k, v in views.items() if v != want}
    if not wrong or wrong.keys() == {binview}:
        return want  # the index agrees: a wrong .bin size is reported by the caller
    agree = [k for k in views if k not in wrong]
    said = ", ".join(f"{k} = {v}" for k, v in wrong.items())
    idx_views = {k: v for k, v in views.items() if k != binview}
    if recorded is not None and len(set(idx_views.values())) == 1:
        got = next(iter(idx_views.values()))
        raise IntegrityError(
            f"{index.path}: samples of {got} tokens, but its manifest records {want}: the index "
            "and document.manifest.json are from different runs. Re-run `pile preshuffle`."
        )
    src = ", ".join((["the manifest"] if recorded is not None else []) + agree)
    raise _damaged(index.path, f"{said}, but {src} give {want} tokens per sample")


class PreshuffledData:
    """A pre-shuffled `document` dataset: item g = training sample g (seq_length + 1 tokens)."""

    form = "preshuffled"

    def __init__(
        self,
        prefix: str | os.PathLike,
        global_batch: int,
        source: DocumentData | None = None,
        source_error: str | None = None,
        *,
        check: ReadCheck | None = None,
        sample_tokens: int | None = None,
    ) -> None:
        self.prefix = str(prefix)
        self.source_error = source_error  # why the recorded source could not be opened, if so
        self.check = check
        if check is not None:
            check.touch(self.prefix + ".idx")
        self.index = MMIDXIndex(self.prefix + ".idx")
        self.files = find_bin_files(self.prefix)
        self.bytes = ByteRanges(self.files, check)
        self.dtype = self.index.dtype
        self._itemsize = self.dtype.itemsize
        n = len(self.index)
        if n == 0:
            raise IntegrityError(f"{self.prefix}.idx holds no samples")
        self.doc_idx_form = preshuffled_doc_idx_form(self.index)
        self.seq_length = _sample_tokens(self.index, self.bytes.total, sample_tokens) - 1
        self.global_batch = int(global_batch)
        self.num_steps = n // self.global_batch
        if self.num_steps == 0:
            raise ConfigError(
                f"{self.prefix}: {n} samples is less than one global batch of {global_batch}; "
                "pass the --global-batch the data was written with."
            )
        expected = int(self.index.pointers[-1]) + int(self.index.sizes[-1]) * self._itemsize
        if self.bytes.total != expected:
            total = self.bytes.total
            how = (
                f"{total - expected} bytes too many (a shard is too long or from another build)"
                if total > expected
                else f"{expected - total} bytes too few (a shard is truncated or missing)"
            )
            raise IntegrityError(
                f"{self.prefix}: the .bin data holds {total} bytes but the index needs "
                f"{expected}: {how}. Check the shards with `pile verify`."
            )
        self.source = source
        if source is not None and source.seq_length != self.seq_length:
            raise ConfigError(
                f"--source dataset uses seq_length {source.seq_length} but {self.prefix} holds "
                f"samples of {self.seq_length + 1} tokens"
            )

    def _range(self, g0: int, g1: int) -> np.ndarray:
        sizes = np.asarray(self.index.sizes[g0:g1])
        L1 = self.seq_length + 1
        if (sizes != L1).any():
            bad = g0 + int(np.flatnonzero(sizes != L1)[0])
            raise _damaged(
                self.index.path,
                f"sizes[{bad}] = {int(self.index.sizes[bad])} tokens, but every sample of this "
                f"pre-shuffled dataset has {L1}",
            )
        step = L1 * self._itemsize
        ptrs = np.asarray(self.index.pointers[g0:g1])
        want = np.arange(g0, g1, dtype=np.int64) * step
        if (ptrs != want).any():
            bad = int(np.flatnonzero(ptrs != want)[0])
            raise _damaged(
                self.index.path,
                f"pointers[{g0 + bad}] = {int(ptrs[bad])}, but sample {g0 + bad} of {L1} tokens "
                f"starts at byte {int(want[bad])}",
            )
        a, b = g0 * step, g1 * step
        buf = self.bytes.read(a, b)
        return np.frombuffer(buf, dtype=self.dtype).reshape(g1 - g0, L1)

    def samples(self, g: np.ndarray) -> np.ndarray:
        g = np.asarray(g, dtype=np.int64)
        if g.size and (g.min() < 0 or g.max() >= len(self.index)):
            raise ConfigError(f"sample index out of range 0..{len(self.index) - 1}")
        out = np.empty((g.size, self.seq_length + 1), dtype=self.dtype)
        # contiguous runs are read in one go
        i = 0
        while i < g.size:
            j = i + 1
            while j < g.size and g[j] == g[j - 1] + 1:
                j += 1
            out[i:j] = self._range(int(g[i]), int(g[j - 1]) + 1)
            i = j
        return out

    def step(self, n: int) -> np.ndarray:
        _check_step(n, self.num_steps, f"the pre-shuffled data {self.prefix}")
        gb = self.global_batch
        return self._range(n * gb, (n + 1) * gb)

    def steps(self, a: int, b: int) -> np.ndarray:
        _check_step(a, self.num_steps, f"the pre-shuffled data {self.prefix}")
        _check_step(b, self.num_steps, f"the pre-shuffled data {self.prefix}")
        gb = self.global_batch
        return self._range(a * gb, (b + 1) * gb)

    def provenance(self, g: np.ndarray, with_sidecar: bool = True) -> list[list[dict[str, Any]]]:
        if self.source is None:
            why = (
                f" (the source recorded in its manifest is not usable: {self.source_error})"
                if self.source_error
                else ""
            )
            raise InputError(
                f"{self.prefix} is a pre-shuffled dataset: it has no document boundaries. "
                "Provenance needs the document-level dataset and its index maps: pass --source "
                f"PREFIX (the *_text_document prefix it was built from){why}."
            )
        return self.source.provenance(g, with_sidecar)


# ----------------------------------------------------------------------------------------------
# opening DATA


def _strip(data: str) -> str:
    for ext in (".idx", ".bin"):
        if data.endswith(ext):
            return data[: -len(ext)]
    m = SHARD_RE.match(Path(data).name)
    if m:
        return str(Path(data).parent / m.group("base"))
    return data


def _preshuffled_manifest(prefix: str) -> dict[str, Any] | None:
    p = Path(prefix)
    m = p.parent / (p.name + ".manifest.json")
    if m.exists():
        doc = read_manifest(m)
        if doc.get("kind") == PRESHUFFLED_KIND:
            return doc
    return None


FIND_DEPTH = 3  # pile_out/standard/preshuffled/document.idx is 3 levels below pile_out
FIND_MAX = 20  # datasets listed in the "pass one of these" error


def find_datasets(directory: str | os.PathLike) -> list[str]:
    """DATA arguments found in `directory` and up to FIND_DEPTH levels below it, sorted: the
    prefix of every `*.idx` (a pre-shuffled `document.idx` as its directory), spelled as
    `directory`/relative path. Bounded walk (hidden and `_`-prefixed directories skipped), so a
    wrong argument such as the build's output directory gets a useful error quickly."""
    root = Path(directory)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        depth = len(rel.parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
        if depth >= FIND_DEPTH:
            dirnames[:] = []
        for f in sorted(filenames):
            if not f.endswith(".idx"):
                continue
            if f == PRESHUFFLED_NAME + ".idx":
                found.append(str(root / rel) if depth else str(root))
            else:
                found.append(str(root / rel / f[: -len(".idx")]))
        if len(found) > FIND_MAX:
            break
    return sorted(found)


def resolve_data(data: str | os.PathLike) -> tuple[str, str]:
    """(prefix, form guess) of DATA: a prefix, a .idx/.bin/shard path, or a directory."""
    s = str(data)
    p = Path(s)
    if p.is_dir():
        if (p / (PRESHUFFLED_NAME + ".idx")).exists():
            return str(p / PRESHUFFLED_NAME), "preshuffled"
        cands = sorted(p.glob("*_text_document.idx"))
        if len(cands) == 1:
            return str(cands[0])[: -len(".idx")], "document"
        found = find_datasets(p)
        if found:
            shown = found[:FIND_MAX] + (["..."] if len(found) > FIND_MAX else [])
            raise InputError(
                f"{p} is a directory, not one dataset; pass one of the datasets found in it "
                f"(a *_text_document prefix or a pre-shuffled directory): {', '.join(shown)}."
            )
        raise InputError(
            f"{p} is a directory without {PRESHUFFLED_NAME}.idx or *_text_document.idx files (none "
            f"within {FIND_DEPTH} levels below it either); pass a token dataset prefix (e.g. "
            "pile_out/standard/pile_text_document) or a pre-shuffled directory (e.g. "
            "pile_out/standard/preshuffled)."
        )
    prefix = _strip(s)
    if not Path(prefix + ".idx").exists():
        raise InputError(
            f"{data}: no dataset here ({prefix}.idx not found). Pass a token dataset prefix "
            "(without .bin/.idx) or a pre-shuffled `document` directory."
        )
    if Path(prefix).name == PRESHUFFLED_NAME or _preshuffled_manifest(prefix) is not None:
        return prefix, "preshuffled"
    return prefix, "document"


def resolve_form(data: str | os.PathLike, form: str = "auto") -> tuple[str, str]:
    """(dataset prefix, "document" | "preshuffled") of DATA; `form` "auto" guesses from disk."""
    if form not in ("auto", "document", "preshuffled"):
        raise ConfigError(f"--form {form!r} not in auto, document, preshuffled")
    prefix, guess = resolve_data(data)
    return prefix, guess if form == "auto" else form


def open_data(
    data: str | os.PathLike,
    config: OrderConfig,
    *,
    maps_dir: str | os.PathLike | None = None,
    form: str = "auto",
    source: str | os.PathLike | None = None,
    check_dataset: str = "quick",
    verify_hashes: bool = False,
) -> DocumentData | PreshuffledData:
    """Open DATA for inspection (form "auto" | "document" | "preshuffled").

    Every file read is checked against the manifest that lists it: its size always, its sha256
    with `verify_hashes` (pipeline.order.integrity; only the files a read touches are hashed)."""
    prefix, form = resolve_form(data, form)
    check = ReadCheck(verify_hashes)
    if form == "document":
        # every one of these is read for any step: check them before anything parses them, so
        # damage is reported as such (exit 4 naming the file), not as a puzzling config mismatch
        paths = index_map_paths(prefix, config, maps_dir)
        for p in (
            *data_paths(prefix),
            *(paths[r] for r in ("doc_idx", "sample_idx", "shuffle_idx")),
        ):
            if p.is_file():
                check.touch(p)
        return DocumentData(prefix, config, maps_dir, check_dataset=check_dataset, check=check)
    src = None
    source_error = None
    m = _preshuffled_manifest(prefix)
    if source is not None:
        src = DocumentData(
            _strip(str(source)), config, maps_dir, check_dataset=check_dataset, check=check
        )
    else:
        info = (m or {}).get("source") or {}
        if info.get("prefix"):
            sp = (Path(prefix).parent / info["prefix"]).resolve()
            md = info.get("maps_dir")
            md = (Path(prefix).parent / md).resolve() if md else None
            if Path(str(sp) + ".idx").exists():
                try:
                    src = DocumentData(sp, config, md, check_dataset=check_dataset, check=check)
                except (InputError, ConfigError) as e:
                    log.info("source of %s not usable for provenance: %s", prefix, e)
                    source_error = str(e)
                except IntegrityError as e:
                    # damaged source maps/data must not hide the pre-shuffled tokens, which are
                    # complete on their own; --provenance reports why it has no source
                    log.warning("source of %s not usable for provenance: %s", prefix, e)
                    source_error = str(e)
    recorded = ((m or {}).get("counts") or {}).get("sample_tokens")
    return PreshuffledData(
        prefix,
        config.global_batch,
        src,
        source_error,
        check=check,
        sample_tokens=recorded if isinstance(recorded, int) else None,
    )


def to_jsonable(obj: Any) -> Any:
    return json.loads(
        json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    )


# ----------------------------------------------------------------------------------------------
# reports


def step_report(
    data: DocumentData | PreshuffledData,
    step: int,
    *,
    sample: int | None = None,
    decode: bool = False,
    provenance: bool = False,
    tokens: np.ndarray | None = None,
) -> dict[str, Any]:
    """JSON-able description of step N (or one sample of it): tokens, text, provenance."""
    gb = data.global_batch
    if sample is not None and sample < 0:
        raise ConfigError(f"--sample {sample} must be >= 0: samples of a step are 0..{gb - 1}")
    if sample is not None and not 0 <= sample < gb:
        raise ConfigError(
            f"--sample {sample} is outside the batch: a step has samples 0..{gb - 1} "
            f"(global_batch={gb})"
        )
    batch = data.step(step) if tokens is None else tokens
    rows = range(gb) if sample is None else [sample]
    g = np.array([step * gb + i for i in rows], dtype=np.int64)
    prov = data.provenance(g) if provenance else None
    enc = None
    if decode:
        from pipeline.tokenize.encoder import load_encoder

        enc = load_encoder()
    samples = []
    for j, i in enumerate(rows):
        d: dict[str, Any] = {"batch_index": i, "sample": int(g[j]), "tokens": batch[i].tolist()}
        if enc is not None:
            d["text"] = enc.decode(batch[i].tolist())
        if prov is not None:
            d["provenance"] = prov[j]
        samples.append(d)
    return {
        "step": step,
        "form": data.form,
        "data": data.prefix,
        "global_batch": gb,
        "seq_length": data.seq_length,
        "dtype": np.dtype(data.dtype).name,
        "samples_range": [step * gb, (step + 1) * gb],
        "samples": samples,
    }


def format_text(report: dict[str, Any]) -> str:
    lines = [
        f"step {report['step']}: samples [{report['samples_range'][0]}, "
        f"{report['samples_range'][1]}) of {report['form']} data {report['data']} "
        f"(global_batch={report['global_batch']}, seq_length={report['seq_length']}, "
        f"{report['dtype']})"
    ]
    for s in report["samples"]:
        lines.append(f"sample {s['batch_index']} (training sample {s['sample']}):")
        lines.append("  tokens: " + " ".join(str(t) for t in s["tokens"]))
        if "text" in s:
            lines.append("  text: " + json.dumps(s["text"], ensure_ascii=False))
        for p in s.get("provenance", []):
            where = ""
            if "doc_id" in p:
                where = f" doc_id {p['doc_id']} [{p['pile_set_name']}] {p['file']}:{p['line']}"
            lines.append(
                f"  item {p['item']}{where} epoch copy {p['epoch']}: item tokens "
                f"[{p['item_tokens'][0]}, {p['item_tokens'][1]}) -> sample tokens "
                f"[{p['sample_tokens'][0]}, {p['sample_tokens'][1]})"
            )
    return "\n".join(lines) + "\n"


SUMMARY_CHARS = 80  # decoded characters shown per sample
SUMMARY_DOCS = 5  # source documents listed per sample


def format_summary(
    report: dict[str, Any], *, origin: str | None = None, no_provenance: str | None = None
) -> str:
    """A readable page for a terminal: per sample its token count, the source documents it
    spans (pile_set_name, doc_id, file:line, tokens taken) and the first SUMMARY_CHARS
    characters of its decoded text. `report` is step_report(..., decode=True[, provenance])."""
    r0, r1 = report["samples_range"]
    form = "pre-shuffled" if report["form"] == PRESHUFFLED_KIND else "document-level"
    lines = [
        f"step {report['step']} of {report['data']} ({form}): training samples {r0}..{r1 - 1}, "
        f"{report['seq_length'] + 1} tokens each"
    ]
    if origin:
        lines.append(origin)
    if no_provenance:
        lines.append(f"no source documents: {no_provenance}")
    names = [p.get("pile_set_name", "") for s in report["samples"] for p in s.get("provenance", ())]
    width = max(map(len, names), default=0)
    for s in report["samples"]:
        prov = s.get("provenance")
        n = len(s["tokens"])
        docs = "" if prov is None else f" from {len(prov)} document{'s' * (len(prov) != 1)}"
        lines.append(f"sample {s['batch_index']} (training sample {s['sample']}): {n} tokens{docs}")
        for p in (prov or [])[:SUMMARY_DOCS]:
            took = p["sample_tokens"][1] - p["sample_tokens"][0]
            src = (
                f"{p['pile_set_name']:<{width}}  doc_id {p['doc_id']}  {p['file']}:{p['line']}"
                if "doc_id" in p
                else f"item {p['item']}"
            )
            copy = f"  (epoch copy {p['epoch']})" if p["epoch"] else ""
            lines.append(f"  {took:>6} tokens  {src}{copy}")
        if prov is not None and len(prov) > SUMMARY_DOCS:
            lines.append(f"  ... and {len(prov) - SUMMARY_DOCS} more documents")
        if "text" in s:
            t = s["text"]
            head = json.dumps(t[:SUMMARY_CHARS], ensure_ascii=False)
            lines.append(f"  text: {head}{' ...' if len(t) > SUMMARY_CHARS else ''}")
    lines.append(
        "all token ids: --format text (with --decode --provenance for full text and spans), "
        "--format json or --format npy"
    )
    return "\n".join(lines) + "\n"


def save_steps_npy(
    data: DocumentData | PreshuffledData, a: int, b: int, path: Path
) -> tuple[int, ...]:
    """Steps a..b (inclusive) as one .npy of shape ((b-a+1)*global_batch, seq_length+1), written
    one step at a time (memory O(batch)); same bytes as batch_viewer.py's np.save."""
    from pipeline.io import atomic_open

    if b < a:
        raise ConfigError(f"--end-step {b} is before --start-step {a}")
    _check_step(a, data.num_steps, "the data")
    _check_step(b, data.num_steps, "the data")
    gb = data.global_batch
    shape = ((b - a + 1) * gb, data.seq_length + 1)
    dtype = np.dtype(data.dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with atomic_open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header) if _header_version(header) == (1, 0) else (
            np.lib.format.write_array_header_2_0(f, header)
        )
        for n in range(a, b + 1):
            f.write(np.ascontiguousarray(data.step(n)).tobytes())
    return shape


def _header_version(header: dict[str, Any]) -> tuple[int, int]:
    # np.save picks 1.0 unless the header does not fit a 2-byte length
    return (1, 0) if len(repr(header)) < 65000 else (2, 0)
