"""Task planning: the work is split into tasks of about equal bytes (`plan_tasks`: whole files,
and line ranges of the jsonl files larger than a task's share). A task is one input's line range
and everything its worker needs (pipeline.tokenize.worker); its key names its files and its
resume record in the work directory (pipeline.tokenize.records)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.read import InputFile, ReadConfig
from pipeline.tokenize.config import TokenizeConfig

CHUNKABLE_KINDS = ("jsonl", "jsonl.zst", "jsonl.gz")
TASKS_PER_WORKER = 2


@dataclass(frozen=True)
class Task:
    seq: int
    input: InputFile
    first_line: int  # 1-based, inclusive
    stop_line: int | None  # exclusive; None = to the end of the file
    config: TokenizeConfig
    read_config: ReadConfig
    tmp_dir: str
    exclude: np.ndarray  # sorted doc ids of this task's range
    fingerprint: str = ""  # the stage's config fingerprint (its task records must hold it)

    @property
    def reads_to_end(self) -> bool:
        return self.stop_line is None

    @property
    def key(self) -> str:
        """The task's file names in the work directory: its input and line range, so a rerun
        with another split (worker count) still reuses the ranges it shares."""
        stop = "end" if self.stop_line is None else str(self.stop_line)
        return f"{self.input.index:06d}.{self.first_line}-{stop}"


def count_lines(f: InputFile) -> int:
    """Lines of a jsonl input (a last line without newline counts), for planning line ranges."""
    from pipeline.read.lines import byte_chunks

    n = 0
    last = b"\n"
    for chunk in byte_chunks(f.path, f.kind):
        n += chunk.count(b"\n")
        last = chunk[-1:]
    return n + (1 if last != b"\n" else 0)


def plan_tasks(files: Sequence[InputFile], workers: int) -> list[tuple[InputFile, int, int | None]]:
    """(file, first_line, stop_line) ranges balanced by bytes, not one task per file.

    The per-task target is total bytes / (workers x TASKS_PER_WORKER); a jsonl file larger than
    1.2x the target is cut into ceil(size / target) line ranges of equal line counts (one large
    file otherwise holds one worker for most of the run: a 101 MB file of 37% of the bytes kept
    one of two workers busy for >= 63% of the work). The output is the same for any split (the
    partials are merged in order). A range is read from the file's start (a zstd stream cannot be
    entered in the middle), so cutting costs a line count and the skipped prefixes' reading: a
    file is cut only when that buys balance. Parquet and datasets inputs are never cut.
    """
    if workers <= 1:
        return [(f, 1, None) for f in files]
    sizes = []
    for f in files:
        try:
            sizes.append(max(1, os.path.getsize(f.path)) if f.kind in CHUNKABLE_KINDS else 0)
        except OSError:
            sizes.append(0)
    total = sum(sizes) or 1
    target = total / (workers * TASKS_PER_WORKER)
    plan: list[tuple[InputFile, int, int | None]] = []
    for f, size in zip(files, sizes):
        k = -(-size // max(1, int(target))) if size > 1.2 * target else 1
        if k > 1:
            lines = count_lines(f)
            k = min(k, lines)
        if k <= 1:
            plan.append((f, 1, None))
            continue
        bounds = [1 + (i * lines) // k for i in range(k)]
        for i, b in enumerate(bounds):
            plan.append((f, b, bounds[i + 1] if i + 1 < k else None))
    return plan
