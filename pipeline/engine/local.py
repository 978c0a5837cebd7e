"""Local engine: in-process for 1 worker, a process pool (spawn-safe, ordered results) otherwise."""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def resolve_workers(workers: int | None) -> int:
    if workers is None or workers <= 0:
        return max(1, os.cpu_count() or 1)
    return int(workers)


def imap_ordered(fn: Callable[[T], R], tasks: Iterable[T], workers: int | None = 1) -> Iterator[R]:
    """Yield fn(task) in task order. `fn` must be a module-level function (picklable)."""
    workers = resolve_workers(workers)
    tasks = list(tasks)
    if workers == 1 or len(tasks) <= 1:
        for t in tasks:
            yield fn(t)
        return
    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as ex:
        yield from ex.map(fn, tasks)


def map_ordered(fn: Callable[[T], R], tasks: Iterable[T], workers: int | None = 1) -> list[R]:
    return list(imap_ordered(fn, tasks, workers))
