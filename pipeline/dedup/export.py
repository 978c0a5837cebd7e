"""`--export-text`: the surviving documents as Pile-format jsonl.zst, metadata intact.

One output file per input file, in the same document order, named after the input
(`train/00.jsonl.zst` -> `DEST/00.jsonl.zst`; a `.jsonl`/`.parquet`/... input gets `.jsonl.zst`;
when two inputs would get the same name every output is prefixed with its 5-digit input index).
Each line is `{"text": ..., "meta": {...}}` (orjson, keys in that order, the document's whole `meta`
object as read, so pile_set_name and any other fields survive; the deduped Pile that EleutherAI
released had lost them). zstd level 3, single-threaded, so the bytes are deterministic. A manifest
(kind "dedup-export") with the sha256 of every file is written last.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import zstandard

from pipeline.config import combine_fingerprints
from pipeline.engine import map_ordered
from pipeline.io import atomic_open
from pipeline.manifest import read_manifest, write_manifest
from pipeline.read import LINE_BITS, InputFile, ReadConfig, iter_file, resolve_inputs

_SUFFIX = re.compile(r"(\.jsonl|\.json)?(\.zst|\.zstd|\.gz)?$|\.parquet$", re.IGNORECASE)
ZSTD_LEVEL = 3


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


def _export_task(task: _ExportTask) -> dict[str, int]:
    written = dropped = 0
    removed = task.removed
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0)
    with atomic_open(Path(task.path), "wb") as raw, cctx.stream_writer(raw, closefd=False) as zw:
        for doc in iter_file(task.file, task.read_config):
            i = np.searchsorted(removed, doc.doc_id)
            if i < len(removed) and removed[i] == doc.doc_id:
                dropped += 1
                continue
            zw.write(orjson.dumps({"text": doc.text, "meta": doc.meta}) + b"\n")
            written += 1
    return {"written": written, "dropped": dropped}


def export_text(
    inputs: Iterable[Any],
    dedup_dir: str | Path,
    dest: str | Path,
    read_config: ReadConfig | None = None,
    workers: int = 1,
    expected_fingerprint: str | None = None,
) -> dict[str, Any]:
    """Write the documents of `inputs` not removed by the dedup run in `dedup_dir` to `dest`."""
    from pipeline.dedup.stage import load_removed_ids

    read_config = read_config or ReadConfig()
    files = resolve_inputs(inputs)
    removed = load_removed_ids(dedup_dir, expected_fingerprint)
    dedup_fp = read_manifest(Path(dedup_dir) / "manifest.json")["config_fingerprint"]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    stale = dest / "manifest.json"
    if stale.exists():
        stale.unlink()
    names = output_names(files)
    fi = removed >> LINE_BITS
    tasks = [
        _ExportTask(f, str(dest / name), removed[fi == f.index], read_config)
        for f, name in zip(files, names)
    ]
    results = map_ordered(_export_task, tasks, workers)
    counts = {
        "files": len(files),
        "documents_written": sum(r["written"] for r in results),
        "documents_dropped": sum(r["dropped"] for r in results),
    }
    fingerprint = combine_fingerprints(dedup_fp, read_config.fingerprint(), "export-text-v1")
    write_manifest(
        dest / "manifest.json",
        kind="dedup-export",
        config_fingerprint=fingerprint,
        files=[(dest / n, "text") for n in names],
        config={"dedup_fingerprint": dedup_fp, "zstd_level": ZSTD_LEVEL},
        counts=counts,
    )
    return counts
