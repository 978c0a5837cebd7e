"""`pile build`'s lock on OUT: the shared directory lock of pipeline.lock (kept for imports)."""

from __future__ import annotations

import os

from pipeline.lock import BuildLocked, DirLock

__all__ = ["BuildLock", "BuildLocked"]


class BuildLock(DirLock):
    def __init__(self, out_dir: str | os.PathLike) -> None:
        super().__init__(out_dir, "build")
