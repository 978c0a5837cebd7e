"""Cold-cache help for the scattered reads of one training step (page cache probes, fadvise).

A step of document-level data needs ~5 dependent lookups (shuffle_idx -> sample_idx -> doc_idx
-> sizes/pointers -> .bin), each scattered over a large file. `Prefetch` turns each lookup into
one round of parallel I/O instead of thousands of serial page faults.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

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


def npy_offset(arr) -> int:
    """Byte offset of a memory-mapped .npy array's data in its file (0 for other arrays)."""
    return int(getattr(arr, "offset", 0) or 0)
