"""Provenance sidecar of a token dataset: `{data_prefix}.docs.parquet`, one row per item.

Columns (row i describes item i of the `.bin/.idx`):

    doc_id          int64   global document id (file_index << 40 | 0-based line), as the reader gives
    file            string  input file the document came from, relative to the inputs' common root
    line            int64   1-based line (or row) in that file
    pile_set_name   string  source name
    tokens          int32   tokens of the item (EOD included when appended) = sizes[i] of the .idx

File-level key/value metadata carries `pile.config_fingerprint`, `pile.tokenizer_sha256`,
`pile.data_prefix`, `pile.format_version`. Rows are written in row groups of exactly
`ROW_GROUP_ROWS` rows (the last one shorter) whatever the task split was, so the file's bytes do not
depend on the worker count.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import IntegrityError
from pipeline.io import atomic_open

ROW_GROUP_ROWS = 1 << 20

SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.int64(), nullable=False),
        pa.field("file", pa.string(), nullable=False),
        pa.field("line", pa.int64(), nullable=False),
        pa.field("pile_set_name", pa.string(), nullable=False),
        pa.field("tokens", pa.int32(), nullable=False),
    ]
)


# Columns are built from their buffers: `pa.array` imports pandas on first use (0.4-0.6 CPU-s in
# every `pile tokenize`), and these columns need no conversion.
def _numeric(values, dtype, pa_type: pa.DataType) -> pa.Array:
    a = np.ascontiguousarray(values, dtype=dtype)
    return pa.Array.from_buffers(pa_type, a.size, [None, pa.py_buffer(a)])


def _strings(table: list[bytes], codes: np.ndarray) -> pa.Array:
    """A string array whose row i is table[codes[i]] (UTF-8 bytes)."""
    lens = np.fromiter(map(len, table), dtype=np.int64, count=len(table))[codes]
    offsets = np.zeros(codes.size + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError("sidecar string column larger than 2 GiB in one append")
    if len(table) == 1:
        data = table[0] * codes.size
    else:
        data = b"".join([table[i] for i in codes.tolist()])
    return pa.Array.from_buffers(
        pa.string(),
        codes.size,
        [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)],
    )


class SidecarWriter:
    """Appends per-task rows and writes them in fixed-size row groups; `finalize()` renames."""

    def __init__(self, path: str | os.PathLike, metadata: Mapping[str, str]) -> None:
        self.path = Path(path)
        self.schema = SCHEMA.with_metadata({k: str(v) for k, v in metadata.items()})
        self._ctx = atomic_open(self.path, "wb")
        self._fh = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(
            self._fh, self.schema, compression="zstd", use_dictionary=["file", "pile_set_name"]
        )
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0
        self._done = False

    def append(self, doc_id, file: str, line, set_names: list[str], set_code, tokens) -> None:
        n = len(doc_id)
        if not (len(line) == len(set_code) == len(tokens) == n):
            raise ValueError("sidecar columns have different lengths")
        if n == 0:
            return
        names = [str(x).encode("utf-8") for x in set_names]
        table = pa.table(
            {
                "doc_id": _numeric(doc_id, np.int64, pa.int64()),
                "file": _strings([file.encode("utf-8")], np.zeros(n, dtype=np.intp)),
                "line": _numeric(line, np.int64, pa.int64()),
                "pile_set_name": _strings(names, np.asarray(set_code, dtype=np.intp)),
                "tokens": _numeric(tokens, np.int32, pa.int32()),
            },
            schema=self.schema,
        )
        self._pending.append(table)
        self._pending_rows += n
        self.rows += n
        while self._pending_rows >= ROW_GROUP_ROWS:
            self._write_group(ROW_GROUP_ROWS)

    def append_table(self, table: pa.Table) -> None:
        """Rows of another sidecar (same columns), e.g. a filtered one."""
        if table.num_rows == 0:
            return
        table = table.select(SCHEMA.names).cast(self.schema)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        while self._pending_rows >= ROW_GROUP_ROWS:
            self._write_group(ROW_GROUP_ROWS)

    def append_npz(self, path: Path) -> None:
        """Rows of a task's partial sidecar (`doc_id, line, set_code, set_names, tokens, source_file`)."""
        with np.load(path, allow_pickle=False) as z:
            self.append(
                z["doc_id"],
                str(z["source_file"]),
                z["line"],
                list(z["set_names"]),
                z["set_code"],
                z["tokens"],
            )

    def _write_group(self, rows: int) -> None:
        table = pa.concat_tables(self._pending).combine_chunks()
        head, rest = table.slice(0, rows), table.slice(rows)
        self._writer.write_table(head.combine_chunks(), row_group_size=rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def finalize(self) -> Path:
        if self._pending_rows:
            self._write_group(self._pending_rows)
        self._writer.close()
        self._done = True
        self._ctx.__exit__(None, None, None)
        return self.path

    def abort(self, exc: BaseException | None = None) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._writer.close()
        finally:
            err = exc or RuntimeError("aborted")
            try:
                self._ctx.__exit__(type(err), err, err.__traceback__)
            except BaseException:  # noqa: BLE001 - the context re-raises what we passed in
                pass

    def __enter__(self) -> SidecarWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or not self._done:
            self.abort(exc)


def read_sidecar(path: str | os.PathLike, dictionary: bool = False) -> pa.Table:
    """The whole sidecar as a table (columns above); `dictionary`: the string columns as
    dictionary arrays (one copy of each distinct name, not one string per row)."""
    try:
        if dictionary:
            return pq.read_table(path, read_dictionary=["file", "pile_set_name"])
        return pq.read_table(path)
    except FileNotFoundError as e:
        raise IntegrityError(f"{path}: sidecar not found.") from e
    except (pa.ArrowInvalid, OSError) as e:
        raise IntegrityError(f"{path}: not a readable parquet sidecar ({e}).") from e


def sidecar_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `pile.*` key/value metadata of a sidecar."""
    try:
        md = pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError) as e:
        raise IntegrityError(f"{path}: not a readable parquet sidecar ({e}).") from e
    return {k.decode(): v.decode() for k, v in md.items() if k.startswith(b"pile.")}


# ----------------------------------------------------------------------------------------------
# structure check (`pile verify` dispatches here)

SIDECAR_SUFFIX = ".docs.parquet"  # `{data_prefix}.docs.parquet` beside `{data_prefix}.idx`
CHECK_BATCH = 1 << 20  # rows per step of the check (bounded memory at Pile scale)


def idx_for(path: str | os.PathLike) -> Path | None:
    """The `.idx` a sidecar describes (`x.docs.parquet` -> `x.idx`), None for another name."""
    p = Path(path)
    if not p.name.endswith(SIDECAR_SUFFIX):
        return None
    return p.with_name(p.name[: -len(SIDECAR_SUFFIX)] + ".idx")


def _schema_problems(path, schema: pa.Schema) -> list[str]:
    problems = []
    for f in SCHEMA:
        if f.name not in schema.names:
            problems.append(f"{path}: column {f.name} is missing (columns: {schema.names})")
        elif schema.field(f.name).type != f.type:
            problems.append(
                f"{path}: column {f.name} is {schema.field(f.name).type}, expected {f.type}"
            )
    return problems


def check(
    path: str | os.PathLike, idx_path: str | os.PathLike | None = None, full: bool = True
) -> list[str]:
    """Problems of a sidecar (empty = fine): a readable parquet with SCHEMA's columns, one row
    per item of `idx_path` (when given and present); with `full` every row is read: `tokens`
    equals the `.idx` sizes, and the ids follow the order tokenize writes (documents in input
    order: doc_id strictly increasing, `line` = the id's line). One problem per rule, its first
    row."""
    from pipeline import docid
    from pipeline.shards.mmidx import MMIDXIndex

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        return [f"{path}: not a readable parquet sidecar ({e})"]
    problems = _schema_problems(path, pf.schema_arrow)
    if problems:
        return problems
    idx = None
    if idx_path is not None and Path(idx_path).exists():
        try:
            idx = MMIDXIndex(idx_path)
        except IntegrityError:
            pass  # reported for the .idx itself
    rows = pf.metadata.num_rows
    if idx is not None and rows != len(idx):
        return [f"{path}: {rows} rows but {idx_path} has {len(idx)} items"]
    if not full:
        return problems
    found: dict[str, str] = {}  # rule -> its first problem
    pos = 0
    prev = None  # the last doc_id of the previous batch
    try:
        for batch in pf.iter_batches(batch_size=CHECK_BATCH, columns=["tokens", "doc_id", "line"]):
            tokens, ids, lines = (c.to_numpy(zero_copy_only=False) for c in batch.columns)
            if idx is not None and "tokens" not in found:
                bad = np.flatnonzero(tokens != np.asarray(idx.sizes[pos : pos + tokens.size]))
                if bad.size:
                    j = pos + int(bad[0])
                    found["tokens"] = (
                        f"{path}: row {j} says {int(tokens[bad[0]])} tokens, {idx_path} item {j} "
                        f"has {int(idx.sizes[j])}"
                    )
            if "doc_id" not in found and ids.size:
                run = ids if prev is None else np.concatenate([[prev], ids])
                bad = np.flatnonzero(np.diff(run) <= 0)
                if bad.size:
                    j = pos + int(bad[0]) + (prev is None)  # run[k + 1] is row pos + k (+ 1)
                    found["doc_id"] = (
                        f"{path}: row {j} has doc_id {int(run[bad[0] + 1])} after "
                        f"{int(run[bad[0]])}; tokenize writes documents in input order (doc_id "
                        "strictly increasing)"
                    )
                elif int(ids.min()) < 0:
                    j = pos + int(np.argmax(ids < 0))
                    found["doc_id"] = f"{path}: row {j} has a negative doc_id {int(ids[j - pos])}"
            if "line" not in found and ids.size:
                bad = np.flatnonzero(docid.split(ids)[1] != lines)
                if bad.size:
                    j = pos + int(bad[0])
                    k = int(bad[0])
                    found["line"] = (
                        f"{path}: row {j} says line {int(lines[k])}, but its doc_id "
                        f"{int(ids[k])} is line {int(docid.split(int(ids[k]))[1])}"
                    )
            prev = int(ids[-1]) if ids.size else prev
            pos += tokens.size
    except (pa.ArrowInvalid, OSError, KeyError) as e:
        return [f"{path}: sidecar cannot be read ({e})"]
    return [found[k] for k in ("tokens", "doc_id", "line") if k in found]
