"""Per-input-file signature artifacts: `signatures/<index:06d>.npy` and `<index:06d>.parquet`.

`<index>.npy` is a standard NumPy .npy file (format 1.0, '<u4', C order) of shape (rows, K): row i
is the MinHash signature of the document on 0-based line i of input file `index`, i.e. of doc_id
`docid.make(index, i + 1)`. Lines without a document (blank, rejected, empty text) and documents without
shingles hold the sentinel 0xFFFFFFFF in every column. Rows indexed by line let later steps
memory-map the file and fetch any document's signature without a lookup table. The array is
streamed to disk: a fixed 128-byte header is reserved, rows are appended, and the header is
rewritten with the final shape before the atomic rename.

`<index>.parquet` lists the file's documents (doc_id, line, pile_set_name, chars, n_shingles) with
the config fingerprint in the schema metadata (`pile.config_fingerprint`); the .npy is covered by
the stage manifest's sha256 (the .npy header has no room for metadata).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io import atomic_open

HEADER_BYTES = 128
FINGERPRINT_KEY = b"pile.config_fingerprint"
KIND_KEY = b"pile.kind"
_FILL_ROWS = 1 << 14


def signature_paths(out_dir: Path, file_index: int) -> tuple[Path, Path]:
    """(`signatures/<index>.npy`, `signatures/<index>.parquet`) of input file `index`."""
    base = Path(out_dir) / "signatures"
    return base / f"{file_index:06d}.npy", base / f"{file_index:06d}.parquet"


def npy_header(rows: int, cols: int, descr: str = "<u4") -> bytes:
    d = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}"
    pad = HEADER_BYTES - 10 - len(d) - 1
    if pad < 0:  # pragma: no cover - needs > 10**80 rows
        raise ValueError("shape too large for the reserved header")
    header = (d + " " * pad + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


class SignatureArrayWriter:
    """Streams (row index, signature) pairs into a line-indexed .npy (see module doc)."""

    def __init__(self, f: BinaryIO, num_perm: int) -> None:
        self.f = f
        self.k = num_perm
        self.rows = 0
        f.write(b"\0" * HEADER_BYTES)

    def _fill(self, n: int) -> None:
        if n <= 0:
            return
        block = np.full((min(n, _FILL_ROWS), self.k), 0xFFFFFFFF, dtype="<u4")
        while n > 0:
            m = min(n, len(block))
            self.f.write(block[:m].tobytes())
            n -= m
        return

    def add(self, rows: np.ndarray, sig: np.ndarray) -> None:
        """rows: ascending int64 line indices (all >= the rows already written); sig: uint32 [n, K]."""
        if len(rows) == 0:
            return
        if int(rows[0]) < self.rows or (len(rows) > 1 and np.any(np.diff(rows) <= 0)):
            raise ValueError("signature rows must be strictly ascending across calls")
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(rows)]])
        sig = np.ascontiguousarray(sig, dtype="<u4")
        for s, e in zip(starts.tolist(), ends.tolist()):
            self._fill(int(rows[s]) - self.rows)
            self.f.write(sig[s:e].tobytes())
            self.rows = int(rows[e - 1]) + 1

    def finish(self) -> None:
        self.f.seek(0)
        self.f.write(npy_header(self.rows, self.k))
        self.f.seek(0, 2)


DOCS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.int64()),
        ("line", pa.int64()),
        ("pile_set_name", pa.string()),
        ("chars", pa.int64()),
        ("n_shingles", pa.int64()),
    ]
)


def with_fingerprint(schema: pa.Schema, fingerprint: str, kind: str) -> pa.Schema:
    return schema.with_metadata({FINGERPRINT_KEY: fingerprint.encode(), KIND_KEY: kind.encode()})


class DocsTableWriter:
    """Streams the per-file document table to parquet in row groups of `group_rows`."""

    def __init__(self, path: Path, fingerprint: str, group_rows: int = 1 << 20) -> None:
        self.schema = with_fingerprint(DOCS_SCHEMA, fingerprint, "dedup-docs")
        self.path = Path(path)
        self.group_rows = group_rows
        self._cols: dict[str, list] = {n: [] for n in self.schema.names}
        self._buffered = 0
        self._ctx = atomic_open(self.path, "wb")
        self._f = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(self._f, self.schema, compression="zstd")

    def add(self, doc_id, line, set_names, chars, n_shingles) -> None:
        self._cols["doc_id"].append(np.asarray(doc_id, dtype=np.int64))
        self._cols["line"].append(np.asarray(line, dtype=np.int64))
        self._cols["pile_set_name"].extend(set_names)
        self._cols["chars"].append(np.asarray(chars, dtype=np.int64))
        self._cols["n_shingles"].append(np.asarray(n_shingles, dtype=np.int64))
        self._buffered += len(set_names)
        if self._buffered >= self.group_rows:
            self._flush()

    def _flush(self) -> None:
        if not self._buffered:
            return
        arrays = []
        for name in self.schema.names:
            col = self._cols[name]
            if name == "pile_set_name":
                arrays.append(pa.array(col, type=pa.string()))
            else:
                arrays.append(pa.array(np.concatenate(col), type=pa.int64()))
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self._cols = {n: [] for n in self.schema.names}
        self._buffered = 0

    def close(self, error: BaseException | None = None) -> None:
        if error is None:
            self._flush()
            self._writer.close()
            self._ctx.__exit__(None, None, None)
        else:
            try:
                self._writer.close()
            finally:
                self._ctx.__exit__(type(error), error, error.__traceback__)


def write_table(path: Path, table: pa.Table, fingerprint: str, kind: str) -> None:
    """Write a parquet table atomically with the fingerprint in its schema metadata."""
    table = table.replace_schema_metadata(
        {FINGERPRINT_KEY: fingerprint.encode(), KIND_KEY: kind.encode()}
    )
    with atomic_open(path, "wb") as f:
        pq.write_table(table, f, compression="zstd")


def table_fingerprint(path: Path) -> str | None:
    meta = pq.read_schema(path).metadata or {}
    v = meta.get(FINGERPRINT_KEY)
    return v.decode() if v is not None else None
