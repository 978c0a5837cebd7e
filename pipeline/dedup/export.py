"""`--export-text`: the surviving documents as jsonl.zst, every field intact.

One output file per input file, in the same document order, named after the input
(`train/00.jsonl.zst` -> `DEST/00.jsonl.zst`; a `.jsonl`/`.parquet`/... input gets `.jsonl.zst`;
when two inputs would get the same name every output is prefixed with its 5-digit input index).

What a kept document becomes:
  - jsonl inputs: its original line, byte for byte (`pipeline.read.lines.iter_lines`), so top-level
    ids, `pile_set_name` at the top level, a `meta` held as a string and any other field survive
    exactly as they were (the deduped Pile that EleutherAI released had lost them). Only lines the
    reader yields as documents are written: rejected, blank and empty-text lines are not. A last
    line without its newline gets one.
  - parquet / datasets inputs: the row as one JSON object (orjson, columns in table order;
    values orjson cannot encode, e.g. bytes, are written as their str()).
zstd level 3, single-threaded, so the bytes are deterministic. A manifest (kind "dedup-export")
with the sha256 of every file is written last.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import zstandard

from pipeline import docid
from pipeline.config import combine_fingerprints
from pipeline.dedup.tables import load_removed_ids
from pipeline.engine.base import Executor, InlineExecutor
from pipeline.errors import ConfigError, IntegrityError
from pipeline.io import atomic_open
from pipeline.manifest import read_manifest, write_manifest
from pipeline.read import InputFile, ReadConfig, iter_file, resolve_inputs
from pipeline.read.lines import iter_lines
from pipeline.read.reader import iter_rows  # the reader's raw rows, in its row order

_SUFFIX = re.compile(r"(\.jsonl|\.json)?(\.zst|\.zstd|\.gz)?$|\.parquet$", re.IGNORECASE)
ZSTD_LEVEL = 3
JSONL_KINDS = ("jsonl", "jsonl.zst", "jsonl.gz")


def output_names(files: list[InputFile]) -> list[str]:
    names = []
    for f in files:
        base = Path(f.path).name
        stem = _SUFFIX.sub("", base) or base
        if f.split:
            stem = f"{stem}-{f.split}"
        names.append(f"{stem}.jsonl.zst")
    if len(set(names)) != len(names):
        names = [f"{f.index:05d}_{n}" for f, n in zip(files, names)]
    return names


@dataclass(frozen=True)
class _ExportTask:
    file: InputFile
    path: str
    removed: np.ndarray  # sorted doc ids of this file to drop
    read_config: ReadConfig


def _kept_docs(task: _ExportTask) -> Iterator[tuple[int, bool]]:
    """(1-based line or row, kept?) of every document the reader yields, in order."""
    removed = task.removed
    for doc in iter_file(task.file, task.read_config):
        i = np.searchsorted(removed, doc.doc_id)
        yield doc.line, not (i < len(removed) and removed[i] == doc.doc_id)


def _seek(items: Iterator[tuple], number: int, task: _ExportTask) -> tuple:
    """Advance `items` ((line or row number, ...) tuples) to `number` and return that item."""
    for item in items:
        if item[0] == number:
            return item
    raise IntegrityError(  # pragma: no cover - the reader only yields lines that exist
        f"{task.file.where}: line/row {number} vanished between two reads; the input changed "
        "during the export. Rerun it on unchanged input."
    )


def _jsonl_records(task: _ExportTask) -> Iterator[bytes | None]:
    """The original line of each kept document (None for a dropped one)."""
    # an oversized line (never a kept document) streams by without being held whole
    lines = iter_lines(task.file.path, task.file.kind, task.read_config.max_line_bytes)
    try:
        for line, kept in _kept_docs(task):
            raw = _seek(lines, line, task)[2]
            if not kept:
                yield None
            else:
                yield raw if raw.endswith(b"\n") else raw + b"\n"
    finally:
        lines.close()


def _table_records(task: _ExportTask) -> Iterator[bytes | None]:
    """Each kept document's row as one JSON line (None for a dropped one)."""
    rows = enumerate(iter_rows(task.file), start=1)
    for line, kept in _kept_docs(task):
        row = _seek(rows, line, task)[1]
        yield orjson.dumps(row, default=str) + b"\n" if kept else None


def _export_task(task: _ExportTask) -> dict[str, int]:
    written = dropped = 0
    records = _jsonl_records(task) if task.file.kind in JSONL_KINDS else _table_records(task)
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0)
    with atomic_open(Path(task.path), "wb") as raw, cctx.stream_writer(raw, closefd=False) as zw:
        for rec in records:
            if rec is None:
                dropped += 1
                continue
            zw.write(rec)
            written += 1
    return {"written": written, "dropped": dropped}


def check_export_dest(dest: Path, dedup_dir: Path, files: Sequence[InputFile]) -> None:
    """The export must not overwrite what it reads: the inputs, or the dedup run's own files."""
    d = dest.resolve()
    if d == dedup_dir.resolve():
        raise ConfigError(
            f"--export-text {dest}: that is the dedup output directory (--out); its manifest "
            "would be replaced. Export to another directory."
        )
    for f in files:
        p = Path(f.path).resolve()
        if p == d or d in p.parents or p in d.parents:
            raise ConfigError(
                f"--export-text {dest}: it holds, or is inside, the input {f.where}; the "
                "export would overwrite or later be read as input. Export to a directory "
                "outside the inputs."
            )


def export_text(
    inputs: Iterable[Any],
    dedup_dir: str | Path,
    dest: str | Path,
    read_config: ReadConfig | None = None,
    executor: Executor | None = None,
    expected_fingerprint: str | None = None,
) -> dict[str, Any]:
    """Write the documents of `inputs` not removed by the dedup run in `dedup_dir` to `dest`
    (one task per input file on `executor`; default: in this process)."""
    read_config = read_config or ReadConfig()
    files = resolve_inputs(inputs)
    removed = load_removed_ids(dedup_dir, expected_fingerprint)
    dedup_fp = read_manifest(Path(dedup_dir) / "manifest.json")["config_fingerprint"]
    dest = Path(dest)
    check_export_dest(dest, Path(dedup_dir), files)
    dest.mkdir(parents=True, exist_ok=True)
    stale = dest / "manifest.json"
    if stale.exists():
        stale.unlink()
    names = output_names(files)
    fi = docid.file_index(removed)
    tasks = [
        _ExportTask(f, str(dest / name), removed[fi == f.index], read_config)
        for f, name in zip(files, names)
    ]
    results = (executor or InlineExecutor()).map(_export_task, tasks)
    counts = {
        "files": len(files),
        "documents_written": sum(r["written"] for r in results),
        "documents_dropped": sum(r["dropped"] for r in results),
    }
    fingerprint = combine_fingerprints(dedup_fp, read_config.fingerprint(), "export-text-v2")
    write_manifest(
        dest / "manifest.json",
        kind="dedup-export",
        config_fingerprint=fingerprint,
        files=[(dest / n, "text") for n in names],
        config={"dedup_fingerprint": dedup_fp, "zstd_level": ZSTD_LEVEL},
        counts=counts,
    )
    return counts
