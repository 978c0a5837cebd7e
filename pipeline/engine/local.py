"""Local engine: in-process for 1 worker, a process pool (spawn-safe, ordered results) otherwise.

Pool workers are children of the forkserver, not of the main process, so nothing tells them when
the main process is killed (SIGKILL runs no cleanup): they would finish their task and keep
writing into a directory the next run owns. Each worker therefore watches the main process (its
pid and start time, so a reused pid does not count) from a daemon thread and exits within
WATCH_INTERVAL seconds of it dying; the forkserver and resource tracker then exit on their own
(their pipes close).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

from pipeline.engine.base import Executor, InlineExecutor

T = TypeVar("T")
R = TypeVar("R")

WATCH_INTERVAL = 0.5  # seconds between a worker's checks that the main process is alive


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (/proc/PID/stat field 22), or None without /proc
    or when the process is gone or a zombie (killed, not yet reaped: dead for our purposes)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the command name may hold spaces and ')'
    if not fields or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _alive(pid: int, start: str | None) -> bool:
    if start is not None or os.path.isdir("/proc"):
        return start is not None and _start_time(pid) == start
    try:  # no /proc (macOS): signal 0 only checks that the pid exists
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch_main(pid: int, start: str | None) -> None:
    while _alive(pid, start):
        time.sleep(WATCH_INTERVAL)
    os._exit(1)  # no cleanup: this process's work is orphaned and must stop writing now


def _worker_init(pid: int, start: str | None) -> None:
    threading.Thread(
        target=_watch_main, args=(pid, start), name="pile-watch-main", daemon=True
    ).start()


def resolve_workers(workers: int | None) -> int:
    if workers is None or workers <= 0:
        return max(1, os.cpu_count() or 1)
    return int(workers)


def _pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers exit when this (main) process dies."""
    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    main = os.getpid()
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(main, _start_time(main)),
    )


class LocalExecutor(Executor):
    """This machine: in process for 1 worker, else one process pool (started on first use, kept
    for the executor's life so a stage's successive maps share warm workers)."""

    name = "local"

    def __init__(self, workers: int | None = None, scratch: str | Path | None = None) -> None:
        super().__init__(resolve_workers(workers), scratch)
        self._inline = InlineExecutor(scratch) if self.workers == 1 else None
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, fn: Callable[[T], R], task: T) -> Future:
        if self._inline is not None:
            return self._inline.submit(fn, task)
        if self._pool is None:
            self._pool = _pool(self.workers)
        return self._pool.submit(fn, task)

    def imap(self, fn, tasks, ahead=None):
        if self._inline is not None:
            return self._inline.imap(fn, tasks)
        return super().imap(fn, tasks, ahead)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
