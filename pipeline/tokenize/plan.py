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
from pipeline.read.units import (  # noqa: F401 (TASKS_PER_WORKER, WHOLE_FILES re-exported)
    SPLITTABLE,
    TASKS_PER_WORKER,
    WHOLE_FILES,
    Unit,
    UnitPlan,
    plan_balanced_units,
)
from pipeline.tokenize.config import TokenizeConfig

CHUNKABLE_KINDS = SPLITTABLE


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


def plan_tasks(
    files: Sequence[InputFile],
    workers: int,
    unit_bytes: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    executor=None,
) -> UnitPlan:
    """The unit plan of the tasks: `unit_bytes` of text per unit (None: `balanced_unit_bytes`).
    The output is the same for any plan (the partials are merged in unit order)."""
    return plan_balanced_units(files, workers, unit_bytes, cache_dir, executor)
