"""Task planning: one task per work unit of the inputs (pipeline.read.units: whole files, byte
ranges of large `.jsonl` files, frame ranges of multi-frame or re-chunked `.jsonl.zst` files),
entered without reading what precedes them. A task is one unit and everything its worker needs
(pipeline.tokenize.worker); its key names its files and its resume record in the work directory
(pipeline.tokenize.records)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.read import InputFile, ReadConfig
from pipeline.read.units import DEFAULT_FRAME_BYTES, SPLITTABLE, Unit, UnitPlan, plan_units
from pipeline.tokenize.config import TokenizeConfig

CHUNKABLE_KINDS = SPLITTABLE
TASKS_PER_WORKER = 2
# one unit per file: larger than any file's text
WHOLE_FILES = 1 << 62
MIN_FRAME_BYTES = 1 << 10


@dataclass(frozen=True)
class Task:
    seq: int
    unit: Unit
    config: TokenizeConfig
    read_config: ReadConfig
    tmp_dir: str
    exclude: np.ndarray  # sorted doc ids of this task's unit
    fingerprint: str = ""  # the stage's config fingerprint (its task records must hold it)
    plan_fingerprint: str = ""  # the unit plan's (its task records must hold it too)

    @property
    def input(self) -> InputFile:
        return self.unit.file

    @property
    def first_line(self) -> int:
        return self.unit.first_line

    @property
    def stop_line(self) -> int | None:
        """Exclusive; None = to the end of the file (the file's last unit)."""
        u = self.unit
        return None if u.last or u.lines is None else u.first_line + u.lines

    @property
    def reads_to_end(self) -> bool:
        return self.stop_line is None

    @property
    def key(self) -> str:
        """The task's file names in the work directory: its input and line range."""
        stop = "end" if self.stop_line is None else str(self.stop_line)
        return f"{self.input.index:06d}.{self.first_line}-{stop}"


def balanced_unit_bytes(files: Sequence[InputFile], workers: int) -> int:
    """The default unit size: total input bytes / (workers x TASKS_PER_WORKER), so no unit
    holds one worker for most of the run (a 101 MB file of 37% of the bytes kept one of two
    workers busy for >= 63% of the work); with one worker, one unit per file."""
    if workers <= 1:
        return WHOLE_FILES
    total = 0
    for f in files:
        if f.kind in CHUNKABLE_KINDS and "://" not in f.path:
            try:
                total += max(1, os.path.getsize(f.path))
            except OSError:
                pass
    return max(1, int((total or 1) / (workers * TASKS_PER_WORKER)))


def plan_tasks(
    files: Sequence[InputFile],
    workers: int,
    unit_bytes: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    executor=None,
) -> UnitPlan:
    """The unit plan of the tasks: `unit_bytes` of text per unit (None: `balanced_unit_bytes`).
    The output is the same for any plan (the partials are merged in unit order)."""
    if unit_bytes is None:
        unit_bytes = balanced_unit_bytes(files, workers)
    return plan_units(
        files, unit_bytes, cache_dir, frame_bytes=frame_bytes_for(unit_bytes), executor=executor
    )


def frame_bytes_for(unit_bytes: int) -> int:
    """Frames of a re-chunked file: ~4 per unit (units are frame ranges), between 1 KiB and
    16 MiB (a 1 GiB unit: the default 16 MiB; one cache per frame size)."""
    return max(MIN_FRAME_BYTES, min(DEFAULT_FRAME_BYTES, unit_bytes // 4))
