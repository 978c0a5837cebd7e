"""Random-access provenance table built once from the tokenizer's `.docs.parquet` sidecar.

The sidecar (row i = item i; columns doc_id, file, line, pile_set_name, tokens) is compressed
parquet in row groups of 1M rows: fine for scans, but one training step touches ~3 items per sample
scattered over the whole dataset, i.e. nearly every row group at Pythia scale. `pile order` (or the
first `pile inspect --provenance`) therefore writes, next to the index maps:

    {base}.provenance_doc_id.npy    int64 per item: the reader's doc_id
    {base}.provenance_set.npy       uint8 (uint16 beyond 255 names) per item: pile_set_name code
    {base}.provenance.json          set names, file_index -> file name, LINE_BITS, and the
                                    sidecar's size + sha256 (the table is rebuilt when they change)

with `{base}` = `{dir}/{basename(prefix)}`. `file` and `line` are derived from doc_id
(`file_index << LINE_BITS | (line - 1)`, pipeline.docid), which the build verifies on every
row; a sidecar that does not follow that identity gets no table (inspect then reads the parquet).
Lookups are memory-mapped: O(batch) per step. 9 bytes per item (1.9 GB for 211M items).

`Sidecar` reads the `.docs.parquet` itself (the rows asked for, one row group at a time; or the
pile_set_name column whole) when no table is usable.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import docid
from pipeline.errors import InputError, IntegrityError
from pipeline.io import atomic_write_text, open_new, sha256_file, tmp_path

log = logging.getLogger(__name__)

FORMAT = "pile-provenance-table"
VERSION = 1


def sidecar_path(prefix: str | os.PathLike) -> Path:
    return Path(str(prefix) + ".docs.parquet")


def table_paths(
    prefix: str | os.PathLike, out_dir: str | os.PathLike | None = None
) -> dict[str, Path]:
    p = Path(str(prefix))
    d = Path(out_dir) if out_dir is not None else p.parent
    base = str(d / p.name)
    return {
        "doc_id": Path(base + ".provenance_doc_id.npy"),
        "set": Path(base + ".provenance_set.npy"),
        "meta": Path(base + ".provenance.json"),
    }


def build_table(
    prefix: str | os.PathLike, n_items: int, out_dir: str | os.PathLike | None = None
) -> dict[str, Path] | None:
    """Build the table from `{prefix}.docs.parquet`; None when the sidecar is absent or does not
    follow the doc_id identity. Streams one row group at a time."""
    import pyarrow.parquet as pq

    sc = sidecar_path(prefix)
    if not sc.exists():
        return None
    pf = pq.ParquetFile(sc)
    if pf.metadata.num_rows != n_items:
        raise IntegrityError(
            f"{sc}: {pf.metadata.num_rows} rows but the dataset has {n_items} items; the sidecar "
            "belongs to another dataset. Re-tokenize."
        )
    paths = table_paths(prefix, out_dir)
    paths["meta"].parent.mkdir(parents=True, exist_ok=True)
    sets: dict[str, int] = {}
    files: dict[int, str] = {}
    tmp_id, tmp_set = tmp_path(paths["doc_id"]), tmp_path(paths["set"])
    tmp_id.unlink(missing_ok=True)  # a leftover (or a planted link) goes, never its target
    ids = np.lib.format.open_memmap(tmp_id, mode="w+", dtype=np.int64, shape=(n_items,))
    codes = np.zeros(n_items, dtype=np.uint16)
    row = 0
    ok = True
    try:
        for rg in range(pf.metadata.num_row_groups):
            t = pf.read_row_group(rg, columns=["doc_id", "file", "line", "pile_set_name"])
            d = t.column("doc_id").to_numpy()
            n = d.size
            lines = t.column("line").to_numpy()
            if not np.array_equal(lines, docid.row(d) + 1):
                ok = False
                break
            fcol = t.column("file").combine_chunks().dictionary_encode()
            fidx = docid.file_index(d)
            fcodes = fcol.indices.to_numpy(zero_copy_only=False)
            fnames = fcol.dictionary.to_pylist()
            # each file_index must name one file
            pairs = np.unique(np.stack([fidx, fcodes.astype(np.int64)]), axis=1)
            for fi, fc in pairs.T.tolist():
                name = fnames[fc]
                if files.setdefault(int(fi), name) != name:
                    ok = False
            if not ok:
                break
            scol = t.column("pile_set_name").combine_chunks().dictionary_encode()
            local = np.array([sets.setdefault(x, len(sets)) for x in scol.dictionary.to_pylist()])
            ids[row : row + n] = d
            if local.size:
                codes[row : row + n] = local[scol.indices.to_numpy(zero_copy_only=False)]
            row += n
        ids.flush()
        del ids
        if not ok:
            log.warning(
                "%s: line/file columns do not follow doc_id = file_index << %d | line - 1; "
                "no provenance table (inspect reads the parquet instead)", sc, docid.LINE_BITS,
            )  # fmt: skip
            tmp_id.unlink()
            return None
        set_dtype = np.uint8 if len(sets) <= 256 else np.uint16
        with open_new(tmp_set) as f:
            np.save(f, codes.astype(set_dtype))
        os.replace(tmp_id, paths["doc_id"])
        os.replace(tmp_set, paths["set"])
    except BaseException:
        for p in (tmp_id, tmp_set):
            p.unlink(missing_ok=True)
        raise
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "items": n_items,
        "line_bits": docid.LINE_BITS,
        "sets": sorted(sets, key=sets.get),
        "files": {str(k): v for k, v in sorted(files.items())},
        "sidecar": os.path.relpath(sc, paths["meta"].parent).replace(os.sep, "/"),
        "sidecar_bytes": sc.stat().st_size,
        "sidecar_sha256": sha256_file(sc),
    }
    atomic_write_text(paths["meta"], json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return paths


class ProvenanceTable:
    """Memory-mapped per-item doc_id / pile_set_name / file / line."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.meta = json.loads(paths["meta"].read_text(encoding="utf-8"))
        self.doc_id = np.load(paths["doc_id"], mmap_mode="r")
        self.set = np.load(paths["set"], mmap_mode="r")
        self.sets = self.meta["sets"]
        self.files = {int(k): v for k, v in self.meta["files"].items()}

    @classmethod
    def open(
        cls, prefix: str | os.PathLike, n_items: int, out_dir: str | os.PathLike | None = None
    ) -> ProvenanceTable | None:
        """The table if it exists and matches the current sidecar (size check), else None."""
        paths = table_paths(prefix, out_dir)
        if not all(p.exists() for p in paths.values()):
            return None
        try:
            t = cls(paths)
        except (OSError, ValueError, KeyError):
            return None
        sc = sidecar_path(prefix)
        if (
            t.meta.get("items") != n_items
            or not sc.exists()
            or t.meta.get("sidecar_bytes") != sc.stat().st_size
            or t.doc_id.shape != (n_items,)
            or t.meta.get("line_bits") != docid.LINE_BITS  # another id layout: rebuild
        ):
            return None
        return t

    def rows(self, items: np.ndarray, sizes: np.ndarray) -> list[dict[str, Any]]:
        items = np.asarray(items, dtype=np.int64)
        ids = np.asarray(self.doc_id[items])
        codes = np.asarray(self.set[items])
        out = []
        for d, c, n in zip(ids.tolist(), codes.tolist(), np.asarray(sizes).tolist()):
            out.append(
                {
                    "doc_id": d,
                    "file": self.files.get(docid.file_index(d), ""),
                    "line": docid.row(d) + 1,
                    "pile_set_name": self.sets[c],
                    "tokens": int(n),
                }
            )
        return out


# ----------------------------------------------------------------------------------------------
# the sidecar itself, when there is no table

SIDECAR_COLUMNS = ("doc_id", "file", "line", "pile_set_name", "tokens")


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

    def set_codes(self) -> tuple[np.ndarray, list[str]]:
        """(pile_set_name code per item as uint16, the names in code order): one column scan,
        a row group at a time."""
        codes = np.zeros(int(self._starts[-1]), dtype=np.uint16)
        sets: dict[str, int] = {}
        row = 0
        for rg in range(self._pf.metadata.num_row_groups):
            col = self._pf.read_row_group(rg, columns=["pile_set_name"]).column(0)
            col = col.combine_chunks().dictionary_encode()
            local = np.array([sets.setdefault(x, len(sets)) for x in col.dictionary.to_pylist()])
            n = len(col)
            if local.size:
                codes[row : row + n] = local[col.indices.to_numpy(zero_copy_only=False)]
            row += n
        return codes, sorted(sets, key=sets.get)

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
