"""A document-level token dataset with its gpt-neox index maps: the tokens of any step.

`DocumentData`: a document-level MMIDIDX dataset (`{prefix}.idx/.bin`) + its gpt-neox index
maps. Training sample g is sample s = shuffle_idx[g], i.e. flat tokens
[s*seq_length, s*seq_length + seq_length + 1) of the items in doc_idx order, read exactly as
gpt-neox v1.0 `GPT2Dataset.__getitem__` does (rest of the first item from its offset, whole items
in between, the first offset_l + 1 tokens of the last one). A step is answered in O(global_batch)
time and memory: everything else is memory-mapped and only the rows of the step are touched.
`provenance()` lists, per sample, the item segments it spans (item index, `doc_id`/
`pile_set_name`/file/line from the tokenizer's `.docs.parquet` sidecar, token range inside the
item and inside the sample, and which epoch copy of the item it is).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, IntegrityError
from pipeline.order import prefetch
from pipeline.order.config import OrderConfig
from pipeline.order.integrity import ReadCheck, damaged
from pipeline.order.mapfiles import OrderMaps, load_order
from pipeline.order.prefetch import Prefetch, npy_offset
from pipeline.order.provenance import ProvenanceTable, Sidecar, sidecar_path, table_paths
from pipeline.order.steps import check_step
from pipeline.shards.mmidx import HEADER_SIZE, MMIDXDataset


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
        self._pf_shuffle.willneed(npy_offset(m.shuffle_idx) + g * isz, isz)
        s = np.asarray(m.shuffle_idx[g]).astype(np.int64)
        n_total = m.sample_idx.shape[0] - 1
        bad = np.flatnonzero((s < 0) | (s >= n_total))
        if bad.size:
            j = int(bad[0])
            raise damaged(
                paths["shuffle_idx"],
                f"shuffle_idx[{int(g[j])}] = {int(s[j])} is outside 0..{n_total - 1}",
            )
        row_bytes = 2 * m.sample_idx.dtype.itemsize
        self._pf_sample.willneed(npy_offset(m.sample_idx) + s * row_bytes, 2 * row_bytes)
        a = np.asarray(m.sample_idx[s]).astype(np.int64)
        b = np.asarray(m.sample_idx[s + 1]).astype(np.int64)
        k0, o0, k1, o1 = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
        n_doc = m.doc_idx.shape[0]
        bad = np.flatnonzero(
            (k0 < 0) | (k1 >= n_doc) | (k1 < k0) | (o0 < 0) | (o1 < 0) | ((k1 == k0) & (o1 <= o0))
        )
        if bad.size:
            j = int(bad[0])
            raise damaged(
                paths["sample_idx"],
                f"rows {int(s[j])} {a[j].tolist()} and {int(s[j]) + 1} {b[j].tolist()} are not "
                f"increasing positions of doc_idx (0..{n_doc - 1})",
            )
        dsz = m.doc_idx.dtype.itemsize
        self._pf_doc.willneed(npy_offset(m.doc_idx) + k0 * dsz, (k1 - k0 + 1) * dsz)
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
            raise damaged(
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
            raise damaged(
                self.ds.index.path,
                f"item {i}: sizes[{i}] = {int(size[j])} tokens, pointers[{i}] = {int(ptr[j])}"
                f"{nx}; they disagree (itemsize {self._itemsize}, .bin {nbytes} bytes)",
            )
        start = np.where(pos == k0[row], o0[row], 0)
        end = np.where(pos == k1[row], o1[row] + 1, size)
        lens = end - start
        if lens.size and (lens.min() < 0 or (end > size).any()):
            j = int(np.flatnonzero((lens < 0) | (end > size))[0])
            raise damaged(
                paths["sample_idx"],
                f"sample {int(s[row[j]])} reads tokens [{int(start[j])}, {int(end[j])}) of item "
                f"{int(item[j])}, which has {int(size[j])}; the maps do not match the dataset",
            )
        total = np.bincount(row, weights=lens, minlength=g.size).astype(np.int64)
        bad = np.flatnonzero(total != self.seq_length + 1)
        if bad.size:
            raise damaged(
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
        if not prefetch.NOWAIT:
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
        if prefetch.NOWAIT:
            missing = []
            try:
                for i in todo:
                    try:
                        if (
                            os.preadv(fd, [view[dest[i] : dest[i + 1]]], ol[i], prefetch.NOWAIT)
                            != nl[i]
                        ):
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
        check_step(n, self.num_steps, f"training (train_iters={self.num_steps})")
        gb = self.global_batch
        return self.samples(np.arange(n * gb, (n + 1) * gb, dtype=np.int64))

    def steps(self, a: int, b: int) -> np.ndarray:
        """Steps a..b inclusive, rows in training order (batch_viewer.py's range)."""
        check_step(a, self.num_steps, f"training (train_iters={self.num_steps})")
        check_step(b, self.num_steps, f"training (train_iters={self.num_steps})")
        gb = self.global_batch
        return self.samples(np.arange(a * gb, (b + 1) * gb, dtype=np.int64))

    def epoch_copies(self, pos: np.ndarray, item: np.ndarray) -> np.ndarray:
        """Which repetition of `item` doc_idx position `pos` is (0 = first occurrence)."""
        if self.maps.doc_epoch is not None:
            if self.check is not None:
                self.check.touch(self.maps.paths["doc_epoch"])
            if self._pf_epoch is not None:
                isz = self.maps.doc_epoch.dtype.itemsize
                self._pf_epoch.willneed(npy_offset(self.maps.doc_epoch) + pos * isz, isz)
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
